/* gemm_bench.c — dlc's GEMM path against OpenBLAS, same process, alternating.
 * For each shape a one-kernel Program (C[M,N] = sum_k op(A)[i,k] op(B)[k,j],
 * with op = transpose per flag, as autodiff produces them) is compiled with
 * the backend (cg_build/cg_optimize/cg_jit, native CPU) and timed against
 * cblas_sgemm on the same operands; blocks of dlc and OpenBLAS runs
 * alternate, and the median over blocks is printed in GFLOP/s.
 * Also checks the dlc result against OpenBLAS (max relative error).
 *   gemm_bench THREADS [reps]      (OPENBLAS_NUM_THREADS should equal THREADS)
 * With threads > 1 each timed block starts after a pause and one untimed
 * call: the other library's idle threads spin for a while after their last
 * call and would otherwise take the second core from the library being
 * timed. OpenBLAS's pthreads pool spins for more than 150 ms (dlc's 2-thread
 * 128 x 256 x 10 read 1-2 GFLOP/s instead of 80-110 in half the runs after a
 * 150 ms pause, never in five after 500 ms), OpenMP's idle threads only for
 * their spin count: PARK_DLC_US before dlc's blocks, PARK_BLAS_US before
 * OpenBLAS's.
 * Built by bench/run.sh against a dlc build dir. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "backend/backend.h"
#include "runtime/dlrt.h"

extern void openblas_set_num_threads(int);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double cpu_now(void) { /* this thread's CPU time: immune to other load (1 thread) */
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
enum { PARK_DLC_US = 500000, PARK_BLAS_US = 150000 };

static void park(int threads, long us) {
  if (threads <= 1) return;
  struct timespec ts = {us / 1000000, us % 1000000 * 1000L};
  nanosleep(&ts, NULL);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  const char *name;
  char ta, tb;
  int m, n, k;
} Shape3;

static const Shape3 shapes[] = {
    {"sq256", 'N', 'N', 256, 256, 256},
    {"sq512", 'N', 'N', 512, 512, 512},
    {"sq1024", 'N', 'N', 1024, 1024, 1024},
    {"sq2048", 'N', 'N', 2048, 2048, 2048},
    {"mlpA_fwd1", 'N', 'N', 128, 256, 784},
    {"mlpA_fwd2", 'N', 'N', 128, 10, 256},
    {"mlpA_dW2_TN", 'T', 'N', 256, 10, 128},
    {"mlpA_dH_NT", 'N', 'T', 128, 256, 10},
    {"mlpA_dW1_TN", 'T', 'N', 784, 256, 128},
    {"mlpB_fwd2", 'N', 'N', 256, 1024, 1024},
    {"mlpB_fwd3", 'N', 'N', 256, 10, 1024},
    {"mlpB_dH1_NT", 'N', 'T', 256, 1024, 1024},
    {"mlpB_dW2_TN", 'T', 'N', 1024, 1024, 256},
    {"mlpB_dW1_TN", 'T', 'N', 784, 1024, 256},
    {"lenet_fc1", 'N', 'N', 64, 120, 400},
    {"vgg_fc1", 'N', 'N', 64, 256, 4096},
    /* per-image products of convolutions (im2col): forward, data gradient */
    {"vgg_c2_fwd", 'N', 'N', 32, 1024, 288},
    {"vgg_c4_fwd", 'N', 'N', 64, 256, 576},
    {"vgg_c2_dcol_TN", 'T', 'N', 288, 1024, 32},
    {"lenet_c2_fwd", 'N', 'N', 16, 100, 150},
    {"lenet_c2_dcol_TN", 'T', 'N', 150, 100, 16},
    /* filter gradients (dy . cols^T over the batch and the image) */
    {"lenet_c1_dW_NT", 'N', 'T', 6, 25, 50176},
    {"lenet_c2_dW_NT", 'N', 'T', 16, 150, 6400},
    {"vgg_c2_dW_NT", 'N', 'T', 32, 288, 65536},
};

typedef struct {
  Arena *a;
  Program *p;
  CgJit *jit;
  CgEntryFn fn;
  void *bufs[4];
} Prog;

