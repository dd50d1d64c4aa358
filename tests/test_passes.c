/* test_passes.c — the graph passes (simplify, cse, dce), the rewrite helper
 * and the pipeline. Each test builds a graph by hand (or compiles a model),
 * evaluates every role (outputs, metrics, loss, grads, updates) with the
 * reference interpreter, runs a pass, checks the graph with ir_verify and
 * checks that every role still has the same value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "passes/pipeline.h"
#include "passes/rewrite.h"

static const SrcLoc L = {"t.dl", 1, 1};
#define SH(...) shape_make((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__})

/* ---- values of a graph's roles ---- */
typedef struct {
  int n;
  char **name;
  double **val;
  int64_t *numel;
} RoleVals;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

/* Leaf data derived from the leaf's name, so it survives renumbering. */
static double **leaf_values(const Graph *g) {
  double **lv = calloc((size_t)g->n_nodes + 1, sizeof *lv);
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (!rw_is_named_leaf(n->op)) continue;
    int64_t k = shape_numel(&n->shape);
    lv[i] = malloc(sizeof(double) * (size_t)(k + 1));
    uint64_t s = hash_str(n->attr.leaf.name);
    for (int64_t j = 0; j < k; j++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(s >> 11) * (1.0 / 9007199254740992.0);
      if (n->dtype == DT_I32) lv[i][j] = n->op == OP_STATE ? 0 : (double)(int)(u * 2); /* labels in [0,2) */
      else lv[i][j] = strstr(n->attr.leaf.name, "var") ? 0.5 + u : u * 2 - 1;
    }
  }
  return lv;
}

static void add_role(RoleVals *r, const InterpState *st, const Graph *g, const char *kind, const char *name, int node) {
  r->name = realloc(r->name, sizeof(char *) * (size_t)(r->n + 1));
  r->val = realloc(r->val, sizeof(double *) * (size_t)(r->n + 1));
  r->numel = realloc(r->numel, sizeof(int64_t) * (size_t)(r->n + 1));
  char buf[256];
  snprintf(buf, sizeof buf, "%s %s", kind, name);
  r->name[r->n] = strdup(buf);
  int64_t k = shape_numel(&g->nodes[node]->shape);
  r->numel[r->n] = k;
  r->val[r->n] = malloc(sizeof(double) * (size_t)(k + 1));
  memcpy(r->val[r->n], st->val[node], sizeof(double) * (size_t)k);
  r->n++;
}

static RoleVals eval_roles(const Graph *g) {
  RoleVals r = {0};
  double **lv = leaf_values(g);
  InterpState st;
  assert_int_equal(interp_run(g, lv, 7, 3, &st), 0);
  for (int i = 0; i < g->n_outputs; i++) add_role(&r, &st, g, "output", g->outputs[i].name, g->outputs[i].node);
  for (int i = 0; i < g->n_metrics; i++) add_role(&r, &st, g, "metric", g->metrics[i].name, g->metrics[i].node);
  if (g->loss >= 0) add_role(&r, &st, g, "loss", "", g->loss);
  for (int i = 0; i < g->n_grads; i++)
    add_role(&r, &st, g, "grad", g->nodes[g->grads[i].param]->attr.leaf.name, g->grads[i].grad);
  for (int i = 0; i < g->n_updates; i++)
    add_role(&r, &st, g, "update", g->nodes[g->updates[i].target]->attr.leaf.name, g->updates[i].value);
  interp_free(&st);
  for (int i = 0; i < g->n_nodes; i++) free(lv[i]);
  free(lv);
  return r;
}

static void free_roles(RoleVals *r) {
  for (int i = 0; i < r->n; i++) free(r->name[i]), free(r->val[i]);
  free(r->name), free(r->val), free(r->numel);
}

