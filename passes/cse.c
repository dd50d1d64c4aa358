/* cse.c — common subexpression elimination. Two nodes are merged (every use
 * of the later one becomes a use of the earlier one) when they have the same
 * op, dtype, shape, operands (in either order for commutative ops) and
 * attributes. Named leaves (input, label, param, state) are never merged:
 * they are distinct buffers. Constants are merged when dtype, shape and
 * value (bit for bit: -0 and 0 differ) agree. Dropout masks are merged only
 * with equal p and salt, i.e. when they draw the very same numbers.
 * One sweep in topological order with operands resolved first, so whole
 * duplicated chains collapse at once. Needs: a valid graph. */
#include <string.h>

#include "passes/passes.h"
#include "passes/rewrite.h"

static bool fbits_eq(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static bool ints_eq(const int *a, const int *b, int n) { return n == 0 || memcmp(a, b, sizeof(int) * (size_t)n) == 0; }

static bool attrs_eq(const Node *x, const Node *y) {
  const NodeAttr *a = &x->attr, *b = &y->attr;
  int r = x->shape.rank;
  switch (x->op) {
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: return false;
    case OP_CONST: case OP_ELU: case OP_LEAKY_RELU: case OP_POWS: return fbits_eq(a->scalar.v, b->scalar.v);
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX:
      return a->reduce.axes == b->reduce.axes && a->reduce.keepdim == b->reduce.keepdim;
    case OP_TRANSPOSE: return ints_eq(a->perm.perm, b->perm.perm, r);
    case OP_SLICE: case OP_UNSLICE:
      return memcmp(a->slice.start, b->slice.start, sizeof(int64_t) * (size_t)r) == 0 &&
             memcmp(a->slice.step, b->slice.step, sizeof(int64_t) * (size_t)r) == 0;
    case OP_CONCAT: case OP_SOFTMAX: case OP_LOG_SOFTMAX: return a->axis.axis == b->axis.axis;
    case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER:
      return ints_eq(a->conv.stride, b->conv.stride, 2) && ints_eq(a->conv.pad, b->conv.pad, 2) &&
             ints_eq(a->conv.dil, b->conv.dil, 2) && a->conv.groups == b->conv.groups;
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
      return ints_eq(a->pool.k, b->pool.k, 2) && ints_eq(a->pool.stride, b->pool.stride, 2) &&
             ints_eq(a->pool.pad, b->pool.pad, 2);
    case OP_DROPOUT_MASK: return fbits_eq(a->dropout.p, b->dropout.p) && a->dropout.salt == b->dropout.salt;
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH:
    case OP_SIGN: case OP_STEP: case OP_CAST: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW:
    case OP_MAXIMUM: case OP_MINIMUM: case OP_GT: case OP_GE: case OP_EQ: case OP_SELECT: case OP_BROADCAST:
    case OP_RESHAPE: case OP_MATMUL: case OP_ONEHOT: case OP__COUNT:
      return true;
  }
  return false;
}

static bool commutes(const Node *n) { return op_has(n->op, OPF_COMMUTATIVE) && n->nin == 2; }

static bool same_value(const Node *x, const Node *y) {
  if (x->op != y->op || x->dtype != y->dtype || x->nin != y->nin || !shape_eq(&x->shape, &y->shape)) return false;
  if (!ints_eq(x->in, y->in, x->nin) &&
      !(commutes(x) && x->in[0] == y->in[1] && x->in[1] == y->in[0]))
    return false;
  return attrs_eq(x, y);
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

static uint64_t hash_node(const Node *n) {
  uint64_t h = mix((uint64_t)n->op, (uint64_t)n->dtype);
  for (int i = 0; i < n->shape.rank; i++) h = mix(h, (uint64_t)n->shape.d[i]);
  if (commutes(n)) { /* order-independent */
    int a = n->in[0], b = n->in[1];
    h = mix(h, (uint64_t)(a < b ? a : b));
    h = mix(h, (uint64_t)(a < b ? b : a));
  } else {
    for (int j = 0; j < n->nin; j++) h = mix(h, (uint64_t)n->in[j]);
  }
  if (n->op == OP_CONST) {
    uint32_t bits;
    memcpy(&bits, &n->attr.scalar.v, sizeof bits);
    h = mix(h, bits);
  }
  if (n->op == OP_DROPOUT_MASK) h = mix(h, n->attr.dropout.salt);
  return h;
}

bool pass_cse(Graph *g, Diag *d) {
  (void)d;
  Rewriter r;
  rw_init(&r, g);
  int cap = 16;
  while (cap < 2 * g->n_nodes + 2) cap *= 2;
  int *table = ARENA_ARRAY(g->arena, int, cap); /* node id + 1, 0 = empty */
  for (int i = 0; i < g->n_nodes; i++) {
    Node *n = g->nodes[i];
    rw_resolve_operands(&r, n);
    if (rw_is_named_leaf(n->op)) continue;
    size_t slot = (size_t)(hash_node(n) & (uint64_t)(cap - 1));
    for (;;) {
      int e = table[slot];
      if (e == 0) {
        table[slot] = i + 1;
        break;
      }
      if (same_value(g->nodes[e - 1], n)) {
        rw_replace(&r, i, e - 1);
        break;
      }
      slot = (slot + 1) & (size_t)(cap - 1);
    }
  }
  bool changed = r.n_replaced > 0;
  rw_commit(&r);
  return changed;
}
