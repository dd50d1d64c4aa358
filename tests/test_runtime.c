/* test_runtime.c — cmocka tests of libdlrt's core: memory, rng, init and
 * dlrt_parallel_for; main() runs every runtime test group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dlrt.h"
#include "tests/test_runtime.h"

static void test_alloc(void **state) {
  (void)state;
  size_t sizes[] = {0, 1, 63, 64, 65, 1000, 1 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    unsigned char *p = dlrt_alloc(sizes[k]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (size_t i = 0; i < sizes[k]; i++) assert_int_equal(p[i], 0);
    dlrt_free(p);
  }
  dlrt_free(NULL);
  int64_t s[] = {2, 3, 4};
  assert_int_equal(dlrt_numel(s, 3), 24);
  assert_int_equal(dlrt_numel(s, 0), 1);
}

static void test_mix64_values(void **state) {
  (void)state;
  /* splitmix64 of seed 0 is the reference generator's sequence for state 0:
   * its first two outputs are e220a8397b1dcdaf and 6e789e6aa1b965f4. */
  assert_true(dlrt_mix64(0, 0) == 0);
  assert_true(dlrt_mix64(0, 1) == 0xe220a8397b1dcdafull);
  assert_true(dlrt_mix64(0, 2) == 0x6e789e6aa1b965f4ull);
  assert_true(dlrt_mix64(42, 7) == 0x37e9671c45376d5dull);
  /* uniform01 = top 24 bits * 2^-24 */
  assert_true(dlrt_uniform01(0, 1) == (float)0xe220a8 / 16777216.0f);
  assert_true(dlrt_uniform01(0, 0) == 0.0f);
  /* deterministic and seed-sensitive */
  assert_true(dlrt_mix64(123, 456) == dlrt_mix64(123, 456));
  assert_true(dlrt_mix64(123, 456) != dlrt_mix64(124, 456));
  assert_true(dlrt_normal(9, 3) == dlrt_normal(9, 3));
  /* FNV-1a 64 reference values */
  assert_true(dlrt_fnv1a("") == 0xcbf29ce484222325ull);
  assert_true(dlrt_fnv1a("a") == 0xaf63dc4c8601ec8cull);
  assert_true(dlrt_stream_seed(5, "fc1.W") == dlrt_mix64(5, dlrt_fnv1a("fc1.W")));
  assert_true(dlrt_stream_seed(5, "fc1.W") != dlrt_stream_seed(5, "fc1.b"));
}

static void test_uniform_range(void **state) {
  (void)state;
  double sum = 0;
  for (uint64_t i = 0; i < 100000; i++) {
    float u = dlrt_uniform01(77, i);
    assert_true(u >= 0.0f && u < 1.0f);
    sum += u;
  }
  assert_true(fabs(sum / 100000 - 0.5) < 0.01);
  /* the largest value is 1 - 2^-24, still < 1 */
  float top = (float)0xFFFFFF * (1.0f / 16777216.0f);
  assert_true(top < 1.0f);
}

static void test_normal_moments(void **state) {
  (void)state;
  const int n = 100000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; i++) {
    double z = dlrt_normal(2024, (uint64_t)i);
    assert_true(isfinite(z));
    s += z;
    s2 += z * z;
  }
  double mean = s / n, sd = sqrt(s2 / n - mean * mean);
  assert_true(fabs(mean) < 0.015);
  assert_true(fabs(sd - 1.0) < 0.015);
}

static void stats(const float *x, int64_t n, double *mean, double *sd, double *maxabs) {
  double s = 0, s2 = 0, m = 0;
  for (int64_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    if (fabs(x[i]) > m) m = fabs(x[i]);
  }
  *mean = s / (double)n;
  *sd = sqrt(s2 / (double)n - *mean * *mean);
  *maxabs = m;
}

