/* test_backend.c — cmocka tests of the backend: small kernel Programs built
 * by hand with the kir constructors, compiled with cg_build + cg_optimize +
 * cg_jit and run against plain C references (elementwise with broadcasting,
 * guarded loads, reductions, matmul in both loop orders, threads, the inline
 * RNG, vector math accuracy in ulp, emission). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cg_internal.h"
#include "runtime/dlrt.h"

/* ---------------- helpers ---------------- */

typedef struct {
  Arena *a;
  Program *p;
  CgJit *jit;
  CgEntryFn fn;
  void *bufs[64];
} T;

static void t_init(T *t) {
  memset(t, 0, sizeof *t);
  t->a = arena_new();
  t->p = kir_program_new(t->a, "t");
}

static void t_free(T *t) {
  for (int i = 0; i < t->p->n_bufs; i++) dlrt_free(t->bufs[i]);
  cg_jit_free(t->jit);
  arena_free(t->a);
}

static Shape shp(int rank, ...) {
  int64_t d[IR_MAX_RANK] = {0};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) d[i] = va_arg(ap, int);
  va_end(ap);
  return shape_make(rank, d);
}

static int buf(T *t, const char *name, DType dt, Shape s) {
  int i = kir_buffer(t->p, name, BUF_TEMP, dt, s, -1);
  int64_t n = shape_numel(&s);
  t->bufs[i] = dlrt_alloc((size_t)(n > 0 ? n : 1) * 4);
  return i;
}
static float *F(T *t, int b) { return (float *)t->bufs[b]; }
static int32_t *I(T *t, int b) { return (int32_t *)t->bufs[b]; }

static IExpr *V(T *t, int v) { return ix_var(t->a, v); }
static IExpr *C(T *t, int64_t v) { return ix_const(t->a, v); }
static IExpr *IB(T *t, IxOp op, IExpr *x, IExpr *y) { return ix_bin(t->a, op, x, y); }

/* load of buffer b (f32 unless the buffer is i32) at the given indices */
static VExpr *ld(T *t, int b, ...) {
  int rank = t->p->bufs[b].shape.rank;
  IExpr *idx[IR_MAX_RANK];
  va_list ap;
  va_start(ap, b);
  for (int i = 0; i < rank; i++) idx[i] = va_arg(ap, IExpr *);
  va_end(ap);
  return vx_load(t->a, t->p->bufs[b].dtype, b, rank, idx, NULL, 0.0f);
}
static VExpr *un(T *t, VxOp op, VExpr *x) { return vx_un(t->a, op, x); }
static VExpr *bin(T *t, VxOp op, VExpr *x, VExpr *y) { return vx_bin(t->a, op, x, y); }
static VExpr *kf(T *t, double v) { return vx_const(t->a, DT_F32, v); }

static VExpr *acc_ref(T *t) {
  VExpr *e = ARENA_NEW(t->a, VExpr);
  e->op = VX_ACC;
  e->dtype = DT_F32;
  return e;
}

static Kernel *kern(T *t, const char *name, int out, VExpr *body) {
  Kernel *k = ARENA_NEW(t->a, Kernel);
  k->name = arena_strdup(t->a, name);
  k->ops = "test";
  k->out_buf = out;
  k->dtype = t->p->bufs[out].dtype;
  k->shape = t->p->bufs[out].shape;
  k->body = body;
  kir_add_kernel(t->p, ENTRY_INFER, k);
  return k;
}

static void red(Kernel *k, RedKind r, int n, ...) {
  k->red = r;
  k->n_red = n;
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) k->red_ext[i] = va_arg(ap, int);
  va_end(ap);
}

static const char *g_cpu = NULL; /* CPU for compile(): NULL = native */

static void compile(T *t) {
  Diag d;
  diag_init(&d, stderr);
  CgOptions o = {.cpu = g_cpu, .opt_level = 3};
  CgModule *m = cg_build(t->p, &o, &d);
  assert_non_null(m);
  assert_int_equal(cg_optimize(m, &d), 0);
  t->jit = cg_jit(m, &d);
  assert_non_null(t->jit);
  t->fn = cg_jit_entry(t->jit, "t_infer");
  assert_non_null(t->fn);
  assert_int_equal(d.n_errors, 0);
  diag_free(&d);
}

static void run(T *t) { t->fn(t->bufs); }

static uint32_t rng_state = 12345;
static float frand(float lo, float hi) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return lo + (hi - lo) * (float)(rng_state >> 8) * (1.0f / 16777216.0f);
}

/* Buffer b's first n floats uniform in [-1, 1). */
static void fill_rand(T *t, int b, int64_t n) {
  for (int64_t i = 0; i < n; i++) F(t, b)[i] = frand(-1, 1);
}

static int close_rel(double y, double ref, double tol) {
  return fabs(y - ref) <= tol * (1.0 + fabs(ref));
}

/* whether the line of text containing `at` also contains `what` */
static bool line_has(const char *text, const char *at, const char *what) {
  const char *p = strstr(text, at);
  assert_non_null(p);
  const char *eol = strchr(p, '\n');
  size_t n = eol ? (size_t)(eol - p) : strlen(p);
  char *line = strndup(p, n);
  bool r = strstr(line, what) != NULL;
  free(line);
  return r;
}

/* The LLVM IR of t's program for CPU cpu (NULL: the host), optimized at
 * opt_level > 0 (a CPU name needs no such host), malloc'd. */
static char *module_ir_for(T *t, const char *cpu, int opt_level) {
  Diag d;
  diag_init(&d, stderr);
  CgOptions o = {.cpu = cpu, .opt_level = opt_level};
  CgModule *m = cg_build(t->p, &o, &d);
  assert_non_null(m);
  if (opt_level > 0) assert_int_equal(cg_optimize(m, &d), 0);
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  assert_int_equal(cg_emit_llvm(m, f), 0);
  fclose(f);
  cg_free(m);
  diag_free(&d);
  return s;
}

static char *module_ir(T *t) { return module_ir_for(t, NULL, 0); }

/* Optimized IR for an AVX-512 target. */
static char *avx512_ir(T *t) { return module_ir_for(t, "znver4", 3); }

/* ---------------- elementwise ---------------- */

/* out[i,j] = a[i,j] * b[j] + c[] — broadcasting loads */
static void test_elementwise_broadcast(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int M = 37, N = 19;
  int a = buf(&t, "a", DT_F32, shp(2, M, N)), b = buf(&t, "b", DT_F32, shp(1, N)),
      c = buf(&t, "c", DT_F32, shp(0)), o = buf(&t, "o", DT_F32, shp(2, M, N));
  kern(&t, "k_ew", o, bin(&t, VX_ADD, bin(&t, VX_MUL, ld(&t, a, V(&t, 0), V(&t, 1)), ld(&t, b, V(&t, 1))), ld(&t, c)));
  compile(&t);
  for (int i = 0; i < M * N; i++) F(&t, a)[i] = frand(-3, 3);
  for (int j = 0; j < N; j++) F(&t, b)[j] = frand(-2, 2);
  F(&t, c)[0] = 0.625f;
  run(&t);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double ref = (double)F(&t, a)[i * N + j] * F(&t, b)[j] + 0.625;
      assert_true(close_rel(F(&t, o)[i * N + j], ref, 1e-6));
    }
  t_free(&t);
}

/* A crop of a convolution's padded-width result, out[c, h, w] =
 * relu(wide[c, h * 34 + w] + bias[c]): its 32-wide rows are vectorized
 * along w. Fully unrolled, the row left the h loop to be vectorized with
 * gathers and scatters for an AVX-512 target (10x slower than the copy);
 * the optimized IR for such a target must hold neither. */
static void test_crop_row_vectorized(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int Ch = 5, H = 32, W = 32, Wp = 34;
  int wide = buf(&t, "wide", DT_F32, shp(2, Ch, H * Wp)), bias = buf(&t, "bias", DT_F32, shp(1, Ch)),
      o = buf(&t, "o", DT_F32, shp(3, Ch, H, W));
  IExpr *col = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 1), C(&t, Wp)), V(&t, 2));
  kern(&t, "k_crop", o, un(&t, VX_RELU, bin(&t, VX_ADD, ld(&t, wide, V(&t, 0), col), ld(&t, bias, V(&t, 0)))));
  char *ir = avx512_ir(&t);
  assert_non_null(strstr(ir, "x float>"));
  assert_null(strstr(ir, "masked.gather"));
  assert_null(strstr(ir, "masked.scatter"));
  free(ir);
  compile(&t);
  fill_rand(&t, wide, (int64_t)Ch * H * Wp);
  fill_rand(&t, bias, Ch);
  run(&t);
  for (int c = 0; c < Ch; c++)
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        float x = F(&t, wide)[c * H * Wp + h * Wp + w] + F(&t, bias)[c];
        assert_true(F(&t, o)[(c * H + h) * W + w] == (x > 0 ? x : 0));
      }
  t_free(&t);
}

/* ---------------- per-channel sums, image-major ---------------- */

static float *run_threads_identical(T *t, int o, int64_t no);

/* out[c] = 0.5 * sum_{n,h,w} y[n, c, h, w] (a bias gradient with an
 * epilogue) walks images outermost (the IR holds its "cn" loop; `bcast`:
 * y read through a load that is not y[r0, c, r1, r2], which keeps the
 * nest), bit for bit the nest's result (DLC_CHANNEL_SUMS=0) on 1, 2 and 3
 * threads, and right. */
static void chan_build(T *t, int N, int Cc, int H, int W, int *y, int *o) {
  t_init(t);
  *y = buf(t, "y", DT_F32, shp(4, N, Cc, H, W));
  *o = buf(t, "o", DT_F32, shp(1, Cc));
  Kernel *k = kern(t, "k_csum", *o, ld(t, *y, V(t, 1), V(t, 0), V(t, 2), V(t, 3)));
  red(k, RED_SUM, 3, N, H, W);
  k->epilogue = bin(t, VX_MUL, acc_ref(t), kf(t, 0.5));
  k->flops = (int64_t)N * Cc * H * W * 40; /* parallel */
}

static void chan_case(int N, int Cc, int H, int W) {
  T t, u;
  int y, o, y2, o2;
  chan_build(&t, N, Cc, H, W, &y, &o);
  char *ir = module_ir(&t);
  assert_non_null(strstr(ir, "cn.head"));
  free(ir);
  compile(&t);
  setenv("DLC_CHANNEL_SUMS", "0", 1);
  chan_build(&u, N, Cc, H, W, &y2, &o2);
  ir = module_ir(&u);
  assert_null(strstr(ir, "cn.head"));
  free(ir);
  compile(&u);
  unsetenv("DLC_CHANNEL_SUMS");
  int64_t ny = (int64_t)N * Cc * H * W;
  fill_rand(&t, y, ny);
  memcpy(F(&u, y2), F(&t, y), sizeof(float) * (size_t)ny);
  float *got = run_threads_identical(&t, o, Cc), *ref = run_threads_identical(&u, o2, Cc);
  assert_memory_equal(got, ref, sizeof(float) * (size_t)Cc);
  for (int c = 0; c < Cc; c++) {
    double sum = 0, sa = 0;
    for (int n = 0; n < N; n++)
      for (int i = 0; i < H * W; i++) {
        double v = F(&t, y)[((int64_t)n * Cc + c) * H * W + i];
        sum += v;
        sa += fabs(v);
      }
    assert_true(fabs(got[c] - 0.5 * sum) <= 1e-5 * sa);
  }
  free(got);
  free(ref);
  t_free(&t);
  t_free(&u);
}

static void test_channel_sums(void **state) {
  (void)state;
  chan_case(9, 7, 6, 9);    /* planes of 54: 8 wide */
  chan_case(5, 12, 17, 13); /* planes of 221: 8 wide x 4 */
}

/* ---------------- streaming stores ---------------- */

/* An elementwise kernel over an output of 16 MiB or more stores it
 * non-temporally, through a chunk buffer (codegen_kernel.c). Built for
 * the shape `s` with body f(a, b) (flat: a and b read at the output's
 * position; else b broadcast along the last dim): whether the IR marks
 * stores non-temporal, and the results bit for bit those of the plain
 * stores (DLC_STREAM=0) on 1, 2 and 3 threads, with the output aligned
 * and 1 and 5 floats past a vector boundary. */
static void stream_build(T *t, Shape s, bool flat, int *a, int *b, int *o) {
  t_init(t);
  int r = s.rank;
  Shape bs = flat ? s : shape_make(1, &s.d[r - 1]);
  *a = buf(t, "a", DT_F32, s), *b = buf(t, "b", DT_F32, bs), *o = buf(t, "o", DT_F32, s);
  IExpr *ix[IR_MAX_RANK];
  for (int d = 0; d < r; d++) ix[d] = V(t, d);
  VExpr *la = vx_load(t->a, DT_F32, *a, r, ix, NULL, 0.0f);
  VExpr *lb = flat ? vx_load(t->a, DT_F32, *b, r, ix, NULL, 0.0f) : vx_load(t->a, DT_F32, *b, 1, &ix[r - 1], NULL, 0.0f);
  Kernel *k = kern(t, "k_stream", *o, bin(t, VX_ADD, un(t, VX_RELU, la), bin(t, VX_MUL, kf(t, 2.5), lb)));
  k->flops = 3 * shape_numel(&s);
}