/* Same roles, same values within 1e-6 relative (constant folding rounds to f32). */
static void assert_same_roles(const RoleVals *a, const RoleVals *b, const char *what) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    assert_string_equal(a->name[i], b->name[i]);
    assert_int_equal(a->numel[i], b->numel[i]);
    for (int64_t j = 0; j < a->numel[i]; j++) {
      double x = a->val[i][j], y = b->val[i][j];
      if (isnan(x) && isnan(y)) continue;
      if (!(fabs(x - y) <= 1e-6 * (1 + fabs(x)))) {
        fprintf(stderr, "%s: %s[%lld]: %.17g before, %.17g after\n", what, a->name[i], (long long)j, x, y);
        fail();
      }
    }
  }
}

static void assert_valid(const Graph *g) {
  Diag d;
  diag_init(&d, stderr);
  bool ok = ir_verify(g, &d);
  if (!ok) ir_print(g, stderr);
  diag_free(&d);
  assert_true(ok);
}

/* Runs `pass` and checks validity and unchanged role values; returns what the pass returned. */
static bool run_checked(Graph *g, bool (*pass)(Graph *, Diag *)) {
  assert_valid(g);
  RoleVals before = eval_roles(g);
  Diag d;
  diag_init(&d, stderr);
  bool changed = pass(g, &d);
  assert_int_equal(d.n_errors, 0);
  diag_free(&d);
  assert_valid(g);
  RoleVals after = eval_roles(g);
  assert_same_roles(&before, &after, g->name);
  free_roles(&before);
  free_roles(&after);
  return changed;
}

static int count_op(const Graph *g, OpKind op) {
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++) k += g->nodes[i]->op == op;
  return k;
}

/* ---- fixtures ---- */
typedef struct {
  Arena *a;
  Graph *g;
} Fx;
static int setup(void **state) {
  Fx *f = calloc(1, sizeof *f);
  f->a = arena_new();
  f->g = ir_graph_new(f->a, "t", MODE_INFER);
  *state = f;
  return 0;
}
static int teardown(void **state) {
  Fx *f = *state;
  arena_free(f->a);
  free(f);
  return 0;
}
static int in_(Graph *g, const char *name, Shape s) { return ir_leaf(g, OP_INPUT, name, DT_F32, s, L); }
static int bin(Graph *g, OpKind op, int a, int b) { return ir_bin(g, op, a, b, L, NULL); }
static int un(Graph *g, OpKind op, int a) { return ir_un(g, op, a, L, NULL); }
static int cst(Graph *g, float v) { return ir_scalar(g, v, L); }

/* ---- simplify ---- */
static void simplify_identities(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4, 3));
  int y = bin(g, OP_MUL, x, cst(g, 1));
  y = bin(g, OP_ADD, cst(g, 0), y);
  y = bin(g, OP_DIV, y, cst(g, 1));
  y = bin(g, OP_SUB, y, cst(g, 0));
  y = un(g, OP_NEG, un(g, OP_NEG, y));
  ir_add_output(g, "y", y);
  assert_true(run_checked(g, pass_simplify));
  assert_int_equal(g->outputs[0].node, ir_find_leaf(g, OP_INPUT, "x"));
}

static void simplify_folds_constants(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(5));
  int c = bin(g, OP_ADD, cst(g, 2), cst(g, 3));          /* 5 */
  c = bin(g, OP_MUL, c, un(g, OP_EXP, cst(g, 0)));        /* 5 */
  c = ir_broadcast(g, c, SH(5), L, NULL);                 /* fill of 5 */
  int s = ir_reduce(g, OP_SUM, ir_const(g, 0.5f, DT_F32, SH(2, 4), L), 3, false, L, NULL); /* 4 */
  int y = bin(g, OP_MUL, bin(g, OP_MUL, x, c), s);
  ir_add_output(g, "y", y);
  assert_true(run_checked(g, pass_simplify));
  assert_false(run_checked(g, pass_dce)); /* simplify erased what it made dead */
  /* x, const 5 fill, const 4, two muls */
  assert_int_equal(g->n_nodes, 5);
  assert_int_equal(count_op(g, OP_CONST), 2);
  assert_int_equal(count_op(g, OP_EXP), 0);
}

