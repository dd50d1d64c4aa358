/* test_ops_compiled.c — every op of ir/ops.def compiled end to end and
 * checked against the reference interpreter. Each case builds small graphs
 * with the ir builders (odd sizes, broadcasting, strides, padding, groups,
 * ...), forms loss = sum_k sum(y_k * R_k) over the values y_k under test,
 * runs pass_autodiff and pass_optimizer (plain SGD), lowers the training
 * graph and an inference graph of the same values with lower_graph (with and
 * without fusion), compiles with cg_build/cg_optimize/cg_jit and runs the
 * entries through dlrt_model_run. The compiled outputs, loss, gradients
 * (DLRT_ROLE_GRAD buffers) and updated params must match the interpreter's
 * evaluation of the same graph to ~1e-5 relative. A model with large kernels
 * must give bit-identical results on 1, 2 and 3 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/lower.h"
#include "passes/passes.h"
#include "runtime/dlrt_model.h"
#include "tools/driver.h"

static const SrcLoc L = {"ops.dl", 1, 1};
static bool covered[OP__COUNT]; /* ops that appeared in a compiled forward graph */
static const uint64_t MODEL_SEED = 11;
static const float LR = 0.125f;

/* ---------------- graph building ---------------- */
#define MAX_OUT 96
typedef struct {
  Arena *a;
  Graph *g;
  double **lv; /* leaf values by node id */
  int cap;
  uint64_t rng;
  int n_leaves; /* for unique leaf names */
  int outs[MAX_OUT];
  int n_outs;
} T;

static T *t_new(GraphMode mode) {
  T *t = calloc(1, sizeof *t);
  t->a = arena_new();
  t->g = ir_graph_new(t->a, "ops", mode);
  t->rng = 0x9e3779b97f4a7c15ull;
  return t;
}
static void t_free(T *t) {
  for (int i = 0; i < t->cap; i++) free(t->lv[i]);
  free(t->lv);
  arena_free(t->a);
  free(t);
}
static double rnd(T *t) {
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
static uint32_t all_axes(int r) { return (1u << r) - 1u; }

/* A leaf with uniform values in [lo, hi) rounded to f32 (the compiled code
 * sees exactly these); magnitudes below `gap` are pushed away from 0. */
static int leaf(T *t, OpKind op, const char *base, DType dt, Shape s, double lo, double hi, double gap) {
  const char *name = arena_printf(t->a, "%s%d", base, t->n_leaves++);
  int id = ir_leaf(t->g, op, name, dt, s, L);
  t_reserve(t, id + 1);
  int64_t n = shape_numel(&s);
  t->lv[id] = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    double v = lo + (hi - lo) * rnd(t);
    if (dt == DT_I32) {
      v = floor(v);
    } else {
      if (fabs(v) < gap) v = v < 0 ? -gap - fabs(v) : gap + fabs(v);
      v = (double)(float)v;
    }
    t->lv[id][i] = v;
  }
  return id;
}
static int param(T *t, Shape s) { return leaf(t, OP_PARAM, "p", DT_F32, s, -1, 1, 0.05); }
static int pos(T *t, Shape s) { return leaf(t, OP_PARAM, "q", DT_F32, s, 0.5, 2.0, 0); }
static int input(T *t, Shape s, double lo, double hi) { return leaf(t, OP_INPUT, "x", DT_F32, s, lo, hi, 0); }
static int label(T *t, Shape s, int classes) { return leaf(t, OP_LABEL, "y", DT_I32, s, 0, classes, 0); }
/* Registers y as a value under test: an output of the graph and, when f32,
 * a term sum(y * R) of the loss. */
static void out(T *t, int y) {
  assert_true(y >= 0);
  assert_true(t->n_outs < MAX_OUT);
  t->outs[t->n_outs++] = y;
}

static int un(T *t, OpKind op, int a) { return ir_un(t->g, op, a, L, NULL); }
static int bin(T *t, OpKind op, int a, int b) { return ir_bin(t->g, op, a, b, L, NULL); }
static int op_attr(T *t, OpKind op, int nin, const int *in, const NodeAttr *at, const Shape *os, DType dt) {
  return ir_op(t->g, op, nin, in, at, os, dt, L, NULL);
}
static int un_scalar(T *t, OpKind op, int a, float v) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.scalar.v = v;
  return op_attr(t, op, 1, &a, &at, NULL, DT_F32);
}
static int axis_op(T *t, OpKind op, int a, int axis) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.axis.axis = axis;
  return op_attr(t, op, 1, &a, &at, NULL, DT_F32);
}

typedef void (*BuildFn)(T *t);

/* ---------------- compile and run ---------------- */
typedef struct {
  Arena *a;
  Program *p;
  CgJit *jit;
  DlrtModelDesc desc;
} Compiled;

/* Lowers the graphs (NULL entries skipped) into one program and JITs it. */
static void compile(Compiled *c, Graph *const *graphs, bool fuse, int opt_level) {
  memset(c, 0, sizeof *c);
  c->a = arena_new();
  c->p = kir_program_new(c->a, "ops");
  Diag d;
  diag_init(&d, stderr);
  LowerOptions lo = {.fuse = fuse};
  for (int e = 0; e < ENTRY__COUNT; e++)
    if (graphs[e]) assert_true(lower_graph(graphs[e], c->p, (EntryKind)e, &lo, &d));
  drv_program_desc(c->a, c->p, &c->desc);
  c->desc.optimizer = "sgd";
  c->desc.set_threads = dlrt_set_threads;
  CgOptions co = {.cpu = NULL, .opt_level = opt_level};
  CgModule *m = cg_build(c->p, &co, &d);
  assert_non_null(m);
  assert_int_equal(cg_optimize(m, &d), 0);
  c->jit = cg_jit(m, &d);
  assert_non_null(c->jit);
  for (int e = 0; e < ENTRY__COUNT; e++) {
    if (!c->p->entries[e].present) continue;
    c->desc.entries[e] = (DlrtEntryFn)cg_jit_entry(c->jit, cg_entry_symbol(c->a, c->p, (EntryKind)e));
    assert_non_null(c->desc.entries[e]);
  }
  assert_int_equal(d.n_errors, 0);
  diag_free(&d);
}
static void compiled_free(Compiled *c) {
  cg_jit_free(c->jit);
  arena_free(c->a);
}