static void stream_case(Shape s, bool flat, bool streams) {
  T t, u;
  int a, b, o, a2, b2, o2;
  stream_build(&t, s, flat, &a, &b, &o);
  char *ir = module_ir(&t);
  assert_true((strstr(ir, "!nontemporal") != NULL) == streams);
  free(ir);
  compile(&t);
  setenv("DLC_STREAM", "0", 1);
  stream_build(&u, s, flat, &a2, &b2, &o2);
  ir = module_ir(&u);
  assert_null(strstr(ir, "!nontemporal"));
  free(ir);
  compile(&u);
  unsetenv("DLC_STREAM");
  int64_t n = shape_numel(&s), nb = shape_numel(&t.p->bufs[b].shape);
  fill_rand(&t, a, n);
  fill_rand(&t, b, nb);
  memcpy(F(&u, a2), F(&t, a), sizeof(float) * (size_t)n);
  memcpy(F(&u, b2), F(&t, b), sizeof(float) * (size_t)nb);
  float *ref = run_threads_identical(&u, o2, n);
  float *base = dlrt_alloc((size_t)(n + 16) * sizeof(float)), *out = F(&t, o);
  int shifts[3] = {0, 1, 5};
  for (int si = 0; si < 3; si++) {
    t.bufs[o] = base + shifts[si]; /* dlrt_alloc aligns to 64 bytes */
    float *got = run_threads_identical(&t, o, n);
    assert_memory_equal(ref, got, sizeof(float) * (size_t)n);
    free(got);
  }
  t.bufs[o] = out;
  int64_t last = s.d[s.rank - 1];
  for (int64_t i = 0; i < n; i += 4099) { /* and right */
    float x = F(&t, a)[i], y = F(&t, b)[flat ? i : i % last];
    assert_true(close_rel(ref[i], (x > 0 ? x : 0) + 2.5 * y, 1e-6));
  }
  dlrt_free(base);
  free(ref);
  t_free(&t);
  t_free(&u);
}

static void test_streaming_stores(void **state) {
  (void)state;
  stream_case(shp(1, 4 * 1024 * 1024 + 13), true, true); /* 16 MiB + 52 B */
  stream_case(shp(2, 1025, 4099), true, true);            /* 16.8 MB, flat */
  stream_case(shp(2, 1025, 4099), false, false);          /* b broadcast: not flat */
  stream_case(shp(1, 4 * 1024 * 1024 - 16), true, false); /* under 16 MiB */
}

/* Max pooling's adjoint without overlap, as lowered (S x S windows):
 * dx[c, h, w] = (am[c, h/S, w/S] == (h%S)*S + w%S ? dy[c, h/S, w/S] : 0) * x[c, h, w].
 * Its rows run as w = S*q + t (t unrolled): loads contiguous or S-strided
 * along q, vectorized without gathers (a kernel large enough not to be
 * compiled for size, whose masked body would gather); exact against a
 * reference. */
static void pool_adjoint_case(int S, int OW, int vf, int vf512) {
  T t;
  t_init(&t);
  int Ch = 24, OH = 4, H = S * OH, W = S * OW;
  int am = buf(&t, "am", DT_I32, shp(3, Ch, OH, OW)), dy = buf(&t, "dy", DT_F32, shp(3, Ch, OH, OW));
  int x = buf(&t, "x", DT_F32, shp(3, Ch, H, W)), o = buf(&t, "o", DT_F32, shp(3, Ch, H, W));
  IExpr *hq = IB(&t, IX_DIV, V(&t, 1), C(&t, S)), *wq = IB(&t, IX_DIV, V(&t, 2), C(&t, S));
  IExpr *pos = IB(&t, IX_ADD, IB(&t, IX_MUL, IB(&t, IX_MOD, V(&t, 1), C(&t, S)), C(&t, S)), IB(&t, IX_MOD, V(&t, 2), C(&t, S)));
  VExpr *pv = ARENA_NEW(t.a, VExpr);
  pv->op = VX_INDEX;
  pv->dtype = DT_I32;
  pv->ix = pos;
  VExpr *hit = un(&t, VX_CAST, bin(&t, VX_EQ, ld(&t, am, V(&t, 0), hq, wq), pv));
  hit->dtype = DT_F32;
  VExpr *sel = vx_select(t.a, hit, ld(&t, dy, V(&t, 0), hq, wq), kf(&t, 0.0));
  kern(&t, "k_pool_bwd", o, bin(&t, VX_MUL, sel, ld(&t, x, V(&t, 0), V(&t, 1), V(&t, 2))));
  /* the window loop vectorized vf wide for AVX2 (4 when that leaves less
   * to the scalar remainder than 8), vf512 for AVX-512 (16 for rows of
   * whole 16s) */
  char *ir = module_ir_for(&t, "haswell", 0), want[64];
  snprintf(want, sizeof want, "!\"llvm.loop.vectorize.width\", i32 %d}", vf);
  assert_non_null(strstr(ir, want));
  free(ir);
  ir = module_ir_for(&t, "znver4", 0);
  snprintf(want, sizeof want, "!\"llvm.loop.vectorize.width\", i32 %d}", vf512);
  assert_non_null(strstr(ir, want));
  free(ir);
  ir = avx512_ir(&t);
  assert_null(strstr(ir, "masked.gather"));
  assert_non_null(strstr(ir, "x float>"));
  free(ir);
  compile(&t);
  for (int i = 0; i < Ch * OH * OW; i++) I(&t, am)[i] = rand() % (S * S + 1); /* S*S: no tap */
  fill_rand(&t, dy, Ch * OH * OW);
  fill_rand(&t, x, (int64_t)Ch * H * W);
  run(&t);
  for (int c = 0; c < Ch; c++)
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        int q = (c * OH + h / S) * OW + w / S;
        float ref = (I(&t, am)[q] == (h % S) * S + w % S ? F(&t, dy)[q] : 0.0f) * F(&t, x)[(c * H + h) * W + w];
        assert_true(F(&t, o)[(c * H + h) * W + w] == ref);
      }
  t_free(&t);
}

static void test_pool_adjoint_rows(void **state) {
  (void)state;
  pool_adjoint_case(2, 14, 4, 4); /* LeNet-5's first pooling: 14 = 3 x 4 + 2 (8 wide: 1 x 8 + 6) */
  pool_adjoint_case(2, 16, 8, 16); /* (its adjoint folded into conv1's pad: rows of 16 windows) */
  pool_adjoint_case(3, 11, 8, 8);
  pool_adjoint_case(2, 32, 8, 16); /* 16 wide: rows of whole 16s */
  pool_adjoint_case(2, 17, 8, 8);   /* (not for 16 + 1) */
}

/* A batch norm's scale gradient: out[c] = sum_{n, h, w} g[n, c, h, w] *
 * step(xp[n, c, h+1, w+1]) over planes of H x H (a padded mask: no plane
 * contiguous). Rows of 8 or more are summed in vector partials; shorter rows
 * unroll and the loop around them is not vectorized across rows with
 * gathers (both were, for an AVX-512 target: 2.5-3x slower); values within
 * rounding of a double reference. */
static void plane_sum_case(int H) {
  T t;
  t_init(&t);
  int N = 16, Ch = 4, Hp = H + 2;
  int g = buf(&t, "g", DT_F32, shp(4, N, Ch, H, H)), xp = buf(&t, "xp", DT_F32, shp(4, N, Ch, Hp, Hp));
  int o = buf(&t, "o", DT_F32, shp(1, Ch));
  IExpr *h1 = IB(&t, IX_ADD, V(&t, 2), C(&t, 1)), *w1 = IB(&t, IX_ADD, V(&t, 3), C(&t, 1));
  Kernel *k = kern(&t, "k_bn_sum", o,
                   bin(&t, VX_MUL, ld(&t, g, V(&t, 1), V(&t, 0), V(&t, 2), V(&t, 3)),
                       un(&t, VX_STEP, ld(&t, xp, V(&t, 1), V(&t, 0), h1, w1))));
  red(k, RED_SUM, 3, N, H, H);
  char *ir = avx512_ir(&t);
  assert_null(strstr(ir, "masked.gather"));
  free(ir);
  compile(&t);
  fill_rand(&t, g, (int64_t)N * Ch * H * H);
  fill_rand(&t, xp, (int64_t)N * Ch * Hp * Hp);
  run(&t);
  for (int c = 0; c < Ch; c++) {
    double ref = 0, mag = 0;
    for (int n = 0; n < N; n++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < H; w++) {
          double x = F(&t, xp)[((n * Ch + c) * Hp + h + 1) * Hp + w + 1] > 0 ? F(&t, g)[((n * Ch + c) * H + h) * H + w] : 0;
          ref += x;
          mag += fabs(x);
        }
    assert_true(fabs(F(&t, o)[c] - ref) <= 1e-5 * (mag + 1));
  }
  t_free(&t);
}

static void test_plane_sums(void **state) {
  (void)state;
  plane_sum_case(7);
  plane_sum_case(14);
}

/* col2im with a ReLU mask (a convolution's data gradient into a pooled
 * ReLU's input): dx[n, c, h, w] = step(m[n, c, h, w]) * sum_{kh, kw}
 * dcols[n, (c, kh, kw), h - kh, w - kw] over the valid windows. It runs as
 * a plane scatter; the mask then runs over each plane as one contiguous
 * loop (by rows of 14, LeNet-5's fused data gradient took 1.2-1.4x as
 * long). Exact against a reference. */
static void test_col2im_masked(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int N = 2, Ch = 3, H = 14, K = 5, O = H - K + 1;
  int dc = buf(&t, "dcols", DT_F32, shp(4, N, Ch * K * K, O, O)), mk = buf(&t, "m", DT_F32, shp(4, N, Ch, H, H));
  int o = buf(&t, "dx", DT_F32, shp(4, N, Ch, H, H));
  IExpr *oh = IB(&t, IX_SUB, V(&t, 2), V(&t, 4)), *ow = IB(&t, IX_SUB, V(&t, 3), V(&t, 5));
  IExpr *g = IB(&t, IX_AND, IB(&t, IX_AND, IB(&t, IX_GE, oh, C(&t, 0)), IB(&t, IX_LT, oh, C(&t, O))),
                IB(&t, IX_AND, IB(&t, IX_GE, ow, C(&t, 0)), IB(&t, IX_LT, ow, C(&t, O))));
  IExpr *r = IB(&t, IX_ADD, IB(&t, IX_MUL, IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 1), C(&t, K)), V(&t, 4)), C(&t, K)), V(&t, 5));
  VExpr *l = ld(&t, dc, V(&t, 0), r, oh, ow);
  l->guard = g;
  Kernel *k = kern(&t, "k_col2im", o, l);
  red(k, RED_SUM, 2, K, K);
  k->epilogue = bin(&t, VX_MUL, acc_ref(&t), un(&t, VX_STEP, ld(&t, mk, V(&t, 0), V(&t, 1), V(&t, 2), V(&t, 3))));
  /* the mask runs as one loop over each plane; not with a transposed read,
   * a buffer of other planes or an index of h */
  assert_true(cg_plane_flat(t.p, k->epilogue, H, H));
  int mt = buf(&t, "mt", DT_F32, shp(4, N, Ch, H, H + 1)), bias = buf(&t, "bias", DT_F32, shp(4, 1, Ch, 1, 1));
  assert_true(cg_plane_flat(t.p, bin(&t, VX_ADD, acc_ref(&t), ld(&t, bias, C(&t, 0), V(&t, 1), C(&t, 0), C(&t, 0))), H, H));
  assert_false(cg_plane_flat(t.p, ld(&t, mk, V(&t, 0), V(&t, 1), V(&t, 3), V(&t, 2)), H, H));
  assert_false(cg_plane_flat(t.p, ld(&t, mt, V(&t, 0), V(&t, 1), V(&t, 2), V(&t, 3)), H, H));
  VExpr *hv = ARENA_NEW(t.a, VExpr);
  hv->op = VX_INDEX;
  hv->dtype = DT_F32;
  hv->ix = V(&t, 2);
  assert_false(cg_plane_flat(t.p, bin(&t, VX_MUL, acc_ref(&t), hv), H, H));
  compile(&t);
  fill_rand(&t, dc, (int64_t)N * Ch * K * K * O * O);
  fill_rand(&t, mk, (int64_t)N * Ch * H * H);
  run(&t);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < Ch; c++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < H; w++) {
          double s = 0, mag = 0;
          for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
              int y = h - kh, x = w - kw;
              if (y < 0 || y >= O || x < 0 || x >= O) continue;
              double v = F(&t, dc)[(((int64_t)n * Ch * K * K + (c * K + kh) * K + kw) * O + y) * O + x];
              s += v;
              mag += fabs(v);
            }
          int64_t i = (((int64_t)n * Ch + c) * H + h) * H + w;
          double ref = F(&t, mk)[i] > 0 ? s : 0;
          assert_true(fabs(F(&t, o)[i] - ref) <= 1e-6 * (mag + 1));
        }
  t_free(&t);
}