static void simplify_shape_ops(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(2, 3, 4));
  NodeAttr t1, t2;
  memset(&t1, 0, sizeof t1);
  memset(&t2, 0, sizeof t2);
  t1.perm.perm[0] = 2, t1.perm.perm[1] = 0, t1.perm.perm[2] = 1; /* [4,2,3] */
  t2.perm.perm[0] = 1, t2.perm.perm[1] = 2, t2.perm.perm[2] = 0; /* back to [2,3,4] */
  int a = ir_op(g, OP_TRANSPOSE, 1, &x, &t1, NULL, DT_F32, L, NULL);
  int b = ir_op(g, OP_TRANSPOSE, 1, &a, &t2, NULL, DT_F32, L, NULL);
  int r = ir_reshape(g, ir_reshape(g, x, SH(6, 4), L, NULL), SH(24), L, NULL);
  int same = ir_reshape(g, x, SH(2, 3, 4), L, NULL);
  int bc = ir_broadcast(g, same, SH(2, 3, 4), L, NULL);
  int t3 = ir_op(g, OP_TRANSPOSE, 1, &a, &t1, NULL, DT_F32, L, NULL); /* two non-inverse transposes */
  ir_add_output(g, "b", b);
  ir_add_output(g, "r", r);
  ir_add_output(g, "bc", bc);
  ir_add_output(g, "t3", t3);
  assert_true(run_checked(g, pass_simplify));
  assert_false(run_checked(g, pass_dce));
  int xi = ir_find_leaf(g, OP_INPUT, "x");
  assert_int_equal(g->outputs[0].node, xi);
  assert_int_equal(g->outputs[2].node, xi);
  const Node *rn = g->nodes[g->outputs[1].node];
  assert_int_equal(rn->op, OP_RESHAPE);
  assert_int_equal(rn->in[0], xi);
  const Node *tn = g->nodes[g->outputs[3].node];
  assert_int_equal(tn->op, OP_TRANSPOSE);
  assert_int_equal(tn->in[0], xi);
  assert_int_equal(count_op(g, OP_TRANSPOSE), 1);
}

static void simplify_softmax_forms(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(3, 5));
  NodeAttr ax;
  memset(&ax, 0, sizeof ax);
  ax.axis.axis = 1;
  int sm = ir_op(g, OP_SOFTMAX, 1, &x, &ax, NULL, DT_F32, L, NULL);
  int lsm = ir_op(g, OP_LOG_SOFTMAX, 1, &x, &ax, NULL, DT_F32, L, NULL);
  ir_add_output(g, "a", un(g, OP_LOG, sm));
  ir_add_output(g, "b", un(g, OP_EXP, lsm));
  assert_true(run_checked(g, pass_simplify));
  assert_int_equal(g->nodes[g->outputs[0].node]->op, OP_LOG_SOFTMAX);
  assert_int_equal(g->nodes[g->outputs[1].node]->op, OP_SOFTMAX);
  assert_int_equal(g->nodes[g->outputs[1].node]->attr.axis.axis, 1);
}

/* A ReLU's mask on a max pooling's adjoint moves to the pooled gradient:
 * maxpool2d_bwd(g, argmax(r)) * step(r) -> maxpool2d_bwd(g * step(maxpool2d(r)), argmax(r)),
 * reusing the forward's maxpool2d when there is one, making it when not
 * (run_checked: the same values before and after). */
