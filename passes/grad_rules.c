/* grad_rules.c — the vector-Jacobian product of every op in ir/ops.def, as
 * IR built from forward ops (one switch, no default). Each rule receives the
 * upstream gradient gy (the shape of the node) and accumulates into its
 * operands through grad_accum, reducing broadcast gradients back to each
 * operand's shape. Formulas follow PyTorch's derivatives (torch 1.13). */
#include <string.h>

#include "passes/grad.h"

typedef struct {
  GradCtx *c;
  Graph *g;
  SrcLoc loc;
} B;

static const Shape *shp(B *b, int id) { return &b->g->nodes[id]->shape; }
static int un(B *b, OpKind op, int a) { return ir_un(b->g, op, a, b->loc, NULL); }
static int bin(B *b, OpKind op, int x, int y) { return ir_bin(b->g, op, x, y, b->loc, NULL); }
static int sc(B *b, float v) { return ir_scalar(b->g, v, b->loc); }
static int op_n(B *b, OpKind op, int nin, const int *in, const NodeAttr *at, const Shape *out) {
  return ir_op(b->g, op, nin, in, at, out, DT_F32, b->loc, NULL);
}
static int sel(B *b, int cond, int x, int y) {
  int in[3] = {cond, x, y};
  return op_n(b, OP_SELECT, 3, in, NULL, NULL);
}
static int reshape(B *b, int a, Shape s) {
  return shape_eq(shp(b, a), &s) ? a : ir_reshape(b->g, a, s, b->loc, NULL);
}
static int bcast(B *b, int a, Shape s) {
  return shape_eq(shp(b, a), &s) ? a : ir_broadcast(b->g, a, s, b->loc, NULL);
}

/* Sums gv (of a broadcast shape) down to `target` (NumPy broadcasting in
 * reverse, as torch's sum_to_size). */
static int sum_to(B *b, int gv, const Shape *target) {
  Shape s = *shp(b, gv);
  if (shape_eq(&s, target)) return gv;
  DL_ASSERT(s.rank >= target->rank);
  uint32_t axes = 0;
  int lead = s.rank - target->rank;
  for (int i = 0; i < s.rank; i++) {
    int j = i - lead;
    if (j < 0 || (target->d[j] == 1 && s.d[i] != 1)) axes |= 1u << i;
  }
  int r = gv;
  if (axes) r = ir_reduce(b->g, OP_SUM, gv, axes, false, b->loc, NULL);
  return reshape(b, r, *target);
}

/* Accumulates gv, reduced to the operand's shape, into operand `id`. */
static void acc(B *b, int id, int gv) {
  if (!grad_wanted(b->c, id)) return;
  grad_accum(b->c, id, sum_to(b, gv, shp(b, id)));
}
static bool want(B *b, int id) { return grad_wanted(b->c, id); }

/* x's shape with the reduced axes kept as 1. */
static Shape keep_shape(const Shape *x, uint32_t axes) {
  Shape s = *x;
  for (int i = 0; i < x->rank; i++)
    if (axes & (1u << i)) s.d[i] = 1;
  return s;
}

static int transpose_last2(B *b, int a) {
  NodeAttr at;
  memset(&at, 0, sizeof at);
  int r = shp(b, a)->rank;
  for (int i = 0; i < r; i++) at.perm.perm[i] = i;
  at.perm.perm[r - 2] = r - 1;
  at.perm.perm[r - 1] = r - 2;
  return op_n(b, OP_TRANSPOSE, 1, &a, &at, NULL);
}

/* Mask of `cond` with ties (a == b) counted half, as torch's maximum/minimum
 * backward: where(a == b, 1/2, cond). */
static int tie_mask(B *b, int x, int y, int gt) {
  return sel(b, bin(b, OP_EQ, x, y), sc(b, 0.5f), gt);
}