static void check_init(const int64_t *shape, int rank, double fi, double fo) {
  int64_t n = dlrt_numel(shape, rank);
  float *x = dlrt_alloc((size_t)n * sizeof(float));
  assert_non_null(x);
  double afi, afo, mean, sd, mx;
  dlrt_fans(shape, rank, &afi, &afo);
  assert_true(afi == fi && afo == fo);
  uint64_t seed = dlrt_stream_seed(1, "w");
  /* uniform kinds: |x| <= bound, max close to bound, sd = bound/sqrt(3) */
  struct { int kind; double bound; } U[] = {
      {DLRT_INIT_XAVIER_UNIFORM, sqrt(6.0 / (fi + fo))},
      {DLRT_INIT_KAIMING_UNIFORM, sqrt(2.0) * sqrt(3.0 / fi)}};
  for (int k = 0; k < 2; k++) {
    DlrtInit in = {U[k].kind, 0, 0};
    dlrt_init_tensor(x, shape, rank, in, seed);
    stats(x, n, &mean, &sd, &mx);
    assert_true(mx <= U[k].bound * (1 + 1e-6));
    assert_true(mx > 0.99 * U[k].bound);
    assert_true(fabs(mean) < 0.02 * U[k].bound);
    assert_true(fabs(sd / (U[k].bound / sqrt(3.0)) - 1) < 0.03);
  }
  struct { int kind; double sd; } N[] = {
      {DLRT_INIT_XAVIER_NORMAL, sqrt(2.0 / (fi + fo))},
      {DLRT_INIT_KAIMING_NORMAL, sqrt(2.0) / sqrt(fi)}};
  for (int k = 0; k < 2; k++) {
    DlrtInit in = {N[k].kind, 0, 0};
    dlrt_init_tensor(x, shape, rank, in, seed);
    stats(x, n, &mean, &sd, &mx);
    assert_true(fabs(mean) < 0.02 * N[k].sd);
    assert_true(fabs(sd / N[k].sd - 1) < 0.03);
    /* element i is normal(seed, i) * std */
    assert_true(x[17] == (float)(N[k].sd * dlrt_normal(seed, 17)));
  }
  dlrt_free(x);
}

static void test_init_fans(void **state) {
  (void)state;
  int64_t s2[] = {256, 128}; /* [in, out] */
  check_init(s2, 2, 256, 128);
  int64_t s4[] = {64, 32, 3, 3}; /* [out, in/g, kh, kw] */
  check_init(s4, 4, 32 * 9, 64 * 9);
  double fi, fo;
  int64_t s1[] = {10};
  dlrt_fans(s1, 1, &fi, &fo);
  assert_true(fi == 10 && fo == 10);
  dlrt_fans(NULL, 0, &fi, &fo);
  assert_true(fi == 1 && fo == 1);
}

static void test_init_simple(void **state) {
  (void)state;
  int64_t sh[] = {1000};
  float x[1000];
  DlrtInit c = {DLRT_INIT_CONSTANT, 2.5f, 0};
  dlrt_init_tensor(x, sh, 1, c, 0);
  for (int i = 0; i < 1000; i++) assert_true(x[i] == 2.5f);
  DlrtInit z = {DLRT_INIT_ZEROS, 0, 0};
  dlrt_init_tensor(x, sh, 1, z, 0);
  for (int i = 0; i < 1000; i++) assert_true(x[i] == 0.0f);
  DlrtInit o = {DLRT_INIT_ONES, 0, 0};
  dlrt_init_tensor(x, sh, 1, o, 0);
  for (int i = 0; i < 1000; i++) assert_true(x[i] == 1.0f);
  DlrtInit u = {DLRT_INIT_UNIFORM, -0.5f, 0.25f};
  dlrt_init_tensor(x, sh, 1, u, 3);
  for (int i = 0; i < 1000; i++) assert_true(x[i] >= -0.5f && x[i] < 0.25f);
  float y[1000];
  dlrt_init_tensor(y, sh, 1, u, 3);
  assert_memory_equal(x, y, sizeof x);
  DlrtInit nn = {DLRT_INIT_NORMAL, 0.1f, 0};
  dlrt_init_tensor(x, sh, 1, nn, 4);
  for (int i = 0; i < 1000; i++) assert_true(x[i] == 0.1f * dlrt_normal(4, (uint64_t)i));
  float s;
  dlrt_init_tensor(&s, NULL, 0, c, 0);
  assert_true(s == 2.5f);
}