/* A guarded (padding) load must not touch memory when its guard is 0:
 * out[i] = (i-3 >= 0 && i-3 < 16) ? x[i-3] : -7. x is exactly 16 floats. */
static void test_guarded_load(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int x = buf(&t, "x", DT_F32, shp(1, 16)), o = buf(&t, "o", DT_F32, shp(1, 23));
  IExpr *i3 = IB(&t, IX_SUB, V(&t, 0), C(&t, 3));
  IExpr *g = IB(&t, IX_AND, IB(&t, IX_GE, i3, C(&t, 0)), IB(&t, IX_LT, i3, C(&t, 16)));
  IExpr *idx[1] = {i3};
  VExpr *l = vx_load(t.a, DT_F32, x, 1, idx, g, -7.0f);
  kern(&t, "k_pad", o, bin(&t, VX_MUL, l, kf(&t, 2.0)));
  compile(&t);
  for (int i = 0; i < 16; i++) F(&t, x)[i] = (float)i + 0.5f;
  run(&t);
  for (int i = 0; i < 23; i++) {
    float ref = (i - 3 >= 0 && i - 3 < 16) ? 2.0f * ((float)(i - 3) + 0.5f) : -14.0f;
    assert_true(F(&t, o)[i] == ref);
  }
  t_free(&t);
}

/* Assorted element-wise ops against C (relu, sign, step, leaky, elu, abs,
 * max/min with NaN, cast, select, comparisons, pows, i32 division). */
static void test_misc_ops(void **state) {
  (void)state;
  T t;
  t_init(&t);
  enum { N = 11, NOPS = 14 };
  static const float xs[N] = {-2.5f, -1.0f, -0.0f, 0.0f, 0.25f, 1.0f, 3.75f, 100.0f, -1e-6f, NAN, INFINITY};
  int x = buf(&t, "x", DT_F32, shp(1, N)), y = buf(&t, "y", DT_F32, shp(1, N));
  int o[NOPS];
  char nm[32];
  for (int i = 0; i < NOPS; i++) {
    snprintf(nm, sizeof nm, "o%d", i);
    o[i] = buf(&t, nm, i == 10 || i == 13 ? DT_I32 : DT_F32, shp(1, N));
  }
  VExpr *X = ld(&t, x, V(&t, 0)), *Y = ld(&t, y, V(&t, 0));
  VExpr *e;
  kern(&t, "k0", o[0], un(&t, VX_RELU, X));
  kern(&t, "k1", o[1], un(&t, VX_SIGN, X));
  kern(&t, "k2", o[2], un(&t, VX_STEP, X));
  e = un(&t, VX_LEAKY, X); e->f = 0.1f; kern(&t, "k3", o[3], e);
  e = un(&t, VX_ELU, X); e->f = 1.5f; kern(&t, "k4", o[4], e);
  kern(&t, "k5", o[5], un(&t, VX_ABS, X));
  kern(&t, "k6", o[6], bin(&t, VX_MAX, X, Y));
  kern(&t, "k7", o[7], bin(&t, VX_MIN, X, Y));
  kern(&t, "k8", o[8], vx_select(t.a, bin(&t, VX_GT, X, Y), X, kf(&t, 42)));
  e = un(&t, VX_POWS, X); e->f = 2.0f; kern(&t, "k9", o[9], e);
  e = un(&t, VX_CAST, X); e->dtype = DT_I32; kern(&t, "k10", o[10], e);
  e = un(&t, VX_POWS, X); e->f = 1.5f; kern(&t, "k11", o[11], e);
  kern(&t, "k12", o[12], bin(&t, VX_POW, Y, X));
  /* i32: (cast x) / 2 (division by 0 gives 0) */
  VExpr *xi = un(&t, VX_CAST, X); xi->dtype = DT_I32;
  VExpr *yi = un(&t, VX_CAST, bin(&t, VX_SUB, Y, Y)); yi->dtype = DT_I32; /* 0 (NaN -> 0) */
  kern(&t, "k13", o[13], bin(&t, VX_ADD, bin(&t, VX_DIV, xi, vx_const(t.a, DT_I32, 2)), bin(&t, VX_DIV, xi, yi)));
  compile(&t);
  for (int i = 0; i < N; i++) {
    F(&t, x)[i] = xs[i];
    F(&t, y)[i] = i == 3 ? NAN : 0.5f;
  }
  run(&t);
  for (int i = 0; i < N; i++) {
    float v = xs[i], w = F(&t, y)[i];
    float r;
#define EQF(got, want) assert_true(((isnan(want) && isnan(got)) || (got) == (want)))
    r = F(&t, o[0])[i]; EQF(r, (v < 0 ? 0.0f : v));
    r = F(&t, o[1])[i]; EQF(r, (v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f));
    r = F(&t, o[2])[i]; EQF(r, (v > 0 ? 1.0f : 0.0f));
    r = F(&t, o[3])[i]; EQF(r, (v > 0 ? v : 0.1f * v));
    r = F(&t, o[4])[i];
    float elu = v > 0 ? v : (float)(1.5 * expm1((double)v));
    assert_true((isnan(elu) && isnan(r)) || r == elu || close_rel(r, elu, 1e-6) || fabs(r - elu) <= 4e-7 * fabs(elu));
    r = F(&t, o[5])[i]; EQF(r, fabsf(v));
    r = F(&t, o[6])[i]; EQF(r, ((isnan(v) || isnan(w)) ? NAN : fmaxf(v, w)));
    r = F(&t, o[7])[i]; EQF(r, ((isnan(v) || isnan(w)) ? NAN : fminf(v, w)));
    r = F(&t, o[8])[i]; EQF(r, (v > w ? v : 42.0f));
    r = F(&t, o[9])[i]; EQF(r, v * v);
    if (!isnan(v) && !isinf(v)) assert_int_equal(I(&t, o[10])[i], (int32_t)v);
    r = F(&t, o[11])[i];
    float pw = powf(v, 1.5f);
    assert_true((isnan(pw) && isnan(r)) || r == pw || close_rel(r, pw, 1e-5));
    r = F(&t, o[12])[i];
    pw = powf(w, v);
    assert_true((isnan(pw) && isnan(r)) || r == pw || close_rel(r, pw, 1e-5));
    if (!isnan(v) && !isinf(v)) assert_int_equal(I(&t, o[13])[i], (int32_t)v / 2);
  }
  t_free(&t);
}

/* out[i] += x[i] */
static void test_accumulate(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int x = buf(&t, "x", DT_F32, shp(1, 100)), o = buf(&t, "o", DT_F32, shp(1, 100));
  Kernel *k = kern(&t, "k_acc", o, ld(&t, x, V(&t, 0)));
  k->accumulate = true;
  compile(&t);
  for (int i = 0; i < 100; i++) {
    F(&t, x)[i] = (float)i;
    F(&t, o)[i] = 1000.0f;
  }
  run(&t);
  run(&t);
  for (int i = 0; i < 100; i++) assert_true(F(&t, o)[i] == 1000.0f + 2.0f * (float)i);
  t_free(&t);
}

/* Views (Buffer.alias) read their root's slot; a kernel writing a buffer
 * that it also reads through a view gets no noalias. */
static void test_views(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int x = buf(&t, "x", DT_F32, shp(2, 6, 4));
  int xv = kir_buffer(t.p, "xv", BUF_TEMP, DT_F32, shp(1, 24), -1);
  t.p->bufs[xv].alias = x; /* bufs[xv] stays NULL */
  int o = buf(&t, "o", DT_F32, shp(1, 24));
  kern(&t, "k_view", o, bin(&t, VX_MUL, ld(&t, xv, V(&t, 0)), kf(&t, 2.0)));
  /* in place through the view: x[i,j] = xv[i*4+j] + 1 */
  kern(&t, "k_inplace", x, bin(&t, VX_ADD, ld(&t, xv, IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 0), C(&t, 4)), V(&t, 1))), kf(&t, 1.0)));
  char *ir = module_ir(&t);
  assert_false(line_has(ir, "@k_inplace.body(", "noalias"));
  assert_true(line_has(ir, "@k_view.body(", "noalias"));
  free(ir);
  compile(&t);
  for (int i = 0; i < 24; i++) F(&t, x)[i] = (float)i;
  run(&t);
  for (int i = 0; i < 24; i++) {
    assert_true(F(&t, o)[i] == 2.0f * (float)i);
    assert_true(F(&t, x)[i] == (float)i + 1.0f);
  }
  t_free(&t);
}

/* ---------------- reductions ---------------- */

static void test_reductions(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int R = 9, Cc = 23;
  int x = buf(&t, "x", DT_F32, shp(2, R, Cc));
  int mean = buf(&t, "mean", DT_F32, shp(1, R));
  int colmax = buf(&t, "colmax", DT_F32, shp(1, Cc));
  int amax = buf(&t, "amax", DT_I32, shp(1, R));
  int total = buf(&t, "total", DT_F32, shp(0));
  /* mean over axis 1 with epilogue acc * (1/C) */
  Kernel *k = kern(&t, "k_mean", mean, ld(&t, x, V(&t, 0), V(&t, 1)));
  red(k, RED_SUM, 1, Cc);
  k->epilogue = bin(&t, VX_MUL, acc_ref(&t), kf(&t, 1.0 / Cc));
  /* max over axis 0: loop var 1 is the reduction (rows) */
  k = kern(&t, "k_colmax", colmax, ld(&t, x, V(&t, 1), V(&t, 0)));
  red(k, RED_MAX, 1, R);
  /* argmax over axis 1 */
  k = kern(&t, "k_argmax", amax, ld(&t, x, V(&t, 0), V(&t, 1)));
  red(k, RED_ARGMAX, 1, Cc);
  /* total over both axes: 2 reduction dims, epilogue sqrt(acc) */
  k = kern(&t, "k_total", total, un(&t, VX_ABS, ld(&t, x, V(&t, 0), V(&t, 1))));
  red(k, RED_SUM, 2, R, Cc);
  k->epilogue = un(&t, VX_SQRT, acc_ref(&t));
  compile(&t);
  for (int i = 0; i < R * Cc; i++) F(&t, x)[i] = (float)((i * 37) % 11) - 5.0f; /* ties */
  F(&t, x)[4 * Cc + 7] = NAN;   /* row 4: NaN is the argmax, the max is NaN */
  F(&t, x)[4 * Cc + 9] = NAN;
  for (int j = 0; j < Cc; j++) F(&t, x)[6 * Cc + j] = -INFINITY; /* row 6: all -inf -> 0 */
  run(&t);
  double tot = 0;
  for (int i = 0; i < R; i++) {
    if (i == 6) {
      assert_int_equal(I(&t, amax)[i], 0);
      continue;
    }
    double s = 0;
    int best = 0;
    for (int j = 0; j < Cc; j++) {
      float v = F(&t, x)[i * Cc + j];
      s += v;
      tot += fabs(v);
      float bv = F(&t, x)[i * Cc + best];
      if ((v > bv) || (isnan(v) && !isnan(bv))) best = j;
    }
    if (i == 4) assert_true(isnan(F(&t, mean)[i]));
    else assert_true(close_rel(F(&t, mean)[i], s / Cc, 1e-6));
    assert_int_equal(I(&t, amax)[i], best);
  }
  for (int j = 0; j < Cc; j++) {
    float mx = -INFINITY;
    int nan = 0;
    for (int i = 0; i < R; i++) {
      float v = F(&t, x)[i * Cc + j];
      if (isnan(v)) nan = 1;
      else if (v > mx) mx = v;
    }
    if (nan) assert_true(isnan(F(&t, colmax)[j]));
    else assert_true(F(&t, colmax)[j] == mx);
  }
  assert_true(isinf(F(&t, total)[0]) || isnan(F(&t, total)[0])); /* has inf and NaN */
  (void)tot;
  t_free(&t);
}

/* ---------------- matmul, both loop orders ---------------- */

