/* simplify.c — constant folding and algebraic simplification.
 *
 * Folding: an elementwise op whose operands are all constants (CONST nodes
 * are fills: one value of any shape) becomes a constant of its dtype and
 * shape; so do shape ops of a constant (broadcast, reshape, transpose,
 * slice, concat of equal fills, unslice of 0) and sum/mean/max of one.
 * Values are computed in double and rounded to the node's dtype as the
 * reference interpreter does; a result that is not finite is not folded.
 *
 * Algebra (each rule fires only when the replacement has the node's dtype;
 * when it has a smaller shape, it is broadcast to the node's shape):
 *   x*1, 1*x, x/1, x+0, 0+x, x-0, pows(x,1), pow(x,1)  -> x
 *   x*-1, -1*x, x/-1, 0-x                              -> neg(x)
 *   x+neg(y) -> x-y,  neg(x)+y -> y-x,  x-neg(y) -> x+y
 *   pow(x, c) (c a scalar constant)                    -> pows(x, c)
 *   neg(neg x) -> x,  relu(relu x) -> relu x,  abs(abs x), abs(neg x) -> abs x
 *   maximum(x,x), minimum(x,x), select(c,x,x)         -> x
 *   select(constant c, a, b)                           -> a or b
 *   cast to the operand's dtype                        -> x
 *   transpose(transpose x) -> one transpose or x; identity transpose -> x
 *   reshape(reshape x) -> reshape x; reshape/broadcast to the same shape -> x
 *   broadcast(broadcast x) -> broadcast x; identity slice/unslice -> x
 *   concat of one operand -> it; sum/mean/max over no axis -> x
 *   log(softmax(x)) -> log_softmax(x);  exp(log_softmax(x)) -> softmax(x)
 *   maxpool2d_bwd(g, argmax(x)) * step(x) -> maxpool2d_bwd(g * step(maxpool2d(x)), argmax(x))
 * Deliberately not done: x*0 -> 0 and x-x -> 0 (wrong when x is NaN or
 * infinite: a diverging model must show NaN at every -O level), 0/x -> 0,
 * log(exp x) -> x and exp(log x) -> x (differ on overflow and x <= 0).
 * x+0 -> x turns -0 into -0 instead of +0, which no op here distinguishes
 * beyond the sign of a zero.
 *
 * Replaced nodes are dropped, and so are the nodes the rewrites leave
 * without a use (intermediate constants, operands of folded chains); nodes
 * that were already unused before the pass are left to dce. Runs sweeps
 * until nothing changes (at most 8). Needs: a valid graph. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "passes/rewrite.h"

typedef struct {
  Graph *g;
  Node *n; /* the node being simplified: new nodes take its loc, phase, name */
} S;

static Node *N(S *s, int id) { return s->g->nodes[id]; }
static bool is_const(S *s, int id) { return N(s, id)->op == OP_CONST; }
static bool is_const_v(S *s, int id, float v) { return is_const(s, id) && N(s, id)->attr.scalar.v == v; }

static int finish(S *s, int id) {
  Node *m = N(s, id);
  if (id >= s->n->id) { /* a node made here */
    m->loc = s->n->loc;
    m->phase = s->n->phase;
    m->name = s->n->name;
  }
  return id;
}

static int mk(S *s, OpKind op, int nin, const int *in, const NodeAttr *at, const Shape *out) {
  int id = ir_op(s->g, op, nin, in, at, out, s->n->dtype, s->n->loc, NULL);
  return finish(s, id);
}
static int mk1(S *s, OpKind op, int a) { return mk(s, op, 1, &a, NULL, NULL); }
static int mk2(S *s, OpKind op, int a, int b) {
  int in[2] = {a, b};
  return mk(s, op, 2, in, NULL, NULL);
}
static int mk_const(S *s, double v) {
  float f = (float)v;
  if (s->n->dtype == DT_I32) {
    if (v != trunc(v) || fabs(v) > 2147483647.0) return -1;
  } else if (!isfinite(f)) {
    return -1;
  }
  if (!isfinite(v)) return -1;
  return finish(s, ir_const(s->g, f, s->n->dtype, s->n->shape, s->n->loc));
}