/* ---- parallel_for ---- */
typedef struct {
  atomic_int *hits;
  atomic_int calls;
  int64_t n, chunks;
  atomic_int bad;
} PfCtx;

static void pf_body(void *vctx, int64_t b, int64_t e) {
  PfCtx *c = vctx;
  atomic_fetch_add(&c->calls, 1);
  if (b < 0 || e > c->n || b >= e) atomic_store(&c->bad, 1);
  /* boundaries are exactly the documented layout */
  if (c->chunks > 1) {
    int found = 0;
    for (int64_t i = 0; i < c->chunks; i++) {
      int64_t cb, ce;
      dlrt_chunk_range(c->n, c->chunks, i, &cb, &ce);
      if (cb == b && ce == e) found = 1;
    }
    if (!found) atomic_store(&c->bad, 1);
  }
  for (int64_t i = b; i < e && i < c->n && i >= 0; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void test_parallel_for(void **state) {
  (void)state;
  int64_t ns[] = {0, 1, 2, 5, 100, 1000, 12345};
  int64_t grains[] = {0, 1, 7, 64, 1000, 100000};
  int threads[] = {1, 2, 3, 4, 7};
  for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
    dlrt_set_threads(threads[ti]);
    assert_int_equal(dlrt_get_threads(), threads[ti]);
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
      for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++) {
        int64_t n = ns[ni], g = grains[gi];
        PfCtx c;
        c.hits = calloc((size_t)(n ? n : 1), sizeof(atomic_int));
        assert_non_null(c.hits);
        for (int64_t i = 0; i < n; i++) atomic_init(&c.hits[i], 0);
        atomic_init(&c.calls, 0);
        atomic_init(&c.bad, 0);
        c.n = n;
        c.chunks = dlrt_chunk_count(n, g, threads[ti]);
        dlrt_parallel_for(pf_body, &c, n, g);
        for (int64_t i = 0; i < n; i++) assert_int_equal(atomic_load(&c.hits[i]), 1);
        assert_int_equal(atomic_load(&c.bad), 0);
        assert_int_equal(atomic_load(&c.calls), n == 0 ? 0 : c.chunks);
        if (n <= g || threads[ti] == 1) assert_true(c.chunks <= 1);
        /* each chunk has at least `grain` iterations unless there's one chunk */
        for (int64_t i = 0; c.chunks > 1 && i < c.chunks; i++) {
          int64_t b, e;
          dlrt_chunk_range(n, c.chunks, i, &b, &e);
          assert_true(e - b >= (g < 1 ? 1 : g));
        }
        free(c.hits);
      }
  }
  setenv("OMP_NUM_THREADS", "3", 1);
  dlrt_set_threads(0);
  assert_int_equal(dlrt_get_threads(), 3);
  unsetenv("OMP_NUM_THREADS");
  dlrt_set_threads(-1);
  assert_true(dlrt_get_threads() >= 1);
}

int run_core_tests(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc),          cmocka_unit_test(test_mix64_values),
      cmocka_unit_test(test_uniform_range),  cmocka_unit_test(test_normal_moments),
      cmocka_unit_test(test_init_fans),      cmocka_unit_test(test_init_simple),
      cmocka_unit_test(test_parallel_for),
  };
  return cmocka_run_group_tests_name("runtime_core", tests, NULL, NULL);
}

/* clang's libomp keeps per-team allocations alive at exit when the team
 * size changes (this test uses several thread counts); LeakSanitizer reads
 * this hook when the binary is built with -fsanitize=address. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libomp.so\n"; }

int main(void) {
  int fails = 0;
  fails += run_core_tests();
  fails += run_st_tests();
  fails += run_data_tests();
  return fails ? 1 : 0;
}