static void simplify_pool_mask(void **state, bool with_forward) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(2, 3, 6, 6)), gy = in_(g, "gy", SH(2, 3, 3, 3));
  int r = un(g, OP_RELU, x);
  NodeAttr pa;
  memset(&pa, 0, sizeof pa);
  pa.pool.k[0] = pa.pool.k[1] = pa.pool.stride[0] = pa.pool.stride[1] = 2;
  if (with_forward) ir_add_output(g, "p", ir_op(g, OP_MAXPOOL2D, 1, &r, &pa, NULL, DT_F32, L, NULL));
  int am = ir_op(g, OP_MAXPOOL2D_ARGMAX, 1, &r, &pa, NULL, DT_I32, L, NULL);
  int in2[2] = {gy, am};
  Shape xs = SH(2, 3, 6, 6);
  int mb = ir_op(g, OP_MAXPOOL2D_BWD, 2, in2, &pa, &xs, DT_F32, L, NULL);
  ir_add_output(g, "dx", bin(g, OP_MUL, mb, un(g, OP_STEP, r)));
  assert_true(run_checked(g, pass_simplify));
  const Node *o = g->nodes[g->outputs[with_forward].node];
  assert_int_equal(o->op, OP_MAXPOOL2D_BWD);
  assert_int_equal(g->nodes[o->in[1]]->op, OP_MAXPOOL2D_ARGMAX);
  const Node *m = g->nodes[o->in[0]];
  assert_int_equal(m->op, OP_MUL);
  assert_int_equal(m->shape.d[2], 3);
  const Node *st = g->nodes[m->in[0]]->op == OP_STEP ? g->nodes[m->in[0]] : g->nodes[m->in[1]];
  assert_int_equal(st->op, OP_STEP);
  assert_int_equal(g->nodes[st->in[0]]->op, OP_MAXPOOL2D);
  assert_int_equal(count_op(g, OP_MAXPOOL2D), 1);
  if (with_forward) assert_int_equal(st->in[0], g->outputs[0].node);
}
static void simplify_pool_mask_reuses(void **state) { simplify_pool_mask(state, true); }
static void simplify_pool_mask_makes(void **state) { simplify_pool_mask(state, false); }

static void simplify_broadcasts_smaller_operand(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(3));
  int y = bin(g, OP_ADD, x, ir_const(g, 0, DT_F32, SH(2, 3), L));
  ir_add_output(g, "y", y);
  assert_true(run_checked(g, pass_simplify));
  const Node *o = g->nodes[g->outputs[0].node];
  assert_int_equal(o->op, OP_BROADCAST);
  assert_int_equal(o->shape.d[0], 2);
}

/* Nodes that were dead before simplify are dce's, not simplify's. */
static void simplify_leaves_old_dead_code_to_dce(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4));
  un(g, OP_EXP, x); /* dead from the start */
  ir_add_output(g, "y", bin(g, OP_MUL, un(g, OP_SIGMOID, x), cst(g, 1)));
  assert_true(run_checked(g, pass_simplify));
  assert_int_equal(count_op(g, OP_EXP), 1);
  assert_int_equal(count_op(g, OP_CONST), 0);
  assert_true(run_checked(g, pass_dce));
  assert_int_equal(count_op(g, OP_EXP), 0);
}

static void simplify_keeps_nan_sensitive_forms(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4));
  ir_add_output(g, "a", bin(g, OP_MUL, x, cst(g, 0)));
  ir_add_output(g, "b", bin(g, OP_SUB, x, x));
  ir_add_output(g, "c", un(g, OP_LOG, un(g, OP_EXP, x)));
  ir_add_output(g, "d", bin(g, OP_MUL, x, cst(g, 2)));
  int n = g->n_nodes;
  assert_false(run_checked(g, pass_simplify));
  assert_int_equal(g->n_nodes, n);
}