/* out[i,j] = relu(sum_k a[i,k] * b[k,j] + bias[j]); transposed: b given as bt[j,k] */
static void matmul_case(int M, int K, int N, int mode, bool transposed) {
  T t;
  t_init(&t);
  int a = buf(&t, "a", DT_F32, shp(2, M, K));
  int b = transposed ? buf(&t, "bt", DT_F32, shp(2, N, K)) : buf(&t, "b", DT_F32, shp(2, K, N));
  int bias = buf(&t, "bias", DT_F32, shp(1, N));
  int o = buf(&t, "o", DT_F32, shp(2, M, N));
  VExpr *bl = transposed ? ld(&t, b, V(&t, 1), V(&t, 2)) : ld(&t, b, V(&t, 2), V(&t, 1));
  Kernel *k = kern(&t, "k_mm", o, bin(&t, VX_MUL, ld(&t, a, V(&t, 0), V(&t, 2)), bl));
  red(k, RED_SUM, 1, K);
  k->epilogue = un(&t, VX_RELU, bin(&t, VX_ADD, acc_ref(&t), ld(&t, bias, V(&t, 1))));
  k->flops = 2LL * M * N * K;
  cg_debug_set_reorder(mode);
  cg_debug_set_gemm(mode == 0 ? 0 : 1); /* modes 1, 2 exercise the plain nests */
  bool reorder = cg_kernel_uses_reorder(t.p, k);
  if (mode == 0 && N > 1) assert_true(reorder == !transposed); /* auto: reorder exactly the k-strided case */
  if (mode == 1) assert_false(reorder);
  if (mode == 2) assert_true(reorder);
  compile(&t);
  cg_debug_set_reorder(0);
  cg_debug_set_gemm(0);
  fill_rand(&t, a, M * K);
  fill_rand(&t, b, K * N);
  for (int j = 0; j < N; j++) F(&t, bias)[j] = frand(-0.5f, 0.5f);
  for (int i = 0; i < M * N; i++) F(&t, o)[i] = NAN; /* must be overwritten */
  run(&t);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, sa = 0;
      for (int kk = 0; kk < K; kk++) {
        double bv = transposed ? F(&t, b)[j * K + kk] : F(&t, b)[kk * N + j];
        s += (double)F(&t, a)[i * K + kk] * bv;
        sa += fabs((double)F(&t, a)[i * K + kk] * bv);
      }
      s += F(&t, bias)[j];
      double ref = s < 0 ? 0 : s;
      double got = F(&t, o)[i * N + j];
      assert_true(fabs(got - ref) <= 1e-5 * (sa + 1.0));
    }
  t_free(&t);
}

static void test_matmul_orders(void **state) {
  (void)state;
  for (int mode = 0; mode <= 2; mode++)
    for (int tr = 0; tr <= 1; tr++) {
      matmul_case(7, 13, 5, mode, tr);
      matmul_case(64, 96, 128, mode, tr);
      matmul_case(1, 3, 1, mode, tr);
    }
}

/* column sums: rank-1 output, reordered (row = [begin, end) of dim 0) */
/* Output o of a max pooling (mx) and its argmax (am) against the window
 * at w0 (KH x KW, rows `ld` apart): the first maximum, a NaN winning over
 * numbers (the first NaN), the max NaN then too. */
static void check_window(T *t, int mx, int am, int o, const float *w0, int ld, int KH, int KW) {
  int best = 0;
  float bv = 0;
  for (int q = 0; q < KH * KW; q++) {
    float v = w0[(q / KW) * ld + q % KW];
    if (q == 0 || v > bv || (isnan(v) && !isnan(bv))) best = q, bv = q == 0 || !isnan(bv) ? v : bv;
  }
  assert_int_equal(I(t, am)[o], best);
  if (isnan(bv)) assert_true(isnan(F(t, mx)[o]));
  else assert_true(F(t, mx)[o] == bv);
}

/* 2x2 max pooling and its argmax over rows of 20 windows (the row loop is
 * vectorized): ties go to the first position, a NaN is the max (the first
 * NaN wins), an all -inf window gives position 0. */
static void test_pool_argmax_rows(void **state) {
  (void)state;
  T t;
  t_init(&t);
  enum { N = 2, Cc = 3, OH = 2, OW = 20 };
  int x = buf(&t, "x", DT_F32, shp(4, N, Cc, 2 * OH, 2 * OW));
  int mx = buf(&t, "mx", DT_F32, shp(4, N, Cc, OH, OW));
  int am = buf(&t, "am", DT_I32, shp(4, N, Cc, OH, OW));
  IExpr *ih = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 2), C(&t, 2)), V(&t, 4));
  IExpr *iw = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 3), C(&t, 2)), V(&t, 5));
  Kernel *k = kern(&t, "k_pool", mx, ld(&t, x, V(&t, 0), V(&t, 1), ih, iw));
  red(k, RED_MAX, 2, 2, 2);
  k = kern(&t, "k_poolarg", am, ld(&t, x, V(&t, 0), V(&t, 1), ih, iw));
  red(k, RED_ARGMAX, 2, 2, 2);
  compile(&t);
  int n = N * Cc * 4 * OH * OW;
  for (int i = 0; i < n; i++) F(&t, x)[i] = (float)((i * 7) % 5); /* many ties */
  float *xs = F(&t, x);
  int W = 2 * OW;
  xs[0 * W + 3] = NAN;                            /* window (0, 1): NaN at position 1 */
  xs[1 * W + 10] = NAN, xs[1 * W + 11] = NAN;     /* window (0, 5): NaNs at 2 and 3 */
  for (int kh = 0; kh < 2; kh++)                  /* window (1, 7): all -inf */
    for (int kw = 0; kw < 2; kw++) xs[(2 + kh) * W + 14 + kw] = -INFINITY;
  xs[(4 * OH + 2) * W + 39] = 100.0f;             /* last window of a plane: position 2 */
  run(&t);
  for (int p = 0; p < N * Cc; p++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        check_window(&t, mx, am, (p * OH + oh) * OW + ow, xs + (p * 2 * OH + 2 * oh) * W + 2 * ow, W, 2, 2);
      }
  assert_int_equal(I(&t, am)[1], 1);
  assert_int_equal(I(&t, am)[5], 2);
  assert_int_equal(I(&t, am)[OW + 7], 0);
  t_free(&t);
}

/* Max pooling and its argmax without padding, window KH x KW, stride S,
 * OW outputs per row (rows of whole vectors, a partial one, stride 1
 * overlapping windows, stride 3): random values with ties, NaNs and -inf,
 * against a plain reference, and the backend's vector-row form bit for bit
 * against the scalar nest (DLC_POOL_ROWS=0). */
static void pool_rows_case(int OW, int S, int KH, int KW) {
  enum { N = 2, Cc = 3, OH = 3 };
  int H = S * (OH - 1) + KH, W = S * (OW - 1) + KW + 1; /* (one column no window reads) */
  float *out[2][2] = {{0}};
  for (int variant = 0; variant < 2; variant++) {
    if (variant) setenv("DLC_POOL_ROWS", "0", 1);
    T t;
    t_init(&t);
    int x = buf(&t, "x", DT_F32, shp(4, N, Cc, H, W));
    int mx = buf(&t, "mx", DT_F32, shp(4, N, Cc, OH, OW));
    int am = buf(&t, "am", DT_I32, shp(4, N, Cc, OH, OW));
    IExpr *ih = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 2), C(&t, S)), V(&t, 4));
    IExpr *iw = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 3), C(&t, S)), V(&t, 5));
    Kernel *k = kern(&t, "k_pool", mx, ld(&t, x, V(&t, 0), V(&t, 1), ih, iw));
    red(k, RED_MAX, 2, KH, KW);
    k = kern(&t, "k_poolarg", am, ld(&t, x, V(&t, 0), V(&t, 1), ih, iw));
    red(k, RED_ARGMAX, 2, KH, KW);
    compile(&t);
    unsetenv("DLC_POOL_ROWS");
    int n = N * Cc * H * W;
    srand(7);
    float *xs = F(&t, x);
    for (int i = 0; i < n; i++) {
      int r = rand() % 64;
      xs[i] = r == 0 ? NAN : r == 1 ? -INFINITY : (float)(rand() % 7) - 3.0f;
    }
    run(&t);
    for (int p = 0; p < N * Cc; p++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          check_window(&t, mx, am, (p * OH + oh) * OW + ow, xs + (p * H + S * oh) * W + S * ow, W, KH, KW);
        }
    int no = N * Cc * OH * OW;
    for (int w = 0; w < 2; w++) {
      out[variant][w] = malloc(sizeof(float) * (size_t)no);
      memcpy(out[variant][w], w ? t.bufs[am] : t.bufs[mx], sizeof(float) * (size_t)no);
    }
    t_free(&t);
  }
  for (int w = 0; w < 2; w++) {
    assert_memory_equal(out[0][w], out[1][w], sizeof(float) * (size_t)(N * Cc * OH * OW));
    free(out[0][w]);
    free(out[1][w]);
  }
}

static void test_pool_rows(void **state) {
  (void)state;
  pool_rows_case(14, 2, 2, 2); /* LeNet-5's first pooling: one partial vector */
  pool_rows_case(5, 2, 2, 2);
  pool_rows_case(20, 2, 2, 2);
  pool_rows_case(33, 2, 2, 2); /* whole vectors and a tail */
  pool_rows_case(17, 1, 2, 2); /* overlapping windows */
  pool_rows_case(11, 3, 3, 3);
  pool_rows_case(9, 4, 1, 4);
}

static void test_column_sum_reordered(void **state) {
  (void)state;
  for (int mode = 1; mode <= 2; mode++) {
    T t;
    t_init(&t);
    int R = 300, Cc = 257;
    int x = buf(&t, "x", DT_F32, shp(2, R, Cc)), o = buf(&t, "o", DT_F32, shp(1, Cc));
    Kernel *k = kern(&t, "k_colsum", o, ld(&t, x, V(&t, 1), V(&t, 0)));
    red(k, RED_SUM, 1, R);
    cg_debug_set_reorder(0);
    assert_true(cg_kernel_uses_reorder(t.p, k));
    cg_debug_set_reorder(mode);
    compile(&t);
    cg_debug_set_reorder(0);
    fill_rand(&t, x, R * Cc);
    run(&t);
    for (int j = 0; j < Cc; j++) {
      double s = 0;
      for (int i = 0; i < R; i++) s += F(&t, x)[i * Cc + j];
      assert_true(fabs(F(&t, o)[j] - s) <= 1e-4);
    }
    t_free(&t);
  }
}

/* ---------------- threads ---------------- */

static void test_parallel_bit_identical(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int M = 97, K = 64, N = 130;
  int a = buf(&t, "a", DT_F32, shp(2, M, K)), b = buf(&t, "b", DT_F32, shp(2, K, N));
  int h = buf(&t, "h", DT_F32, shp(2, M, K)), o = buf(&t, "o", DT_F32, shp(2, M, N));
  int s = buf(&t, "s", DT_F32, shp(1, M));
  Kernel *k = kern(&t, "k_tanh", h, un(&t, VX_TANH, ld(&t, a, V(&t, 0), V(&t, 1))));
  k->flops = 20LL * M * K * 10;
  k = kern(&t, "k_mm", o, bin(&t, VX_MUL, ld(&t, h, V(&t, 0), V(&t, 2)), ld(&t, b, V(&t, 2), V(&t, 1))));
  red(k, RED_SUM, 1, K);
  k->flops = 2LL * M * N * K;
  k = kern(&t, "k_rowsum", s, un(&t, VX_EXP, ld(&t, o, V(&t, 0), V(&t, 1))));
  red(k, RED_SUM, 1, N);
  k->flops = 40000;
  char *ir = module_ir(&t);
  assert_non_null(strstr(ir, "dlrt_parallel_for"));
  free(ir);
  compile(&t);
  for (int i = 0; i < M * K; i++) F(&t, a)[i] = frand(-2, 2);
  for (int i = 0; i < K * N; i++) F(&t, b)[i] = frand(-0.2f, 0.2f);
  float *ref_o = malloc(sizeof(float) * (size_t)(M * N)), *ref_s = malloc(sizeof(float) * (size_t)M);
  for (int th = 1; th <= 3; th++) {
    dlrt_set_threads(th);
    memset(F(&t, o), 0, sizeof(float) * (size_t)(M * N));
    run(&t);
    if (th == 1) {
      memcpy(ref_o, F(&t, o), sizeof(float) * (size_t)(M * N));
      memcpy(ref_s, F(&t, s), sizeof(float) * (size_t)M);
    } else {
      assert_memory_equal(ref_o, F(&t, o), sizeof(float) * (size_t)(M * N));
      assert_memory_equal(ref_s, F(&t, s), sizeof(float) * (size_t)M);
    }
  }
  dlrt_set_threads(0);
  /* and it is right */
  for (int i = 0; i < M; i += 7) {
    double rs = 0;
    for (int j = 0; j < N; j++) {
      double acc = 0;
      for (int kk = 0; kk < K; kk++) acc += tanh((double)F(&t, a)[i * K + kk]) * F(&t, b)[kk * N + j];
      assert_true(fabs(ref_o[i * N + j] - acc) <= 1e-4);
      rs += exp((double)ref_o[i * N + j]);
    }
    assert_true(close_rel(ref_s[i], rs, 1e-5));
  }
  free(ref_o);
  free(ref_s);
  t_free(&t);
}

