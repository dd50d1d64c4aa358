/* ir_shape.c — dtype and shape inference for every op (ir_op), with user
 * errors that name the op and both shapes. The verifier re-runs these rules
 * on existing nodes (ir_infer). */
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

typedef struct {
  Diag *d;
  SrcLoc loc;
  bool failed;
} Ctx;

static void fail(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(Ctx *c, const char *fmt, ...) {
  c->failed = true;
  va_list ap;
  va_start(ap, fmt);
  if (c->d) {
    diag_verror(c->d, c->loc, fmt, ap);
  } else {
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fprintf(stderr, "internal error: %s\n", buf);
    DL_ASSERT(!"shape error in internal graph construction");
  }
  va_end(ap);
}

#define S(i, buf) shape_str(ops[i]->dtype, &ops[i]->shape, buf, sizeof buf)

static const char *binop_sym(OpKind op) {
  if (op == OP_ADD) return "+";
  if (op == OP_SUB) return "-";
  if (op == OP_MUL) return "*";
  if (op == OP_DIV) return "/";
  if (op == OP_POW) return "**";
  return ",";
}

static int64_t conv_out(int64_t in, int k, int s, int p, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

/* Computes dtype/shape of a node of `op` with operands `ops`; false on error. */
bool ir_infer(OpKind op, int nin, Node *const *ops, const NodeAttr *at, const Shape *out, DType cast_to,
              DType *odt, Shape *osh, Diag *d, SrcLoc loc) {
  Ctx c = {d, loc, false};
  char b0[128], b1[128], b2[128];
  const char *name = ir_op_names[op];
  if (ir_op_arity[op] >= 0 && nin != ir_op_arity[op]) {
    fail(&c, "%s: expects %d operands, got %d", name, ir_op_arity[op], nin);
    return false;
  }
  if (op_has(op, OPF_ELEMWISE)) {
    Shape s = ops[0]->shape;
    for (int i = 1; i < nin; i++) {
      if (!shape_broadcast(&s, &ops[i]->shape, &s)) {
        if (nin == 2)
          fail(&c, "%s: %s %s %s: shapes cannot be broadcast together", name, S(0, b0), binop_sym(op), S(1, b1));
        else
          fail(&c, "%s: %s, %s, %s: shapes cannot be broadcast together", name, S(0, b0), S(1, b1), S(2, b2));
        return false;
      }
    }
    int first = op == OP_SELECT ? 1 : 0;
    DType dt = ops[first]->dtype;
    for (int i = first + 1; i < nin; i++)
      if (ops[i]->dtype != dt) {
        fail(&c, "%s: %s %s %s: dtypes differ", name, S(first, b0), binop_sym(op), S(i, b1));
        return false;
      }
    if (op == OP_CAST) dt = cast_to;
    else if (op == OP_GT || op == OP_GE || op == OP_EQ) dt = DT_F32;
    else if (dt != DT_F32 && op != OP_NEG && op != OP_ABS && op != OP_ADD && op != OP_SUB && op != OP_MUL &&
             op != OP_SIGN && op != OP_MAXIMUM && op != OP_MINIMUM && op != OP_SELECT) {
      fail(&c, "%s: expects f32, got %s", name, S(0, b0));
      return false;
    }
    *odt = dt;
    *osh = s;
    return true;
  }
  *odt = nin > 0 ? ops[0]->dtype : DT_F32;
  switch (op) {
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST: case OP__COUNT:
      fail(&c, "%s: leaves are built with ir_leaf/ir_const", name);
      return false;
    case OP_DROPOUT_MASK:
      if (!out) { fail(&c, "%s: needs an output shape", name); return false; }
      *odt = DT_F32;
      *osh = *out;
      return true;
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID:
    case OP_TANH: case OP_ELU: case OP_LEAKY_RELU: case OP_POWS: case OP_SIGN: case OP_STEP: case OP_CAST:
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW: case OP_MAXIMUM: case OP_MINIMUM:
    case OP_GT: case OP_GE: case OP_EQ: case OP_SELECT:
      return false; /* handled above */
    case OP_BROADCAST: {
      Shape s;
      if (!out || !shape_broadcast(&ops[0]->shape, out, &s) || !shape_eq(&s, out)) {
        fail(&c, "broadcast: %s cannot be broadcast to %s", S(0, b0),
             out ? shape_str(ops[0]->dtype, out, b1, sizeof b1) : "?");
        return false;
      }
      *osh = *out;
      return true;
    }
    case OP_RESHAPE:
      if (!out || shape_numel(out) != shape_numel(&ops[0]->shape)) {
        fail(&c, "reshape: %s cannot be reshaped to %s (%lld elements vs %lld)", S(0, b0),
             out ? shape_str(ops[0]->dtype, out, b1, sizeof b1) : "?", (long long)shape_numel(&ops[0]->shape),
             out ? (long long)shape_numel(out) : 0LL);
        return false;
      }
      *osh = *out;
      return true;
    case OP_TRANSPOSE: {
      int r = ops[0]->shape.rank;
      unsigned seen = 0;
      Shape s;
      memset(&s, 0, sizeof s);
      s.rank = r;
      for (int i = 0; i < r; i++) {
        int p = at->perm.perm[i];
        if (p < 0 || p >= r || (seen & (1u << p))) {
          fail(&c, "transpose: the permutation is not a permutation of the %d axes of %s", r, S(0, b0));
          return false;
        }
        seen |= 1u << p;
        s.d[i] = ops[0]->shape.d[p];
      }
      *osh = s;
      return true;
    }
    case OP_SLICE: {
      const Shape *in = &ops[0]->shape;
      if (!out || out->rank != in->rank) { fail(&c, "slice: rank mismatch on %s", S(0, b0)); return false; }
      for (int i = 0; i < in->rank; i++) {
        int64_t st = at->slice.start[i], sp = at->slice.step[i], n = out->d[i];
        if (sp <= 0 || n <= 0 || st < 0 || st + (n - 1) * sp >= in->d[i]) {
          fail(&c, "slice: axis %d of %s: empty or out-of-range slice", i, S(0, b0));
          return false;
        }
      }
      *osh = *out;
      return true;
    }
    case OP_UNSLICE: {
      const Shape *in = &ops[0]->shape;
      if (!out || out->rank != in->rank) { fail(&c, "unslice: rank mismatch on %s", S(0, b0)); return false; }
      for (int i = 0; i < in->rank; i++) {
        int64_t st = at->slice.start[i], sp = at->slice.step[i], n = in->d[i];
        if (sp <= 0 || st < 0 || st + (n - 1) * sp >= out->d[i]) {
          fail(&c, "unslice: axis %d of %s does not fit", i, S(0, b0));
          return false;
        }
      }
      *osh = *out;
      return true;
    }
    case OP_CONCAT: {
      int ax = at->axis.axis, r = ops[0]->shape.rank;
      if (nin < 1 || ax < 0 || ax >= r) { fail(&c, "concat: axis %d out of range for %s", ax, S(0, b0)); return false; }
      Shape s = ops[0]->shape;
      for (int i = 1; i < nin; i++) {
        bool ok = ops[i]->shape.rank == r && ops[i]->dtype == ops[0]->dtype;
        for (int k = 0; ok && k < r; k++)
          if (k != ax && ops[i]->shape.d[k] != s.d[k]) ok = false;
        if (!ok) {
          fail(&c, "concat: %s and %s differ outside axis %d", S(0, b0), S(i, b1), ax);
          return false;
        }
        s.d[ax] += ops[i]->shape.d[ax];
      }
      *osh = s;
      return true;
    }
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: {
      int r = ops[0]->shape.rank;
      uint32_t axes = at->reduce.axes;
      if (r < 32 && (axes >> r) != 0) { fail(&c, "%s: axis out of range for %s", name, S(0, b0)); return false; }
      if (op != OP_ARGMAX && ops[0]->dtype != DT_F32) { fail(&c, "%s: expects f32, got %s", name, S(0, b0)); return false; }
      Shape s;
      memset(&s, 0, sizeof s);
      for (int i = 0; i < r; i++) {
        if (axes & (1u << i)) {
          if (at->reduce.keepdim) s.d[s.rank++] = 1;
        } else {
          s.d[s.rank++] = ops[0]->shape.d[i];
        }
      }
      *osh = s;
      if (op == OP_ARGMAX) *odt = DT_I32;
      return true;
    }
    case OP_MATMUL: {
      const Shape *a = &ops[0]->shape, *b = &ops[1]->shape;
      if (a->rank < 2 || b->rank < 2) {
        fail(&c, "matmul: %s @ %s: operands must have rank 2 or more", S(0, b0), S(1, b1));
        return false;
      }
      if (ops[0]->dtype != DT_F32 || ops[1]->dtype != DT_F32) {
        fail(&c, "matmul: %s @ %s: expects f32", S(0, b0), S(1, b1));
        return false;
      }
      int64_t k1 = a->d[a->rank - 1], k2 = b->d[b->rank - 2];
      if (k1 != k2) {
        fail(&c, "matmul: %s @ %s: inner dimensions %lld and %lld differ", S(0, b0), S(1, b1), (long long)k1,
             (long long)k2);
        return false;
      }
      Shape ba = *a, bb = *b, bs;
      ba.rank -= 2;
      bb.rank -= 2;
      if (!shape_broadcast(&ba, &bb, &bs)) {
        fail(&c, "matmul: %s @ %s: batch dimensions cannot be broadcast", S(0, b0), S(1, b1));
        return false;
      }
      bs.d[bs.rank++] = a->d[a->rank - 2];
      bs.d[bs.rank++] = b->d[b->rank - 1];
      *osh = bs;
      return true;
    }
    case OP_SOFTMAX: case OP_LOG_SOFTMAX:
      if (at->axis.axis < 0 || at->axis.axis >= ops[0]->shape.rank || ops[0]->dtype != DT_F32) {
        fail(&c, "%s: axis %d out of range for %s", name, at->axis.axis, S(0, b0));
        return false;
      }
      *osh = ops[0]->shape;
      return true;
    case OP_ONEHOT:
      if (ops[0]->dtype != DT_I32 || !out || out->rank != ops[0]->shape.rank + 1) {
        fail(&c, "onehot: expects i32 class indices, got %s", S(0, b0));
        return false;
      }
      *odt = DT_F32;
      *osh = *out;
      return true;
    case OP_CONV2D: {
      const Shape *x = &ops[0]->shape, *w = &ops[1]->shape;
      const ConvAttr *cv = &at->conv;
      if (x->rank != 4 || w->rank != 4) {
        fail(&c, "conv2d: input %s and weight %s must both have rank 4 ([N,C,H,W] and [Cout,Cin/groups,kh,kw])",
             S(0, b0), S(1, b1));
        return false;
      }
      if (cv->groups < 1 || x->d[1] % cv->groups != 0 || w->d[0] % cv->groups != 0) {
        fail(&c, "conv2d: groups=%d must divide the input channels of %s and the output channels of %s", cv->groups,
             S(0, b0), S(1, b1));
        return false;
      }
      if (w->d[1] * cv->groups != x->d[1]) {
        fail(&c, "conv2d: input %s has %lld channels but weight %s expects %lld (%lld per group x %d groups)",
             S(0, b0), (long long)x->d[1], S(1, b1), (long long)(w->d[1] * cv->groups), (long long)w->d[1],
             cv->groups);
        return false;
      }
      for (int i = 0; i < 2; i++)
        if (cv->stride[i] < 1 || cv->dil[i] < 1 || cv->pad[i] < 0) {
          fail(&c, "conv2d: stride and dilation must be >= 1 and padding >= 0");
          return false;
        }
      int64_t ho = conv_out(x->d[2], (int)w->d[2], cv->stride[0], cv->pad[0], cv->dil[0]);
      int64_t wo = conv_out(x->d[3], (int)w->d[3], cv->stride[1], cv->pad[1], cv->dil[1]);
      if (ho <= 0 || wo <= 0 || x->d[2] + 2 * cv->pad[0] < cv->dil[0] * (w->d[2] - 1) + 1 ||
          x->d[3] + 2 * cv->pad[1] < cv->dil[1] * (w->d[3] - 1) + 1) {
        fail(&c, "conv2d: kernel of %s (dilation %d,%d) is larger than the padded input %s", S(1, b1), cv->dil[0],
             cv->dil[1], S(0, b0));
        return false;
      }
      int64_t dd[4] = {x->d[0], w->d[0], ho, wo};
      *osh = shape_make(4, dd);
      return true;
    }
    case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D_BWD:
      if (!out || out->rank != 4) { fail(&c, "%s: needs a rank-4 output shape", name); return false; }
      *odt = DT_F32;
      *osh = *out;
      return true;
    case OP_MAXPOOL2D: case OP_AVGPOOL2D: case OP_MAXPOOL2D_ARGMAX: {
      const Shape *x = &ops[0]->shape;
      const PoolAttr *pa = &at->pool;
      if (x->rank != 4) { fail(&c, "%s: input %s must have rank 4 [N,C,H,W]", name, S(0, b0)); return false; }
      for (int i = 0; i < 2; i++) {
        if (pa->k[i] < 1 || pa->stride[i] < 1 || pa->pad[i] < 0) {
          fail(&c, "%s: window and stride must be >= 1 and padding >= 0", name);
          return false;
        }
        if (pa->pad[i] * 2 > pa->k[i]) {
          fail(&c, "%s: padding %d must be at most half the window %d", name, pa->pad[i], pa->k[i]);
          return false;
        }
        if (x->d[2 + i] + 2 * pa->pad[i] < pa->k[i]) {
          fail(&c, "%s: window %dx%d is larger than the padded input %s", name, pa->k[0], pa->k[1], S(0, b0));
          return false;
        }
      }
      int64_t dd[4] = {x->d[0], x->d[1], (x->d[2] + 2 * pa->pad[0] - pa->k[0]) / pa->stride[0] + 1,
                       (x->d[3] + 2 * pa->pad[1] - pa->k[1]) / pa->stride[1] + 1};
      *osh = shape_make(4, dd);
      *odt = op == OP_MAXPOOL2D_ARGMAX ? DT_I32 : DT_F32;
      return true;
    }
  }
  return false;
}

int ir_op(Graph *g, OpKind op, int nin, const int *in, const NodeAttr *attr, const Shape *out, DType cast_to,
          SrcLoc loc, Diag *d) {
  Node *ops[64];
  DL_ASSERT(nin <= 64);
  for (int i = 0; i < nin; i++) {
    if (in[i] < 0) return -1; /* an operand already failed */
    ops[i] = g->nodes[in[i]];
  }
  NodeAttr at;
  if (attr) at = *attr;
  else memset(&at, 0, sizeof at);
  DType dt;
  Shape sh;
  memset(&sh, 0, sizeof sh);
  if (!ir_infer(op, nin, ops, &at, out, cast_to, &dt, &sh, d, loc)) return -1;
  Node *n = ir_append(g, op, nin, in, loc);
  n->dtype = dt;
  n->shape = sh;
  n->attr = at;
  return n->id;
}