/* out[i,j] = sum_k A[i,k] B[k,j] with A stored [M,K] or [K,M] (ta), B [K,N] or [N,K] (tb) */
static int build(Prog *g, const Shape3 *s) {
  memset(g, 0, sizeof *g);
  g->a = arena_new();
  g->p = kir_program_new(g->a, "g");
  int64_t da[2] = {s->ta == 'T' ? s->k : s->m, s->ta == 'T' ? s->m : s->k};
  int64_t db[2] = {s->tb == 'T' ? s->n : s->k, s->tb == 'T' ? s->k : s->n};
  int64_t dc[2] = {s->m, s->n};
  int A = kir_buffer(g->p, "A", BUF_INPUT, DT_F32, shape_make(2, da), -1);
  int B = kir_buffer(g->p, "B", BUF_INPUT, DT_F32, shape_make(2, db), -1);
  int Cb = kir_buffer(g->p, "C", BUF_OUTPUT, DT_F32, shape_make(2, dc), -1);
  IExpr *i = ix_var(g->a, 0), *j = ix_var(g->a, 1), *k = ix_var(g->a, 2);
  IExpr *ia[2] = {s->ta == 'T' ? k : i, s->ta == 'T' ? i : k};
  IExpr *ib[2] = {s->tb == 'T' ? j : k, s->tb == 'T' ? k : j};
  Kernel *K = ARENA_NEW(g->a, Kernel);
  K->name = "k0_gemm";
  K->ops = "matmul";
  K->out_buf = Cb;
  K->dtype = DT_F32;
  K->shape = shape_make(2, dc);
  K->red = RED_SUM;
  K->n_red = 1;
  K->red_ext[0] = s->k;
  K->body = vx_bin(g->a, VX_MUL, vx_load(g->a, DT_F32, A, 2, ia, NULL, 0), vx_load(g->a, DT_F32, B, 2, ib, NULL, 0));
  K->flops = 2LL * s->m * s->n * s->k;
  kir_add_kernel(g->p, ENTRY_INFER, K);
  Diag d;
  diag_init(&d, stderr);
  CgOptions o = {.cpu = NULL, .opt_level = 3};
  CgModule *m = cg_build(g->p, &o, &d);
  if (!m || cg_optimize(m, &d)) return 1;
  g->jit = cg_jit(m, &d);
  if (!g->jit) return 1;
  g->fn = cg_jit_entry(g->jit, "g_infer");
  diag_free(&d);
  if (!g->fn) return 1;
  g->bufs[A] = dlrt_alloc((size_t)(s->m * s->k) * 4);
  g->bufs[B] = dlrt_alloc((size_t)(s->k * s->n) * 4);
  g->bufs[Cb] = dlrt_alloc((size_t)(s->m * s->n) * 4);
  float *pa = g->bufs[A], *pb = g->bufs[B];
  srand(1);
  for (int t = 0; t < s->m * s->k; t++) pa[t] = (float)rand() / RAND_MAX - 0.5f;
  for (int t = 0; t < s->k * s->n; t++) pb[t] = (float)rand() / RAND_MAX - 0.5f;
  return 0;
}

static void blas(const Shape3 *s, const float *a, const float *b, float *c) {
  int lda = s->ta == 'T' ? s->m : s->k, ldb = s->tb == 'T' ? s->k : s->n;
  cblas_sgemm(CblasRowMajor, s->ta == 'T' ? CblasTrans : CblasNoTrans, s->tb == 'T' ? CblasTrans : CblasNoTrans,
              s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  int reps = argc > 2 ? atoi(argv[2]) : 7;
  const char *only = argc > 3 ? argv[3] : NULL;
  dlrt_set_threads(threads);
  openblas_set_num_threads(threads);
  printf("# %d thread(s); times are %s\n", threads, threads == 1 ? "thread CPU time (robust to other load)" : "wall clock");
  printf("%-14s %5s %5s %5s %3s  %10s %10s %6s  %s\n", "shape", "M", "N", "K", "op", "dlc GF/s", "blas GF/s",
         "ratio", "maxrelerr");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const Shape3 *s = &shapes[si];
    if (only && !strstr(s->name, only)) continue;
    Prog g;
    if (build(&g, s)) {
      fprintf(stderr, "build failed for %s\n", s->name);
      return 1;
    }
    float *cref = malloc(sizeof(float) * (size_t)(s->m * s->n));
    blas(s, g.bufs[0], g.bufs[1], cref);
    g.fn(g.bufs);
    double maxerr = 0;
    for (int t = 0; t < s->m * s->n; t++) {
      double e = fabs((double)((float *)g.bufs[2])[t] - cref[t]) / (1.0 + fabs(cref[t]));
      if (e > maxerr) maxerr = e;
    }
    double flop = 2.0 * s->m * s->n * s->k;
    int iters = (int)(20e6 / flop) + 1; /* ~20 MFLOP... per block, calibrated below */
    double t0 = now();
    for (int it = 0; it < iters; it++) g.fn(g.bufs);
    double dt = now() - t0;
    iters = (int)(iters * 0.02 / (dt > 1e-6 ? dt : 1e-6)) + 1; /* ~20 ms per block */
    double *td = malloc(sizeof(double) * (size_t)reps), *tb = malloc(sizeof(double) * (size_t)reps);
    double (*clk)(void) = threads == 1 ? cpu_now : now;
    for (int r = 0; r < reps; r++) {
      park(threads, PARK_DLC_US);
      g.fn(g.bufs);
      t0 = clk();
      for (int it = 0; it < iters; it++) g.fn(g.bufs);
      td[r] = (clk() - t0) / iters;
      park(threads, PARK_BLAS_US);
      blas(s, g.bufs[0], g.bufs[1], cref);
      t0 = clk();
      for (int it = 0; it < iters; it++) blas(s, g.bufs[0], g.bufs[1], cref);
      tb[r] = (clk() - t0) / iters;
    }
    qsort(td, (size_t)reps, sizeof *td, cmpd);
    qsort(tb, (size_t)reps, sizeof *tb, cmpd);
    double gd = flop / td[reps / 2] * 1e-9, gb = flop / tb[reps / 2] * 1e-9;
    printf("%-14s %5d %5d %5d  %c%c  %10.1f %10.1f %6.2f  %.1e\n", s->name, s->m, s->n, s->k, s->ta, s->tb, gd, gb,
           gd / gb, maxerr);
    fflush(stdout);
    free(td);
    free(tb);
    free(cref);
    for (int b = 0; b < 3; b++) dlrt_free(g.bufs[b]);
    cg_jit_free(g.jit);
    arena_free(g.a);
  }
  return 0;
}