/* x standing for the whole node: x itself, or x broadcast to the node's shape. */
static int as_node(S *s, int x) {
  const Node *m = N(s, x);
  if (m->dtype != s->n->dtype) return -1;
  if (shape_eq(&m->shape, &s->n->shape)) return x;
  return mk(s, OP_BROADCAST, 1, &x, NULL, &s->n->shape);
}
static int neg_of(S *s, int x) {
  if (N(s, x)->dtype != s->n->dtype) return -1;
  return as_node(s, mk1(s, OP_NEG, x));
}

/* ---- constant folding ---- */
static double fold_elementwise(const Node *n, const double *v, bool *ok) {
  double p = n->attr.scalar.v;
  switch (n->op) {
    case OP_NEG: return -v[0];
    case OP_EXP: return exp(v[0]);
    case OP_LOG: return log(v[0]);
    case OP_SQRT: return sqrt(v[0]);
    case OP_ABS: return fabs(v[0]);
    case OP_RELU: return v[0] < 0 ? 0.0 : v[0];
    case OP_SIGMOID: return 1.0 / (1.0 + exp(-v[0]));
    case OP_TANH: return tanh(v[0]);
    case OP_ELU: return v[0] > 0 ? v[0] : p * expm1(v[0]);
    case OP_LEAKY_RELU: return v[0] > 0 ? v[0] : v[0] * p;
    case OP_POWS: return pow(v[0], p);
    case OP_SIGN: return v[0] > 0 ? 1.0 : v[0] < 0 ? -1.0 : 0.0;
    case OP_STEP: return v[0] > 0 ? 1.0 : 0.0;
    case OP_CAST: return n->dtype == DT_I32 ? trunc(v[0]) : v[0];
    case OP_ADD: return v[0] + v[1];
    case OP_SUB: return v[0] - v[1];
    case OP_MUL: return v[0] * v[1];
    case OP_DIV: return v[0] / v[1];
    case OP_POW: return pow(v[0], v[1]);
    case OP_MAXIMUM: return v[0] > v[1] ? v[0] : v[1];
    case OP_MINIMUM: return v[0] < v[1] ? v[0] : v[1];
    case OP_GT: return v[0] > v[1] ? 1.0 : 0.0;
    case OP_GE: return v[0] >= v[1] ? 1.0 : 0.0;
    case OP_EQ: return v[0] == v[1] ? 1.0 : 0.0;
    case OP_SELECT: return v[0] != 0 ? v[1] : v[2];
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST: case OP_BROADCAST:
    case OP_RESHAPE: case OP_TRANSPOSE: case OP_SLICE: case OP_UNSLICE: case OP_CONCAT: case OP_SUM:
    case OP_MEAN: case OP_MAX: case OP_ARGMAX: case OP_MATMUL: case OP_SOFTMAX: case OP_LOG_SOFTMAX:
    case OP_ONEHOT: case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER: case OP_MAXPOOL2D:
    case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
    case OP_DROPOUT_MASK: case OP__COUNT:
      break;
  }
  *ok = false;
  return 0;
}

static int fold(S *s) {
  Node *n = s->n;
  if (n->nin == 0) return -1;
  double v[3];
  for (int j = 0; j < n->nin; j++) {
    if (!is_const(s, n->in[j])) return -1;
    if (j < 3) v[j] = N(s, n->in[j])->attr.scalar.v;
  }
  double c0 = v[0];
  if (op_has(n->op, OPF_ELEMWISE)) {
    bool ok = true;
    double r = fold_elementwise(n, v, &ok);
    return ok ? mk_const(s, r) : -1;
  }
  switch (n->op) {
    case OP_BROADCAST: case OP_RESHAPE: case OP_TRANSPOSE: case OP_SLICE: case OP_MEAN: case OP_MAX:
      return mk_const(s, c0);
    case OP_UNSLICE: return c0 == 0 ? mk_const(s, 0) : -1;
    case OP_CONCAT:
      for (int j = 1; j < n->nin; j++)
        if (!is_const_v(s, n->in[j], (float)c0)) return -1;
      return mk_const(s, c0);
    case OP_SUM: {
      const Node *x = N(s, n->in[0]);
      return mk_const(s, c0 * (double)(shape_numel(&x->shape) / shape_numel(&n->shape)));
    }
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST: case OP_NEG: case OP_EXP:
    case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH: case OP_ELU:
    case OP_LEAKY_RELU: case OP_POWS: case OP_SIGN: case OP_STEP: case OP_CAST: case OP_ADD: case OP_SUB:
    case OP_MUL: case OP_DIV: case OP_POW: case OP_MAXIMUM: case OP_MINIMUM: case OP_GT: case OP_GE:
    case OP_EQ: case OP_SELECT: case OP_ARGMAX: case OP_MATMUL: case OP_SOFTMAX: case OP_LOG_SOFTMAX:
    case OP_ONEHOT: case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER: case OP_MAXPOOL2D:
    case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
    case OP_DROPOUT_MASK: case OP__COUNT:
      break;
  }
  return -1;
}