/* ---------------- GEMM path ---------------- */

/* out[b?, i, j] = epi(sum_k A * B) in the given transposition, through the
 * GEMM path (asserted), checked against a double reference and for
 * bit-identical results on 1, 2 and 3 threads. batch > 1 adds a leading
 * batch dim (A, B batched too); flat = A is read through a flatten-like
 * div/mod index map (A stored as [M, K/5, 5]). */
enum { X_DA = 1, X_DB = 2, X_SPLITN = 4, X_DOT = 8, X_DAT = 16, X_TC = 32, X_NOTC = 64, X_MR4 = 128, X_QT = 256, X_CT = 512,
       X_Z44 = 1024, X_Z43 = 2048, X_DOTROWS = 4096, X_ZDB = 8192, X_ZNODB = 16384,
       X_NOSPLITN = 32768, X_ZDOT = 65536 }; /* plan modes a case must exercise (X_Z*: the tiles planned for an AVX-512
                                       target, 4 x 4 or 4 x 3 vectors of 16; run as planned on such a host) */

/* Runs t on 1, 2 and 3 threads (output o of no floats poisoned with NaN
 * before each run), asserts the three results bit-identical and returns a
 * malloc'd copy of the 1-thread result. */
static float *run_threads_identical(T *t, int o, int64_t no) {
  float *ref = malloc(sizeof(float) * (size_t)no);
  for (int th = 1; th <= 3; th++) {
    dlrt_set_threads(th);
    for (int64_t i = 0; i < no; i++) F(t, o)[i] = NAN;
    run(t);
    if (th == 1) memcpy(ref, F(t, o), sizeof(float) * (size_t)no);
    else assert_memory_equal(ref, F(t, o), sizeof(float) * (size_t)no);
  }
  dlrt_set_threads(0);
  return ref;
}

static void gemm_case_x(int batch, int M, int N, int K, bool ta, bool tb, bool epi, bool flat, unsigned expect) {
  T t;
  t_init(&t);
  int bd = batch > 1 ? 1 : 0, r = 2 + bd;
  int a = flat ? buf(&t, "a", DT_F32, shp(3, M, K / 5, 5))
          : bd ? (ta ? buf(&t, "a", DT_F32, shp(3, batch, K, M)) : buf(&t, "a", DT_F32, shp(3, batch, M, K)))
               : (ta ? buf(&t, "a", DT_F32, shp(2, K, M)) : buf(&t, "a", DT_F32, shp(2, M, K)));
  int b = bd ? (tb ? buf(&t, "b", DT_F32, shp(3, batch, N, K)) : buf(&t, "b", DT_F32, shp(3, batch, K, N)))
             : (tb ? buf(&t, "b", DT_F32, shp(2, N, K)) : buf(&t, "b", DT_F32, shp(2, K, N)));
  int bias = buf(&t, "bias", DT_F32, shp(1, N));
  int o = bd ? buf(&t, "o", DT_F32, shp(3, batch, M, N)) : buf(&t, "o", DT_F32, shp(2, M, N));
  IExpr *vi = V(&t, bd), *vj = V(&t, bd + 1), *vk = V(&t, r), *vb = V(&t, 0);
  VExpr *la, *lb;
  if (flat) {
    IExpr *lin = IB(&t, IX_ADD, IB(&t, IX_MUL, vi, C(&t, K)), vk);
    la = ld(&t, a, IB(&t, IX_DIV, lin, C(&t, K)), IB(&t, IX_MOD, IB(&t, IX_DIV, lin, C(&t, 5)), C(&t, K / 5)),
            IB(&t, IX_MOD, lin, C(&t, 5)));
  } else if (bd) {
    la = ta ? ld(&t, a, vb, vk, vi) : ld(&t, a, vb, vi, vk);
  } else {
    la = ta ? ld(&t, a, vk, vi) : ld(&t, a, vi, vk);
  }
  if (bd) lb = tb ? ld(&t, b, vb, vj, vk) : ld(&t, b, vb, vk, vj);
  else lb = tb ? ld(&t, b, vj, vk) : ld(&t, b, vk, vj);
  Kernel *k = kern(&t, "k_gemm", o, bin(&t, VX_MUL, la, lb));
  red(k, RED_SUM, 1, K);
  if (epi) k->epilogue = un(&t, VX_RELU, bin(&t, VX_ADD, acc_ref(&t), ld(&t, bias, vj)));
  k->flops = 2LL * batch * M * N * K;
  GemmPlan g;
  assert_true(cg_gemm_plan(NULL, t.p, k, &g));
  assert_true(g.op[0].fast && g.op[1].fast);
  if (expect & X_DA) assert_true(g.direct_a);
  if (expect & X_DB) assert_true(g.direct_b);
  if (expect & X_SPLITN) assert_true(g.split_n && g.units > 1);
  if (expect & X_NOSPLITN) assert_true(!g.split_n);
  if (expect & X_DOT) assert_true(g.dot && g.units > 1);
  /* the dot form's column blocks: a unit per row tile of each */
  if ((expect & X_DOT) && !g.dot_rows) assert_true(g.units == (N + g.RN - 1) / g.RN * ((M + g.RM - 1) / g.RM));
  if (expect & X_DOTROWS) assert_true(g.dot && g.dot_rows && g.units == (M + g.RM - 1) / g.RM);
  if (expect & X_DAT) assert_true(g.direct_at);
  if (expect & X_TC) assert_true(g.tc && g.ldc == N && g.M == N && g.N == M);
  if (expect & X_NOTC) assert_true(!g.tc);
  if (expect & X_MR4) assert_true(g.MR == 4 && g.NR == 3 * g.VW);
  if (expect & X_QT) assert_true(g.dot && g.dot_qt && !g.tc && g.units > 1);
  if (expect & X_CT) assert_true(g.ct && g.direct_a_tab && !g.dot && g.M == N && g.N == M && g.ldc == N);
  if (expect & (X_Z44 | X_Z43)) {
    CgModule z = {.cpu = "znver4"};
    GemmPlan gz;
    assert_true(cg_gemm_plan(&z, t.p, k, &gz));
    assert_true(gz.VW == 16 && gz.MR == 4 && gz.NR == (expect & X_Z44 ? 64 : 48) && !gz.tc && !gz.dot);
  }
  if (expect & X_ZDOT) { /* AVX-512: the dot form's tiles of 8-15 accumulators, whole ones where they fit */
    CgModule z = {.cpu = "znver4"};
    GemmPlan gz;
    assert_true(cg_gemm_plan(&z, t.p, k, &gz));
    assert_true(gz.dot && gz.RM * gz.RN >= 8 && gz.RM * gz.RN <= 15 && M % gz.RM == 0 && N % gz.RN == 0);
  }
  if (expect & (X_ZDB | X_ZNODB)) { /* AVX-512: B's rows in place, one M block (or not: rows too far apart) */
    CgModule z = {.cpu = "znver4"};
    GemmPlan gz;
    assert_true(cg_gemm_plan(&z, t.p, k, &gz));
    if (expect & X_ZDB) assert_true(gz.direct_b && gz.MC >= M && gz.MC % gz.MR == 0);
    else assert_true(!gz.direct_b);
  }
  compile(&t);
  int64_t na = (int64_t)batch * M * K, nb = (int64_t)batch * K * N, no = (int64_t)batch * M * N;
  fill_rand(&t, a, na);
  fill_rand(&t, b, nb);
  for (int j = 0; j < N; j++) F(&t, bias)[j] = frand(-0.5f, 0.5f);
  float *ref = run_threads_identical(&t, o, no);
  for (int bb = 0; bb < batch; bb++)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double s = 0, sa = 0;
        for (int kk = 0; kk < K; kk++) {
          int64_t ao = bd ? (ta ? ((int64_t)bb * K + kk) * M + i : ((int64_t)bb * M + i) * K + kk)
                          : (ta ? (int64_t)kk * M + i : (int64_t)i * K + kk);
          int64_t bo = bd ? (tb ? ((int64_t)bb * N + j) * K + kk : ((int64_t)bb * K + kk) * N + j)
                          : (tb ? (int64_t)j * K + kk : (int64_t)kk * N + j);
          double x = (double)F(&t, a)[ao] * F(&t, b)[bo];
          s += x;
          sa += fabs(x);
        }
        if (epi) {
          s += F(&t, bias)[j];
          s = s < 0 ? 0 : s;
        }
        double got = ref[((int64_t)bb * M + i) * N + j];
        assert_true(fabs(got - s) <= 1e-5 * (sa + 1.0));
      }
  free(ref);
  t_free(&t);
}

static void gemm_case(int batch, int M, int N, int K, bool ta, bool tb, bool epi, bool flat) {
  gemm_case_x(batch, M, N, K, ta, tb, epi, flat, 0);
}

static void test_gemm_path(void **state) {
  (void)state;
  for (int ta = 0; ta <= 1; ta++)
    for (int tb = 0; tb <= 1; tb++) {
      gemm_case(1, 97, 130, 64, ta, tb, true, false);  /* edge tiles in M and N, epilogue */
      gemm_case(1, 40, 10, 700, ta, tb, false, false); /* skinny N, two K blocks */
    }
  gemm_case(3, 13, 37, 29, false, true, true, false); /* batched (units = batch entries) */
  gemm_case(3, 13, 37, 29, true, false, false, false);
  gemm_case(1, 64, 120, 400, false, false, true, true); /* flatten index map on A */
  /* in-place operands (A rows for small N, B rows for small M), with edges */
  gemm_case_x(1, 40, 20, 700, false, false, true, false, X_DA | X_DB);
  gemm_case_x(1, 31, 200, 300, false, false, true, false, X_DB);
  gemm_case_x(1, 257, 20, 700, true, false, true, false, X_DAT); /* transposed A in place, M edge */
  /* skinny N computed transposed (C^T = B^T A^T): tiles of 5 x 16 for N = 10,
   * C through the tile buffer; K blocks, epilogue, M edges, in-place
   * operands of the swapped product, batches, split columns */
  gemm_case_x(1, 257, 10, 700, true, false, true, false, X_TC | X_DB);
  gemm_case_x(1, 40, 10, 700, true, true, true, false, X_TC | X_DA);
  gemm_case_x(1, 128, 10, 256, true, false, true, false, X_TC | X_SPLITN);
  gemm_case_x(3, 84, 7, 64, true, false, true, false, X_NOTC); /* batched: not transposed */
  /* skinny NN (row-major A): the dot form over a transposed copy of B,
   * units of row tiles; one run with a masked tail (K = 700), partial
   * column tiles (N = 9), A through a flatten-like index map */
  gemm_case_x(1, 128, 10, 256, false, false, true, false, X_NOTC | X_QT);
  gemm_case_x(1, 257, 10, 700, false, false, true, false, X_QT);
  gemm_case_x(1, 33, 9, 1000, false, false, false, false, X_QT);
  gemm_case_x(1, 20, 6, 3001, false, false, true, false, X_QT);
  gemm_case_x(1, 64, 10, 400, false, false, true, true, X_QT);
  gemm_case_x(1, 12, 10, 700, false, false, true, false, X_NOTC); /* M under one panel */
  gemm_case_x(1, 64, 32, 300, false, false, true, false, X_NOTC); /* N fills the panels */
  /* packed operands, M a multiple of 4 but not 6: 4 x 3-vector tiles (N
   * edge panel, two K blocks; batched; column split) */
  gemm_case_x(1, 32, 100, 700, false, true, true, false, X_MR4);
  gemm_case_x(3, 64, 80, 40, true, true, false, false, X_MR4);
  gemm_case_x(1, 32, 288, 9001, true, true, false, false, X_MR4 | X_SPLITN);
  /* AVX-512 tiles: 4 x 4 vectors from two 64-column panels, else 4 x 3;
   * the N tail's panel on as few vectors as it needs (N = 100: 4 columns
   * on one vector; N = 150: 22 on two), edge tiles through masked loads and
   * stores (two K blocks: C read back), rows 4-row tiles pad (M = 150) */
  gemm_case_x(1, 16, 100, 150, false, false, true, false, X_Z43 | X_DB);
  gemm_case_x(1, 150, 100, 16, true, false, false, false, X_Z43);
  gemm_case_x(1, 64, 150, 700, false, false, true, false, X_Z44);
  gemm_case_x(2, 32, 200, 300, false, true, true, false, X_Z44);
  /* AVX-512, up to 256 rows: B's rows (at most 2 KiB apart) read in place
   * by one M block (the N tail packed; two K blocks); 4 KiB apart: packed */
  gemm_case_x(1, 130, 300, 700, false, false, true, false, X_Z44 | X_ZDB);
  gemm_case_x(1, 256, 512, 40, false, false, false, false, X_ZDB);
  gemm_case_x(1, 128, 1024, 50, false, false, false, false, X_ZNODB);
  /* column split across threads (few row tiles, K large; transposed packs
   * with a K remainder): the filter-gradient shape */
  gemm_case_x(1, 6, 75, 20003, false, false, false, false, X_SPLITN);
  gemm_case_x(1, 16, 150, 6403, true, true, true, false, X_SPLITN);
  /* ... and where the packed B is at least twice as wide as A is tall (M
   * over several blocks; transposing pack, N and M edges, two K blocks);
   * not below twice */
  gemm_case_x(1, 200, 520, 700, false, true, true, false, X_SPLITN);
  gemm_case_x(1, 200, 390, 300, false, false, false, false, X_NOSPLITN);
  gemm_case_x(1, 200, 520, 10, false, true, true, false, X_NOSPLITN); /* (nor for a short K) */
  /* the dot form (both operands contiguous along k; a masked run tail) */
  gemm_case_x(1, 6, 60, 20003, false, true, true, false, X_DOT);
  gemm_case_x(1, 7, 30, 4096, false, true, false, false, X_DOT);
  gemm_case_x(1, 32, 27, 4099, false, true, true, false, X_DOT | X_DOTROWS | X_ZDOT); /* narrow N: up to 32 rows, units of rows */
  gemm_case_x(1, 6, 25, 20003, false, true, false, false, X_DOT | X_ZDOT); /* (AVX-512: 3 x 5 tiles) */
  /* both contiguous along k, N >= 64: transposed, B's rows read in place as
   * A (C^T in scratch; edges in both, K blocks with a remainder) */
  gemm_case_x(1, 6, 75, 20003, false, true, true, false, X_CT);
  gemm_case_x(1, 16, 150, 6403, false, true, false, false, X_CT);
  gemm_case_x(1, 50, 100, 1500, false, true, true, false, X_CT);
  /* the dot form's lane sums (folded across accumulators) with 8- and
   * 4-lane vectors: AVX2 and baseline x86-64 */
  for (int c = 0; c < 2; c++) {
    g_cpu = c ? "x86-64" : "haswell";
    gemm_case_x(1, 128, 10, 256, false, false, true, false, 0);
    gemm_case_x(1, 33, 9, 1000, false, false, false, false, 0);
    gemm_case_x(1, 7, 30, 4096, false, true, true, false, 0);
    gemm_case_x(1, 32, 27, 4099, false, true, true, false, 0);
  }
  g_cpu = NULL;
}

