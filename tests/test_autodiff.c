/* test_autodiff.c — gradients of every differentiable op against central
 * finite differences of the reference interpreter (double precision), the
 * interpreter's forward against hand-computed values, and one optimizer step
 * (SGD/momentum/nesterov/weight decay, Adam, AdamW) against the torch.optim
 * formulas evaluated directly here. Every graph is verified after the passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/passes.h"

static const SrcLoc L = {"test.dl", 1, 1};

/* |got - want| <= tol, in double (cmocka's float asserts round to float). */
#define assert_near(got, want, tol) assert_near_((got), (want), (tol), __FILE__, __LINE__)
static void assert_near_(double got, double want, double tol, const char *file, int line) {
  if (!(fabs(got - want) <= tol)) {
    fprintf(stderr, "%s:%d: got %.17g, want %.17g (tolerance %g)\n", file, line, got, want, tol);
    fail();
  }
}
static bool covered[OP__COUNT]; /* differentiable ops whose gradient was checked */

/* ---- harness ---- */
typedef struct {
  Arena *a;
  Graph *g;
  Diag d;
  double **lv; /* leaf values by node id */
  int cap;
  uint64_t rng;
} T;

static T *t_new(void) {
  T *t = calloc(1, sizeof *t);
  t->a = arena_new();
  t->g = ir_graph_new(t->a, "t", MODE_TRAIN);
  diag_init(&t->d, stderr);
  t->rng = 0x1234567887654321ull;
  return t;
}
static void t_free(T *t) {
  for (int i = 0; i < t->cap; i++) free(t->lv[i]);
  free(t->lv);
  diag_free(&t->d);
  arena_free(t->a);
  free(t);
}
static double rnd(T *t) { /* uniform [0, 1) */
  t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(t->rng >> 11) * (1.0 / 9007199254740992.0);
}
static void t_reserve(T *t, int n) {
  if (n <= t->cap) return;
  t->lv = realloc(t->lv, sizeof(double *) * (size_t)n);
  for (int i = t->cap; i < n; i++) t->lv[i] = NULL;
  t->cap = n;
}
static Shape sh_(const int64_t *d, int r) { return shape_make(r, d); }
#define SH(...) sh_((const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define S0 shape_scalar()

/* A leaf with uniform random values in [lo, hi); magnitudes below `gap`
 * are pushed away from 0 (keeps relu/abs/... off their kinks). */
static int t_leaf(T *t, OpKind op, const char *name, Shape s, double lo, double hi, double gap) {
  int id = ir_leaf(t->g, op, name, DT_F32, s, L);
  t_reserve(t, id + 1);
  int64_t n = shape_numel(&s);
  t->lv[id] = malloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    double v = lo + (hi - lo) * rnd(t);
    if (fabs(v) < gap) v = v < 0 ? -gap - fabs(v) : gap + fabs(v);
    t->lv[id][i] = v;
  }
  return id;
}
static int t_param(T *t, const char *name, Shape s) { return t_leaf(t, OP_PARAM, name, s, -1, 1, 0.05); }
static int t_pos(T *t, const char *name, Shape s) { return t_leaf(t, OP_PARAM, name, s, 0.5, 2.0, 0); }
static void t_set(T *t, int id, const double *v) {
  int64_t n = shape_numel(&t->g->nodes[id]->shape);
  memcpy(t->lv[id], v, sizeof(double) * (size_t)n);
}
static uint32_t all_axes(int r) { return r >= 32 ? 0xffffffffu : (1u << r) - 1u; }

/* loss = sum(y * R) with R a fixed random input of y's shape. */
static int t_loss(T *t, int y) {
  Graph *g = t->g;
  const Node *yn = g->nodes[y];
  int r = t_leaf(t, OP_INPUT, "R", yn->shape, -1, 1, 0);
  int m = ir_bin(g, OP_MUL, y, r, L, NULL);
  int l = yn->shape.rank ? ir_reduce(g, OP_SUM, m, all_axes(yn->shape.rank), false, L, NULL) : m;
  g->loss = l;
  return l;
}

static int t_run(T *t, InterpState *st) {
  t_reserve(t, t->g->n_nodes);
  return interp_run(t->g, t->lv, 7, 3, st);
}
static double t_eval_loss(T *t) {
  InterpState st;
  int rc = t_run(t, &st);
  assert_int_equal(rc, 0);
  double l = st.val[t->g->loss][0];
  interp_free(&st);
  return l;
}

static void t_autodiff(T *t) {
  int n_fwd = t->g->n_nodes;
  assert_true(pass_autodiff(t->g, &t->d));
  assert_true(ir_verify(t->g, &t->d));
  for (int i = n_fwd; i < t->g->n_nodes; i++) assert_int_equal(t->g->nodes[i]->phase, PHASE_BACKWARD);
  for (int i = 0; i < n_fwd; i++) covered[t->g->nodes[i]->op] = true;
}

/* Gradient of every param against central differences of the loss. */
static void t_check_grads(T *t) {
  t_autodiff(t);
  InterpState st;
  assert_int_equal(t_run(t, &st), 0);
  const double eps = 1e-6, tol = 1e-6;
  int bad = 0;
  for (int k = 0; k < t->g->n_grads; k++) {
    int p = t->g->grads[k].param;
    const double *an = st.val[t->g->grads[k].grad];
    int64_t n = shape_numel(&t->g->nodes[p]->shape);
    for (int64_t j = 0; j < n; j++) {
      double v = t->lv[p][j];
      t->lv[p][j] = v + eps;
      double lp = t_eval_loss(t);
      t->lv[p][j] = v - eps;
      double lm = t_eval_loss(t);
      t->lv[p][j] = v;
      double fd = (lp - lm) / (2 * eps);
      double scale = fmax(1.0, fmax(fabs(fd), fabs(an[j])));
      if (!(fabs(fd - an[j]) <= tol * scale)) {
        if (bad++ < 10)
          fprintf(stderr, "  grad of %s[%lld]: autodiff %.12g, finite difference %.12g\n",
                  t->g->nodes[p]->attr.leaf.name, (long long)j, an[j], fd);
      }
    }
  }
  interp_free(&st);
  if (bad) {
    ir_print(t->g, stderr);
    fail_msg("%d gradient entries differ from finite differences", bad);
  }
}