static void simplify_keeps_phase_and_loc(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(2, 2));
  NodeAttr ax;
  memset(&ax, 0, sizeof ax);
  ax.axis.axis = 0;
  int sm = ir_op(g, OP_SOFTMAX, 1, &x, &ax, NULL, DT_F32, L, NULL);
  int lg = un(g, OP_LOG, sm);
  g->nodes[lg]->phase = PHASE_BACKWARD;
  g->nodes[lg]->loc = (SrcLoc){"m.dl", 7, 9};
  ir_add_output(g, "y", bin(g, OP_MUL, lg, x));
  assert_true(run_checked(g, pass_simplify));
  const Node *m = g->nodes[g->nodes[g->outputs[0].node]->in[0]];
  assert_int_equal(m->op, OP_LOG_SOFTMAX);
  assert_int_equal(m->phase, PHASE_BACKWARD);
  assert_int_equal(m->loc.line, 7);
  assert_int_equal(m->loc.col, 9);
}

/* ---- cse ---- */
static void cse_merges_commuted_chains(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4)), y = in_(g, "y", SH(4));
  int a = un(g, OP_TANH, bin(g, OP_ADD, x, y));
  int b = un(g, OP_TANH, bin(g, OP_ADD, y, x));
  int c = bin(g, OP_SUB, x, y), c2 = bin(g, OP_SUB, y, x); /* not commutative */
  ir_add_output(g, "a", a);
  ir_add_output(g, "b", b);
  ir_add_output(g, "c", bin(g, OP_MUL, c, c2));
  assert_true(run_checked(g, pass_cse));
  assert_int_equal(g->outputs[0].node, g->outputs[1].node);
  assert_int_equal(count_op(g, OP_SUB), 2);
  assert_int_equal(count_op(g, OP_TANH), 1);
}

static void cse_respects_leaves_salts_and_attrs(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int p = ir_leaf(g, OP_PARAM, "p", DT_F32, SH(2, 3), L);
  int q = ir_leaf(g, OP_PARAM, "q", DT_F32, SH(2, 3), L);
  NodeAttr m1, m2;
  memset(&m1, 0, sizeof m1);
  memset(&m2, 0, sizeof m2);
  m1.dropout.p = 0.5f, m1.dropout.salt = 1;
  m2.dropout.p = 0.5f, m2.dropout.salt = 2;
  Shape s = SH(2, 3);
  int d1 = ir_op(g, OP_DROPOUT_MASK, 0, NULL, &m1, &s, DT_F32, L, NULL);
  int d2 = ir_op(g, OP_DROPOUT_MASK, 0, NULL, &m2, &s, DT_F32, L, NULL);
  int d3 = ir_op(g, OP_DROPOUT_MASK, 0, NULL, &m1, &s, DT_F32, L, NULL); /* same salt as d1 */
  int s0 = ir_reduce(g, OP_SUM, p, 1, false, L, NULL);
  int s1 = ir_reduce(g, OP_SUM, p, 2, false, L, NULL);
  ir_add_output(g, "a", bin(g, OP_MUL, p, d1));
  ir_add_output(g, "b", bin(g, OP_MUL, q, d2));
  ir_add_output(g, "c", bin(g, OP_MUL, p, d3));
  ir_add_output(g, "s0", s0);
  ir_add_output(g, "s1", s1);
  assert_true(run_checked(g, pass_cse));
  assert_int_equal(count_op(g, OP_PARAM), 2);
  assert_int_equal(count_op(g, OP_DROPOUT_MASK), 2);
  assert_int_equal(g->outputs[0].node, g->outputs[2].node);
  assert_int_equal(count_op(g, OP_SUM), 2);
}

static void cse_nothing_to_merge(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4)), y = in_(g, "y", SH(4));
  ir_add_output(g, "a", bin(g, OP_ADD, x, y));
  ir_add_output(g, "b", bin(g, OP_MUL, x, y));
  ir_add_output(g, "c", ir_const(g, 1, DT_F32, SH(4), L));
  ir_add_output(g, "d", ir_const(g, 2, DT_F32, SH(4), L));
  assert_false(run_checked(g, pass_cse));
}