/* An implicit-im2col product (a 3x3 convolution over padded-width rows):
 * out[n, co, p] = sum_{c, kh, kw} w[co, c, kh, kw] * x[n, c, p + kh*Wp + kw].
 * B's rows are window shifts found through the K block's offset table; with
 * K >= 64 and M <= 72, or M <= 6 (one row tile), the micro-kernel reads them
 * in place (the N tail packed), else it packs. The weights are packed once for all images.
 * Checked against a double reference and for 1/2/3-thread identity. */
static void im2col_case(int batch, int Co, int Cin, int Hp, int Wp, bool expect_direct) {
  T t;
  t_init(&t);
  int P = (Hp - 2) * Wp - 2, K = Cin * 9;
  int x = buf(&t, "x", DT_F32, shp(3, batch, Cin, Hp * Wp));
  int w = buf(&t, "w", DT_F32, shp(4, Co, Cin, 3, 3));
  int bias = buf(&t, "bias", DT_F32, shp(1, Co));
  int o = buf(&t, "o", DT_F32, shp(3, batch, Co, P));
  IExpr *pix = IB(&t, IX_ADD, IB(&t, IX_ADD, V(&t, 2), IB(&t, IX_MUL, V(&t, 4), C(&t, Wp))), V(&t, 5));
  VExpr *la = ld(&t, w, V(&t, 1), V(&t, 3), V(&t, 4), V(&t, 5));
  VExpr *lb = ld(&t, x, V(&t, 0), V(&t, 3), pix);
  Kernel *k = kern(&t, "k_conv", o, bin(&t, VX_MUL, la, lb));
  red(k, RED_SUM, 3, Cin, 3, 3);
  k->epilogue = un(&t, VX_RELU, bin(&t, VX_ADD, acc_ref(&t), ld(&t, bias, V(&t, 1))));
  k->flops = 2LL * batch * Co * P * K;
  GemmPlan g;
  assert_true(cg_gemm_plan(NULL, t.p, k, &g));
  assert_true(g.by_batch && g.op[1].fast && g.op[1].x_affine && !g.op[1].k_affine);
  assert_true(g.direct_b_tab == expect_direct && g.direct_b == expect_direct);
  assert_true(g.a_once); /* the weights, packed once for the whole batch */
  compile(&t);
  int64_t nx = (int64_t)batch * Cin * Hp * Wp, nw = (int64_t)Co * K, no = (int64_t)batch * Co * P;
  fill_rand(&t, x, nx);
  fill_rand(&t, w, nw);
  for (int j = 0; j < Co; j++) F(&t, bias)[j] = frand(-0.5f, 0.5f);
  float *ref = run_threads_identical(&t, o, no);
  for (int n = 0; n < batch; n++)
    for (int co = 0; co < Co; co++)
      for (int q = 0; q < P; q++) {
        double s = F(&t, bias)[co], sa = 1.0;
        for (int c = 0; c < Cin; c++)
          for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
              double v = (double)F(&t, w)[((co * Cin + c) * 3 + kh) * 3 + kw] *
                         F(&t, x)[((int64_t)n * Cin + c) * Hp * Wp + q + kh * Wp + kw];
              s += v;
              sa += fabs(v);
            }
        s = s < 0 ? 0 : s;
        assert_true(fabs(ref[((int64_t)n * Co + co) * P + q] - s) <= 1e-5 * sa);
      }
  free(ref);
  t_free(&t);
}

/* A convolution over a padded-width image (o[n, co, q], q = h * Wp + w)
 * and the crop after it, out[n, co, h, w] = o[n, co, h * Wp + w] *
 * m[n, co, h, w] (a ReLU mask; `own`: else it reads image 0's result): the
 * crop reads the product only at its own image, so it runs image by image
 * after the product's GEMM of that image, from scratch (cg_fusion), with
 * the same results bit for bit as the two kernels apart (DLC_IMAGE_FUSION=0)
 * on 1, 2 and 3 threads. */
static void fused_crop_build(T *t, bool own, int *x, int *w, int *mk, int *out, Kernel **conv, Kernel **crop) {
  enum { B = 5, Co = 8, Cin = 3, Hp = 10, Wp = 10, H = 8, W = 8, P = (Hp - 2) * Wp - 2 };
  t_init(t);
  *x = buf(t, "x", DT_F32, shp(3, B, Cin, Hp * Wp));
  *w = buf(t, "w", DT_F32, shp(4, Co, Cin, 3, 3));
  int o = buf(t, "o", DT_F32, shp(3, B, Co, P));
  *mk = buf(t, "m", DT_F32, shp(4, B, Co, H, W));
  *out = buf(t, "out", DT_F32, shp(4, B, Co, H, W));
  IExpr *pix = IB(t, IX_ADD, IB(t, IX_ADD, V(t, 2), IB(t, IX_MUL, V(t, 4), C(t, Wp))), V(t, 5));
  *conv = kern(t, "k_conv", o, bin(t, VX_MUL, ld(t, *w, V(t, 1), V(t, 3), V(t, 4), V(t, 5)), ld(t, *x, V(t, 0), V(t, 3), pix)));
  red(*conv, RED_SUM, 3, Cin, 3, 3);
  (*conv)->flops = 2LL * B * Co * P * Cin * 9;
  IExpr *q = IB(t, IX_ADD, IB(t, IX_MUL, V(t, 2), C(t, Wp)), V(t, 3));
  *crop = kern(t, "k_crop", *out,
               bin(t, VX_MUL, ld(t, o, own ? V(t, 0) : C(t, 0), V(t, 1), q), ld(t, *mk, V(t, 0), V(t, 1), V(t, 2), V(t, 3))));
  (*crop)->flops = B * Co * H * W;
}

static void fused_crop_case(bool own) {
  T t, u;
  int x, w, mk, out, x2, w2, mk2, out2;
  Kernel *conv, *crop, *conv2, *crop2;
  fused_crop_build(&t, own, &x, &w, &mk, &out, &conv, &crop);
  Diag d;
  diag_init(&d, stderr);
  CgOptions opt = {.opt_level = 3};
  CgModule *m = cg_build(t.p, &opt, &d);
  assert_non_null(m);
  CgFusion f;
  assert_true(cg_fusion(m, t.p, conv, &f) == own);
  assert_true((f.then == crop) == own);
  cg_free(m);
  diag_free(&d);
  compile(&t);
  setenv("DLC_IMAGE_FUSION", "0", 1);
  fused_crop_build(&u, own, &x2, &w2, &mk2, &out2, &conv2, &crop2);
  compile(&u);
  unsetenv("DLC_IMAGE_FUSION");
  int64_t nx = shape_numel(&t.p->bufs[x].shape), nw = shape_numel(&t.p->bufs[w].shape),
          no = shape_numel(&t.p->bufs[out].shape);
  fill_rand(&t, x, nx);
  fill_rand(&t, w, nw);
  for (int64_t i = 0; i < no; i++) F(&t, mk)[i] = (float)(rand() % 2);
  memcpy(F(&u, x2), F(&t, x), sizeof(float) * (size_t)nx);
  memcpy(F(&u, w2), F(&t, w), sizeof(float) * (size_t)nw);
  memcpy(F(&u, mk2), F(&t, mk), sizeof(float) * (size_t)no);
  float *got = run_threads_identical(&t, out, no), *ref = run_threads_identical(&u, out2, no);
  assert_memory_equal(got, ref, sizeof(float) * (size_t)no);
  /* and right: image 1, channel 2, position (3, 4) */
  double s = 0;
  int n = own ? 1 : 0;
  for (int c = 0; c < 3; c++)
    for (int kh = 0; kh < 3; kh++)
      for (int kw = 0; kw < 3; kw++)
        s += (double)F(&t, w)[((2 * 3 + c) * 3 + kh) * 3 + kw] * F(&t, x)[(n * 3 + c) * 100 + (3 + kh) * 10 + 4 + kw];
  int64_t at = ((1 * 8 + 2) * 8 + 3) * 8 + 4;
  assert_true(fabs(got[at] - s * F(&t, mk)[at]) <= 1e-5 * (1 + fabs(s)));
  free(got);
  free(ref);
  t_free(&t);
  t_free(&u);
}

static void test_gemm_fused_crop(void **state) {
  (void)state;
  fused_crop_case(true);
  fused_crop_case(false); /* reads image 0's result for every image: not fused */
}

/* Elementwise chains (cg_chain): an optimizer's updates of one parameter
 * run as one call, block by block. `mode` 0: SGD with momentum over
 * [R, Cc] (v = 0.9 v + g; w = w - 0.01 v): a chain of 2. 1: Adam's three
 * kernels over [R, 1, 3, 3] (dim 1 indexed by 0) with a scalar step size:
 * a chain of 3. Not chained: 2, the second kernel reads v one row down;
 * 3, the first reads w (the second's result) transposed; 4, two kernels
 * that share no stream; 5, two iteration spaces. The chained results equal
 * the kernels' run one by one (DLC_CHAIN=0) bit for bit on 1, 2 and 3
 * threads, and a plain C reference. */