static int un(T *t, OpKind op, int a) { return ir_un(t->g, op, a, L, NULL); }
static int bin(T *t, OpKind op, int a, int b) { return ir_bin(t->g, op, a, b, L, NULL); }
static int un_attr(T *t, OpKind op, int a, float v) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.scalar.v = v;
  return ir_op(t->g, op, 1, &a, &at, NULL, DT_F32, L, NULL);
}

/* ---- gradient tests ---- */
static void test_grad_unary(void **state) {
  (void)state;
  const OpKind ops[] = {OP_NEG, OP_EXP, OP_ABS, OP_RELU, OP_SIGMOID, OP_TANH};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    T *t = t_new();
    int x = t_param(t, "x", SH(3, 5));
    t_loss(t, un(t, ops[i], x));
    t_check_grads(t);
    t_free(t);
  }
  const OpKind pos_ops[] = {OP_LOG, OP_SQRT};
  for (size_t i = 0; i < sizeof pos_ops / sizeof pos_ops[0]; i++) {
    T *t = t_new();
    int x = t_pos(t, "x", SH(4, 3));
    t_loss(t, un(t, pos_ops[i], x));
    t_check_grads(t);
    t_free(t);
  }
  { /* scalar input */
    T *t = t_new();
    int x = t_param(t, "x", S0);
    t_loss(t, un(t, OP_TANH, x));
    t_check_grads(t);
    t_free(t);
  }
}

static void test_grad_unary_attr(void **state) {
  (void)state;
  struct { OpKind op; float v; bool pos; } cases[] = {
      {OP_ELU, 1.0f, false}, {OP_ELU, 0.7f, false}, {OP_LEAKY_RELU, 0.01f, false}, {OP_LEAKY_RELU, 0.3f, false},
      {OP_POWS, 2.0f, false}, {OP_POWS, 3.0f, false}, {OP_POWS, 1.0f, false}, {OP_POWS, 0.0f, false},
      {OP_POWS, 0.5f, true}, {OP_POWS, -1.5f, true}, {OP_POWS, 2.5f, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    T *t = t_new();
    int x = cases[i].pos ? t_pos(t, "x", SH(2, 7)) : t_param(t, "x", SH(2, 7));
    t_loss(t, un_attr(t, cases[i].op, x, cases[i].v));
    t_check_grads(t);
    t_free(t);
  }
}

/* Binary ops over broadcasting shape pairs. */
static void test_grad_binary(void **state) {
  (void)state;
  const OpKind ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAXIMUM, OP_MINIMUM};
  Shape pairs[][2] = {
      {SH(3, 5), SH(3, 5)}, {SH(3, 5), SH(5)},       {SH(5), SH(3, 5)},     {SH(4, 1, 5), SH(3, 1)},
      {S0, SH(2, 3)},       {SH(1, 5), SH(3, 1)},    {SH(2, 3, 4), SH(1)},  {SH(3, 1, 1), SH(1, 2, 1)},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
      T *t = t_new();
      bool pos = ops[i] == OP_DIV || ops[i] == OP_POW;
      int a = pos ? t_pos(t, "a", pairs[k][0]) : t_param(t, "a", pairs[k][0]);
      int b = pos ? t_pos(t, "b", pairs[k][1]) : t_param(t, "b", pairs[k][1]);
      if (ops[i] == OP_POW) { /* exponents of both signs */
        int64_t n = shape_numel(&pairs[k][1]);
        for (int64_t j = 0; j < n; j++) t->lv[b][j] -= 1.2;
      }
      t_loss(t, bin(t, ops[i], a, b));
      t_check_grads(t);
      t_free(t);
    }
  { /* the same operand on both sides */
    T *t = t_new();
    int a = t_param(t, "a", SH(3, 4));
    t_loss(t, bin(t, OP_MUL, a, a));
    t_check_grads(t);
    t_free(t);
  }
}

static void test_grad_select(void **state) {
  (void)state;
  T *t = t_new();
  int c = t_leaf(t, OP_INPUT, "c", SH(3, 5), 0, 1, 0);
  for (int j = 0; j < 15; j++) t->lv[c][j] = t->lv[c][j] < 0.5 ? 0.0 : 1.0;
  int a = t_param(t, "a", SH(5));
  int b = t_param(t, "b", SH(3, 1));
  int in[3] = {c, a, b};
  t_loss(t, ir_op(t->g, OP_SELECT, 3, in, NULL, NULL, DT_F32, L, NULL));
  t_check_grads(t);
  t_free(t);
}

static void test_grad_reductions(void **state) {
  (void)state;
  const OpKind ops[] = {OP_SUM, OP_MEAN, OP_MAX};
  const uint32_t axes[] = {1u, 2u, 4u, 5u, 6u, 7u};
  for (size_t i = 0; i < 3; i++)
    for (size_t k = 0; k < sizeof axes / sizeof axes[0]; k++)
      for (int keep = 0; keep < 2; keep++) {
        T *t = t_new();
        int x = t_param(t, "x", SH(3, 4, 5));
        t_loss(t, ir_reduce(t->g, ops[i], x, axes[k], keep, L, NULL));
        t_check_grads(t);
        t_free(t);
      }
}