/* ---- dce ---- */
static void dce_removes_dead_keeps_leaves(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(4));
  in_(g, "unused", SH(2));
  int dead = un(g, OP_EXP, bin(g, OP_ADD, x, cst(g, 3)));
  (void)dead;
  int y = un(g, OP_RELU, x);
  ir_add_output(g, "y", y);
  assert_true(run_checked(g, pass_dce));
  assert_int_equal(g->n_nodes, 3);
  assert_int_not_equal(ir_find_leaf(g, OP_INPUT, "unused"), -1);
  assert_int_equal(g->nodes[g->outputs[0].node]->op, OP_RELU);
  assert_false(run_checked(g, pass_dce));
}

static void dce_keeps_training_roles(void **state) {
  Fx *f = *state;
  Graph *g = ir_graph_new(f->a, "tr", MODE_TRAIN);
  int x = in_(g, "x", SH(3, 2));
  int w = ir_leaf(g, OP_PARAM, "w", DT_F32, SH(2), L);
  int loss = ir_reduce(g, OP_MEAN, bin(g, OP_MUL, x, w), 3, false, L, NULL);
  g->loss = loss;
  g->opt.kind = OPT_SGD;
  g->opt.lr = 0.1f;
  Diag d;
  diag_init(&d, stderr);
  assert_true(pass_autodiff(g, &d));
  assert_true(pass_optimizer(g, &d));
  diag_free(&d);
  un(g, OP_TANH, x); /* dead */
  assert_true(run_checked(g, pass_dce));
  assert_int_equal(g->n_grads, 1);
  assert_int_equal(g->n_updates, 1);
  assert_int_equal(count_op(g, OP_TANH), 0);
}

/* ---- rewrite ---- */
static void rewrite_moves_new_nodes_before_users(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(3));
  int e = un(g, OP_EXP, x);
  int u = un(g, OP_TANH, e);
  ir_add_output(g, "u", u);
  Rewriter r;
  rw_init(&r, g);
  int s = un(g, OP_SIGMOID, x); /* appended after its future user */
  rw_replace(&r, e, s);
  rw_commit(&r);
  assert_valid(g);
  assert_int_equal(g->n_nodes, 3);
  assert_int_equal(g->nodes[1]->op, OP_SIGMOID);
  assert_int_equal(g->nodes[2]->op, OP_TANH);
  assert_int_equal(g->outputs[0].node, 2);
}

/* ---- pipeline ---- */
static void pipeline_prints_and_times(void **state) {
  Graph *g = ((Fx *)*state)->g;
  int x = in_(g, "x", SH(3));
  ir_add_output(g, "y", bin(g, OP_MUL, x, cst(g, 1)));
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  PipelineOptions o = {.opt_level = 2, .verify_each = true, .print_after = "all", .time_passes = true, .out = out};
  Diag d;
  diag_init(&d, stderr);
  pipeline_reset_times();
  assert_true(pipeline_run_graph(g, &o, &d));
  fclose(out);
  assert_non_null(strstr(buf, "; *** IR after simplify (graph t, mode=infer) ***\n"));
  assert_non_null(strstr(buf, "; *** IR after cse (graph t, mode=infer) *** (unchanged)"));
  assert_non_null(strstr(buf, "; *** IR after dce (graph t, mode=infer) *** (unchanged)"));
  free(buf);
  buf = NULL;
  out = open_memstream(&buf, &len);
  pipeline_print_times(out);
  fclose(out);
  assert_non_null(strstr(buf, "graph pass   simplify"));
  assert_non_null(strstr(buf, "total"));
  free(buf);
  assert_true(pipeline_is_pass_name("cse"));
  assert_true(pipeline_is_pass_name("lower"));
  assert_true(pipeline_is_pass_name("memplan"));
  assert_false(pipeline_is_pass_name("nope"));
  /* -O0 runs no graph pass */
  Graph *g2 = ir_graph_new(g->arena, "t2", MODE_INFER);
  int x2 = in_(g2, "x", SH(3));
  ir_add_output(g2, "y", bin(g2, OP_MUL, x2, cst(g2, 1)));
  o.opt_level = 0;
  o.print_after = NULL;
  int n = g2->n_nodes;
  assert_true(pipeline_run_graph(g2, &o, &d));
  assert_int_equal(g2->n_nodes, n);
  diag_free(&d);
}