/* Copies the leaf values of g into the model's shared leaf buffers. */
static void feed_leaves(DlrtModel *m, const Graph *g, double *const *lv) {
  const DlrtModelDesc *desc = dlrt_model_desc(m);
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (n->op != OP_INPUT && n->op != OP_LABEL && n->op != OP_PARAM && n->op != OP_STATE) continue;
    int b = -1;
    for (int k = 0; k < desc->n_bufs; k++)
      if (desc->bufs[k].entry == -1 && desc->bufs[k].role <= DLRT_ROLE_OPTSTATE &&
          strcmp(desc->bufs[k].name, n->attr.leaf.name) == 0)
        b = k;
    if (b < 0 || !lv[i]) continue; /* a leaf no kernel reads; optimizer state keeps its zeros */
    int64_t numel = shape_numel(&n->shape);
    assert_int_equal(dlrt_model_numel(m, b), numel);
    void *data = dlrt_model_data(m, b);
    for (int64_t j = 0; j < numel; j++) {
      if (n->dtype == DT_F32) ((float *)data)[j] = (float)lv[i][j];
      else ((int32_t *)data)[j] = (int32_t)lv[i][j];
    }
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int n_checked; /* compared tensors, for the summary */

/* Compares a compiled buffer with the interpreter's value. */
static int compare(const char *what, const char *name, const void *got, DType dt, const double *want, int64_t n) {
  n_checked++;
  double scale = 0;
  for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs(want[j]));
  int bad = 0;
  for (int64_t j = 0; j < n; j++) {
    double g = dt == DT_F32 ? (double)((const float *)got)[j] : (double)((const int32_t *)got)[j];
    double tol = dt == DT_F32 ? 1e-5 * fabs(want[j]) + 2e-6 * fmax(scale, 1e-2) : 0;
    if (!(fabs(g - want[j]) <= tol)) {
      if (bad++ < 6)
        fprintf(stderr, "  %s %s[%lld]: compiled %.9g, interpreter %.9g\n", what, name, (long long)j, g, want[j]);
    }
  }
  return bad;
}

/* Builds the case, differentiates, interprets and compiles it (fused and
 * unfused), and compares every output, the loss, every gradient and every
 * updated param. */
/* opt_level: of the fused build (the unfused one runs at LLVM O0, as dlc -O0).
 * LLVM's O3 pipeline costs seconds per group, so most groups use O1 (the
 * same kernels, less LLVM work); the mixed network and the threads test run
 * at O3 as dlc -O2 does. */
static void check_case(const char *label_, BuildFn build, int opt_level) {
  for (int fuse = 1; fuse >= 0; fuse--) {
    T *t = t_new(MODE_TRAIN);
    build(t);
    Graph *g = t->g;
    int n_fwd = g->n_nodes;
    for (int i = 0; i < n_fwd; i++) covered[g->nodes[i]->op] = true;
    /* outputs and loss */
    int loss = -1;
    for (int k = 0; k < t->n_outs; k++) {
      int y = t->outs[k];
      ir_add_output(g, arena_printf(t->a, "y%d", k), y);
      const Node *yn = g->nodes[y];
      if (yn->dtype != DT_F32) continue;
      int r = input(t, yn->shape, -1, 1);
      int m = bin(t, OP_MUL, y, r);
      int s = yn->shape.rank ? ir_reduce(g, OP_SUM, m, all_axes(yn->shape.rank), false, L, NULL) : m;
      loss = loss < 0 ? s : bin(t, OP_ADD, loss, s);
    }
    assert_true(loss >= 0);
    g->loss = loss;
    g->loss_name = "loss";
    g->opt.kind = OPT_SGD;
    g->opt.lr = LR;
    g->opt.loc = L;
    Diag d;
    diag_init(&d, stderr);
    assert_true(ir_verify(g, &d));
    assert_true(pass_autodiff(g, &d));
    assert_true(pass_optimizer(g, &d));
    assert_true(ir_verify(g, &d));
    diag_free(&d);

    /* the inference graph of the same values (same leaves, same names) */
    T *ti = t_new(MODE_INFER);
    build(ti);
    for (int k = 0; k < ti->n_outs; k++) ir_add_output(ti->g, arena_printf(ti->a, "y%d", k), ti->outs[k]);

    Graph *graphs[ENTRY__COUNT] = {g, NULL, ti->g};
    Compiled c;
    double t0 = now();
    compile(&c, graphs, fuse, fuse ? opt_level : 0);
    if (getenv("OPS_TIMING")) fprintf(stderr, "  %s fuse=%d: %d nodes, compiled in %.2f s\n", label_, fuse, g->n_nodes, now() - t0);
    char err[512];
    DlrtModel *m = dlrt_model_new(&c.desc, MODEL_SEED, err, sizeof err);
    assert_non_null(m);
    feed_leaves(m, g, t->lv);
    uint64_t rseed = dlrt_stream_seed(MODEL_SEED, "@rng");
    InterpState st;
    t_reserve(t, g->n_nodes);
    assert_int_equal(interp_run(g, t->lv, rseed, 0, &st), 0);

    int bad = 0;
    /* inference first: the training step updates the params in place */
    assert_int_equal(dlrt_model_run(m, DLRT_ENTRY_INFER), 0);
    for (int k = 0; k < t->n_outs; k++) {
      const char *nm = g->outputs[k].name;
      const Node *yn = g->nodes[t->outs[k]];
      int b = dlrt_model_find(m, nm, DLRT_ROLE_OUTPUT, DLRT_ENTRY_INFER);
      assert_true(b >= 0);
      bad += compare("infer output", nm, dlrt_model_data(m, b), yn->dtype, st.val[t->outs[k]], shape_numel(&yn->shape));
    }
    assert_int_equal(dlrt_model_run(m, DLRT_ENTRY_TRAIN), 0);
    for (int k = 0; k < t->n_outs; k++) {
      const char *nm = g->outputs[k].name;
      const Node *yn = g->nodes[t->outs[k]];
      int b = dlrt_model_find(m, nm, DLRT_ROLE_OUTPUT, DLRT_ENTRY_TRAIN);
      assert_true(b >= 0);
      bad += compare("train output", nm, dlrt_model_data(m, b), yn->dtype, st.val[t->outs[k]], shape_numel(&yn->shape));
    }
    int lb = dlrt_model_find(m, "loss", DLRT_ROLE_LOSS, DLRT_ENTRY_TRAIN);
    assert_true(lb >= 0);
    bad += compare("loss", "loss", dlrt_model_data(m, lb), DT_F32, st.val[g->loss], 1);
    for (int k = 0; k < g->n_grads; k++) {
      const Node *pn = g->nodes[g->grads[k].param];
      int b = dlrt_model_find(m, pn->attr.leaf.name, DLRT_ROLE_GRAD, DLRT_ENTRY_TRAIN);
      assert_true(b >= 0);
      bad += compare("grad", pn->attr.leaf.name, dlrt_model_data(m, b), DT_F32, st.val[g->grads[k].grad],
                     shape_numel(&pn->shape));
    }
    for (int k = 0; k < g->n_updates; k++) {
      const Node *pn = g->nodes[g->updates[k].target];
      int b = dlrt_model_find(m, pn->attr.leaf.name, pn->op == OP_PARAM ? DLRT_ROLE_PARAM : DLRT_ROLE_STATE, -1);
      if (b < 0) continue;
      bad += compare("updated", pn->attr.leaf.name, dlrt_model_data(m, b), pn->dtype, st.val[g->updates[k].value],
                     shape_numel(&pn->shape));
    }
    if (bad) {
      ir_print(g, stderr);
      fail_msg("%s (fuse=%d): %d values differ from the interpreter", label_, fuse, bad);
    }
    interp_free(&st);
    dlrt_model_free(m);
    compiled_free(&c);
    t_free(ti);
    t_free(t);
  }
}