/* ---- algebra ---- */
static bool identity_slice(const Node *n, const Node *x) {
  if (!shape_eq(&n->shape, &x->shape)) return false;
  for (int i = 0; i < n->shape.rank; i++)
    if (n->attr.slice.start[i] != 0 || n->attr.slice.step[i] != 1) return false;
  return true;
}

static int simplify_transpose(S *s) {
  Node *n = s->n;
  int x = n->in[0], r = n->shape.rank;
  int perm[IR_MAX_RANK];
  for (int i = 0; i < r; i++) perm[i] = n->attr.perm.perm[i];
  if (N(s, x)->op == OP_TRANSPOSE) { /* out dim i = inner dim perm[i] = x dim inner[perm[i]] */
    const Node *m = N(s, x);
    for (int i = 0; i < r; i++) perm[i] = m->attr.perm.perm[perm[i]];
    x = m->in[0];
  }
  bool ident = true;
  for (int i = 0; i < r; i++) ident &= perm[i] == i;
  if (ident) return as_node(s, x);
  if (x == n->in[0]) return -1;
  NodeAttr at;
  memset(&at, 0, sizeof at);
  for (int i = 0; i < r; i++) at.perm.perm[i] = perm[i];
  return mk(s, OP_TRANSPOSE, 1, &x, &at, NULL);
}

static int simplify_binary(S *s) {
  Node *n = s->n;
  int a = n->in[0], b = n->in[1];
  switch (n->op) {
    case OP_ADD:
      if (is_const_v(s, b, 0)) return as_node(s, a);
      if (is_const_v(s, a, 0)) return as_node(s, b);
      if (N(s, b)->op == OP_NEG) return as_node(s, mk2(s, OP_SUB, a, N(s, b)->in[0]));
      if (N(s, a)->op == OP_NEG) return as_node(s, mk2(s, OP_SUB, b, N(s, a)->in[0]));
      return -1;
    case OP_SUB:
      if (is_const_v(s, b, 0)) return as_node(s, a);
      if (is_const_v(s, a, 0)) return neg_of(s, b);
      if (N(s, b)->op == OP_NEG) return as_node(s, mk2(s, OP_ADD, a, N(s, b)->in[0]));
      return -1;
    case OP_MUL:
      if (is_const_v(s, b, 1)) return as_node(s, a);
      if (is_const_v(s, a, 1)) return as_node(s, b);
      if (is_const_v(s, b, -1)) return neg_of(s, a);
      if (is_const_v(s, a, -1)) return neg_of(s, b);
      return -1;
    case OP_DIV:
      if (is_const_v(s, b, 1)) return as_node(s, a);
      if (is_const_v(s, b, -1)) return neg_of(s, a);
      return -1;
    case OP_POW:
      if (is_const_v(s, b, 1)) return as_node(s, a);
      if (is_const(s, b) && N(s, b)->shape.rank == 0 && shape_eq(&N(s, a)->shape, &n->shape)) {
        NodeAttr at;
        memset(&at, 0, sizeof at);
        at.scalar.v = N(s, b)->attr.scalar.v;
        return mk(s, OP_POWS, 1, &a, &at, NULL);
      }
      return -1;
    case OP_MAXIMUM: case OP_MINIMUM: return a == b ? as_node(s, a) : -1;
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST: case OP_NEG: case OP_EXP:
    case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH: case OP_ELU:
    case OP_LEAKY_RELU: case OP_POWS: case OP_SIGN: case OP_STEP: case OP_CAST: case OP_GT: case OP_GE:
    case OP_EQ: case OP_SELECT: case OP_BROADCAST: case OP_RESHAPE: case OP_TRANSPOSE: case OP_SLICE:
    case OP_UNSLICE: case OP_CONCAT: case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: case OP_MATMUL:
    case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_ONEHOT: case OP_CONV2D: case OP_CONV2D_BWD_DATA:
    case OP_CONV2D_BWD_FILTER: case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD:
    case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD: case OP_DROPOUT_MASK: case OP__COUNT:
      break;
  }
  return -1;
}

