/* ir.c — the op table, graph construction and roles, shape utilities. Shape
 * and dtype inference for every op lives in ir_shape.c. */
#include "ir/ir.h"

#include <stdio.h>
#include <string.h>

const char *const ir_op_names[OP__COUNT] = {
#define OP(e, name, arity, flags) name,
#include "ir/ops.def"
#undef OP
};
const int ir_op_arity[OP__COUNT] = {
#define OP(e, name, arity, flags) arity,
#include "ir/ops.def"
#undef OP
};
const unsigned ir_op_flags[OP__COUNT] = {
#define OP(e, name, arity, flags) flags,
#include "ir/ops.def"
#undef OP
};

int ir_op_from_name(const char *name) {
  for (int i = 0; i < OP__COUNT; i++)
    if (strcmp(ir_op_names[i], name) == 0) return i;
  return -1;
}

Graph *ir_graph_new(Arena *a, const char *name, GraphMode mode) {
  Graph *g = ARENA_NEW(a, Graph);
  g->arena = a;
  g->name = name ? arena_strdup(a, name) : "model";
  g->mode = mode;
  g->loss = -1;
  return g;
}

/* Appends a node; operands must already exist. */
Node *ir_append(Graph *g, OpKind op, int nin, const int *in, SrcLoc loc) {
  if (g->n_nodes == g->cap_nodes) {
    int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
    g->nodes = arena_grow(g->arena, g->nodes, sizeof(Node *), (size_t)g->n_nodes, (size_t)cap);
    g->cap_nodes = cap;
  }
  Node *n = ARENA_NEW(g->arena, Node);
  n->id = g->n_nodes;
  n->op = op;
  n->nin = nin;
  n->in = nin ? ARENA_ARRAY(g->arena, int, nin) : NULL;
  for (int i = 0; i < nin; i++) {
    DL_ASSERT(in[i] >= 0 && in[i] < g->n_nodes);
    n->in[i] = in[i];
  }
  n->loc = loc;
  g->nodes[g->n_nodes++] = n;
  return n;
}

int ir_leaf(Graph *g, OpKind op, const char *name, DType dt, Shape shape, SrcLoc loc) {
  DL_ASSERT(op_has(op, OPF_LEAF) && op != OP_CONST);
  Node *n = ir_append(g, op, 0, NULL, loc);
  n->dtype = dt;
  n->shape = shape;
  n->attr.leaf.name = arena_strdup(g->arena, name);
  n->name = n->attr.leaf.name;
  return n->id;
}

int ir_const(Graph *g, float v, DType dt, Shape shape, SrcLoc loc) {
  Node *n = ir_append(g, OP_CONST, 0, NULL, loc);
  n->dtype = dt;
  n->shape = shape;
  n->attr.scalar.v = v;
  return n->id;
}

int ir_scalar(Graph *g, float v, SrcLoc loc) { return ir_const(g, v, DT_F32, shape_scalar(), loc); }

int ir_un(Graph *g, OpKind op, int a, SrcLoc loc, Diag *d) { return ir_op(g, op, 1, &a, NULL, NULL, DT_F32, loc, d); }

int ir_bin(Graph *g, OpKind op, int a, int b, SrcLoc loc, Diag *d) {
  int in[2] = {a, b};
  return ir_op(g, op, 2, in, NULL, NULL, DT_F32, loc, d);
}

int ir_reduce(Graph *g, OpKind op, int a, uint32_t axes, bool keepdim, SrcLoc loc, Diag *d) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.reduce.axes = axes;
  at.reduce.keepdim = keepdim;
  return ir_op(g, op, 1, &a, &at, NULL, DT_F32, loc, d);
}

int ir_reshape(Graph *g, int a, Shape s, SrcLoc loc, Diag *d) {
  return ir_op(g, OP_RESHAPE, 1, &a, NULL, &s, DT_F32, loc, d);
}

int ir_broadcast(Graph *g, int a, Shape s, SrcLoc loc, Diag *d) {
  return ir_op(g, OP_BROADCAST, 1, &a, NULL, &s, DT_F32, loc, d);
}

#define PUSH(arr, n, val)                                                                    \
  do {                                                                                       \
    (arr) = arena_grow(g->arena, (arr), sizeof(*(arr)), (size_t)(n), (size_t)(n) + 1);       \
    (arr)[(n)++] = (val);                                                                    \
  } while (0)

void ir_add_output(Graph *g, const char *name, int node) {
  NamedValue v = {arena_strdup(g->arena, name), node};
  PUSH(g->outputs, g->n_outputs, v);
}
void ir_add_metric(Graph *g, const char *name, int node) {
  NamedValue v = {arena_strdup(g->arena, name), node};
  PUSH(g->metrics, g->n_metrics, v);
}
void ir_add_update(Graph *g, int target, int value) {
  Update u = {target, value};
  PUSH(g->updates, g->n_updates, u);
}
void ir_add_grad(Graph *g, int param, int grad) {
  GradOf v = {param, grad};
  PUSH(g->grads, g->n_grads, v);
}

int ir_find_leaf(const Graph *g, OpKind op, const char *name) {
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (n->op == op && n->attr.leaf.name && strcmp(n->attr.leaf.name, name) == 0) return i;
  }
  return -1;
}

int *ir_use_counts(const Graph *g, Arena *a) {
  int *u = ARENA_ARRAY(a, int, g->n_nodes + 1);
  for (int i = 0; i < g->n_nodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++) u[g->nodes[i]->in[j]]++;
  for (int i = 0; i < g->n_outputs; i++) u[g->outputs[i].node]++;
  for (int i = 0; i < g->n_metrics; i++) u[g->metrics[i].node]++;
  if (g->loss >= 0) u[g->loss]++;
  for (int i = 0; i < g->n_grads; i++) u[g->grads[i].grad]++;
  for (int i = 0; i < g->n_updates; i++) u[g->updates[i].value]++;
  return u;
}

/* ---- shapes ---- */
int64_t shape_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->d[i];
  return n;
}

bool shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return false;
  return true;
}

Shape shape_make(int rank, const int64_t *d) {
  Shape s;
  memset(&s, 0, sizeof s);
  DL_ASSERT(rank >= 0 && rank <= IR_MAX_RANK);
  s.rank = rank;
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}

Shape shape_scalar(void) {
  Shape s;
  memset(&s, 0, sizeof s);
  return s;
}

bool shape_broadcast(const Shape *a, const Shape *b, Shape *out) {
  Shape r;
  memset(&r, 0, sizeof r);
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r.rank; i++) {
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    r.d[i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

const char *dtype_name(DType dt) { return dt == DT_I32 ? "i32" : "f32"; }

const char *shape_str(DType dt, const Shape *s, char *buf, int n) {
  int k = snprintf(buf, (size_t)n, "%s[", dtype_name(dt));
  for (int i = 0; i < s->rank && k < n; i++) k += snprintf(buf + k, (size_t)(n - k), i ? ",%lld" : "%lld", (long long)s->d[i]);
  if (k < n) snprintf(buf + k, (size_t)(n - k), "]");
  return buf;
}