/* max splits the gradient evenly among ties (torch.amax). */
static void test_grad_max_ties(void **state) {
  (void)state;
  T *t = t_new();
  int x = t_param(t, "x", SH(2, 3));
  t_set(t, x, (const double[]){1, 3, 3, 2, 2, 2});
  t_loss(t, ir_reduce(t->g, OP_MAX, x, 2u, false, L, NULL));
  int r = t->g->n_nodes - 3; /* R */
  assert_int_equal(t->g->nodes[r]->op, OP_INPUT);
  t_set(t, r, (const double[]){0.6, 0.9});
  t_autodiff(t);
  InterpState st;
  assert_int_equal(t_run(t, &st), 0);
  const double *gx = st.val[t->g->grads[0].grad];
  const double want[] = {0, 0.3, 0.3, 0.3, 0.3, 0.3};
  for (int j = 0; j < 6; j++) assert_near(gx[j], want[j], 1e-15);
  interp_free(&st);
  t_free(t);
}

/* maximum/minimum split ties evenly (torch.maximum/minimum backward). */
static void test_grad_maximum_ties(void **state) {
  (void)state;
  for (int mx = 0; mx < 2; mx++) {
    T *t = t_new();
    int a = t_param(t, "a", SH(3));
    int b = t_param(t, "b", SH(3));
    t_set(t, a, (const double[]){1, 2, 3});
    t_set(t, b, (const double[]){1, 5, 0});
    t_loss(t, bin(t, mx ? OP_MAXIMUM : OP_MINIMUM, a, b));
    t_set(t, t->g->n_nodes - 3, (const double[]){2, 4, 8});
    t_autodiff(t);
    InterpState st;
    assert_int_equal(t_run(t, &st), 0);
    const double *ga = st.val[t->g->grads[0].grad], *gb = st.val[t->g->grads[1].grad];
    const double wa_max[] = {1, 0, 8}, wb_max[] = {1, 4, 0};
    const double wa_min[] = {1, 4, 0}, wb_min[] = {1, 0, 8};
    for (int j = 0; j < 3; j++) {
      assert_near(ga[j], mx ? wa_max[j] : wa_min[j], 1e-15);
      assert_near(gb[j], mx ? wb_max[j] : wb_min[j], 1e-15);
    }
    interp_free(&st);
    t_free(t);
  }
}

static void test_grad_matmul(void **state) {
  (void)state;
  Shape cases[][2] = {
      {SH(3, 4), SH(4, 5)},       {SH(2, 3, 4), SH(4, 5)},    {SH(3, 4), SH(2, 4, 5)},
      {SH(2, 1, 3, 4), SH(5, 4, 2)}, {SH(1, 3, 4), SH(2, 4, 2)}, {SH(1, 1), SH(1, 3)},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    T *t = t_new();
    int a = t_param(t, "a", cases[k][0]);
    int b = t_param(t, "b", cases[k][1]);
    t_loss(t, bin(t, OP_MATMUL, a, b));
    t_check_grads(t);
    t_free(t);
  }
}

static void test_grad_shape_ops(void **state) {
  (void)state;
  { /* transpose */
    T *t = t_new();
    int x = t_param(t, "x", SH(2, 3, 4));
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.perm.perm[0] = 2, at.perm.perm[1] = 0, at.perm.perm[2] = 1;
    t_loss(t, ir_op(t->g, OP_TRANSPOSE, 1, &x, &at, NULL, DT_F32, L, NULL));
    t_check_grads(t);
    t_free(t);
  }
  { /* reshape */
    T *t = t_new();
    int x = t_param(t, "x", SH(3, 4));
    t_loss(t, ir_reshape(t->g, x, SH(2, 1, 6), L, NULL));
    t_check_grads(t);
    t_free(t);
  }
  { /* broadcast, then a nonlinearity so broadcast copies matter */
    T *t = t_new();
    int x = t_param(t, "x", SH(3, 1));
    int bx = ir_broadcast(t->g, x, SH(2, 3, 4), L, NULL);
    t_loss(t, bin(t, OP_MUL, bx, bx));
    t_check_grads(t);
    t_free(t);
  }
  { /* slice with steps and offsets */
    T *t = t_new();
    int x = t_param(t, "x", SH(7, 6, 3));
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.slice.start[0] = 1, at.slice.step[0] = 2;
    at.slice.start[1] = 0, at.slice.step[1] = 3;
    at.slice.start[2] = 2, at.slice.step[2] = 1;
    Shape out = SH(3, 2, 1);
    int s = ir_op(t->g, OP_SLICE, 1, &x, &at, &out, DT_F32, L, NULL);
    t_loss(t, bin(t, OP_MUL, s, s));
    t_check_grads(t);
    t_free(t);
  }
  { /* unslice */
    T *t = t_new();
    int x = t_param(t, "x", SH(2, 3));
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.slice.start[0] = 1, at.slice.step[0] = 2;
    at.slice.start[1] = 1, at.slice.step[1] = 2;
    Shape out = SH(5, 7);
    int u = ir_op(t->g, OP_UNSLICE, 1, &x, &at, &out, DT_F32, L, NULL);
    t_loss(t, un(t, OP_EXP, u));
    t_check_grads(t);
    t_free(t);
  }
  for (int ax = 0; ax < 2; ax++) { /* concat of three along each axis */
    T *t = t_new();
    int a = t_param(t, "a", ax ? SH(3, 2) : SH(2, 4));
    int b = t_param(t, "b", ax ? SH(3, 1) : SH(1, 4));
    int c = t_param(t, "c", ax ? SH(3, 3) : SH(3, 4));
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.axis.axis = ax;
    int in[3] = {a, b, c};
    int cc = ir_op(t->g, OP_CONCAT, 3, in, &at, NULL, DT_F32, L, NULL);
    t_loss(t, un(t, OP_TANH, cc));
    t_check_grads(t);
    t_free(t);
  }
}

