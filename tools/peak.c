/* peak.c — the machine's single-core fp32 FMA peak, measured: a loop of
 * independent fused multiply-adds on the widest vectors the CPU runs
 * (AVX-512, else AVX2+FMA, else SSE mul+add), timed over ~30 ms. `dlrun
 * bench` reports achieved GFLOP/s as a share of it. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "tools/peak.h"

#include <stdint.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* 12 independent accumulator chains hide the FMA latency (4 cycles x 2-3 ports). */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f"))) static float loop512(int64_t n) {
  __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + (float)(i));
  CHAINS(DECL)
#undef DECL
  for (int64_t k = 0; k < n; k++) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
    CHAINS(STEP)
#undef STEP
    __asm__ volatile("" ::: "memory");
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float loop256(int64_t n) {
  __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + (float)(i));
  CHAINS(DECL)
#undef DECL
  for (int64_t k = 0; k < n; k++) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
    CHAINS(STEP)
#undef STEP
    __asm__ volatile("" ::: "memory");
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

double peak_gflops_per_core(const char **isa) {
  __builtin_cpu_init();
  int w512 = __builtin_cpu_supports("avx512f"), w256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!w512 && !w256) {
    if (isa) *isa = "none";
    return 0;
  }
  int lanes = w512 ? 16 : 8;
  if (isa) *isa = w512 ? "AVX-512" : "AVX2+FMA";
  volatile float sink = 0;
  double best = 0;
  int64_t n = 1 << 16;
  for (int rep = 0; rep < 6; rep++) {
    double t0 = now();
    sink += w512 ? loop512(n) : loop256(n);
    double dt = now() - t0;
    if (dt < 0.003) { /* calibrate to a few ms per repetition */
      n *= 4;
      rep--;
      continue;
    }
    double gf = (double)n * 12 * lanes * 2 / dt * 1e-9;
    if (gf > best) best = gf;
  }
  (void)sink;
  return best;
}
#else
double peak_gflops_per_core(const char **isa) {
  if (isa) *isa = "unknown";
  return 0;
}
#endif