/* ---------------- cases ---------------- */
static void build_unary(T *t) {
  const OpKind ops[] = {OP_NEG, OP_EXP, OP_ABS, OP_RELU, OP_SIGMOID, OP_TANH};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    int x = leaf(t, OP_PARAM, "p", DT_F32, i % 2 ? SH(3, 17) : SH(5, 7, 3), -3, 3, 0.05);
    out(t, un(t, ops[i], x));
  }
  out(t, un(t, OP_LOG, pos(t, SH(4, 19))));
  out(t, un(t, OP_SQRT, pos(t, SH(33))));
  out(t, un(t, OP_TANH, param(t, S0))); /* scalar */
  out(t, un(t, OP_EXP, param(t, SH(1))));
}

static void build_unary_attr(T *t) {
  struct { OpKind op; float v; bool pos; } cases[] = {
      {OP_ELU, 1.0f, false}, {OP_ELU, 0.7f, false}, {OP_LEAKY_RELU, 0.01f, false}, {OP_LEAKY_RELU, 0.3f, false},
      {OP_POWS, 2.0f, false}, {OP_POWS, 3.0f, false}, {OP_POWS, 1.0f, false}, {OP_POWS, 0.0f, false},
      {OP_POWS, 0.5f, true}, {OP_POWS, -1.5f, true}, {OP_POWS, 2.5f, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int x = cases[i].pos ? pos(t, SH(2, 19)) : param(t, SH(3, 7));
    out(t, un_scalar(t, cases[i].op, x, cases[i].v));
  }
}

/* sign, step, cast, compares: not differentiable; a param multiplies them
 * so that their values also reach a gradient. */
static void build_nondiff_elementwise(T *t) {
  int x = input(t, SH(3, 17), -3, 3);
  out(t, bin(t, OP_MUL, un(t, OP_SIGN, x), param(t, SH(3, 17))));
  out(t, bin(t, OP_MUL, un(t, OP_STEP, x), param(t, SH(17))));
  Shape xs = SH(3, 17);
  int ci = op_attr(t, OP_CAST, 1, &x, NULL, &xs, DT_I32); /* truncation */
  out(t, ci);
  int cf = op_attr(t, OP_CAST, 1, &ci, NULL, &xs, DT_F32);
  out(t, bin(t, OP_MUL, cf, param(t, SH(3, 1))));
  /* compares of f32 with broadcasting, including equal values */
  int a = input(t, SH(4, 5), -1, 1);
  int b = input(t, SH(5), -1, 1);
  t->lv[a][0] = t->lv[b][0]; /* a[0][0] == b[0], a[1][2] == b[2], a[2][3] == b[3] */
  t->lv[a][7] = t->lv[b][2];
  t->lv[a][13] = t->lv[b][3];
  const OpKind cmp[] = {OP_GT, OP_GE, OP_EQ};
  for (int k = 0; k < 3; k++) {
    out(t, bin(t, OP_MUL, bin(t, cmp[k], a, b), param(t, SH(4, 5))));
    out(t, bin(t, cmp[k], b, a));
    out(t, bin(t, cmp[k], a, ir_scalar(t->g, 0.25f, L)));
  }
  /* compares of i32 */
  int ya = label(t, SH(3, 6), 4);
  int yb = label(t, SH(6), 4);
  for (int k = 0; k < 3; k++) {
    out(t, bin(t, OP_MUL, bin(t, cmp[k], ya, yb), param(t, SH(3, 6))));
    out(t, bin(t, cmp[k], yb, ir_const(t->g, 2, DT_I32, S0, L)));
  }
  /* i32 arithmetic that stays i32 */
  out(t, bin(t, OP_SUB, bin(t, OP_MUL, ya, yb), bin(t, OP_ADD, ya, ir_const(t->g, 3, DT_I32, S0, L))));
  out(t, un(t, OP_NEG, bin(t, OP_MAXIMUM, ya, yb)));
}

static void build_binary(T *t) {
  const OpKind ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAXIMUM, OP_MINIMUM};
  Shape pairs[][2] = {
      {SH(3, 17), SH(17)}, {SH(4, 1, 5), SH(3, 1)}, {S0, SH(2, 3)}, {SH(1, 19), SH(3, 1)},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
      bool ps = ops[i] == OP_DIV || ops[i] == OP_POW;
      int a = ps ? pos(t, pairs[k][0]) : param(t, pairs[k][0]);
      int b = ps ? pos(t, pairs[k][1]) : param(t, pairs[k][1]);
      if (ops[i] == OP_POW) {
        int64_t n = shape_numel(&pairs[k][1]);
        for (int64_t j = 0; j < n; j++) t->lv[b][j] = (double)(float)(t->lv[b][j] - 1.2);
      }
      out(t, bin(t, ops[i], a, b));
    }
  int a = param(t, SH(3, 4)); /* the same operand on both sides */
  out(t, bin(t, OP_MUL, a, a));
  out(t, bin(t, OP_SUB, a, ir_scalar(t->g, 1.5f, L)));
}