/* The replacement of s->n, or -1 when no rule applies. */
/* mul(maxpool2d_bwd(g, A), step(X)) with A = maxpool2d_argmax(X) (a
 * ReLU's mask on a max pooling's adjoint) -> maxpool2d_bwd(g * step(P), A),
 * P = maxpool2d(X) (found, else made): the adjoint is nonzero only at the
 * window's argmax, where X is P, and step is 0 or 1 elsewhere, so the value
 * is the same; the mask is read from the pooled tensor (a quarter of X for
 * 2x2 windows) and X is no longer read on the way back. */
static bool pool_eq(const PoolAttr *a, const PoolAttr *b) { return !memcmp(a, b, sizeof *a); }

static int pool_mask(S *s) {
  Node *n = s->n;
  for (int side = 0; side < 2; side++) {
    const Node *mb = N(s, n->in[side]), *st = N(s, n->in[1 - side]);
    if (mb->op != OP_MAXPOOL2D_BWD || st->op != OP_STEP || !shape_eq(&mb->shape, &n->shape) ||
        !shape_eq(&st->shape, &n->shape))
      continue;
    const Node *am = N(s, mb->in[1]);
    int x = st->in[0];
    if (am->op != OP_MAXPOOL2D_ARGMAX || am->in[0] != x || !pool_eq(&am->attr.pool, &mb->attr.pool) ||
        N(s, x)->dtype != DT_F32)
      continue;
    int pooled = -1;
    for (int i = 0; i < s->g->n_nodes && pooled < 0; i++) {
      const Node *c = s->g->nodes[i];
      if (c->op == OP_MAXPOOL2D && c->in[0] == x && pool_eq(&c->attr.pool, &am->attr.pool)) pooled = i;
    }
    if (pooled < 0) pooled = mk(s, OP_MAXPOOL2D, 1, &x, &am->attr, &am->shape);
    int masked = mk2(s, OP_MUL, mb->in[0], mk1(s, OP_STEP, pooled));
    int in[2] = {masked, mb->in[1]};
    return mk(s, OP_MAXPOOL2D_BWD, 2, in, &mb->attr, &mb->shape);
  }
  return -1;
}