static void chain_build(T *t, int mode, int R, int Cc, int *b, Kernel **k) {
  t_init(t);
  bool adam = mode == 1;
  Shape s = adam ? shp(4, R, 1, 3, 3) : shp(2, R, Cc);
  b[0] = buf(t, "g", DT_F32, s);
  b[1] = buf(t, "v", DT_F32, s);
  b[2] = buf(t, "w", DT_F32, mode == 5 ? shp(2, Cc, R) : s);
  b[3] = buf(t, "m", DT_F32, s);
  b[4] = buf(t, "lr", DT_F32, shp(0));
  IExpr *own[4];
  for (int d = 0; d < s.rank; d++) own[d] = adam && d == 1 ? C(t, 0) : V(t, d);
#define AT(B) (adam ? ld(t, (B), own[0], own[1], own[2], own[3]) : ld(t, (B), own[0], own[1]))
  if (adam) {
    k[0] = kern(t, "k_m", b[3], bin(t, VX_ADD, bin(t, VX_MUL, AT(b[3]), kf(t, 0.9)), bin(t, VX_MUL, kf(t, 0.1), AT(b[0]))));
    k[1] = kern(t, "k_v", b[1],
                bin(t, VX_ADD, bin(t, VX_MUL, AT(b[1]), kf(t, 0.999)), bin(t, VX_MUL, kf(t, 0.001), bin(t, VX_MUL, AT(b[0]), AT(b[0])))));
    VExpr *den = bin(t, VX_ADD, un(t, VX_SQRT, AT(b[1])), kf(t, 1e-8));
    k[2] = kern(t, "k_w", b[2], bin(t, VX_SUB, AT(b[2]), bin(t, VX_DIV, bin(t, VX_MUL, ld(t, b[4]), AT(b[3])), den)));
    return;
  }
  if (mode == 4) /* m = 2 g against w = w - 0.01 v: nothing shared */
    k[0] = kern(t, "k_m", b[3], bin(t, VX_MUL, kf(t, 2.0), AT(b[0])));
  else
    k[0] = kern(t, "k_v", b[1], bin(t, VX_ADD, bin(t, VX_MUL, AT(b[1]), kf(t, 0.9)), AT(b[0])));
  if (mode == 3) /* reads w transposed */
    k[0]->body = bin(t, VX_ADD, k[0]->body, ld(t, b[2], V(t, 1), V(t, 0)));
  VExpr *v = mode == 2 ? ld(t, b[1], IB(t, IX_MOD, IB(t, IX_ADD, V(t, 0), C(t, 1)), C(t, R)), V(t, 1)) : AT(b[1]);
  if (mode == 5) v = ld(t, b[1], V(t, 1), V(t, 0));
  VExpr *w = mode == 5 ? ld(t, b[2], V(t, 0), V(t, 1)) : AT(b[2]);
  k[1] = kern(t, "k_w", b[2], bin(t, VX_SUB, w, bin(t, VX_MUL, kf(t, 0.01), v)));
#undef AT
}

static void chain_case(int mode, int R, int Cc, int expect) {
  T t, u;
  int b[5], bu[5];
  Kernel *k[3], *ku[3];
  chain_build(&t, mode, R, Cc, b, k);
  Diag d;
  diag_init(&d, stderr);
  CgOptions opt = {.opt_level = 3};
  CgModule *m = cg_build(t.p, &opt, &d);
  assert_non_null(m);
  const Kernel *mem[CG_CHAIN_MAX];
  assert_int_equal(cg_chain(m, t.p, k[0], mem), expect);
  for (int j = 0; j < expect; j++) assert_ptr_equal(mem[j], k[j]);
  const Entry *en = &t.p->entries[ENTRY_INFER];
  for (int j = 0; j < en->n_kernels; j++) assert_true(cg_fused_away(m, t.p, en, j) == (j > 0 && j < expect));
  cg_free(m);
  diag_free(&d);
  compile(&t);
  setenv("DLC_CHAIN", "0", 1);
  chain_build(&u, mode, R, Cc, bu, ku);
  compile(&u);
  unsetenv("DLC_CHAIN");
  int64_t n = shape_numel(&t.p->bufs[b[0]].shape);
  float *init = malloc(sizeof(float) * (size_t)n * 4), *ref = malloc(sizeof(float) * (size_t)n * 3);
  for (int64_t i = 0; i < 4 * n; i++) init[i] = frand(-1, 1);
  for (int64_t i = 0; i < n; i++) init[n + i] = mode == 1 ? fabsf(init[n + i]) : init[n + i]; /* Adam's v >= 0 */
  *F(&t, b[4]) = *F(&u, bu[4]) = 0.001f;
  for (int th = 1; th <= 3; th++) {
    dlrt_set_threads(th);
    for (int x = 0; x < 4; x++) {
      memcpy(F(&t, b[x]), init + x * n, sizeof(float) * (size_t)n);
      memcpy(F(&u, bu[x]), init + x * n, sizeof(float) * (size_t)n);
    }
    run(&t);
    run(&u);
    for (int x = 1; x < 4; x++) assert_memory_equal(F(&t, b[x]), F(&u, bu[x]), sizeof(float) * (size_t)n);
    if (th == 1)
      for (int x = 1; x < 4; x++) memcpy(ref + (x - 1) * n, F(&t, b[x]), sizeof(float) * (size_t)n);
    else
      for (int x = 1; x < 4; x++) assert_memory_equal(ref + (x - 1) * n, F(&t, b[x]), sizeof(float) * (size_t)n);
  }
  dlrt_set_threads(0);
  /* against C, for the chained cases */
  const float *g = init, *v0 = init + n, *w0 = init + 2 * n, *m0 = init + 3 * n;
  for (int64_t i = 0; i < n && expect > 1; i++) {
    double v, w;
    if (mode == 1) {
      double mm = 0.9 * m0[i] + 0.1 * g[i];
      v = 0.999 * v0[i] + 0.001 * g[i] * g[i];
      w = w0[i] - 0.001 * mm / (sqrt(v) + 1e-8);
      assert_true(fabs(ref[2 * n + i] - mm) <= 1e-6);
    } else {
      v = 0.9 * v0[i] + g[i];
      w = w0[i] - 0.01 * v;
    }
    assert_true(fabs(ref[i] - v) <= 1e-6 && fabs(ref[n + i] - w) <= 1e-5 * (1 + fabs(w)));
  }
  free(init);
  free(ref);
  t_free(&t);
  t_free(&u);
}

static void test_elementwise_chain(void **state) {
  (void)state;
  chain_case(0, 37, 300, 2);  /* blocks of 13 rows: a partial last block, uneven thread chunks */
  chain_case(0, 5000, 3, 2);  /* short rows: blocks of 1365 rows */
  chain_case(1, 123, 1, 3);
  chain_case(2, 37, 300, 1);
  chain_case(3, 40, 40, 1);
  chain_case(4, 37, 300, 1);
  chain_case(5, 40, 30, 1);
}

/* A stride-1 convolution's filter gradient over a padded image:
 * dW[o, c, kh, kw] = epi(sum_{n, q} dy[n, o, q] * x[n, c, q + kh*Wp + kw]),
 * both operands contiguous along q. With at most 64 output channels it
 * runs transposed (C^T in scratch, the image's rows read in place through
 * the row and k tables, dy^T packed); K blocks cross images when they do
 * not divide the positions. */
static void filter_grad_case(int batch, int Co, int Cin, int Hp, int Wp, bool expect_ct) {
  T t;
  t_init(&t);
  int P = (Hp - 2) * Wp - 2;
  int x = buf(&t, "x", DT_F32, shp(3, batch, Cin, Hp * Wp));
  int dy = buf(&t, "dy", DT_F32, shp(3, batch, Co, P));
  int w = buf(&t, "w", DT_F32, shp(4, Co, Cin, 3, 3));
  int o = buf(&t, "o", DT_F32, shp(4, Co, Cin, 3, 3));
  IExpr *pix = IB(&t, IX_ADD, IB(&t, IX_ADD, V(&t, 5), IB(&t, IX_MUL, V(&t, 2), C(&t, Wp))), V(&t, 3));
  VExpr *la = ld(&t, dy, V(&t, 4), V(&t, 0), V(&t, 5));
  VExpr *lb = ld(&t, x, V(&t, 4), V(&t, 1), pix);
  Kernel *k = kern(&t, "k_dw", o, bin(&t, VX_MUL, la, lb));
  red(k, RED_SUM, 2, batch, P);
  /* an epilogue reading C's own index (weight decay's shape) */
  k->epilogue = bin(&t, VX_ADD, bin(&t, VX_MUL, acc_ref(&t), kf(&t, 0.5)), ld(&t, w, V(&t, 0), V(&t, 1), V(&t, 2), V(&t, 3)));
  GemmPlan g;
  assert_true(cg_gemm_plan(NULL, t.p, k, &g));
  assert_true(g.ct == expect_ct && g.direct_a_tab == expect_ct);
  if (expect_ct) assert_true(g.M == Cin * 9 && g.N == Co && g.K == (int64_t)batch * P && !g.dot && !g.tc);
  compile(&t);
  int64_t nx = (int64_t)batch * Cin * Hp * Wp, ny = (int64_t)batch * Co * P, no = (int64_t)Co * Cin * 9;
  fill_rand(&t, x, nx);
  fill_rand(&t, dy, ny);
  fill_rand(&t, w, no);
  float *ref = run_threads_identical(&t, o, no);
  for (int co = 0; co < Co; co++)
    for (int c = 0; c < Cin; c++)
      for (int kh = 0; kh < 3; kh++)
        for (int kw = 0; kw < 3; kw++) {
          double s = 0, sa = 1.0;
          for (int n = 0; n < batch; n++)
            for (int q = 0; q < P; q++) {
              double v = (double)F(&t, dy)[((int64_t)n * Co + co) * P + q] *
                         F(&t, x)[((int64_t)n * Cin + c) * Hp * Wp + q + kh * Wp + kw];
              s += v;
              sa += fabs(v);
            }
          int64_t at = ((co * Cin + c) * 3 + kh) * 3 + kw;
          s = 0.5 * s + F(&t, w)[at];
          assert_true(fabs(ref[at] - s) <= 1e-5 * sa);
        }
  free(ref);
  t_free(&t);
}

static void test_gemm_filter_grad(void **state) {
  (void)state;
  filter_grad_case(7, 32, 8, 14, 14, true);  /* K = 1162 in 4 blocks crossing images, 6 x 16 tiles */
  filter_grad_case(5, 20, 11, 16, 17, true); /* a column edge (20 of 32), two M blocks (R = 99), a row edge */
  filter_grad_case(2, 64, 8, 26, 26, true);  /* 64 channels: four column panels */
  filter_grad_case(7, 100, 8, 14, 14, false); /* more channels: packed */
}

static void test_gemm_im2col(void **state) {
  (void)state;
  im2col_case(3, 32, 8, 12, 12, true);   /* 4 x 24 tiles, N tail packed (P = 118) */
  im2col_case(2, 22, 64, 9, 12, true);   /* two K blocks (K = 576), 6 x 16 tiles with a row edge */
  im2col_case(2, 64, 8, 15, 26, true);   /* N a multiple of the panel (P = 336 = 14 x 24) */
  im2col_case(3, 32, 3, 12, 12, false);  /* K = 27: packed */
  im2col_case(3, 6, 2, 12, 12, true);    /* K = 18 but one row tile (M = 6): in place */
  im2col_case(2, 7, 3, 12, 12, false);   /* K = 27, two row tiles: packed */
  im2col_case(3, 100, 8, 8, 12, false);  /* two M blocks of packed weights (M = 100), B packed */
  im2col_case(2, 100, 64, 8, 12, false); /* ... and two K blocks */
}

/* Random shapes over every plan mode (in-place A/B, transposed A, column
 * split, dot form, K blocks, edges in M and N, batches), each checked
 * against the double reference and for 1/2/3-thread bit identity. */
static void test_gemm_random_shapes(void **state) {
  (void)state;
  uint64_t r = 0x9e3779b97f4a7c15ULL;
  static const int dims[] = {1, 2, 5, 6, 7, 10, 13, 16, 17, 31, 33, 64, 97, 150, 257};
  static const int ks[] = {1, 3, 8, 29, 100, 385, 513, 1000, 3001};
  enum { ND = sizeof dims / sizeof dims[0], NK = sizeof ks / sizeof ks[0] };
  for (int c = 0; c < 36; c++) {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    int M = dims[(r >> 20) % ND], N = dims[(r >> 28) % ND], K = ks[(r >> 36) % NK];
    bool ta = (r >> 44) & 1, tb = (r >> 45) & 1, epi = (r >> 46) & 1;
    int batch = ((r >> 47) & 3) == 0 ? 3 : 1;
    if ((int64_t)M * N * K < 2048 || N < 4 || M < 2) { /* below the GEMM path: widen */
      M = M < 7 ? 7 : M;
      N = N < 16 ? 16 : N;
      K = K < 29 ? 29 : K;
    }
    gemm_case(batch, M, N, K, ta, tb, epi, false);
  }
}

/* ---------------- RNG ---------------- */

static void test_rand(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int rng = kir_buffer(t.p, "@rng", BUF_RNG, DT_I32, shp(1, 4), -1);
  t.bufs[rng] = dlrt_alloc(16);
  t.p->rng_buf = rng;
  int M = 33, N = 65;
  int o = buf(&t, "o", DT_F32, shp(2, M, N));
  VExpr *r = ARENA_NEW(t.a, VExpr);
  r->op = VX_RAND;
  r->dtype = DT_F32;
  r->buf = rng;
  r->salt = 0xDEADBEEF12345ull;
  r->ix = IB(&t, IX_ADD, IB(&t, IX_MUL, V(&t, 0), C(&t, N)), V(&t, 1));
  /* dropout-style mask: u >= 0.3 ? 1/0.7 : 0, plus the raw value in a second kernel */
  int mask = buf(&t, "mask", DT_F32, shp(2, M, N));
  kern(&t, "k_rand", o, r);
  kern(&t, "k_mask", mask, vx_select(t.a, bin(&t, VX_GE, r, kf(&t, 0.3)), kf(&t, 1.0 / 0.7), kf(&t, 0.0)));
  compile(&t);
  uint64_t seeds[2][2] = {{42, 0}, {0x123456789abcdefull, 977}};
  for (int s = 0; s < 2; s++) {
    memcpy(t.bufs[rng], seeds[s], 16);
    run(&t);
    uint64_t sd = dlrt_mix64(seeds[s][0] ^ r->salt, seeds[s][1]);
    for (int i = 0; i < M * N; i++) {
      float u = dlrt_uniform01(sd, (uint64_t)i);
      assert_true(F(&t, o)[i] == u);
      assert_true(F(&t, mask)[i] == (u >= 0.3f ? (float)(1.0 / 0.7) : 0.0f));
    }
  }
  t_free(&t);
}