static void build_select(T *t) {
  int c = input(t, SH(3, 5), 0, 1);
  for (int j = 0; j < 15; j++) t->lv[c][j] = t->lv[c][j] < 0.5 ? 0.0 : 1.0;
  int in[3] = {c, param(t, SH(5)), param(t, SH(3, 1))};
  out(t, op_attr(t, OP_SELECT, 3, in, NULL, NULL, DT_F32));
  int x = param(t, SH(2, 19));
  int in2[3] = {bin(t, OP_GT, x, ir_scalar(t->g, 0, L)), x, un(t, OP_NEG, x)};
  out(t, op_attr(t, OP_SELECT, 3, in2, NULL, NULL, DT_F32));
  int in3[3] = {input(t, SH(4, 1), -1, 1), param(t, S0), param(t, SH(1, 3))};
  out(t, op_attr(t, OP_SELECT, 3, in3, NULL, NULL, DT_F32));
}

static void build_reductions(T *t) {
  const OpKind ops[] = {OP_SUM, OP_MEAN, OP_MAX};
  const uint32_t axes[] = {1u, 2u, 4u, 5u, 7u};
  for (size_t i = 0; i < 3; i++)
    for (size_t k = 0; k < sizeof axes / sizeof axes[0]; k++)
      out(t, ir_reduce(t->g, ops[i], param(t, SH(3, 4, 5)), axes[k], (k + i) % 2, L, NULL));
  for (size_t i = 0; i < 3; i++) {
    out(t, ir_reduce(t->g, ops[i], param(t, SH(5, 33)), 2u, false, L, NULL));
    out(t, ir_reduce(t->g, ops[i], param(t, SH(37, 3)), 1u, true, L, NULL));
    out(t, ir_reduce(t->g, ops[i], param(t, SH(2, 3, 2, 5)), 10u, false, L, NULL));
  }
  /* argmax along every axis (i32), and cast back into a gradient path */
  for (int ax = 0; ax < 3; ax++) {
    NodeAttr am;
    memset(&am, 0, sizeof am);
    am.reduce.axes = 1u << ax;
    int x = input(t, SH(3, 4, 17), -1, 1);
    int a = op_attr(t, OP_ARGMAX, 1, &x, &am, NULL, DT_F32);
    out(t, a);
    Shape s = t->g->nodes[a]->shape;
    int af = op_attr(t, OP_CAST, 1, &a, NULL, &s, DT_F32);
    out(t, bin(t, OP_MUL, af, param(t, s)));
  }
}

/* Sums of many positive terms, where one running float sum loses digits
 * (the backend sums in blocks of partials): a whole plane of 2M terms
 * (blocks of blocks), long columns (the reordered nest's row of partials,
 * one level or several), long rows; the scale's gradient sums them again. */
static void build_long_sums(T *t) {
  int s = param(t, SH(1));
  int a = input(t, SH(1024, 2048), 0.3, 1.3);
  out(t, ir_reduce(t->g, OP_SUM, bin(t, OP_MUL, a, s), 3u, false, L, NULL));
  int c = input(t, SH(262144, 4), 0.3, 1.3);
  out(t, ir_reduce(t->g, OP_SUM, bin(t, OP_MUL, c, s), 1u, false, L, NULL));
  int m = input(t, SH(4096, 3, 64), 0.3, 1.3);
  out(t, ir_reduce(t->g, OP_MEAN, bin(t, OP_MUL, m, s), 5u, true, L, NULL));
  int r = input(t, SH(3, 300000), 0.3, 1.3);
  out(t, ir_reduce(t->g, OP_MEAN, bin(t, OP_MUL, r, r), 2u, false, L, NULL));
}