void grad_rule(GradCtx *c, const Node *n, int gy) {
  B bb = {c, c->g, n->loc};
  B *b = &bb;
  const int y = n->id;
  const int x = n->nin > 0 ? n->in[0] : -1;
  const int x1 = n->nin > 1 ? n->in[1] : -1;
  switch (n->op) {
    /* leaves and non-differentiable ops contribute nothing */
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST: case OP_DROPOUT_MASK:
    case OP_SIGN: case OP_STEP: case OP_CAST: case OP_GT: case OP_GE: case OP_EQ: case OP_ARGMAX:
    case OP_ONEHOT: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D_BWD:
      return;
    case OP__COUNT: break;

    /* ---- elementwise unary ---- */
    case OP_NEG: acc(b, x, un(b, OP_NEG, gy)); return;
    case OP_EXP: acc(b, x, bin(b, OP_MUL, gy, y)); return;
    case OP_LOG: acc(b, x, bin(b, OP_DIV, gy, x)); return;
    case OP_SQRT: acc(b, x, bin(b, OP_DIV, gy, bin(b, OP_MUL, sc(b, 2.0f), y))); return;
    case OP_ABS: acc(b, x, bin(b, OP_MUL, gy, un(b, OP_SIGN, x))); return;
    case OP_RELU: /* relu(x) > 0 exactly when x > 0: mask from the output, so the input can fuse away */
      acc(b, x, bin(b, OP_MUL, gy, un(b, OP_STEP, y)));
      return;
    case OP_SIGMOID: /* grad * (1 - y) * y */
      acc(b, x, bin(b, OP_MUL, bin(b, OP_MUL, gy, bin(b, OP_SUB, sc(b, 1.0f), y)), y));
      return;
    case OP_TANH: /* grad * (1 - y*y) */
      acc(b, x, bin(b, OP_MUL, gy, bin(b, OP_SUB, sc(b, 1.0f), bin(b, OP_MUL, y, y))));
      return;
    case OP_ELU: /* x > 0 ? grad : grad * (y + alpha)  (y + alpha = alpha*exp(x)) */
      acc(b, x, sel(b, un(b, OP_STEP, x), gy, bin(b, OP_MUL, gy, bin(b, OP_ADD, y, sc(b, n->attr.scalar.v)))));
      return;
    case OP_LEAKY_RELU: /* x > 0 ? grad : grad * slope */
      acc(b, x, sel(b, un(b, OP_STEP, x), gy, bin(b, OP_MUL, gy, sc(b, n->attr.scalar.v))));
      return;
    case OP_POWS: {
      float p = n->attr.scalar.v;
      if (!want(b, x)) return;
      if (p == 0.0f) { /* zeros (not a CONST: that marks an unreached param) */
        acc(b, x, bin(b, OP_MUL, gy, sc(b, 0.0f)));
      } else if (p == 1.0f) {
        acc(b, x, gy);
      } else {
        int xp; /* x ** (p - 1) */
        if (p == 2.0f) {
          xp = x;
        } else {
          NodeAttr at;
          memset(&at, 0, sizeof at);
          at.scalar.v = p - 1.0f;
          xp = op_n(b, OP_POWS, 1, &x, &at, NULL);
        }
        acc(b, x, bin(b, OP_MUL, gy, bin(b, OP_MUL, sc(b, p), xp)));
      }
      return;
    }

    /* ---- elementwise binary (broadcasting) ---- */
    case OP_ADD:
      acc(b, x, gy);
      acc(b, x1, gy);
      return;
    case OP_SUB:
      acc(b, x, gy);
      if (want(b, x1)) acc(b, x1, un(b, OP_NEG, gy));
      return;
    case OP_MUL:
      if (want(b, x)) acc(b, x, bin(b, OP_MUL, gy, x1));
      if (want(b, x1)) acc(b, x1, bin(b, OP_MUL, gy, x));
      return;
    case OP_DIV: /* a: grad / b;  b: -grad * ((a / b) / b) */
      if (want(b, x)) acc(b, x, bin(b, OP_DIV, gy, x1));
      if (want(b, x1)) acc(b, x1, bin(b, OP_MUL, un(b, OP_NEG, gy), bin(b, OP_DIV, y, x1)));
      return;
    case OP_POW:
      /* a: where(b == 0, 0, grad * (b * a ** (b - 1)));
         b: grad * where(a == 0 & b >= 0, 0, y * log(a)) */
      if (want(b, x)) {
        int t = bin(b, OP_MUL, gy, bin(b, OP_MUL, x1, bin(b, OP_POW, x, bin(b, OP_SUB, x1, sc(b, 1.0f)))));
        acc(b, x, sel(b, bin(b, OP_EQ, x1, sc(b, 0.0f)), sc(b, 0.0f), t));
      }
      if (want(b, x1)) {
        int cond = bin(b, OP_MUL, bin(b, OP_EQ, x, sc(b, 0.0f)), bin(b, OP_GE, x1, sc(b, 0.0f)));
        acc(b, x1, bin(b, OP_MUL, gy, sel(b, cond, sc(b, 0.0f), bin(b, OP_MUL, y, un(b, OP_LOG, x)))));
      }
      return;
    case OP_MAXIMUM:
    case OP_MINIMUM: {
      /* ties split the gradient evenly, as torch.maximum/minimum */
      bool mx = n->op == OP_MAXIMUM;
      if (want(b, x)) acc(b, x, bin(b, OP_MUL, gy, tie_mask(b, x, x1, mx ? bin(b, OP_GT, x, x1) : bin(b, OP_GT, x1, x))));
      if (want(b, x1)) acc(b, x1, bin(b, OP_MUL, gy, tie_mask(b, x, x1, mx ? bin(b, OP_GT, x1, x) : bin(b, OP_GT, x, x1))));
      return;
    }
    case OP_SELECT: { /* cond gets nothing */
      int a = n->in[1], e = n->in[2];
      if (want(b, a)) acc(b, a, sel(b, x, gy, sc(b, 0.0f)));
      if (want(b, e)) acc(b, e, sel(b, x, sc(b, 0.0f), gy));
      return;
    }

    /* ---- shape ops ---- */
    case OP_BROADCAST: acc(b, x, gy); return; /* acc sums back to x's shape */
    case OP_RESHAPE: acc(b, x, reshape(b, gy, *shp(b, x))); return;
    case OP_TRANSPOSE: {
      NodeAttr at;
      memset(&at, 0, sizeof at);
      for (int i = 0; i < n->shape.rank; i++) at.perm.perm[n->attr.perm.perm[i]] = i;
      acc(b, x, op_n(b, OP_TRANSPOSE, 1, &gy, &at, NULL));
      return;
    }
    case OP_SLICE: acc(b, x, op_n(b, OP_UNSLICE, 1, &gy, &n->attr, shp(b, x))); return;
    case OP_UNSLICE: acc(b, x, op_n(b, OP_SLICE, 1, &gy, &n->attr, shp(b, x))); return;
    case OP_CONCAT: {
      int ax = n->attr.axis.axis;
      int64_t off = 0;
      for (int i = 0; i < n->nin; i++) {
        int xi = n->in[i];
        const Shape *s = shp(b, xi);
        if (want(b, xi)) {
          NodeAttr at;
          memset(&at, 0, sizeof at);
          for (int k = 0; k < s->rank; k++) at.slice.step[k] = 1;
          at.slice.start[ax] = off;
          acc(b, xi, op_n(b, OP_SLICE, 1, &gy, &at, s));
        }
        off += s->d[ax];
      }
      return;
    }

    /* ---- reductions ---- */
    case OP_SUM:
    case OP_MEAN: {
      const Shape *xs = shp(b, x);
      uint32_t axes = n->attr.reduce.axes;
      int gk = reshape(b, gy, keep_shape(xs, axes));
      if (n->op == OP_MEAN) {
        int64_t cnt = 1;
        for (int i = 0; i < xs->rank; i++)
          if (axes & (1u << i)) cnt *= xs->d[i];
        gk = bin(b, OP_DIV, gk, sc(b, (float)cnt));
      }
      acc(b, x, bcast(b, gk, *xs));
      return;
    }
    case OP_MAX: { /* amax: the gradient is split evenly among the maxima */
      const Shape *xs = shp(b, x);
      uint32_t axes = n->attr.reduce.axes;
      Shape ks = keep_shape(xs, axes);
      int gk = reshape(b, gy, ks), yk = reshape(b, y, ks);
      int mask = bin(b, OP_EQ, x, yk);
      int cnt = ir_reduce(b->g, OP_SUM, mask, axes, true, b->loc, NULL);
      acc(b, x, bin(b, OP_MUL, bin(b, OP_DIV, gk, cnt), mask));
      return;
    }
    case OP_SOFTMAX: { /* y * (g - sum(g * y, axis, keepdim)) */
      int s = ir_reduce(b->g, OP_SUM, bin(b, OP_MUL, gy, y), 1u << n->attr.axis.axis, true, b->loc, NULL);
      acc(b, x, bin(b, OP_MUL, y, bin(b, OP_SUB, gy, s)));
      return;
    }
    case OP_LOG_SOFTMAX: { /* g - exp(y) * sum(g, axis, keepdim) */
      int s = ir_reduce(b->g, OP_SUM, gy, 1u << n->attr.axis.axis, true, b->loc, NULL);
      acc(b, x, bin(b, OP_SUB, gy, bin(b, OP_MUL, un(b, OP_EXP, y), s)));
      return;
    }

    /* ---- contractions and neural ops ---- */
    case OP_MATMUL: /* a: g @ b^T;  b: a^T @ g (then summed over broadcast batch dims) */
      if (want(b, x)) acc(b, x, bin(b, OP_MATMUL, gy, transpose_last2(b, x1)));
      if (want(b, x1)) acc(b, x1, bin(b, OP_MATMUL, transpose_last2(b, x), gy));
      return;
    case OP_CONV2D:
      if (want(b, x)) {
        int in[2] = {gy, x1};
        acc(b, x, op_n(b, OP_CONV2D_BWD_DATA, 2, in, &n->attr, shp(b, x)));
      }
      if (want(b, x1)) {
        int in[2] = {x, gy};
        acc(b, x1, op_n(b, OP_CONV2D_BWD_FILTER, 2, in, &n->attr, shp(b, x1)));
      }
      return;
    case OP_CONV2D_BWD_DATA: /* y = B_x(dy, w), bilinear: dy gets conv(g, w), w gets bwd_filter(g, dy) */
      if (want(b, x)) {
        int in[2] = {gy, x1};
        acc(b, x, op_n(b, OP_CONV2D, 2, in, &n->attr, NULL));
      }
      if (want(b, x1)) {
        int in[2] = {gy, x};
        acc(b, x1, op_n(b, OP_CONV2D_BWD_FILTER, 2, in, &n->attr, shp(b, x1)));
      }
      return;
    case OP_CONV2D_BWD_FILTER: /* y = B_w(x, dy): x gets bwd_data(dy, g), dy gets conv(x, g) */
      if (want(b, x)) {
        int in[2] = {x1, gy};
        acc(b, x, op_n(b, OP_CONV2D_BWD_DATA, 2, in, &n->attr, shp(b, x)));
      }
      if (want(b, x1)) {
        int in[2] = {x, gy};
        acc(b, x1, op_n(b, OP_CONV2D, 2, in, &n->attr, NULL));
      }
      return;
    case OP_MAXPOOL2D: {
      int am = op_n(b, OP_MAXPOOL2D_ARGMAX, 1, &x, &n->attr, NULL);
      int in[2] = {gy, am};
      acc(b, x, op_n(b, OP_MAXPOOL2D_BWD, 2, in, &n->attr, shp(b, x)));
      return;
    }
    case OP_AVGPOOL2D: acc(b, x, op_n(b, OP_AVGPOOL2D_BWD, 1, &gy, &n->attr, shp(b, x))); return;
  }
  DL_ASSERT(!"grad_rule: unknown op");
}