/* ---------------- vector math accuracy ---------------- */

/* error of y in ulps of the float nearest to ref (inf counts as 2^128) */
static double ulp_err(float y, double ref) {
  if (isnan(ref)) return isnan(y) ? 0.0 : INFINITY;
  if (isnan(y)) return INFINITY;
  if (isinf((float)ref)) return (isinf(y) && (y > 0) == (ref > 0)) ? 0.0 : INFINITY;
  double yd = isinf(y) ? copysign(ldexp(1.0, 128), y) : (double)y;
  int e;
  frexp(ref, &e);
  int ue = e - 24;
  if (ue < -149) ue = -149;
  return fabs(yd - ref) / ldexp(1.0, ue);
}

typedef double (*RefFn)(double);
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_elu(double x) { return x > 0 ? x : expm1(x); }

static double check_fn(VxOp op, RefFn ref, const float *xs, int n, const char *name) {
  T t;
  t_init(&t);
  int x = buf(&t, "x", DT_F32, shp(1, n)), o = buf(&t, "o", DT_F32, shp(1, n));
  VExpr *e = un(&t, op, ld(&t, x, V(&t, 0)));
  e->f = 1.0f; /* elu alpha */
  kern(&t, "k_fn", o, e);
  compile(&t);
  memcpy(t.bufs[x], xs, sizeof(float) * (size_t)n);
  run(&t);
  double mx = 0;
  float worst = 0;
  for (int i = 0; i < n; i++) {
    double err = ulp_err(F(&t, o)[i], ref((double)xs[i]));
    if (err > mx) {
      mx = err;
      worst = xs[i];
    }
  }
  print_message("  %-10s %-10s max error %.3f ulp (at x = %a) over %d inputs\n", g_cpu ? g_cpu : "native", name, mx, (double)worst, n);
  t_free(&t);
  return mx;
}

static float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float *make_inputs(double lo, double hi, int n_lin, int *n_out) {
  static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f,
                                  0x1p-149f, -0x1p-149f, 0x1p-126f, 1e-30f, -1e-30f, 1e-7f, -1e-7f,
                                  88.72f, 88.7228f, 88.73f, 89.0f, 100.0f, 1e30f, -87.33f, -103.0f,
                                  -103.97f, -104.0f, -150.0f, -1e30f, 0.625f, -0.625f, 0.6249f, 9.0f, -9.01f};
  int ns = (int)(sizeof special / sizeof special[0]);
  int n_rand = 200000;
  float *xs = malloc(sizeof(float) * (size_t)(n_lin + ns + n_rand));
  int n = 0;
  for (int i = 0; i < ns; i++) xs[n++] = special[i];
  for (int i = 0; i < n_lin; i++) xs[n++] = (float)(lo + (hi - lo) * i / (n_lin - 1));
  for (int i = 0; i < n_rand; i++) { /* random bit patterns: every magnitude, both signs */
    rng_state = rng_state * 1664525u + 1013904223u;
    xs[n++] = bits_to_float(rng_state);
  }
  *n_out = n;
  return xs;
}

static void vecmath_accuracy(void) {
  int n;
  float *xs = make_inputs(-110.0, 95.0, 1000000, &n);
  double e_exp = check_fn(VX_EXP, exp, xs, n, "exp");
  free(xs);
  xs = make_inputs(-20.0, 20.0, 1000000, &n);
  double e_tanh = check_fn(VX_TANH, tanh, xs, n, "tanh");
  free(xs);
  xs = make_inputs(-120.0, 40.0, 1000000, &n);
  double e_sig = check_fn(VX_SIGMOID, ref_sigmoid, xs, n, "sigmoid");
  free(xs);
  xs = make_inputs(-30.0, 2.0, 1000000, &n);
  double e_elu = check_fn(VX_ELU, ref_elu, xs, n, "elu(expm1)");
  free(xs);
  /* log: a sweep of bit patterns over all positive floats (subnormals too) */
  int nl;
  float *ls = make_inputs(0.0, 4.0, 200000, &nl);
  int cap = nl + (0x7f800000 / 2003) + 2;
  ls = realloc(ls, sizeof(float) * (size_t)cap);
  for (uint32_t u = 1; u < 0x7f800000u && nl < cap; u += 2003) ls[nl++] = bits_to_float(u);
  double e_log = check_fn(VX_LOG, log, ls, nl, "log");
  free(ls);
  assert_true(e_exp <= 3.0);
  assert_true(e_log <= 3.0);
  assert_true(e_tanh <= 4.0);
  assert_true(e_sig <= 4.0);
  assert_true(e_elu <= 4.0);
}

/* native (FMA here) and baseline x86-64 (llvm.fmuladd as mul + add) */
static void test_vecmath_accuracy(void **state) {
  (void)state;
  g_cpu = NULL;
  vecmath_accuracy();
  g_cpu = "x86-64";
  vecmath_accuracy();
  g_cpu = NULL;
}

/* the special values exactly */
static void test_vecmath_special(void **state) {
  (void)state;
  T t;
  t_init(&t);
  enum { N = 12 };
  static const float xs[N] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, -1.0f, 100.0f, -110.0f, 1e-30f, -1e-30f, 89.0f, -1e30f};
  int x = buf(&t, "x", DT_F32, shp(1, N));
  int oe = buf(&t, "oe", DT_F32, shp(1, N)), ol = buf(&t, "ol", DT_F32, shp(1, N)),
      ot = buf(&t, "ot", DT_F32, shp(1, N)), os = buf(&t, "os", DT_F32, shp(1, N));
  kern(&t, "k_e", oe, un(&t, VX_EXP, ld(&t, x, V(&t, 0))));
  kern(&t, "k_l", ol, un(&t, VX_LOG, ld(&t, x, V(&t, 0))));
  kern(&t, "k_t", ot, un(&t, VX_TANH, ld(&t, x, V(&t, 0))));
  kern(&t, "k_s", os, un(&t, VX_SIGMOID, ld(&t, x, V(&t, 0))));
  compile(&t);
  memcpy(t.bufs[x], xs, sizeof xs);
  run(&t);
  float *e = F(&t, oe), *l = F(&t, ol), *th = F(&t, ot), *s = F(&t, os);
  assert_true(isinf(e[0]) && e[0] > 0);
  assert_true(e[1] == 0.0f);
  assert_true(isnan(e[2]));
  assert_true(e[3] == 1.0f && e[4] == 1.0f);
  assert_true(isinf(e[6]));           /* overflow */
  assert_true(e[7] == 0.0f);          /* underflow */
  assert_true(isinf(e[10]));
  assert_true(e[11] == 0.0f);
  assert_true(isinf(l[0]) && l[0] > 0);
  assert_true(isnan(l[1]) && isnan(l[2]) && isnan(l[5]) && isnan(l[9]) && isnan(l[11]));
  assert_true(isinf(l[3]) && l[3] < 0 && isinf(l[4]) && l[4] < 0);
  assert_true(fabs(l[8] - log(1e-30)) < 1e-5);
  assert_true(th[0] == 1.0f && th[1] == -1.0f && isnan(th[2]));
  assert_true(th[3] == 0.0f && signbit(th[4]) && th[4] == 0.0f);
  assert_true(th[8] == 1e-30f && th[9] == -1e-30f && th[6] == 1.0f && th[7] == -1.0f);
  assert_true(s[0] == 1.0f && s[1] == 0.0f && isnan(s[2]) && s[3] == 0.5f && s[4] == 0.5f);
  assert_true(s[6] == 1.0f && s[7] == 0.0f /* e^-110 underflows */ && s[11] == 0.0f);
  t_free(&t);
}

/* ---------------- emission and errors ---------------- */

static void build_small(T *t) {
  t_init(t);
  int x = buf(t, "x", DT_F32, shp(1, 64)), o = buf(t, "o", DT_F32, shp(1, 64));
  kern(t, "k_small", o, un(t, VX_EXP, ld(t, x, V(t, 0))));
}

static void test_emit(void **state) {
  (void)state;
  T t;
  build_small(&t);
  Diag d;
  diag_init(&d, stderr);
  CgOptions o = {.cpu = "x86-64-v3", .opt_level = 2};
  CgModule *m = cg_build(t.p, &o, &d);
  assert_non_null(m);
  assert_int_equal(cg_optimize(m, &d), 0);
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  assert_int_equal(cg_emit_llvm(m, f), 0);
  fclose(f);
  assert_non_null(strstr(s, "define void @t_infer(ptr"));
  free(s);
  s = NULL;
  f = open_memstream(&s, &n);
  assert_int_equal(cg_emit_asm(m, f, &d), 0);
  fclose(f);
  assert_true(n > 100);
  assert_non_null(strstr(s, "t_infer"));
  assert_non_null(strstr(s, "ymm")); /* AVX2 for x86-64-v3 */
  free(s);
  char path[] = "/tmp/dlc_test_backend_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(cg_emit_object(m, path, &d), 0);
  FILE *of = fopen(path, "rb");
  assert_non_null(of);
  fseek(of, 0, SEEK_END);
  assert_true(ftell(of) > 100);
  unsigned char magic[4] = {0};
  fseek(of, 0, SEEK_SET);
  assert_int_equal(fread(magic, 1, 4, of), 4);
  assert_true(magic[0] == 0x7f && magic[1] == 'E');
  fclose(of);
  remove(path);
  assert_string_equal(cg_entry_symbol(t.a, t.p, ENTRY_TRAIN), "t_train");
  assert_string_equal(cg_entry_symbol(t.a, t.p, ENTRY_INFER), "t_infer");
  cg_free(m);
  assert_int_equal(d.n_errors, 0);
  diag_free(&d);
  t_free(&t);
}

static void test_bad_kernel_reported(void **state) {
  (void)state;
  T t;
  t_init(&t);
  int o = buf(&t, "o", DT_F32, shp(1, 8));
  IExpr *idx[1] = {V(&t, 0)};
  kern(&t, "k_bad", o, vx_load(t.a, DT_F32, 99, 1, idx, NULL, 0));
  Diag d;
  diag_init(&d, NULL);
  CgOptions opt = {.cpu = NULL, .opt_level = 2};
  assert_null(cg_build(t.p, &opt, &d));
  assert_true(d.n_errors > 0);
  assert_non_null(strstr(d.first, "internal error"));
  diag_free(&d);
  t_free(&t);
}

static void test_unknown_cpu(void **state) {
  (void)state;
  T t;
  build_small(&t);
  Diag d;
  diag_init(&d, NULL);
  CgOptions o = {.cpu = "no-such-cpu", .opt_level = 2};
  assert_null(cg_build(t.p, &o, &d));
  assert_true(d.n_errors == 1);
  assert_non_null(strstr(d.first, "no-such-cpu"));
  diag_free(&d);
  t_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elementwise_broadcast),
      cmocka_unit_test(test_crop_row_vectorized),
      cmocka_unit_test(test_pool_adjoint_rows),
      cmocka_unit_test(test_plane_sums),
      cmocka_unit_test(test_col2im_masked),
      cmocka_unit_test(test_streaming_stores),
      cmocka_unit_test(test_channel_sums),
      cmocka_unit_test(test_guarded_load),
      cmocka_unit_test(test_misc_ops),
      cmocka_unit_test(test_accumulate),
      cmocka_unit_test(test_views),
      cmocka_unit_test(test_reductions),
      cmocka_unit_test(test_matmul_orders),
      cmocka_unit_test(test_pool_argmax_rows),
      cmocka_unit_test(test_pool_rows),
      cmocka_unit_test(test_column_sum_reordered),
      cmocka_unit_test(test_parallel_bit_identical),
      cmocka_unit_test(test_gemm_path),
      cmocka_unit_test(test_gemm_im2col),
      cmocka_unit_test(test_gemm_fused_crop),
      cmocka_unit_test(test_elementwise_chain),
      cmocka_unit_test(test_gemm_filter_grad),
      cmocka_unit_test(test_gemm_random_shapes),
      cmocka_unit_test(test_rand),
      cmocka_unit_test(test_vecmath_accuracy),
      cmocka_unit_test(test_vecmath_special),
      cmocka_unit_test(test_emit),
      cmocka_unit_test(test_bad_kernel_reported),
      cmocka_unit_test(test_unknown_cpu),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