static void build_matmul(T *t) {
  Shape cases[][2] = {
      {SH(3, 4), SH(4, 5)},          {SH(2, 3, 4), SH(4, 5)},    {SH(3, 4), SH(2, 4, 5)},
      {SH(2, 1, 3, 4), SH(5, 4, 2)}, {SH(1, 3, 4), SH(2, 4, 2)}, {SH(1, 1), SH(1, 3)},
      {SH(17, 33), SH(33, 19)},      {SH(5, 1), SH(1, 7)},       {SH(3, 2, 9, 13), SH(1, 13, 3)},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    out(t, bin(t, OP_MATMUL, param(t, cases[k][0]), param(t, cases[k][1])));
  /* with a bias and an activation (an epilogue for the fuser) */
  int x = input(t, SH(6, 11), -1, 1);
  out(t, un(t, OP_RELU, bin(t, OP_ADD, bin(t, OP_MATMUL, x, param(t, SH(11, 9))), param(t, SH(9)))));
  /* a transposed operand */
  NodeAttr pr;
  memset(&pr, 0, sizeof pr);
  pr.perm.perm[0] = 1, pr.perm.perm[1] = 0;
  int w = param(t, SH(7, 11));
  out(t, bin(t, OP_MATMUL, x, op_attr(t, OP_TRANSPOSE, 1, &w, &pr, NULL, DT_F32)));
}

static void build_shape_ops(T *t) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.perm.perm[0] = 2, at.perm.perm[1] = 0, at.perm.perm[2] = 1;
  out(t, op_attr(t, OP_TRANSPOSE, 1, (int[]){param(t, SH(2, 3, 5))}, &at, NULL, DT_F32));
  memset(&at, 0, sizeof at);
  at.perm.perm[0] = 0, at.perm.perm[1] = 3, at.perm.perm[2] = 1, at.perm.perm[3] = 2;
  int x4 = param(t, SH(2, 3, 4, 5));
  out(t, un(t, OP_TANH, op_attr(t, OP_TRANSPOSE, 1, &x4, &at, NULL, DT_F32)));
  out(t, ir_reshape(t->g, param(t, SH(3, 4)), SH(2, 1, 6), L, NULL));
  out(t, un(t, OP_EXP, ir_reshape(t->g, un(t, OP_TANH, param(t, SH(5, 6))), SH(30), L, NULL)));
  int x = param(t, SH(3, 1));
  int bx = ir_broadcast(t->g, x, SH(2, 3, 4), L, NULL);
  out(t, bin(t, OP_MUL, bx, bx));
  out(t, ir_broadcast(t->g, param(t, S0), SH(3, 2), L, NULL));
  /* slices with steps and offsets */
  memset(&at, 0, sizeof at);
  at.slice.start[0] = 1, at.slice.step[0] = 2;
  at.slice.start[1] = 0, at.slice.step[1] = 3;
  at.slice.start[2] = 2, at.slice.step[2] = 1;
  Shape os = SH(3, 2, 1);
  int s = op_attr(t, OP_SLICE, 1, (int[]){param(t, SH(7, 6, 3))}, &at, &os, DT_F32);
  out(t, bin(t, OP_MUL, s, s));
  memset(&at, 0, sizeof at);
  at.slice.start[0] = 0, at.slice.step[0] = 1;
  at.slice.start[1] = 16, at.slice.step[1] = 1;
  os = SH(2, 17);
  out(t, op_attr(t, OP_SLICE, 1, (int[]){param(t, SH(2, 33))}, &at, &os, DT_F32));
  memset(&at, 0, sizeof at);
  at.slice.start[0] = 4, at.slice.step[0] = 5;
  os = SH(3);
  out(t, op_attr(t, OP_SLICE, 1, (int[]){param(t, SH(19))}, &at, &os, DT_F32));
  /* unslice */
  memset(&at, 0, sizeof at);
  at.slice.start[0] = 1, at.slice.step[0] = 2;
  at.slice.start[1] = 1, at.slice.step[1] = 2;
  os = SH(5, 7);
  out(t, un(t, OP_EXP, op_attr(t, OP_UNSLICE, 1, (int[]){param(t, SH(2, 3))}, &at, &os, DT_F32)));
  /* concat of three along every axis of rank 3 */
  for (int ax = 0; ax < 3; ax++) {
    int64_t da[3] = {2, 3, 4}, db[3] = {2, 3, 4}, dc[3] = {2, 3, 4};
    da[ax] = 2, db[ax] = 1, dc[ax] = 3;
    memset(&at, 0, sizeof at);
    at.axis.axis = ax;
    int in[3] = {param(t, shape_make(3, da)), param(t, shape_make(3, db)), param(t, shape_make(3, dc))};
    out(t, un(t, OP_TANH, op_attr(t, OP_CONCAT, 3, in, &at, NULL, DT_F32)));
  }
  /* a concat of the same value twice, and of a single operand */
  memset(&at, 0, sizeof at);
  at.axis.axis = 1;
  int a = param(t, SH(3, 2));
  out(t, op_attr(t, OP_CONCAT, 2, (int[]){a, a}, &at, NULL, DT_F32));
  out(t, op_attr(t, OP_CONCAT, 1, (int[]){param(t, SH(2, 5))}, &at, NULL, DT_F32));
}

static void build_softmax(T *t) {
  for (int lsm = 0; lsm < 2; lsm++)
    for (int ax = 0; ax < 3; ax++)
      out(t, axis_op(t, lsm ? OP_LOG_SOFTMAX : OP_SOFTMAX, param(t, SH(3, 4, 5)), ax));
  out(t, axis_op(t, OP_SOFTMAX, leaf(t, OP_PARAM, "p", DT_F32, SH(5, 37), -4, 4, 0), 1));
  out(t, axis_op(t, OP_LOG_SOFTMAX, leaf(t, OP_PARAM, "p", DT_F32, SH(37, 5), -4, 4, 0), 0));
  out(t, axis_op(t, OP_LOG_SOFTMAX, param(t, SH(1)), 0));
}

/* onehot and a cross-entropy built from log_softmax, onehot and mean */
static void build_onehot(T *t) {
  Shape s = SH(5, 7);
  int y = label(t, SH(5), 7);
  int oh = op_attr(t, OP_ONEHOT, 1, &y, NULL, &s, DT_F32);
  out(t, bin(t, OP_MUL, oh, param(t, SH(7))));
  Shape s3 = SH(2, 3, 4);
  int y2 = label(t, SH(2, 3), 4);
  out(t, op_attr(t, OP_ONEHOT, 1, &y2, NULL, &s3, DT_F32));
  int logits = param(t, SH(5, 7));
  int lsm = axis_op(t, OP_LOG_SOFTMAX, logits, 1);
  int nll = un(t, OP_NEG, ir_reduce(t->g, OP_MEAN, bin(t, OP_MUL, lsm, oh), 1u, false, L, NULL));
  out(t, ir_reduce(t->g, OP_SUM, nll, 1u, false, L, NULL));
}