static void test_grad_softmax(void **state) {
  (void)state;
  for (int lsm = 0; lsm < 2; lsm++)
    for (int ax = 0; ax < 3; ax++) {
      T *t = t_new();
      int x = t_param(t, "x", SH(3, 4, 2));
      NodeAttr at;
      memset(&at, 0, sizeof at);
      at.axis.axis = ax;
      t_loss(t, ir_op(t->g, lsm ? OP_LOG_SOFTMAX : OP_SOFTMAX, 1, &x, &at, NULL, DT_F32, L, NULL));
      t_check_grads(t);
      t_free(t);
    }
}

typedef struct {
  int64_t n, c, h, w, o, kh, kw;
  int stride[2], pad[2], dil[2], groups;
} ConvCase;

static int conv(T *t, OpKind op, int a, int b, const ConvCase *cc, const Shape *out) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  for (int i = 0; i < 2; i++) at.conv.stride[i] = cc->stride[i], at.conv.pad[i] = cc->pad[i], at.conv.dil[i] = cc->dil[i];
  at.conv.groups = cc->groups;
  int in[2] = {a, b};
  return ir_op(t->g, op, 2, in, &at, out, DT_F32, L, NULL);
}

static const ConvCase conv_cases[] = {
    {2, 3, 7, 6, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},  /* plain */
    {2, 3, 7, 6, 4, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1},  /* stride 2, pad 1 */
    {1, 2, 8, 7, 3, 3, 2, {1, 2}, {1, 2}, {2, 1}, 1},  /* asymmetric stride/pad/dilation */
    {2, 4, 6, 6, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},  /* groups */
    {1, 3, 5, 5, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3},  /* depthwise */
    {2, 3, 4, 5, 5, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1},  /* 1x1 */
    {1, 4, 9, 9, 8, 2, 2, {2, 1}, {1, 0}, {2, 1}, 2},  /* grouped, strided, dilated */
    {1, 2, 6, 6, 2, 3, 3, {3, 3}, {0, 0}, {1, 1}, 1},  /* stride leaves a remainder */
};

static void test_grad_conv2d(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof conv_cases / sizeof conv_cases[0]; k++) {
    const ConvCase *cc = &conv_cases[k];
    T *t = t_new();
    int x = t_param(t, "x", SH(cc->n, cc->c, cc->h, cc->w));
    int w = t_param(t, "w", SH(cc->o, cc->c / cc->groups, cc->kh, cc->kw));
    int y = conv(t, OP_CONV2D, x, w, cc, NULL);
    if (k == 0) { /* with a bias, as the frontend builds it */
      int b = t_param(t, "b", SH(cc->o, 1, 1));
      y = bin(t, OP_ADD, y, b);
    }
    t_loss(t, y);
    t_check_grads(t);
    t_free(t);
  }
}

/* The backward ops are differentiable too (bilinear). */
static void test_grad_conv2d_bwd(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof conv_cases / sizeof conv_cases[0]; k += 3) {
    const ConvCase *cc = &conv_cases[k];
    /* output shape of the forward conv */
    int64_t oh = (cc->h + 2 * cc->pad[0] - cc->dil[0] * (cc->kh - 1) - 1) / cc->stride[0] + 1;
    int64_t ow = (cc->w + 2 * cc->pad[1] - cc->dil[1] * (cc->kw - 1) - 1) / cc->stride[1] + 1;
    Shape xs = SH(cc->n, cc->c, cc->h, cc->w), ws = SH(cc->o, cc->c / cc->groups, cc->kh, cc->kw);
    {
      T *t = t_new();
      int dy = t_param(t, "dy", SH(cc->n, cc->o, oh, ow));
      int w = t_param(t, "w", ws);
      t_loss(t, conv(t, OP_CONV2D_BWD_DATA, dy, w, cc, &xs));
      t_check_grads(t);
      t_free(t);
    }
    {
      T *t = t_new();
      int x = t_param(t, "x", xs);
      int dy = t_param(t, "dy", SH(cc->n, cc->o, oh, ow));
      t_loss(t, conv(t, OP_CONV2D_BWD_FILTER, x, dy, cc, &ws));
      t_check_grads(t);
      t_free(t);
    }
  }
}

static int pool(T *t, OpKind op, int x, int k0, int k1, int s0, int s1, int p0, int p1) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.pool.k[0] = k0, at.pool.k[1] = k1, at.pool.stride[0] = s0, at.pool.stride[1] = s1;
  at.pool.pad[0] = p0, at.pool.pad[1] = p1;
  return ir_op(t->g, op, 1, &x, &at, NULL, DT_F32, L, NULL);
}

static void test_grad_pool(void **state) {
  (void)state;
  const int cases[][6] = {
      {2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {2, 3, 1, 2, 1, 1}, {3, 2, 3, 1, 0, 1}, {2, 2, 1, 1, 1, 0},
  };
  for (int op = 0; op < 2; op++)
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      const int *c = cases[k];
      T *t = t_new();
      int x = t_param(t, "x", SH(2, 3, 7, 6));
      t_loss(t, pool(t, op ? OP_AVGPOOL2D : OP_MAXPOOL2D, x, c[0], c[1], c[2], c[3], c[4], c[5]));
      t_check_grads(t);
      t_free(t);
    }
}

