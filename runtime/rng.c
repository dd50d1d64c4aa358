/* rng.c — the counter-based random generator: splitmix64 mixing, uniform and
 * normal draws, and per-name stream seeds. */
#include "runtime/dlrt.h"

#include <math.h>
#include <string.h>

uint64_t dlrt_mix64(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + counter * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float dlrt_uniform01(uint64_t seed, uint64_t counter) {
  return (float)(dlrt_mix64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

float dlrt_normal(uint64_t seed, uint64_t counter) {
  double u1 = (double)(dlrt_mix64(seed, 2 * counter) >> 40) * (1.0 / 16777216.0);
  double u2 = (double)(dlrt_mix64(seed, 2 * counter + 1) >> 40) * (1.0 / 16777216.0);
  if (u1 <= 0.0) u1 = 1.0 / 33554432.0; /* guard log(0): 2^-25 */
  const double two_pi = 6.283185307179586476925286766559;
  return (float)(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
}

uint64_t dlrt_fnv1a_bytes(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

uint64_t dlrt_fnv1a(const char *s) { return dlrt_fnv1a_bytes(DLRT_FNV1A_BASIS, s, strlen(s)); }

uint64_t dlrt_stream_seed(uint64_t seed, const char *name) {
  return dlrt_mix64(seed, dlrt_fnv1a(name ? name : ""));
}