typedef struct {
  int64_t n, c, h, w, o, kh, kw;
  int stride[2], pad[2], dil[2], groups;
} ConvCase;

static const ConvCase conv_cases[] = {
    {2, 3, 7, 6, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},  /* plain */
    {2, 3, 7, 6, 4, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1},  /* stride 2, pad 1 */
    {1, 2, 8, 7, 3, 3, 2, {1, 2}, {1, 2}, {2, 1}, 1},  /* asymmetric stride/pad/dilation */
    {2, 4, 6, 6, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},  /* groups */
    {1, 3, 5, 5, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3},  /* depthwise */
    {1, 3, 5, 5, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 3},  /* depthwise, multiplier 2, strided */
    {2, 3, 4, 5, 5, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1},  /* 1x1 */
    {1, 4, 9, 9, 8, 2, 2, {2, 1}, {1, 0}, {2, 1}, 2},  /* grouped, strided, dilated */
    {1, 2, 6, 6, 2, 3, 3, {3, 3}, {0, 0}, {1, 1}, 1},  /* stride leaves a remainder */
    {3, 17, 5, 4, 5, 2, 3, {1, 1}, {1, 1}, {1, 1}, 1}, /* odd channel count */
};

/* Output rows of whole vectors: products over [N, O, Ho, Wo] reading the
 * padded image's rows in place (16, 32 and 64 wide, dilated; unpadded). A
 * group of their own: their many outputs would make the loss of the others'
 * group a long sum with cancellation. */
static const ConvCase conv_row_cases[] = {
    {2, 3, 6, 16, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
    {1, 2, 3, 32, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
    {1, 2, 5, 16, 3, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1},
    {1, 2, 4, 18, 8, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},
    {1, 2, 2, 64, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1}, /* (64 wide: a row of whole panels) */
};

static int conv(T *t, OpKind op, int a, int b, const ConvCase *cc, const Shape *os) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  for (int i = 0; i < 2; i++) at.conv.stride[i] = cc->stride[i], at.conv.pad[i] = cc->pad[i], at.conv.dil[i] = cc->dil[i];
  at.conv.groups = cc->groups;
  int in[2] = {a, b};
  return op_attr(t, op, 2, in, &at, os, DT_F32);
}

static void build_conv(T *t) {
  for (size_t k = 0; k < sizeof conv_cases / sizeof conv_cases[0]; k++) {
    const ConvCase *cc = &conv_cases[k];
    int x = param(t, SH(cc->n, cc->c, cc->h, cc->w));
    int w = param(t, SH(cc->o, cc->c / cc->groups, cc->kh, cc->kw));
    int y = conv(t, OP_CONV2D, x, w, cc, NULL);
    if (k % 3 == 0) y = un(t, OP_RELU, bin(t, OP_ADD, y, param(t, SH(cc->o, 1, 1)))); /* bias, as the frontend builds it */
    out(t, y);
  }
}

/* The row cases as a network would use them: conv + bias + relu, with x a
 * param (so its data gradient runs too), and the backward ops as forward ops. */
static void build_conv_rows(T *t) {
  for (size_t k = 0; k < sizeof conv_row_cases / sizeof conv_row_cases[0]; k++) {
    const ConvCase *cc = &conv_row_cases[k];
    Shape xs = SH(cc->n, cc->c, cc->h, cc->w), ws = SH(cc->o, cc->c, cc->kh, cc->kw);
    int y = conv(t, OP_CONV2D, param(t, xs), param(t, ws), cc, NULL);
    out(t, un(t, OP_RELU, bin(t, OP_ADD, y, param(t, SH(cc->o, 1, 1)))));
    if (k % 2) continue;
    const Node *yn = t->g->nodes[y];
    out(t, conv(t, OP_CONV2D_BWD_DATA, param(t, yn->shape), param(t, ws), cc, &xs));
    out(t, conv(t, OP_CONV2D_BWD_FILTER, param(t, xs), param(t, yn->shape), cc, &ws));
  }
}

/* The backward ops used directly as forward ops. */
static void build_conv_bwd(T *t) {
  for (size_t k = 0; k < sizeof conv_cases / sizeof conv_cases[0]; k += 2) {
    const ConvCase *cc = &conv_cases[k];
    int64_t oh = (cc->h + 2 * cc->pad[0] - cc->dil[0] * (cc->kh - 1) - 1) / cc->stride[0] + 1;
    int64_t ow = (cc->w + 2 * cc->pad[1] - cc->dil[1] * (cc->kw - 1) - 1) / cc->stride[1] + 1;
    Shape xs = SH(cc->n, cc->c, cc->h, cc->w), ws = SH(cc->o, cc->c / cc->groups, cc->kh, cc->kw);
    out(t, conv(t, OP_CONV2D_BWD_DATA, param(t, SH(cc->n, cc->o, oh, ow)), param(t, ws), cc, &xs));
    out(t, conv(t, OP_CONV2D_BWD_FILTER, param(t, xs), param(t, SH(cc->n, cc->o, oh, ow)), cc, &ws));
  }
}

static int pool(T *t, OpKind op, int x, const int *c) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.pool.k[0] = c[0], at.pool.k[1] = c[1], at.pool.stride[0] = c[2], at.pool.stride[1] = c[3];
  at.pool.pad[0] = c[4], at.pool.pad[1] = c[5];
  return op_attr(t, op, 1, &x, &at, NULL, DT_F32);
}