/* ---- every example and conformance model through the whole pipeline ---- */
static void check_model(const char *path) {
  static const GraphMode modes[] = {MODE_TRAIN, MODE_EVAL, MODE_INFER};
  for (int m = 0; m < 3; m++) {
    Arena *a = arena_new();
    Diag d;
    diag_init(&d, stderr);
    ConstDef def = {"B", "3"};
    Graph *g = fe_compile_file(a, path, modes[m], &def, 1, &d);
    if (!g) { /* no B to define */
      diag_free(&d);
      diag_init(&d, stderr);
      g = fe_compile_file(a, path, modes[m], NULL, 0, &d);
    }
    assert_non_null(g);
    bool train = modes[m] == MODE_TRAIN && g->loss >= 0 && g->opt.kind != OPT_NONE;
    if (modes[m] == MODE_TRAIN && !train) {
      diag_free(&d);
      arena_free(a);
      continue;
    }
    if (train) {
      assert_true(pass_autodiff(g, &d));
      assert_true(pass_optimizer(g, &d));
    }
    RoleVals before = eval_roles(g);
    int n0 = g->n_nodes;
    PipelineOptions o = {.opt_level = 2, .verify_each = true};
    assert_true(pipeline_run_graph(g, &o, &d));
    assert_valid(g);
    RoleVals after = eval_roles(g);
    assert_same_roles(&before, &after, path);
    printf("  %-60s %-5s %4d -> %4d nodes\n", path, m == 0 ? "train" : m == 1 ? "eval" : "infer", n0, g->n_nodes);
    free_roles(&before);
    free_roles(&after);
    diag_free(&d);
    arena_free(a);
  }
}

static void models_keep_their_values(void **state) {
  (void)state;
  int n = 0;
  DIR *dir = opendir(EXAMPLES_DIR);
  assert_non_null(dir);
  for (struct dirent *e; (e = readdir(dir));) {
    size_t k = strlen(e->d_name);
    if (k < 4 || strcmp(e->d_name + k - 3, ".dl")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", EXAMPLES_DIR, e->d_name);
    check_model(path);
    n++;
  }
  closedir(dir);
  dir = opendir(CONFORMANCE_DIR);
  if (dir) {
    for (struct dirent *e; (e = readdir(dir));) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s/model.dl", CONFORMANCE_DIR, e->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      fclose(f);
      check_model(path);
      n++;
    }
    closedir(dir);
  }
  assert_true(n > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(simplify_identities, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_folds_constants, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_shape_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_softmax_forms, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_pool_mask_reuses, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_pool_mask_makes, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_broadcasts_smaller_operand, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_leaves_old_dead_code_to_dce, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_keeps_nan_sensitive_forms, setup, teardown),
      cmocka_unit_test_setup_teardown(simplify_keeps_phase_and_loc, setup, teardown),
      cmocka_unit_test_setup_teardown(cse_merges_commuted_chains, setup, teardown),
      cmocka_unit_test_setup_teardown(cse_respects_leaves_salts_and_attrs, setup, teardown),
      cmocka_unit_test_setup_teardown(cse_nothing_to_merge, setup, teardown),
      cmocka_unit_test_setup_teardown(dce_removes_dead_keeps_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(dce_keeps_training_roles, setup, teardown),
      cmocka_unit_test_setup_teardown(rewrite_moves_new_nodes_before_users, setup, teardown),
      cmocka_unit_test_setup_teardown(pipeline_prints_and_times, setup, teardown),
      cmocka_unit_test(models_keep_their_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