/* Dropout masks, labels (onehot), casts and frozen/unreached params. */
static void test_grad_mixed(void **state) {
  (void)state;
  T *t = t_new();
  Graph *g = t->g;
  int x = t_leaf(t, OP_INPUT, "x", SH(4, 6), -1, 1, 0);
  int y = ir_leaf(g, OP_LABEL, "y", DT_I32, SH(4), L);
  t_reserve(t, y + 1);
  t->lv[y] = malloc(sizeof(double) * 4);
  for (int i = 0; i < 4; i++) t->lv[y][i] = (double)((i * 2 + 1) % 3);
  int w = t_param(t, "W", SH(6, 3));
  int b = t_param(t, "b", SH(3));
  int fz = t_param(t, "frozen", SH(3));
  g->nodes[fz]->attr.leaf.frozen = true;
  int un_p = t_param(t, "unused", SH(2, 2));
  NodeAttr dat;
  memset(&dat, 0, sizeof dat);
  dat.dropout.p = 0.4f;
  dat.dropout.salt = 99;
  Shape ms = SH(4, 6);
  int mask = ir_op(g, OP_DROPOUT_MASK, 0, NULL, &dat, &ms, DT_F32, L, NULL);
  int h = bin(t, OP_MUL, x, mask);
  int logits = bin(t, OP_ADD, bin(t, OP_ADD, bin(t, OP_MATMUL, h, w), b), fz);
  NodeAttr ax;
  memset(&ax, 0, sizeof ax);
  ax.axis.axis = 1;
  int lsm = ir_op(g, OP_LOG_SOFTMAX, 1, &logits, &ax, NULL, DT_F32, L, NULL);
  Shape os = SH(4, 3);
  int oh = ir_op(g, OP_ONEHOT, 1, &y, NULL, &os, DT_F32, L, NULL);
  int nll = un(t, OP_NEG, ir_reduce(g, OP_MEAN, bin(t, OP_MUL, lsm, oh), 3u, false, L, NULL));
  /* + 0.1 * mean(cast(argmax)) : not differentiable, must not disturb */
  NodeAttr am;
  memset(&am, 0, sizeof am);
  am.reduce.axes = 2u;
  int amx = ir_op(g, OP_ARGMAX, 1, &logits, &am, NULL, DT_F32, L, NULL);
  Shape s4 = SH(4);
  int amf = ir_op(g, OP_CAST, 1, &amx, NULL, &s4, DT_F32, L, NULL);
  int loss = bin(t, OP_ADD, nll, bin(t, OP_MUL, ir_scalar(g, 0.1f, L), ir_reduce(g, OP_MEAN, amf, 1u, false, L, NULL)));
  g->loss = loss;
  t_check_grads(t);
  /* grads: W, b, unused (zero const); not the frozen one */
  assert_int_equal(g->n_grads, 3);
  assert_int_equal(g->grads[0].param, w);
  assert_int_equal(g->grads[1].param, b);
  assert_int_equal(g->grads[2].param, un_p);
  const Node *zg = g->nodes[g->grads[2].grad];
  assert_int_equal(zg->op, OP_CONST);
  assert_true(zg->attr.scalar.v == 0.0f);
  /* the dropout mask zeroes some rows of W's gradient contributions */
  InterpState st;
  assert_int_equal(t_run(t, &st), 0);
  int zeros = 0;
  for (int i = 0; i < 24; i++) {
    double m = st.val[mask][i];
    assert_true(m == 0.0 || fabs(m - 1.0 / (1.0 - (double)0.4f)) < 1e-12);
    zeros += m == 0.0;
  }
  assert_true(zeros > 0 && zeros < 24);
  interp_free(&st);
  t_free(t);
}

/* A small deep chain reusing values (fan-out accumulation). */
static void test_grad_chain(void **state) {
  (void)state;
  T *t = t_new();
  int x = t_param(t, "x", SH(2, 3));
  int w = t_param(t, "w", SH(3, 3));
  int h = un(t, OP_TANH, bin(t, OP_MATMUL, x, w));
  int h2 = bin(t, OP_ADD, bin(t, OP_MUL, h, h), un(t, OP_SIGMOID, h));
  int h3 = bin(t, OP_MATMUL, h2, w);
  NodeAttr ax;
  memset(&ax, 0, sizeof ax);
  ax.axis.axis = 1;
  t_loss(t, ir_op(t->g, OP_SOFTMAX, 1, &h3, &ax, NULL, DT_F32, L, NULL));
  t_check_grads(t);
  t_free(t);
}

/* Every op with a gradient rule was checked above. */
static void test_grad_coverage(void **state) {
  (void)state;
  int missing = 0;
  for (int op = 0; op < OP__COUNT; op++) {
    if (op_has((OpKind)op, OPF_LEAF) || op_has((OpKind)op, OPF_NONDIFF)) continue;
    if (!covered[op]) {
      fprintf(stderr, "  no gradient test covers %s\n", ir_op_names[op]);
      missing++;
    }
  }
  assert_int_equal(missing, 0);
}

static void test_autodiff_errors(void **state) {
  (void)state;
  T *t = t_new();
  Diag q;
  diag_init(&q, NULL);
  int x = t_param(t, "x", SH(3));
  assert_false(pass_autodiff(t->g, &q)); /* no loss */
  t->g->loss = x;                        /* not a scalar */
  assert_false(pass_autodiff(t->g, &q));
  assert_int_equal(q.n_errors, 2);
  diag_free(&q);
  t_free(t);
}

/* ---- interpreter forward against hand-computed values ---- */
static void expect(const double *got, const double *want, int n) {
  for (int i = 0; i < n; i++) assert_near(got[i], want[i], 1e-12);
}