static const int pool_cases[][6] = {
    {2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {2, 3, 1, 2, 1, 1}, {3, 2, 3, 1, 0, 1},
};

static void build_pool(T *t) {
  for (size_t k = 0; k < sizeof pool_cases / sizeof pool_cases[0]; k++) {
    const int *c = pool_cases[k];
    out(t, pool(t, OP_MAXPOOL2D, param(t, SH(2, 3, 7, 6)), c));
    out(t, pool(t, OP_AVGPOOL2D, param(t, SH(2, 3, 7, 6)), c));
    int x = input(t, SH(1, 2, 7, 9), -1, 1);
    int am = pool(t, OP_MAXPOOL2D_ARGMAX, x, c);
    out(t, am);
    /* the backward ops directly: dy from a param, the argmax of an input */
    NodeAttr pa = t->g->nodes[am]->attr;
    Shape xs = t->g->nodes[x]->shape, ys = t->g->nodes[am]->shape;
    int dy = param(t, ys);
    int in[2] = {dy, am};
    out(t, op_attr(t, OP_MAXPOOL2D_BWD, 2, in, &pa, &xs, DT_F32));
    out(t, op_attr(t, OP_AVGPOOL2D_BWD, 1, &dy, &pa, &xs, DT_F32));
  }
  /* a global average pool as the frontend builds it: mean over H, W */
  out(t, ir_reduce(t->g, OP_MEAN, param(t, SH(2, 5, 3, 7)), 12u, false, L, NULL));
}

static void build_dropout(T *t) {
  const float ps[] = {0.3f, 0.5f, 0.0f, 0.9f};
  for (int k = 0; k < 4; k++) {
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.dropout.p = ps[k];
    at.dropout.salt = 17 + (uint64_t)k;
    Shape ms = k % 2 ? SH(4, 37) : SH(3, 2, 5);
    int mask = op_attr(t, OP_DROPOUT_MASK, 0, NULL, &at, &ms, DT_F32);
    out(t, mask);
    out(t, bin(t, OP_MUL, param(t, ms), mask));
  }
}

/* A small network mixing everything, with fan-out (gradient accumulation). */
static void build_network(T *t) {
  int x = input(t, SH(3, 2, 6, 6), -1, 1);
  ConvCase cc = {3, 2, 6, 6, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  int w = param(t, SH(4, 2, 3, 3));
  int h = un(t, OP_RELU, bin(t, OP_ADD, conv(t, OP_CONV2D, x, w, &cc, NULL), param(t, SH(4, 1, 1))));
  const int pc[6] = {2, 2, 2, 2, 0, 0};
  h = pool(t, OP_MAXPOOL2D, h, pc);
  int f = ir_reshape(t->g, h, SH(3, 36), L, NULL);
  int w2 = param(t, SH(36, 5));
  int z = bin(t, OP_ADD, bin(t, OP_MATMUL, f, w2), param(t, SH(5)));
  int hz = un(t, OP_TANH, z);
  int z2 = bin(t, OP_ADD, bin(t, OP_MUL, hz, hz), un(t, OP_SIGMOID, z));
  out(t, z2);
  int y = label(t, SH(3), 5);
  Shape os = SH(3, 5);
  int oh = op_attr(t, OP_ONEHOT, 1, &y, NULL, &os, DT_F32);
  int lsm = axis_op(t, OP_LOG_SOFTMAX, z2, 1);
  out(t, un(t, OP_NEG, ir_reduce(t->g, OP_MEAN, ir_reduce(t->g, OP_SUM, bin(t, OP_MUL, lsm, oh), 2u, false, L, NULL),
                                  1u, false, L, NULL)));
}

#define CASE(fn) CASE_O(fn, 1)
#define CASE_O(fn, opt) \
  static void test_##fn(void **state) { (void)state; check_case(#fn, build_##fn, opt); }
CASE(unary)
CASE(unary_attr)
CASE(nondiff_elementwise)
CASE(binary)
CASE(select)
CASE(reductions)
CASE(long_sums)
CASE(matmul)
CASE(shape_ops)
CASE(softmax)
CASE(onehot)
CASE(conv)
CASE(conv_bwd)
CASE(conv_rows)
CASE(pool)
CASE(dropout)
CASE_O(network, 3)

/* Every op of ops.def appeared in some compiled graph. */
static void test_coverage(void **state) {
  (void)state;
  int missing = 0;
  for (int op = 0; op < OP__COUNT; op++) {
    if (op == OP_STATE) continue; /* state leaves: batch-norm, tested through the conformance models */
    if (!covered[op]) {
      fprintf(stderr, "  no compiled test covers %s\n", ir_op_names[op]);
      missing++;
    }
  }
  assert_int_equal(missing, 0);
}

/* ---------------- threads: bit-identical results ---------------- */
static void build_large(T *t) {
  int x = input(t, SH(96, 300), -1, 1);
  int w1 = leaf(t, OP_PARAM, "p", DT_F32, SH(300, 257), -0.1, 0.1, 0);
  int h = un(t, OP_RELU, bin(t, OP_ADD, bin(t, OP_MATMUL, x, w1), param(t, SH(257))));
  out(t, axis_op(t, OP_SOFTMAX, h, 1));
  out(t, ir_reduce(t->g, OP_MAX, h, 1u, false, L, NULL));
  out(t, ir_reduce(t->g, OP_MEAN, h, 2u, true, L, NULL));
  int im = input(t, SH(8, 16, 20, 20), -1, 1);
  ConvCase cc = {8, 16, 20, 20, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  int wc = leaf(t, OP_PARAM, "p", DT_F32, SH(24, 16, 3, 3), -0.2, 0.2, 0);
  int c = un(t, OP_TANH, conv(t, OP_CONV2D, im, wc, &cc, NULL));
  const int pc[6] = {3, 3, 2, 2, 1, 1};
  out(t, pool(t, OP_MAXPOOL2D, c, pc));
  out(t, pool(t, OP_AVGPOOL2D, c, pc));
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.dropout.p = 0.25f;
  at.dropout.salt = 3;
  Shape ms = SH(96, 257);
  out(t, bin(t, OP_MUL, h, op_attr(t, OP_DROPOUT_MASK, 0, NULL, &at, &ms, DT_F32)));
}

static void test_threads_bit_identical(void **state) {
  (void)state;
  T *t = t_new(MODE_TRAIN);
  build_large(t);
  Graph *g = t->g;
  int loss = -1;
  for (int k = 0; k < t->n_outs; k++) {
    int y = t->outs[k];
    ir_add_output(g, arena_printf(t->a, "y%d", k), y);
    const Node *yn = g->nodes[y];
    int r = input(t, yn->shape, -1, 1);
    int s = ir_reduce(g, OP_SUM, bin(t, OP_MUL, y, r), all_axes(yn->shape.rank), false, L, NULL);
    loss = loss < 0 ? s : bin(t, OP_ADD, loss, s);
  }
  g->loss = loss;
  g->loss_name = "loss";
  g->opt.kind = OPT_SGD;
  g->opt.lr = 0.01f;
  g->opt.momentum = 0.9f;
  Diag d;
  diag_init(&d, stderr);
  assert_true(pass_autodiff(g, &d));
  assert_true(pass_optimizer(g, &d));
  diag_free(&d);
  t_reserve(t, g->n_nodes);
  for (int i = 0; i < g->n_nodes; i++) /* optimizer state starts at zero */
    if (g->nodes[i]->op == OP_STATE && !t->lv[i]) t->lv[i] = calloc((size_t)shape_numel(&g->nodes[i]->shape), sizeof(double));
  Graph *graphs[ENTRY__COUNT] = {g, NULL, NULL};
  Compiled c;
  compile(&c, graphs, true, 3);
  int saved = dlrt_get_threads();
  void **ref = NULL;
  int nref = c.desc.n_bufs;
  for (int th = 1; th <= 3; th++) {
    dlrt_set_threads(th);
    char err[256];
    DlrtModel *m = dlrt_model_new(&c.desc, MODEL_SEED, err, sizeof err);
    assert_non_null(m);
    feed_leaves(m, g, t->lv);
    for (int step = 0; step < 2; step++) assert_int_equal(dlrt_model_run(m, DLRT_ENTRY_TRAIN), 0);
    if (th == 1) ref = calloc((size_t)nref, sizeof *ref);
    int diffs = 0;
    for (int b = 0; b < nref; b++) {
      const DlrtBufDesc *bd = &c.desc.bufs[b];
      if (bd->role == DLRT_ROLE_TEMP || bd->role == DLRT_ROLE_INPUT || bd->role == DLRT_ROLE_LABEL) continue;
      size_t bytes = (size_t)dlrt_model_numel(m, b) * 4;
      if (th == 1) {
        ref[b] = malloc(bytes);
        memcpy(ref[b], dlrt_model_data(m, b), bytes);
      } else if (memcmp(ref[b], dlrt_model_data(m, b), bytes) != 0) {
        fprintf(stderr, "  %d threads: buffer %s (role %d) differs from 1 thread\n", th, bd->name, bd->role);
        diffs++;
      }
    }
    assert_int_equal(diffs, 0);
    dlrt_model_free(m);
  }
  /* and the single-step result is right: interpreter vs a fresh model */
  {
    dlrt_set_threads(3);
    char err[256];
    DlrtModel *m = dlrt_model_new(&c.desc, MODEL_SEED, err, sizeof err);
    feed_leaves(m, g, t->lv);
    assert_int_equal(dlrt_model_run(m, DLRT_ENTRY_TRAIN), 0);
    InterpState st;
    t_reserve(t, g->n_nodes);
    assert_int_equal(interp_run(g, t->lv, dlrt_stream_seed(MODEL_SEED, "@rng"), 0, &st), 0);
    int bad = 0;
    for (int k = 0; k < g->n_outputs; k++) {
      const Node *yn = g->nodes[g->outputs[k].node];
      int b = dlrt_model_find(m, g->outputs[k].name, DLRT_ROLE_OUTPUT, DLRT_ENTRY_TRAIN);
      bad += compare("output", g->outputs[k].name, dlrt_model_data(m, b), DT_F32, st.val[yn->id], shape_numel(&yn->shape));
    }
    for (int k = 0; k < g->n_grads; k++) {
      const Node *pn = g->nodes[g->grads[k].param];
      int b = dlrt_model_find(m, pn->attr.leaf.name, DLRT_ROLE_GRAD, DLRT_ENTRY_TRAIN);
      bad += compare("grad", pn->attr.leaf.name, dlrt_model_data(m, b), DT_F32, st.val[g->grads[k].grad],
                     shape_numel(&pn->shape));
    }
    assert_int_equal(bad, 0);
    interp_free(&st);
    dlrt_model_free(m);
  }
  dlrt_set_threads(saved);
  for (int b = 0; b < nref; b++) free(ref[b]);
  free(ref);
  compiled_free(&c);
  t_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary),
      cmocka_unit_test(test_unary_attr),
      cmocka_unit_test(test_nondiff_elementwise),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_select),
      cmocka_unit_test(test_reductions),
      cmocka_unit_test(test_long_sums),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_shape_ops),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_onehot),
      cmocka_unit_test(test_conv),
      cmocka_unit_test(test_conv_bwd),
      cmocka_unit_test(test_conv_rows),
      cmocka_unit_test(test_pool),
      cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_network),
      cmocka_unit_test(test_coverage),
      cmocka_unit_test(test_threads_bit_identical),
  };
  int rc = cmocka_run_group_tests_name("ops_compiled", tests, NULL, NULL);
  fprintf(stderr, "ops_compiled: %d tensors compared\n", n_checked);
  return rc;
}