static int simplify_node(S *s) {
  Node *n = s->n;
  int r = fold(s);
  if (r >= 0) return r;
  int x = n->nin > 0 ? n->in[0] : -1;
  const Node *xn = x >= 0 ? N(s, x) : NULL;
  switch (n->op) {
    case OP_NEG: return xn->op == OP_NEG ? as_node(s, xn->in[0]) : -1;
    case OP_RELU: return xn->op == OP_RELU ? x : -1;
    case OP_ABS: return xn->op == OP_ABS ? x : xn->op == OP_NEG ? mk1(s, OP_ABS, xn->in[0]) : -1;
    case OP_CAST: return xn->dtype == n->dtype ? x : -1;
    case OP_POWS: return n->attr.scalar.v == 1 ? as_node(s, x) : -1;
    case OP_LOG:
      if (xn->op != OP_SOFTMAX) return -1;
      return mk(s, OP_LOG_SOFTMAX, 1, &xn->in[0], &xn->attr, NULL);
    case OP_EXP:
      if (xn->op != OP_LOG_SOFTMAX) return -1;
      return mk(s, OP_SOFTMAX, 1, &xn->in[0], &xn->attr, NULL);
    case OP_MUL:
      r = pool_mask(s);
      return r >= 0 ? r : simplify_binary(s);
    case OP_ADD: case OP_SUB: case OP_DIV: case OP_POW: case OP_MAXIMUM: case OP_MINIMUM:
      return simplify_binary(s);
    case OP_SELECT:
      if (n->in[1] == n->in[2]) return as_node(s, n->in[1]);
      if (xn->op == OP_CONST) return as_node(s, xn->attr.scalar.v != 0 ? n->in[1] : n->in[2]);
      return -1;
    case OP_BROADCAST:
      if (shape_eq(&xn->shape, &n->shape)) return x;
      if (xn->op == OP_BROADCAST) return mk(s, OP_BROADCAST, 1, &xn->in[0], NULL, &n->shape);
      return -1;
    case OP_RESHAPE:
      if (shape_eq(&xn->shape, &n->shape)) return x;
      if (xn->op == OP_RESHAPE) return mk(s, OP_RESHAPE, 1, &xn->in[0], NULL, &n->shape);
      return -1;
    case OP_TRANSPOSE: return simplify_transpose(s);
    case OP_SLICE: case OP_UNSLICE: return identity_slice(n, xn) ? x : -1;
    case OP_CONCAT: return n->nin == 1 ? as_node(s, x) : -1;
    case OP_SUM: case OP_MEAN: case OP_MAX:
      return n->attr.reduce.axes == 0 && shape_eq(&xn->shape, &n->shape) ? x : -1;
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST:
    case OP_SQRT: case OP_SIGMOID: case OP_TANH: case OP_ELU: case OP_LEAKY_RELU: case OP_SIGN: case OP_STEP:
    case OP_GT: case OP_GE: case OP_EQ: case OP_ARGMAX: case OP_MATMUL: case OP_SOFTMAX: case OP_LOG_SOFTMAX:
    case OP_ONEHOT: case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER: case OP_MAXPOOL2D:
    case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
    case OP_DROPOUT_MASK: case OP__COUNT:
      return -1;
  }
  return -1;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (Node *const *)a, y = (uintptr_t) * (Node *const *)b;
  return x < y ? -1 : x > y;
}

/* Drops the nodes that the rewrites left without a use; nodes that were
 * unused before the pass are kept (removing those is dce's job). */
static void erase_newly_dead(Graph *g, Node **dead0, int n_dead0) {
  int n = g->n_nodes;
  bool *live = rw_roots(g);
  qsort(dead0, (size_t)n_dead0, sizeof *dead0, cmp_ptr);
  for (int i = 0; i < n; i++)
    if (n_dead0 && bsearch(&g->nodes[i], dead0, (size_t)n_dead0, sizeof *dead0, cmp_ptr)) live[i] = true;
  bool all = true;
  for (int i = n - 1; i >= 0; i--) {
    const Node *nd = g->nodes[i];
    if (rw_is_named_leaf(nd->op)) live[i] = true;
    if (!live[i]) {
      all = false;
      continue;
    }
    for (int j = 0; j < nd->nin; j++) live[nd->in[j]] = true;
  }
  if (!all) rw_compact(g, live);
}

bool pass_simplify(Graph *g, Diag *d) {
  (void)d;
  bool any = false;
  int *uses = ir_use_counts(g, g->arena);
  Node **dead0 = ARENA_ARRAY(g->arena, Node *, g->n_nodes + 1);
  int n_dead0 = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (uses[i] == 0 && !rw_is_named_leaf(g->nodes[i]->op)) dead0[n_dead0++] = g->nodes[i];
  for (int sweep = 0; sweep < 8; sweep++) {
    Rewriter r;
    rw_init(&r, g);
    int n0 = g->n_nodes;
    for (int i = 0; i < n0; i++) {
      Node *n = g->nodes[i];
      rw_resolve_operands(&r, n);
      if (op_has(n->op, OPF_LEAF)) continue;
      S s = {g, n};
      int to = simplify_node(&s);
      if (to < 0 || to == i) continue;
      const Node *t = g->nodes[to];
      DL_ASSERT(t->dtype == n->dtype && shape_eq(&t->shape, &n->shape));
      rw_replace(&r, i, to);
    }
    if (r.n_replaced == 0) break;
    rw_commit(&r);
    any = true;
  }
  if (any) erase_newly_dead(g, dead0, n_dead0);
  return any;
}