static void test_interp_forward(void **state) {
  (void)state;
  T *t = t_new();
  Graph *g = t->g;
  int x = t_leaf(t, OP_INPUT, "x", SH(1, 1, 3, 3), 0, 1, 0);
  t_set(t, x, (const double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
  int w = t_leaf(t, OP_PARAM, "w", SH(1, 1, 2, 2), 0, 1, 0);
  t_set(t, w, (const double[]){1, 0, 0, -1});
  ConvCase cc = {1, 1, 3, 3, 1, 2, 2, {1, 1}, {0, 0}, {1, 1}, 1};
  int cv = conv(t, OP_CONV2D, x, w, &cc, NULL);
  ConvCase cp = {1, 1, 3, 3, 1, 2, 2, {2, 2}, {1, 1}, {1, 1}, 1};
  int cvp = conv(t, OP_CONV2D, x, w, &cp, NULL);
  int mp = pool(t, OP_MAXPOOL2D, x, 2, 2, 2, 2, 1, 1);
  int ma = pool(t, OP_MAXPOOL2D_ARGMAX, x, 2, 2, 2, 2, 1, 1);
  int ap = pool(t, OP_AVGPOOL2D, x, 2, 2, 2, 2, 1, 1);
  int a = t_leaf(t, OP_INPUT, "a", SH(2, 3), 0, 1, 0);
  t_set(t, a, (const double[]){1, 2, 3, 4, 5, 6});
  int bm = t_leaf(t, OP_INPUT, "bm", SH(3, 2), 0, 1, 0);
  t_set(t, bm, (const double[]){1, 0, 0, 1, 1, 1});
  int mm = bin(t, OP_MATMUL, a, bm);
  NodeAttr ax;
  memset(&ax, 0, sizeof ax);
  ax.axis.axis = 1;
  int sm = ir_op(g, OP_SOFTMAX, 1, &a, &ax, NULL, DT_F32, L, NULL);
  int lsm = ir_op(g, OP_LOG_SOFTMAX, 1, &a, &ax, NULL, DT_F32, L, NULL);
  NodeAttr sl;
  memset(&sl, 0, sizeof sl);
  sl.slice.start[0] = 1, sl.slice.step[0] = 1, sl.slice.start[1] = 0, sl.slice.step[1] = 2;
  Shape s12 = SH(1, 2);
  int sli = ir_op(g, OP_SLICE, 1, &a, &sl, &s12, DT_F32, L, NULL);
  NodeAttr pr;
  memset(&pr, 0, sizeof pr);
  pr.perm.perm[0] = 1, pr.perm.perm[1] = 0;
  int tr = ir_op(g, OP_TRANSPOSE, 1, &a, &pr, NULL, DT_F32, L, NULL);
  int ties = t_leaf(t, OP_INPUT, "ties", SH(2, 3), 0, 1, 0);
  t_set(t, ties, (const double[]){1, 5, 5, -3.5, -2.5, -9});
  NodeAttr am;
  memset(&am, 0, sizeof am);
  am.reduce.axes = 2u;
  int amx = ir_op(g, OP_ARGMAX, 1, &ties, &am, NULL, DT_F32, L, NULL);
  Shape s23 = SH(2, 3);
  int ci = ir_op(g, OP_CAST, 1, &ties, NULL, &s23, DT_I32, L, NULL);
  int mx0 = ir_reduce(g, OP_MAX, ties, 1u, true, L, NULL);
  int mean1 = ir_reduce(g, OP_MEAN, ties, 2u, false, L, NULL);
  int elu = un_attr(t, OP_ELU, ties, 0.5f);
  int lk = un_attr(t, OP_LEAKY_RELU, ties, 0.25f);
  int sg = un(t, OP_SIGN, ties);
  int st_ = un(t, OP_STEP, ties);
  Shape oh_s = SH(2, 4);
  int lab = ir_leaf(g, OP_LABEL, "lab", DT_I32, SH(2), L);
  t_reserve(t, lab + 1);
  t->lv[lab] = malloc(2 * sizeof(double));
  t->lv[lab][0] = 3, t->lv[lab][1] = 0;
  int oh = ir_op(g, OP_ONEHOT, 1, &lab, NULL, &oh_s, DT_F32, L, NULL);
  int mxm = bin(t, OP_MAXIMUM, ties, ir_scalar(g, 0.0f, L));
  int in3[3] = {ir_bin(g, OP_GT, ties, ir_scalar(g, 0, L), L, NULL), a, ir_scalar(g, -1, L)};
  int sel = ir_op(g, OP_SELECT, 3, in3, NULL, NULL, DT_F32, L, NULL);
  NodeAttr dat;
  memset(&dat, 0, sizeof dat);
  dat.dropout.p = 0.25f;
  dat.dropout.salt = 5;
  Shape ds = SH(40);
  int dm = ir_op(g, OP_DROPOUT_MASK, 0, NULL, &dat, &ds, DT_F32, L, NULL);
  int dy = t_leaf(t, OP_INPUT, "dy", SH(1, 1, 2, 2), 0, 1, 0);
  t_set(t, dy, (const double[]){1, 10, 100, 1000});
  int mpb_in[2] = {dy, ma};
  NodeAttr pa = g->nodes[mp]->attr;
  Shape xs = SH(1, 1, 3, 3);
  int mpb = ir_op(g, OP_MAXPOOL2D_BWD, 2, mpb_in, &pa, &xs, DT_F32, L, NULL);
  int apb = ir_op(g, OP_AVGPOOL2D_BWD, 1, &dy, &pa, &xs, DT_F32, L, NULL);

  InterpState st;
  assert_int_equal(t_run(t, &st), 0);
  expect(st.val[cv], (const double[]){1 - 5, 2 - 6, 4 - 8, 5 - 9}, 4);
  /* pad 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1); w picks x[r][c] - x[r+1][c+1] */
  expect(st.val[cvp], (const double[]){-1, -3, -7, 5 - 9}, 4);
  expect(st.val[mp], (const double[]){1, 3, 7, 9}, 4);
  expect(st.val[ma], (const double[]){3, 3, 3, 3}, 4);
  expect(st.val[ap], (const double[]){1 / 4.0, (2 + 3) / 4.0, (4 + 7) / 4.0, (5 + 6 + 8 + 9) / 4.0}, 4);
  expect(st.val[mm], (const double[]){1 + 3, 2 + 3, 4 + 6, 5 + 6}, 4);
  double e1 = exp(1), e2 = exp(2), e3 = exp(3), z = e1 + e2 + e3;
  expect(st.val[sm], (const double[]){e1 / z, e2 / z, e3 / z, e1 / z, e2 / z, e3 / z}, 6);
  expect(st.val[lsm], (const double[]){1 - log(z), 2 - log(z), 3 - log(z), 1 - log(z), 2 - log(z), 3 - log(z)}, 6);
  expect(st.val[sli], (const double[]){4, 6}, 2);
  expect(st.val[tr], (const double[]){1, 4, 2, 5, 3, 6}, 6);
  expect(st.val[amx], (const double[]){1, 1}, 2);
  expect(st.val[ci], (const double[]){1, 5, 5, -3, -2, -9}, 6);
  expect(st.val[mx0], (const double[]){1, 5, 5}, 3);
  expect(st.val[mean1], (const double[]){11 / 3.0, -15 / 3.0}, 2);
  expect(st.val[elu], (const double[]){1, 5, 5, 0.5 * (exp(-3.5) - 1), 0.5 * (exp(-2.5) - 1), 0.5 * (exp(-9) - 1)}, 6);
  expect(st.val[lk], (const double[]){1, 5, 5, -3.5 / 4, -2.5 / 4, -9 / 4.0}, 6);
  expect(st.val[sg], (const double[]){1, 1, 1, -1, -1, -1}, 6);
  expect(st.val[st_], (const double[]){1, 1, 1, 0, 0, 0}, 6);
  expect(st.val[oh], (const double[]){0, 0, 0, 1, 1, 0, 0, 0}, 8);
  expect(st.val[mxm], (const double[]){1, 5, 5, 0, 0, 0}, 6);
  expect(st.val[sel], (const double[]){1, 2, 3, -1, -1, -1}, 6);
  uint64_t s = dlrt_mix64(7 ^ 5, 3); /* t_run uses seed 7, step 3 */
  for (int i = 0; i < 40; i++) {
    double want = dlrt_uniform01(s, (uint64_t)i) >= 0.25f ? 1.0 / (1.0 - 0.25) : 0.0;
    assert_near(st.val[dm][i], want, 1e-15);
  }
  expect(st.val[mpb], (const double[]){1, 0, 10, 0, 0, 0, 100, 0, 1000}, 9);
  expect(st.val[apb], (const double[]){0.25, 2.5, 2.5, 25, 250, 250, 25, 250, 250}, 9);
  interp_free(&st);
  t_free(t);
}

/* ---- optimizer: one step against torch.optim's formulas ---- */
typedef struct {
  OptKind kind;
  float lr, momentum, wd, b1, b2, eps;
  bool nesterov;
  int step0; /* "@step" before the step */
} OptCase;

static int find_update(const Graph *g, int target) {
  for (int i = 0; i < g->n_updates; i++)
    if (g->updates[i].target == target) return g->updates[i].value;
  return -1;
}

static void run_opt_case(const OptCase *oc) {
  T *t = t_new();
  Graph *g = t->g;
  int x = t_leaf(t, OP_INPUT, "x", SH(2, 3), -1, 1, 0);
  int w = t_param(t, "W", SH(3, 4));
  int b = t_param(t, "b", SH(4));
  int fz = t_param(t, "F", SH(4));
  g->nodes[fz]->attr.leaf.frozen = true;
  int un_p = t_param(t, "U", SH(2));
  t_loss(t, un(t, OP_TANH, bin(t, OP_ADD, bin(t, OP_ADD, bin(t, OP_MATMUL, x, w), b), fz)));
  g->opt.kind = oc->kind;
  g->opt.lr = oc->lr, g->opt.momentum = oc->momentum, g->opt.weight_decay = oc->wd;
  g->opt.beta1 = oc->b1, g->opt.beta2 = oc->b2, g->opt.eps = oc->eps, g->opt.nesterov = oc->nesterov;
  g->opt.loc = L;
  assert_true(pass_autodiff(g, &t->d));
  int n_bwd = g->n_nodes;
  assert_true(pass_optimizer(g, &t->d));
  assert_true(ir_verify(g, &t->d));
  for (int i = n_bwd; i < g->n_nodes; i++) assert_int_equal(g->nodes[i]->phase, PHASE_UPDATE);
  assert_int_equal(find_update(g, fz), -1);
  assert_int_equal(find_update(g, un_p), -1);

  /* optimizer state values: nonzero moments so the general formula is tested */
  int params[2] = {w, b};
  int st_m[2] = {-1, -1}, st_v[2] = {-1, -1};
  const char *names[2] = {"W", "b"};
  t_reserve(t, g->n_nodes);
  for (int k = 0; k < 2; k++) {
    char nm[64];
    const char *suf[3] = {"@momentum", "@m", "@v"};
    for (int s = 0; s < 3; s++) {
      snprintf(nm, sizeof nm, "%s%s", names[k], suf[s]);
      int id = ir_find_leaf(g, OP_STATE, nm);
      bool expected = oc->kind == OPT_SGD ? (s == 0 && oc->momentum != 0) : s > 0;
      assert_int_equal(id >= 0, expected);
      if (id < 0) continue;
      const Node *n = g->nodes[id];
      assert_true(n->attr.leaf.opt_state);
      assert_int_equal(n->attr.leaf.init.kind, DLRT_INIT_ZEROS);
      assert_true(shape_eq(&n->shape, &g->nodes[params[k]]->shape));
      int64_t m = shape_numel(&n->shape);
      t->lv[id] = malloc(sizeof(double) * (size_t)m);
      for (int64_t j = 0; j < m; j++) t->lv[id][j] = s == 2 ? 0.01 + 0.1 * rnd(t) : 0.2 * rnd(t) - 0.1;
      if (s < 2) st_m[k] = id;
      else st_v[k] = id;
    }
  }
  int stp = ir_find_leaf(g, OP_STATE, "@step");
  assert_int_equal(stp >= 0, oc->kind != OPT_SGD);
  if (stp >= 0) {
    assert_int_equal(g->nodes[stp]->dtype, DT_I32);
    assert_int_equal(g->nodes[stp]->shape.rank, 0);
    assert_true(g->nodes[stp]->attr.leaf.opt_state);
    t->lv[stp] = malloc(sizeof(double));
    t->lv[stp][0] = oc->step0;
  }
  InterpState st;
  assert_int_equal(t_run(t, &st), 0);
  if (stp >= 0) {
    int tv = find_update(g, stp);
    assert_true(tv >= 0);
    assert_int_equal(g->nodes[tv]->dtype, DT_I32);
    assert_near(st.val[tv][0], oc->step0 + 1, 0);
  }
  const double lr = oc->lr, mom = oc->momentum, wd = oc->wd, b1 = oc->b1, b2 = oc->b2, eps = oc->eps;
  for (int k = 0; k < 2; k++) {
    int p = params[k];
    int gi = -1;
    for (int i = 0; i < g->n_grads; i++)
      if (g->grads[i].param == p) gi = g->grads[i].grad;
    assert_true(gi >= 0);
    int pu = find_update(g, p);
    assert_true(pu >= 0);
    int64_t m = shape_numel(&g->nodes[p]->shape);
    for (int64_t j = 0; j < m; j++) {
      double pv = t->lv[p][j], gr = st.val[gi][j], want_p, want_m = 0, want_v = 0;
      if (oc->kind == OPT_SGD) {
        double d = gr + wd * pv;
        if (mom != 0) {
          double buf = mom * t->lv[st_m[k]][j] + d;
          want_m = buf;
          d = oc->nesterov ? d + mom * buf : buf;
        }
        want_p = pv - lr * d;
      } else {
        double tt = oc->step0 + 1;
        double d = oc->kind == OPT_ADAM ? gr + wd * pv : gr;
        /* torch's scalars reach the f32 kernels rounded to float */
        double decay = (float)(1 - lr * wd), c1 = (float)(1 - b1), c2 = (float)(1 - b2);
        double pd = oc->kind == OPT_ADAMW ? pv * decay : pv;
        want_m = b1 * t->lv[st_m[k]][j] + c1 * d;
        want_v = b2 * t->lv[st_v[k]][j] + c2 * d * d;
        double bc1 = 1 - pow(b1, tt), bc2 = 1 - pow(b2, tt);
        double denom = sqrt(want_v) / sqrt(bc2) + eps;
        want_p = pd - (lr / bc1) * want_m / denom;
      }
      double tol = 1e-6 * fmax(1e-3, fabs(want_p - pv)); /* relative to the size of the step */
      assert_near(st.val[pu][j], want_p, tol);
      if (st_m[k] >= 0) assert_near(st.val[find_update(g, st_m[k])][j], want_m, 1e-6 * fmax(1e-6, fabs(want_m)));
      if (st_v[k] >= 0) assert_near(st.val[find_update(g, st_v[k])][j], want_v, 1e-6 * fmax(1e-9, fabs(want_v)));
    }
  }
  interp_free(&st);
  t_free(t);
}

static void test_optimizer_sgd(void **state) {
  (void)state;
  const OptCase cases[] = {
      {OPT_SGD, 0.1f, 0, 0, 0, 0, 0, false, 0},
      {OPT_SGD, 0.1f, 0, 1e-2f, 0, 0, 0, false, 0},
      {OPT_SGD, 0.05f, 0.9f, 1e-4f, 0, 0, 0, false, 0},
      {OPT_SGD, 0.05f, 0.5f, 0, 0, 0, 0, true, 0},
      {OPT_SGD, 0.05f, 0.9f, 1e-3f, 0, 0, 0, true, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_opt_case(&cases[i]);
}

static void test_optimizer_adam(void **state) {
  (void)state;
  const OptCase cases[] = {
      {OPT_ADAM, 1e-3f, 0, 0, 0.9f, 0.999f, 1e-8f, false, 0},
      {OPT_ADAM, 1e-2f, 0, 1e-2f, 0.8f, 0.99f, 1e-6f, false, 4},
      {OPT_ADAMW, 1e-3f, 0, 1e-2f, 0.9f, 0.999f, 1e-8f, false, 0},
      {OPT_ADAMW, 5e-2f, 0, 0.1f, 0.85f, 0.995f, 1e-8f, false, 9},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_opt_case(&cases[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interp_forward),
      cmocka_unit_test(test_grad_unary),
      cmocka_unit_test(test_grad_unary_attr),
      cmocka_unit_test(test_grad_binary),
      cmocka_unit_test(test_grad_select),
      cmocka_unit_test(test_grad_reductions),
      cmocka_unit_test(test_grad_max_ties),
      cmocka_unit_test(test_grad_maximum_ties),
      cmocka_unit_test(test_grad_matmul),
      cmocka_unit_test(test_grad_shape_ops),
      cmocka_unit_test(test_grad_softmax),
      cmocka_unit_test(test_grad_conv2d),
      cmocka_unit_test(test_grad_conv2d_bwd),
      cmocka_unit_test(test_grad_pool),
      cmocka_unit_test(test_grad_mixed),
      cmocka_unit_test(test_grad_chain),
      cmocka_unit_test(test_grad_coverage),
      cmocka_unit_test(test_autodiff_errors),
      cmocka_unit_test(test_optimizer_sgd),
      cmocka_unit_test(test_optimizer_adam),
  };
  return cmocka_run_group_tests_name("autodiff", tests, NULL, NULL);
}
