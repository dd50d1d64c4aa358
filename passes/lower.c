/* lower.c — graph → kernels (see lower.h).
 *
 * 1. Decide which nodes get a buffer: leaves (shared by name), reductions,
 *    contractions and neural ops, values with a role (output, metric, loss,
 *    grad), and elementwise values that are expensive and used more than
 *    once or read repeatedly by a contraction. Everything else is inlined.
 * 2. Emit one kernel per materialised node in topological order; an inlined
 *    operand contributes its expression tree with its loop variables
 *    replaced by the consumer's indices (value_at).
 * 3. Emit write-back kernels for updates (params, state, optimizer state)
 *    in an order that never clobbers a value another update still reads. */
#include "passes/lower.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const Graph *g;
  Program *p;
  Arena *a;
  EntryKind e;
  bool fuse;
  int *buf;      /* node -> buffer or -1 (inline) */
  int *cost;     /* compute ops in the inlined expression of a node */
  int *uses;
  bool *multiread;
  int n_kernels;
  /* im2col buffers by (input node, convolution geometry), shared by a
   * convolution and the filter gradient of the same input */
  struct { int x; ConvAttr cv; int64_t kh, kw; int buf; bool shift; } cols[64];
  int n_cols;
  /* padded copies of convolution inputs by (input node, padding) */
  struct { int x, p0, p1, buf; bool neg_inf; } pads[64];
  int n_pads;
  /* graph nodes computed by the kernel being built (for --emit=dot) */
  int *members;
  int n_members, cap_members;
} L;

static void add_member(L *l, int id) {
  for (int i = 0; i < l->n_members; i++)
    if (l->members[i] == id) return;
  if (l->n_members == l->cap_members) {
    int cap = l->cap_members ? l->cap_members * 2 : 16;
    l->members = arena_grow(l->a, l->members, sizeof(int), (size_t)l->n_members, (size_t)cap);
    l->cap_members = cap;
  }
  l->members[l->n_members++] = id;
}

static IExpr *V(L *l, int k) { return ix_var(l->a, k); }
static IExpr *C(L *l, int64_t v) { return ix_const(l->a, v); }
static IExpr *ADD(L *l, IExpr *x, IExpr *y) { return ix_bin(l->a, IX_ADD, x, y); }
static IExpr *SUB(L *l, IExpr *x, IExpr *y) { return ix_bin(l->a, IX_SUB, x, y); }
static IExpr *MUL(L *l, IExpr *x, int64_t c) { return ix_bin(l->a, IX_MUL, x, C(l, c)); }
static IExpr *AND(L *l, IExpr *x, IExpr *y) {
  if (!x) return y;
  if (!y) return x;
  return ix_bin(l->a, IX_AND, x, y);
}
/* 0 <= x < n */
static IExpr *in_range(L *l, IExpr *x, int64_t n) {
  return AND(l, ix_bin(l->a, IX_GE, x, C(l, 0)), ix_bin(l->a, IX_LT, x, C(l, n)));
}

static bool is_named_leaf(OpKind op) { return op == OP_INPUT || op == OP_LABEL || op == OP_PARAM || op == OP_STATE; }

/* Consumers that read each operand element many times: inlining anything but
 * index maps into them would recompute it. */
static bool reads_repeatedly(OpKind op) {
  return op_has(op, OPF_CONTRACTION) || op == OP_SOFTMAX || op == OP_LOG_SOFTMAX || op == OP_MAXPOOL2D ||
         op == OP_MAXPOOL2D_ARGMAX || op == OP_AVGPOOL2D || op == OP_MAXPOOL2D_BWD || op == OP_AVGPOOL2D_BWD;
}

static bool inlinable(OpKind op) {
  return op_has(op, OPF_ELEMWISE) || op_has(op, OPF_SHAPE) || op == OP_CONST || op == OP_DROPOUT_MASK ||
         op == OP_ONEHOT;
}

static int new_temp(L *l, const Node *n) {
  char name[64];
  snprintf(name, sizeof name, "%%t%d", n->id);
  return kir_buffer(l->p, name, BUF_TEMP, n->dtype, n->shape, (int)l->e);
}

static int leaf_buffer(L *l, const Node *n) {
  BufRole role = BUF_INPUT;
  switch (n->op) {
    case OP_INPUT: role = BUF_INPUT; break;
    case OP_LABEL: role = BUF_LABEL; break;
    case OP_PARAM: role = BUF_PARAM; break;
    case OP_STATE: role = n->attr.leaf.opt_state ? BUF_OPTSTATE : BUF_STATE; break;
    default: DL_ASSERT(!"not a named leaf");
  }
  int b = kir_buffer(l->p, n->attr.leaf.name, role, n->dtype, n->shape, -1);
  Buffer *bf = &l->p->bufs[b];
  bf->init = n->attr.leaf.init;
  return b;
}

/* ---- expressions ---- */
/* The value of an index expression (a condition or a window position) as dtype. */
static VExpr *ix_value(L *l, IExpr *ix, DType dt) {
  VExpr *c = ARENA_NEW(l->a, VExpr);
  c->op = VX_INDEX;
  c->dtype = dt;
  c->ix = ix;
  return c;
}

static VExpr *value_at(L *l, int id, IExpr **idx, IExpr *guard);
static int view_of(L *l, int buf, Shape s);

static void bcast_idx(L *l, const Shape *in, const Shape *out, IExpr **idx, IExpr **res) {
  int off = out->rank - in->rank;
  for (int k = 0; k < in->rank; k++) res[k] = in->d[k] == 1 ? C(l, 0) : idx[k + off];
}

static IExpr *linearize(L *l, const Shape *s, IExpr **idx) {
  IExpr *lin = C(l, 0);
  for (int k = 0; k < s->rank; k++) lin = ADD(l, MUL(l, lin, s->d[k]), idx[k]);
  return lin;
}

static void delinearize(L *l, const Shape *s, IExpr *lin, IExpr **res) {
  int64_t stride = 1;
  for (int k = s->rank - 1; k >= 0; k--) {
    IExpr *q = ix_bin(l->a, IX_DIV, lin, C(l, stride));
    res[k] = k == 0 ? q : ix_bin(l->a, IX_MOD, q, C(l, s->d[k]));
    stride *= s->d[k];
  }
}

static VxOp vx_of(OpKind op) {
  switch (op) {
    case OP_NEG: return VX_NEG;
    case OP_EXP: return VX_EXP;
    case OP_LOG: return VX_LOG;
    case OP_SQRT: return VX_SQRT;
    case OP_ABS: return VX_ABS;
    case OP_RELU: return VX_RELU;
    case OP_SIGMOID: return VX_SIGMOID;
    case OP_TANH: return VX_TANH;
    case OP_ELU: return VX_ELU;
    case OP_LEAKY_RELU: return VX_LEAKY;
    case OP_POWS: return VX_POWS;
    case OP_SIGN: return VX_SIGN;
    case OP_STEP: return VX_STEP;
    case OP_CAST: return VX_CAST;
    case OP_ADD: return VX_ADD;
    case OP_SUB: return VX_SUB;
    case OP_MUL: return VX_MUL;
    case OP_DIV: return VX_DIV;
    case OP_POW: return VX_POW;
    case OP_MAXIMUM: return VX_MAX;
    case OP_MINIMUM: return VX_MIN;
    case OP_GT: return VX_GT;
    case OP_GE: return VX_GE;
    case OP_EQ: return VX_EQ;
    default: DL_ASSERT(!"no elementwise kernel op");
  }
  return VX_ADD;
}

static VExpr *to_f32(L *l, VExpr *x) {
  if (x->dtype == DT_F32) return x;
  VExpr *c = vx_un(l->a, VX_CAST, x);
  c->dtype = DT_F32;
  return c;
}

/* The value of node `id` computed inline at idx (its own op applied to its
 * operands' values). Loads inside are guarded by `guard`. */
static VExpr *compute_at(L *l, int id, IExpr **idx, IExpr *guard) {
  const Graph *g = l->g;
  const Node *n = g->nodes[id];
  Arena *a = l->a;
  IExpr *sub[IR_MAX_RANK];
  add_member(l, id);
  if (n->op == OP_CONST) return vx_const(a, n->dtype, n->attr.scalar.v);
  if (n->op == OP_DROPOUT_MASK) {
    VExpr *r = ARENA_NEW(a, VExpr);
    r->op = VX_RAND;
    r->dtype = DT_F32;
    r->buf = l->p->rng_buf;
    r->ix = linearize(l, &n->shape, idx);
    r->salt = n->attr.dropout.salt;
    float p = n->attr.dropout.p;
    VExpr *keep = vx_bin(a, VX_GE, r, vx_const(a, DT_F32, p));
    return vx_select(a, keep, vx_const(a, DT_F32, p < 1.0f ? 1.0 / (1.0 - (double)p) : 0.0), vx_const(a, DT_F32, 0));
  }
  if (op_has(n->op, OPF_ELEMWISE)) {
    VExpr *v[3];
    for (int j = 0; j < n->nin; j++) {
      const Node *o = g->nodes[n->in[j]];
      bcast_idx(l, &o->shape, &n->shape, idx, sub);
      v[j] = value_at(l, n->in[j], sub, guard);
    }
    if (n->op == OP_SELECT) return vx_select(a, v[0], v[1], v[2]);
    VxOp op = vx_of(n->op);
    if (n->nin == 1) {
      VExpr *r = vx_un(a, op, v[0]);
      r->f = n->attr.scalar.v;
      if (n->op == OP_CAST) r->dtype = n->dtype;
      return r;
    }
    VExpr *r = vx_bin(a, op, v[0], v[1]);
    if (n->op == OP_GT || n->op == OP_GE || n->op == OP_EQ) return to_f32(l, r);
    return r;
  }
  const Node *o = n->nin ? g->nodes[n->in[0]] : NULL;
  switch (n->op) {
    case OP_BROADCAST:
      bcast_idx(l, &o->shape, &n->shape, idx, sub);
      return value_at(l, n->in[0], sub, guard);
    case OP_RESHAPE:
      /* a reshape of a buffer reads a view of it in the reshape's shape:
       * the index stays as affine as idx (a flatten's adjoint read by a
       * pooling adjoint, whose rows then vectorize) */
      if (l->buf[n->in[0]] >= 0)
        return vx_load(a, n->dtype, view_of(l, l->buf[n->in[0]], n->shape), n->shape.rank, idx, guard, 0.0f);
      delinearize(l, &o->shape, linearize(l, &n->shape, idx), sub);
      return value_at(l, n->in[0], sub, guard);
    case OP_TRANSPOSE:
      for (int k = 0; k < n->shape.rank; k++) sub[n->attr.perm.perm[k]] = idx[k];
      return value_at(l, n->in[0], sub, guard);
    case OP_SLICE:
      for (int k = 0; k < n->shape.rank; k++)
        sub[k] = ADD(l, C(l, n->attr.slice.start[k]), MUL(l, idx[k], n->attr.slice.step[k]));
      return value_at(l, n->in[0], sub, guard);
    case OP_UNSLICE: {
      IExpr *cond = NULL;
      for (int k = 0; k < n->shape.rank; k++) {
        int64_t st = n->attr.slice.start[k], sp = n->attr.slice.step[k], cnt = o->shape.d[k];
        IExpr *t = SUB(l, idx[k], C(l, st));
        if (st == 0 && sp == 1 && cnt == n->shape.d[k]) {
          sub[k] = idx[k];
          continue;
        }
        cond = AND(l, cond, ix_bin(a, IX_GE, t, C(l, 0)));
        if (sp != 1) cond = AND(l, cond, ix_bin(a, IX_EQ, ix_bin(a, IX_MOD, t, C(l, sp)), C(l, 0)));
        sub[k] = ix_bin(a, IX_DIV, t, C(l, sp));
        cond = AND(l, cond, ix_bin(a, IX_LT, sub[k], C(l, cnt)));
      }
      VExpr *v = value_at(l, n->in[0], sub, AND(l, guard, cond));
      if (!cond) return v;
      VExpr *c = ix_value(l, cond, DT_F32);
      return vx_select(a, c, v, vx_const(a, n->dtype, 0));
    }
    case OP_CONCAT: {
      int ax = n->attr.axis.axis;
      VExpr *r = NULL;
      int64_t off = n->shape.d[ax];
      for (int j = n->nin - 1; j >= 0; j--) {
        const Node *oj = g->nodes[n->in[j]];
        off -= oj->shape.d[ax];
        for (int k = 0; k < n->shape.rank; k++) sub[k] = idx[k];
        sub[ax] = SUB(l, idx[ax], C(l, off));
        IExpr *cond = in_range(l, sub[ax], oj->shape.d[ax]);
        VExpr *v = value_at(l, n->in[j], sub, AND(l, guard, cond));
        if (!r) {
          r = v;
        } else {
          VExpr *c = ix_value(l, cond, DT_F32);
          r = vx_select(a, c, v, r);
        }
      }
      return r;
    }
    case OP_ONEHOT: {
      int r = o->shape.rank;
      VExpr *y = value_at(l, n->in[0], idx, guard);
      /* a feed of class indices: its values are checked at run time (one
       * out of range would select no class and pass silently) */
      int fb = l->buf[n->in[0]];
      if (fb >= 0 && (l->p->bufs[fb].role == BUF_LABEL || l->p->bufs[fb].role == BUF_INPUT)) {
        Buffer *bf = &l->p->bufs[fb];
        if (!bf->classes || bf->classes > n->shape.d[r]) bf->classes = n->shape.d[r]; /* one-hot [.., C] */
      }
      VExpr *c = ix_value(l, idx[r], DT_I32);
      return to_f32(l, vx_bin(a, VX_EQ, y, c));
    }
    default:
      DL_ASSERT(!"compute_at: op is not inlinable");
  }
  return NULL;
}

static VExpr *value_at(L *l, int id, IExpr **idx, IExpr *guard) {
  const Node *n = l->g->nodes[id];
  if (l->buf[id] >= 0) return vx_load(l->a, n->dtype, l->buf[id], n->shape.rank, idx, guard, 0.0f);
  return compute_at(l, id, idx, guard);
}

/* ---- kernels ---- */
static Kernel *new_kernel(L *l, const Node *n, int out_buf, const char *what) {
  Kernel *k = ARENA_NEW(l->a, Kernel);
  k->id = l->n_kernels++;
  k->name = arena_printf(l->a, "k%d_%s_%s", k->id, (const char *[]){"train", "eval", "infer"}[l->e], what);
  for (char *c = (char *)k->name; *c; c++)
    if (*c == '.' || *c == '@' || *c == '%') *c = '_';
  k->loc = n->loc;
  k->ops = ir_op_names[n->op];
  k->phase = n->phase;
  k->out_buf = out_buf;
  k->dtype = l->p->bufs[out_buf].dtype;
  k->shape = l->p->bufs[out_buf].shape;
  k->flops = shape_numel(&k->shape);
  l->n_members = 0;
  add_member(l, n->id);
  return k;
}

static void emit(L *l, Kernel *k) {
  int64_t red = 1;
  for (int i = 0; i < k->n_red; i++) red *= k->red_ext[i];
  k->flops = shape_numel(&k->shape) * red * (k->red == RED_NONE ? 1 : 2);
  k->n_members = l->n_members;
  k->members = ARENA_ARRAY(l->a, int, l->n_members + 1);
  memcpy(k->members, l->members, sizeof(int) * (size_t)l->n_members);
  kir_add_kernel(l->p, l->e, k);
}

static void vars(L *l, IExpr **v, int n) {
  for (int i = 0; i < n; i++) v[i] = V(l, i);
}

static VExpr *acc(L *l) {
  VExpr *e = ARENA_NEW(l->a, VExpr);
  e->op = VX_ACC;
  e->dtype = DT_F32;
  return e;
}

static void lower_reduce(L *l, const Node *n, int out) {
  const Node *x = l->g->nodes[n->in[0]];
  Kernel *k = new_kernel(l, n, out, ir_op_names[n->op]);
  int ro = n->shape.rank, pos = 0, nr = 0;
  IExpr *idx[IR_MAX_RANK];
  int64_t count = 1;
  for (int i = 0; i < x->shape.rank; i++) {
    if (n->attr.reduce.axes & (1u << i)) {
      k->red_ext[nr] = x->shape.d[i];
      count *= x->shape.d[i];
      idx[i] = V(l, ro + nr++);
      if (n->attr.reduce.keepdim) pos++;
    } else {
      idx[i] = V(l, pos++);
    }
  }
  k->n_red = nr;
  k->body = value_at(l, n->in[0], idx, NULL);
  switch (n->op) {
    case OP_SUM: k->red = RED_SUM; break;
    case OP_MEAN:
      k->red = RED_SUM;
      k->epilogue = vx_bin(l->a, VX_DIV, acc(l), vx_const(l->a, DT_F32, (double)count));
      break;
    case OP_MAX: k->red = RED_MAX; break;
    case OP_ARGMAX: k->red = RED_ARGMAX; break;
    default: DL_ASSERT(!"not a reduction");
  }
  emit(l, k);
}

static void lower_matmul(L *l, const Node *n, int out) {
  const Node *A = l->g->nodes[n->in[0]], *B = l->g->nodes[n->in[1]];
  Kernel *k = new_kernel(l, n, out, "matmul");
  int r = n->shape.rank;
  IExpr *v[IR_MAX_RANK + 1], *ia[IR_MAX_RANK], *ib[IR_MAX_RANK];
  vars(l, v, r + 1);
  Shape ba = A->shape, bb = B->shape, bo = n->shape;
  ba.rank -= 2;
  bb.rank -= 2;
  bo.rank -= 2;
  bcast_idx(l, &ba, &bo, v, ia);
  bcast_idx(l, &bb, &bo, v, ib);
  ia[ba.rank] = v[r - 2];
  ia[ba.rank + 1] = v[r];
  ib[bb.rank] = v[r];
  ib[bb.rank + 1] = v[r - 1];
  k->red = RED_SUM;
  k->n_red = 1;
  k->red_ext[0] = A->shape.d[A->shape.rank - 1];
  k->body = vx_bin(l->a, VX_MUL, value_at(l, n->in[0], ia, NULL), value_at(l, n->in[1], ib, NULL));
  emit(l, k);
}

static void lower_softmax(L *l, const Node *n, int out) {
  const Node *x = l->g->nodes[n->in[0]];
  int ax = n->attr.axis.axis, r = n->shape.rank;
  Shape ks = x->shape;
  ks.d[ax] = 1;
  int mb = kir_buffer(l->p, arena_printf(l->a, "%%t%d.max", n->id), BUF_TEMP, DT_F32, ks, (int)l->e);
  int sb = kir_buffer(l->p, arena_printf(l->a, "%%t%d.sum", n->id), BUF_TEMP, DT_F32, ks, (int)l->e);
  IExpr *v[IR_MAX_RANK + 1], *ix[IR_MAX_RANK], *kx[IR_MAX_RANK];
  vars(l, v, r + 1);
  for (int i = 0; i < r; i++) ix[i] = i == ax ? v[r] : v[i];
  /* max over the axis */
  Kernel *km = new_kernel(l, n, mb, "softmax_max");
  km->red = RED_MAX;
  km->n_red = 1;
  km->red_ext[0] = x->shape.d[ax];
  km->body = value_at(l, n->in[0], ix, NULL);
  emit(l, km);
  /* sum of exp(x - max) */
  for (int i = 0; i < r; i++) kx[i] = i == ax ? C(l, 0) : v[i];
  Kernel *ks_ = new_kernel(l, n, sb, "softmax_sum");
  ks_->red = RED_SUM;
  ks_->n_red = 1;
  ks_->red_ext[0] = x->shape.d[ax];
  ks_->body = vx_un(l->a, VX_EXP, vx_bin(l->a, VX_SUB, value_at(l, n->in[0], ix, NULL),
                                         vx_load(l->a, DT_F32, mb, r, kx, NULL, 0)));
  emit(l, ks_);
  /* normalise */
  Kernel *kf = new_kernel(l, n, out, ir_op_names[n->op]);
  VExpr *d = vx_bin(l->a, VX_SUB, value_at(l, n->in[0], v, NULL), vx_load(l->a, DT_F32, mb, r, kx, NULL, 0));
  VExpr *s = vx_load(l->a, DT_F32, sb, r, kx, NULL, 0);
  kf->body = n->op == OP_SOFTMAX ? vx_bin(l->a, VX_DIV, vx_un(l->a, VX_EXP, d), s)
                                 : vx_bin(l->a, VX_SUB, d, vx_un(l->a, VX_LOG, s));
  emit(l, kf);
}

/* Input coordinate of an output position for conv/pool windows. */
static IExpr *window_in(L *l, IExpr *o, IExpr *kk, int stride, int pad, int dil) {
  return ADD(l, SUB(l, MUL(l, o, stride), C(l, pad)), MUL(l, kk, dil));
}

/* For the adjoint of a window: the output position that reads input t =
 * h + pad - kk*dil, valid when divisible by stride and in [0, n_out). */
static IExpr *window_out(L *l, IExpr *h, IExpr *kk, int stride, int pad, int dil, int64_t n_out, IExpr **cond) {
  IExpr *t = SUB(l, ADD(l, h, C(l, pad)), MUL(l, kk, dil));
  IExpr *c = ix_bin(l->a, IX_GE, t, C(l, 0));
  if (stride != 1) c = AND(l, c, ix_bin(l->a, IX_EQ, ix_bin(l->a, IX_MOD, t, C(l, stride)), C(l, 0)));
  IExpr *o = ix_bin(l->a, IX_DIV, t, C(l, stride));
  *cond = AND(l, *cond, AND(l, c, ix_bin(l->a, IX_LT, o, C(l, n_out))));
  return o;
}

/* ---- convolution as im2col + matrix product (groups == 1) ----
 * cols[n, r, oh, ow] = x[n, c, oh*s - p + kh*d, ow*s - p + kw*d] with
 * r = (c*KH + kh)*KW + kw (zero outside the input). Then
 *   conv2d:        y[n, o, oh, ow]    = sum_r  W[o, r] * cols[n, r, oh, ow]
 *   filter grad:  dW[o, c, kh, kw]    = sum_{n,oh,ow} dy[n, o, oh, ow] * cols[n, r, oh, ow]
 *   data grad:  dcols[n, r, oh, ow]   = sum_o  W[o, r] * dy[n, o, oh, ow]
 *                  dx[n, c, h, w]     = sum_{kh,kw} dcols[n, r, (h+p-kh*d)/s, (w+p-kw*d)/s]  (col2im)
 * W is read through an [O, C*KH*KW] view of its buffer. A 1x1 convolution
 * with stride 1 and no padding needs neither cols nor col2im. */
static bool conv_is_pointwise(const ConvAttr *cv, int64_t kh, int64_t kw) {
  return kh == 1 && kw == 1 && cv->stride[0] == 1 && cv->stride[1] == 1 && cv->pad[0] == 0 && cv->pad[1] == 0;
}

/* A view of buffer buf (its root) with shape s (same element count or fewer). */
static int view_of(L *l, int buf, Shape s) {
  Program *p = l->p;
  int root = p->bufs[buf].alias >= 0 ? p->bufs[buf].alias : buf;
  int entry = p->bufs[root].entry >= 0 ? p->bufs[root].entry : (int)l->e;
  for (int i = 0; i < p->n_bufs; i++) /* one view per shape */
    if (p->bufs[i].alias == root && p->bufs[i].entry == entry && p->bufs[i].role == BUF_TEMP &&
        p->bufs[i].dtype == p->bufs[root].dtype && shape_eq(&p->bufs[i].shape, &s) &&
        strstr(p->bufs[i].name, ".view"))
      return i;
  char name[160];
  int len = snprintf(name, sizeof name, "%s.view", p->bufs[root].name);
  for (int d = 0; d < s.rank && len > 0 && len < (int)sizeof name; d++)
    len += snprintf(name + len, sizeof name - (size_t)len, d ? "x%lld" : "%lld", (long long)s.d[d]);
  int b = kir_buffer(p, name, BUF_TEMP, p->bufs[root].dtype, s, entry);
  p->bufs[b].alias = root;
  return b;
}

/* r = (c*KH + kh)*KW + kw, an im2col row, split into its parts */
static void window_parts(L *l, IExpr *r, int64_t KH, int64_t KW, IExpr **c, IExpr **kh, IExpr **kw) {
  *c = ix_bin(l->a, IX_DIV, r, C(l, KH * KW));
  *kh = ix_bin(l->a, IX_MOD, ix_bin(l->a, IX_DIV, r, C(l, KW)), C(l, KH));
  *kw = ix_bin(l->a, IX_MOD, r, C(l, KW));
}

static int cols_cached(L *l, int x_id, const ConvAttr *cv, int64_t KH, int64_t KW, bool shift) {
  for (int i = 0; i < l->n_cols; i++)
    if (l->cols[i].x == x_id && l->cols[i].kh == KH && l->cols[i].kw == KW && l->cols[i].shift == shift &&
        !memcmp(&l->cols[i].cv, cv, sizeof *cv))
      return l->cols[i].buf;
  return -1;
}

static void cols_cache(L *l, int x_id, const ConvAttr *cv, int64_t KH, int64_t KW, bool shift, int b) {
  if (l->n_cols < 64) {
    l->cols[l->n_cols].x = x_id;
    l->cols[l->n_cols].cv = *cv;
    l->cols[l->n_cols].kh = KH;
    l->cols[l->n_cols].kw = KW;
    l->cols[l->n_cols].shift = shift;
    l->cols[l->n_cols].buf = b;
    l->n_cols++;
  }
}

/* k copies x at xi (n, c, h, w), zero where h or w falls in the padding. */
static void emit_window_copy(L *l, Kernel *k, int x_id, IExpr **xi, const ConvAttr *cv) {
  const Node *x = l->g->nodes[x_id];
  IExpr *guard = NULL;
  if (cv->pad[0]) guard = AND(l, guard, in_range(l, xi[2], x->shape.d[2]));
  if (cv->pad[1]) guard = AND(l, guard, in_range(l, xi[3], x->shape.d[3]));
  k->body = value_at(l, x_id, xi, guard);
  emit(l, k);
}

/* The cols buffer of input x for this geometry (made on first use). */
static int im2col(L *l, const Node *conv, int x_id, const ConvAttr *cv, int64_t KH, int64_t KW, const Shape *yshape) {
  int cached = cols_cached(l, x_id, cv, KH, KW, false);
  if (cached >= 0) return cached;
  const Node *x = l->g->nodes[x_id];
  int64_t d[4] = {x->shape.d[0], x->shape.d[1] * KH * KW, yshape->d[2], yshape->d[3]};
  int b = kir_buffer(l->p, arena_printf(l->a, "%%t%d.cols%d", x_id, l->n_cols), BUF_TEMP, DT_F32, shape_make(4, d),
                     (int)l->e);
  Kernel *k = new_kernel(l, conv, b, "im2col");
  k->ops = "im2col";
  IExpr *v[4], *xi[4];
  vars(l, v, 4);
  IExpr *c, *kh, *kw;
  window_parts(l, v[1], KH, KW, &c, &kh, &kw);
  xi[0] = v[0];
  xi[1] = c;
  xi[2] = window_in(l, v[2], kh, cv->stride[0], cv->pad[0], cv->dil[0]);
  xi[3] = window_in(l, v[3], kw, cv->stride[1], cv->pad[1], cv->dil[1]);
  emit_window_copy(l, k, x_id, xi, cv);
  cols_cache(l, x_id, cv, KH, KW, false, b);
  return b;
}

/* ---- stride-1 convolution over column-shifted copies ----
 * With stride 1 an im2col row (c, kh, kw) is, over the positions q = oh*Wo
 * + ow, a contiguous run of one of KW copies of the image cropped to Wo
 * columns and shifted by kw*d1 (padding included):
 *   xs[n, kw, c, h, ow] = x[n, c, h - p0, ow + kw*d1 - p1]   (h < Hp = H + 2*p0)
 *   cols[n, (c, kh, kw), oh, ow] = xs[n, kw, c, kh*d0 + oh, ow]
 * so the products read xs in place through per-k offsets (as the padded
 * image of the flat form) with no extra columns, and the copies are
 * Hp/(KH*Ho) of the columns (LeNet-5's second convolution: 14/50). Taken
 * where the flat form is not (small images with wide windows) and that
 * ratio is below 1. DLC_CONV_SHIFT=0 makes the columns instead. */
static bool conv_is_shifted(const ConvAttr *cv, int64_t KH, int64_t KW, int64_t H, int64_t Ho) {
  if (cv->groups != 1 || cv->stride[0] != 1 || cv->stride[1] != 1 || conv_is_pointwise(cv, KH, KW)) return false;
  const char *env = getenv("DLC_CONV_SHIFT");
  if (env && env[0] == '0') return false;
  return H + 2 * cv->pad[0] < KH * Ho;
}

/* The shifted copies [N, KW, C, Hp, Wo] of input x (made on first use). */
static int shifted_cols(L *l, const Node *conv, int x_id, const ConvAttr *cv, int64_t KW, int64_t Wo) {
  int cached = cols_cached(l, x_id, cv, 0, KW, true);
  if (cached >= 0) return cached;
  const Node *x = l->g->nodes[x_id];
  int64_t d[5] = {x->shape.d[0], KW, x->shape.d[1], x->shape.d[2] + 2 * cv->pad[0], Wo};
  int b = kir_buffer(l->p, arena_printf(l->a, "%%t%d.shift%d", x_id, l->n_cols), BUF_TEMP, DT_F32, shape_make(5, d),
                     (int)l->e);
  Kernel *k = new_kernel(l, conv, b, "conv2d_shift");
  k->ops = "shift";
  IExpr *v[5], *xi[4];
  vars(l, v, 5);
  xi[0] = v[0];
  xi[1] = v[2];
  xi[2] = cv->pad[0] ? SUB(l, v[3], C(l, cv->pad[0])) : v[3];
  xi[3] = ADD(l, MUL(l, v[1], cv->dil[1]), v[4]);
  if (cv->pad[1]) xi[3] = SUB(l, xi[3], C(l, cv->pad[1]));
  emit_window_copy(l, k, x_id, xi, cv);
  cols_cache(l, x_id, cv, 0, KW, true, b);
  return b;
}

/* cols[n, (c, kh, kw), oh, ow] as a load of the shifted copies xs */
static VExpr *shifted_load(L *l, int xs, IExpr *n, IExpr *c, IExpr *kh, IExpr *kw, IExpr *oh, IExpr *ow, int d0) {
  IExpr *si[5] = {n, kw, c, ADD(l, MUL(l, kh, d0), oh), ow};
  return vx_load(l->a, DT_F32, xs, 5, si, NULL, 0);
}

/* ---- stride-1 convolution over a padded image (implicit im2col) ----
 * With stride 1 the rows of im2col are shifted views of one padded image:
 * on xp (x padded to Hp x Wp, flat per image),
 *   cols[r = (c, kh, kw), oh*Wp + ow] = xp[c*Hp*Wp + kh*d0*Wp + kw*d1 + oh*Wp + ow].
 * So the matrix products read xp in place (the GEMM packs B's rows through
 * a per-k offset table) over positions q = oh*Wp + ow in [0, (Ho-1)*Wp + Wo),
 * computing the output at the padded width (the Wp - Wo extra columns of a
 * row are never used; a crop kernel keeps the rest):
 *   conv2d:      yw[n, o, q]  = sum_r W[o, r] * xp[n, off(r) + q];   y = crop(yw)
 *   data grad:   the same product over dy padded by (K-1)*d - p, with the
 *                filter transposed and flipped: Wt[c, (o, kh, kw)] = W[o, c, KH-1-kh, KW-1-kw]
 *   filter grad: dW[o, r] = sum_{n, q} dyw[n, o, q] * xp[n, off(r) + q],
 *                dyw = dy at the padded width, 0 in the extra columns.
 * No column buffer (KH*KW times the image) is written or read. Outputs whose
 * rows are whole vectors (FLAT_ROW_WIDTHS) are computed without the extra
 * columns, over (oh, ow) at oh*Wp + ow, and need no crop; so is the filter
 * gradient over (n, oh, ow) when dy is in a buffer and padded anyway. */
/* Whether a convolution with filter [O, C, KH, KW] and output positions
 * Ho x Wo goes this way: stride 1, one group, not pointwise, padding within
 * the filter's reach (the data gradient pads dy by (K-1)*d - p), and either
 * columns too large per image to stay in cache, or few extra columns at
 * the padded width (up to FLAT_MAX_EXTRA_PCT percent of Wo). Otherwise the
 * columns are made and fused image by image with the products: for small
 * images with wide windows (LeNet-5's second convolution, 10 columns of 14)
 * that costs less than the extra columns. Measured by the kernels' CPU time
 * over the examples' training steps: ResNet-small, the small VGGs and NiN
 * 10-35% less with this way for every convolution up to 30% extra columns,
 * LeNet-5's first convolution (14%) ~8% less, its second (40%) 20-30% more.
 * DLC_CONV_FLAT=1 takes this way whenever legal, =0 never. */
enum { FLAT_MAX_EXTRA_PCT = 30 };
/* Outputs whose rows are whole vectors (16 floats, or 8 with AVX2) skip the
 * extra columns: the product runs over [N, O, Ho, Wo] and reads the padded
 * image's rows at their offsets (GemmOperand.x_row), with no crop after it
 * (the small VGG's 3 x 3 convolutions at 16 and 32 wide: 82-90 -> 93-100
 * GFLOP/s per product counted without the extra columns; its step 121 ->
 * 110 ms at 1 thread, though the pads of the products' inputs no longer run
 * inside the producer's per-image fusion: ~2 ms) */
enum { FLAT_ROW_WIDTHS = 16 };
/* Widths whose rows hold the GEMM's panels whole or in whole rows (panels of
 * 64 columns on AVX-512, 16 on AVX2), so that B is read in place: 16, 32 and
 * multiples of 64. Other multiples of 16 (48, 80, ..., 224) would have B
 * packed, which costs more than their few extra columns (2/224) save.
 * (DLC_CONV_ROWS=0: never, for measurements) */
static bool flat_rows(int64_t Wo) {
  const char *env = getenv("DLC_CONV_ROWS");
  bool fits = Wo == FLAT_ROW_WIDTHS || Wo == 2 * FLAT_ROW_WIDTHS || Wo % (4 * FLAT_ROW_WIDTHS) == 0;
  return fits && !(env && env[0] == '0');
}
static bool conv_is_flat(const ConvAttr *cv, int64_t C_, int64_t KH, int64_t KW, int64_t Ho, int64_t Wo) {
  if (cv->groups != 1 || cv->stride[0] != 1 || cv->stride[1] != 1 || conv_is_pointwise(cv, KH, KW)) return false;
  if (cv->pad[0] > (KH - 1) * cv->dil[0] || cv->pad[1] > (KW - 1) * cv->dil[1]) return false;
  const char *env = getenv("DLC_CONV_FLAT");
  if (env && (env[0] == '0' || env[0] == '1')) return env[0] == '1';
  if (4 * C_ * KH * KW * Ho * Wo > KIR_IMAGE_SLICE_BYTES) return true;
  int64_t Wp = Wo + (KW - 1) * cv->dil[1];
  return 100 * (Wp - Wo) <= FLAT_MAX_EXTRA_PCT * Wo;
}

/* Node `id` ([N, C, H, W]) padded with p0 rows and p1 columns on each side,
 * of zeros or (neg_inf: max pooling's padding) -inf; copies of a node are
 * shared when `share`. Returns the [N, C, H+2*p0, W+2*p1] buffer. */
static int padded(L *l, const Node *user, int id, int64_t p0, int64_t p1, bool neg_inf, bool share) {
  const Node *x = l->g->nodes[id];
  for (int i = 0; share && i < l->n_pads; i++)
    if (l->pads[i].x == id && l->pads[i].p0 == p0 && l->pads[i].p1 == p1 && l->pads[i].neg_inf == neg_inf)
      return l->pads[i].buf;
  int64_t d[4] = {x->shape.d[0], x->shape.d[1], x->shape.d[2] + 2 * p0, x->shape.d[3] + 2 * p1};
  int b = kir_buffer(l->p, arena_printf(l->a, "%%t%d.pad%lldx%lld", id, (long long)p0, (long long)p1), BUF_TEMP,
                     DT_F32, shape_make(4, d), (int)l->e);
  Kernel *k = new_kernel(l, user, b, "pad");
  k->ops = "pad";
  IExpr *v[4], *xi[4], *guard = NULL;
  vars(l, v, 4);
  xi[0] = v[0], xi[1] = v[1];
  xi[2] = p0 ? SUB(l, v[2], C(l, p0)) : v[2];
  xi[3] = p1 ? SUB(l, v[3], C(l, p1)) : v[3];
  if (p0) guard = AND(l, guard, in_range(l, xi[2], x->shape.d[2]));
  if (p1) guard = AND(l, guard, in_range(l, xi[3], x->shape.d[3]));
  k->body = value_at(l, id, xi, guard);
  if (neg_inf && guard) k->body = vx_select(l->a, ix_value(l, guard, DT_F32), k->body, vx_const(l->a, DT_F32, -INFINITY));
  emit(l, k);
  if (share && l->n_pads < 64) {
    l->pads[l->n_pads].x = id;
    l->pads[l->n_pads].p0 = (int)p0;
    l->pads[l->n_pads].p1 = (int)p1;
    l->pads[l->n_pads].neg_inf = neg_inf;
    l->pads[l->n_pads].buf = b;
    l->n_pads++;
  }
  return b;
}

/* padded() with zeros, as a [N, C*(H+2*p0)*(W+2*p1)] view (one flat image). */
static int padded_flat(L *l, const Node *conv, int id, int64_t p0, int64_t p1, bool share) {
  const Node *x = l->g->nodes[id];
  int b = padded(l, conv, id, p0, p1, false, share);
  int64_t fd[2] = {x->shape.d[0], x->shape.d[1] * (x->shape.d[2] + 2 * p0) * (x->shape.d[3] + 2 * p1)};
  return view_of(l, b, shape_make(2, fd));
}

/* The flat offset c*Hp*Wp + kh*d0*Wp + kw*d1 of r = (c*KH + kh)*KW + kw. */
static IExpr *window_offset(L *l, IExpr *r, int64_t KH, int64_t KW, int64_t Hp, int64_t Wp, int d0, int d1) {
  IExpr *c, *kh, *kw;
  window_parts(l, r, KH, KW, &c, &kh, &kw);
  return ADD(l, ADD(l, MUL(l, c, Hp * Wp), MUL(l, kh, d0 * Wp)), MUL(l, kw, d1));
}

/* out[n, c, h, w] = wide[n, c, h*Wp + w] */
static void crop(L *l, const Node *n, int out, int wide, int64_t Wp, const char *what) {
  Kernel *k = new_kernel(l, n, out, what);
  k->ops = "crop";
  IExpr *v[4], *wi[3];
  vars(l, v, 4);
  wi[0] = v[0], wi[1] = v[1], wi[2] = ADD(l, MUL(l, v[2], Wp), v[3]);
  k->body = vx_load(l->a, DT_F32, wide, 3, wi, NULL, 0);
  emit(l, k);
}

/* Whether node id is a pooling adjoint, or elementwise (a ReLU mask) over
 * one within depth levels. */
static bool from_pool_adjoint(const Graph *g, int id, int depth) {
  const Node *n = g->nodes[id];
  if (n->op == OP_MAXPOOL2D_BWD || n->op == OP_AVGPOOL2D_BWD) return true;
  if (depth <= 0 || !op_has(n->op, OPF_ELEMWISE)) return false;
  for (int i = 0; i < n->nin; i++)
    if (from_pool_adjoint(g, n->in[i], depth - 1)) return true;
  return false;
}

/* The image geometry of a flat product: windows KH x KW (dilations d0, d1)
 * over a padded image of Hp x Wp, an output of Ho x Wo positions. */
typedef struct {
  int64_t KH, KW, Hp, Wp, Ho, Wo;
  int d0, d1;
} FlatGeom;

/* out[n, i, oh, ow] = sum_r A[i, r] * img[n, off(r) + oh*Wp + ow] (A [I, R],
 * img [N, C*Hp*Wp]): over the output's positions when its rows fit
 * (flat_rows), else at the padded width into a wide temporary that a crop
 * kernel trims into out. */
static void flat_product(L *l, const Node *n, int out, const char *what, int A, int img, int64_t I, int64_t R,
                         const FlatGeom *f, int64_t flops) {
  Arena *a = l->a;
  IExpr *v[8];
  vars(l, v, 5);
  bool rows = flat_rows(f->Wo);
  int64_t N = l->p->bufs[out].shape.d[0], Q = (f->Ho - 1) * f->Wp + f->Wo;
  int dst = out;
  if (!rows) {
    int64_t wd[3] = {N, I, Q};
    dst = kir_buffer(l->p, arena_printf(a, "%%t%d.wide", n->id), BUF_TEMP, DT_F32, shape_make(3, wd), (int)l->e);
  }
  Kernel *k = new_kernel(l, n, dst, what);
  k->red = RED_SUM;
  k->n_red = 1;
  k->red_ext[0] = R;
  IExpr *r = rows ? v[4] : v[3], *q = rows ? ADD(l, MUL(l, v[2], f->Wp), v[3]) : v[2];
  IExpr *ai[2] = {v[1], r}, *bi[2] = {v[0], ADD(l, window_offset(l, r, f->KH, f->KW, f->Hp, f->Wp, f->d0, f->d1), q)};
  k->body = vx_bin(a, VX_MUL, vx_load(a, DT_F32, A, 2, ai, NULL, 0), vx_load(a, DT_F32, img, 2, bi, NULL, 0));
  emit(l, k);
  k->flops = flops;
  if (!rows) crop(l, n, out, dst, f->Wp, arena_printf(a, "%s_crop", what));
}

static bool lower_conv_flat(L *l, const Node *n, int out) {
  const ConvAttr *cv = &n->attr.conv;
  Arena *a = l->a;
  IExpr *v[8];
  vars(l, v, 6);
  int d0 = cv->dil[0], d1 = cv->dil[1];
  if (n->op == OP_CONV2D || n->op == OP_CONV2D_BWD_DATA) {
    const Node *w = l->g->nodes[n->in[1]];
    int64_t O = w->shape.d[0], C_ = w->shape.d[1], KH = w->shape.d[2], KW = w->shape.d[3], R = C_ * KH * KW;
    int64_t N = n->shape.d[0], Ho = n->shape.d[2], Wo = n->shape.d[3];
    if (n->op == OP_CONV2D_BWD_DATA) Ho = l->g->nodes[n->in[0]]->shape.d[2], Wo = l->g->nodes[n->in[0]]->shape.d[3];
    if (!conv_is_flat(cv, C_, KH, KW, Ho, Wo) || l->buf[w->id] < 0) return false;
    if (n->op == OP_CONV2D) {
      const Node *x = l->g->nodes[n->in[0]];
      int64_t Hp = x->shape.d[2] + 2 * cv->pad[0], Wp = x->shape.d[3] + 2 * cv->pad[1];
      int xv = padded_flat(l, n, x->id, cv->pad[0], cv->pad[1], true);
      int64_t wd[2] = {O, R};
      int wv = view_of(l, l->buf[w->id], shape_make(2, wd));
      FlatGeom fg = {KH, KW, Hp, Wp, Ho, Wo, d0, d1};
      flat_product(l, n, out, "conv2d", wv, xv, O, R, &fg, 2 * N * O * Ho * Wo * R);
      return true;
    }
    /* data gradient: dy [N, O, Ho, Wo] -> dx [N, C, H, W] (H = Ho + (KH-1)*d0 - 2*p0) */
    const Node *dy = l->g->nodes[n->in[0]];
    int64_t H = n->shape.d[2], W = n->shape.d[3];
    int64_t q0 = (KH - 1) * d0 - cv->pad[0], q1 = (KW - 1) * d1 - cv->pad[1];
    int64_t Hq = Ho + 2 * q0, Wq = Wo + 2 * q1;
    /* Wt[c, (o, kh, kw)] = W[o, c, KH-1-kh, KW-1-kw] */
    int64_t td[2] = {C_, O * KH * KW};
    int wt = kir_buffer(l->p, arena_printf(a, "%%t%d.wflip", n->id), BUF_TEMP, DT_F32, shape_make(2, td), (int)l->e);
    Kernel *kt = new_kernel(l, n, wt, "conv2d_filter_flip");
    kt->ops = "flip";
    IExpr *wi[4];
    wi[0] = ix_bin(a, IX_DIV, v[1], C(l, KH * KW));
    wi[1] = v[0];
    wi[2] = SUB(l, C(l, KH - 1), ix_bin(a, IX_MOD, ix_bin(a, IX_DIV, v[1], C(l, KW)), C(l, KH)));
    wi[3] = SUB(l, C(l, KW - 1), ix_bin(a, IX_MOD, v[1], C(l, KW)));
    kt->body = value_at(l, w->id, wi, NULL);
    emit(l, kt);
    int dv = padded_flat(l, n, dy->id, q0, q1, true);
    FlatGeom fg = {KH, KW, Hq, Wq, H, W, d0, d1};
    flat_product(l, n, out, "conv2d_bwd_data", wt, dv, C_, O * KH * KW, &fg, 2 * N * C_ * Ho * Wo * O * KH * KW);
    return true;
  }
  /* filter gradient: x [N, C, H, W], dy [N, O, Ho, Wo] -> dW [O, C, KH, KW] */
  const Node *x = l->g->nodes[n->in[0]], *dy = l->g->nodes[n->in[1]];
  int64_t O = n->shape.d[0], C_ = n->shape.d[1], KH = n->shape.d[2], KW = n->shape.d[3];
  int64_t N = dy->shape.d[0], Ho = dy->shape.d[2], Wo = dy->shape.d[3];
  if (!conv_is_flat(cv, C_, KH, KW, Ho, Wo)) return false;
  int64_t Hp = x->shape.d[2] + 2 * cv->pad[0], Wp = x->shape.d[3] + 2 * cv->pad[1], Q = (Ho - 1) * Wp + Wo;
  int xv = padded_flat(l, n, x->id, cv->pad[0], cv->pad[1], true);
  int64_t q0 = (KH - 1) * d0 - cv->pad[0], q1 = (KW - 1) * d1 - cv->pad[1];
  bool same = q0 == cv->pad[0] && q1 == cv->pad[1];
  bool dx = false; /* the data gradient, which pads dy anyway */
  for (int i = 0; i < l->g->n_nodes && !dx; i++)
    dx = l->g->nodes[i] && l->g->nodes[i]->op == OP_CONV2D_BWD_DATA && l->g->nodes[i]->in[0] == dy->id;
  if (l->buf[dy->id] >= 0 && (!same || dx || !from_pool_adjoint(l->g, dy->id, 4))) {
    /* dy in a buffer: dW[o, r] = sum_{n, oh, ow} dy[n, o, oh, ow] * xp[n, off(r) + oh*Wp + ow], no
     * extra columns (the GEMM reads xp's rows at table offsets along k; the small VGG's filter
     * gradients 13.7 -> 12.9, 13.8 -> 12.8 and 7.2 -> 6.6 ms; its first layer's needs no pad of
     * dy then, 0.6-0.9 ms). Not for a first layer with "same" padding whose dy comes from a
     * pooling adjoint: that folds into the pad kernel of dy (LeNet-5's first convolution: pad
     * 0.037 + product 0.220 ms against a standalone adjoint 0.060 + 0.227) */
    IExpr *u[8];
    vars(l, u, 7);
    Kernel *k = new_kernel(l, n, out, "conv2d_bwd_filter");
    k->red = RED_SUM;
    k->n_red = 3;
    k->red_ext[0] = N;
    k->red_ext[1] = Ho;
    k->red_ext[2] = Wo;
    IExpr *off = ADD(l, ADD(l, MUL(l, u[1], Hp * Wp), MUL(l, u[2], d0 * Wp)), MUL(l, u[3], d1));
    IExpr *bi[2] = {u[4], ADD(l, off, ADD(l, MUL(l, u[5], Wp), u[6]))};
    IExpr *di[4] = {u[4], u[0], u[5], u[6]};
    k->body = vx_bin(a, VX_MUL, value_at(l, dy->id, di, NULL), vx_load(a, DT_F32, xv, 2, bi, NULL, 0));
    emit(l, k);
    k->flops = 2 * O * C_ * KH * KW * N * Ho * Wo;
    return true;
  }
  /* dy at the padded width Wp, zero in the extra columns: with "same"
   * padding ((K-1)*d = 2p) that is the data gradient's padded dy (rows of
   * Wp = Wo + 2p, dy at column p), read from row p, column p on: shared */
  int dw;
  IExpr *pi[3];
  if (same) {
    dw = padded_flat(l, n, dy->id, q0, q1, true);
    int64_t Hq = Ho + 2 * q0;
    pi[0] = v[4], pi[1] = ADD(l, ADD(l, MUL(l, v[0], Hq * Wp), C(l, q0 * Wp + q1)), v[5]);
  } else { /* dyw[n, o, oh, ow] = dy[n, o, oh, ow] for ow < Wo, else 0 (ow < Wp), read as [N, O, Ho*Wp] */
    int64_t dd[4] = {N, O, Ho, Wp}, dv[3] = {N, O, Ho * Wp};
    int dw4 = kir_buffer(l->p, arena_printf(a, "%%t%d.dywide", n->id), BUF_TEMP, DT_F32, shape_make(4, dd), (int)l->e);
    Kernel *kw_ = new_kernel(l, n, dw4, "conv2d_widen");
    kw_->ops = "widen";
    kw_->body = value_at(l, dy->id, v, Wp > Wo ? ix_bin(a, IX_LT, v[3], C(l, Wo)) : NULL);
    emit(l, kw_);
    dw = view_of(l, dw4, shape_make(3, dv));
    pi[0] = v[4], pi[1] = v[0], pi[2] = v[5];
  }
  Kernel *k = new_kernel(l, n, out, "conv2d_bwd_filter");
  k->red = RED_SUM;
  k->n_red = 2;
  k->red_ext[0] = N;
  k->red_ext[1] = Q;
  IExpr *off = ADD(l, ADD(l, MUL(l, v[1], Hp * Wp), MUL(l, v[2], d0 * Wp)), MUL(l, v[3], d1));
  IExpr *bi[2] = {v[4], ADD(l, off, v[5])};
  k->body = vx_bin(a, VX_MUL, vx_load(a, DT_F32, dw, same ? 2 : 3, pi, NULL, 0), vx_load(a, DT_F32, xv, 2, bi, NULL, 0));
  emit(l, k);
  k->flops = 2 * O * C_ * KH * KW * N * Ho * Wo;
  return true;
}

static bool lower_conv_gemm(L *l, const Node *n, int out) {
  const ConvAttr *cv = &n->attr.conv;
  if (cv->groups != 1) return false;
  Arena *a = l->a;
  IExpr *v[8];
  vars(l, v, 7);
  if (n->op == OP_CONV2D || n->op == OP_CONV2D_BWD_DATA) {
    const Node *w = l->g->nodes[n->in[1]];
    if (l->buf[w->id] < 0) return false;
    int64_t O = w->shape.d[0], C_ = w->shape.d[1], KH = w->shape.d[2], KW = w->shape.d[3], R = C_ * KH * KW;
    int64_t wd[2] = {O, R};
    int wv = view_of(l, l->buf[w->id], shape_make(2, wd));
    IExpr *wi[2], *ci[4];
    if (n->op == OP_CONV2D) {
      bool pw = conv_is_pointwise(cv, KH, KW);
      const Node *x = l->g->nodes[n->in[0]];
      bool sh = conv_is_shifted(cv, KH, KW, x->shape.d[2], n->shape.d[2]);
      int cols = pw ? -1 : sh ? shifted_cols(l, n, x->id, cv, KW, n->shape.d[3]) : im2col(l, n, x->id, cv, KH, KW, &n->shape);
      Kernel *k = new_kernel(l, n, out, "conv2d");
      k->red = RED_SUM;
      k->n_red = 1;
      k->red_ext[0] = R;
      wi[0] = v[1], wi[1] = v[4];
      ci[0] = v[0], ci[1] = v[4], ci[2] = v[2], ci[3] = v[3];
      VExpr *xs;
      if (sh) {
        IExpr *c, *kh, *kw;
        window_parts(l, v[4], KH, KW, &c, &kh, &kw);
        xs = shifted_load(l, cols, v[0], c, kh, kw, v[2], v[3], cv->dil[0]);
      } else
        xs = pw ? value_at(l, x->id, ci, NULL) : vx_load(a, DT_F32, cols, 4, ci, NULL, 0);
      k->body = vx_bin(a, VX_MUL, vx_load(a, DT_F32, wv, 2, wi, NULL, 0), xs);
      emit(l, k);
      return true;
    }
    /* data gradient: dcols = W^T dy, then col2im */
    const Node *dy = l->g->nodes[n->in[0]];
    bool pw = conv_is_pointwise(cv, KH, KW);
    int64_t dd[4] = {n->shape.d[0], R, dy->shape.d[2], dy->shape.d[3]};
    int dcols = pw ? out
                   : kir_buffer(l->p, arena_printf(a, "%%t%d.dcols", n->id), BUF_TEMP, DT_F32, shape_make(4, dd),
                                (int)l->e);
    Kernel *k = new_kernel(l, n, dcols, pw ? "conv2d_bwd_data" : "conv2d_bwd_data_gemm");
    k->red = RED_SUM;
    k->n_red = 1;
    k->red_ext[0] = O;
    wi[0] = v[4], wi[1] = v[1];
    IExpr *di[4] = {v[0], v[4], v[2], v[3]};
    k->body = vx_bin(a, VX_MUL, vx_load(a, DT_F32, wv, 2, wi, NULL, 0), value_at(l, dy->id, di, NULL));
    emit(l, k);
    if (pw) return true;
    Kernel *c2 = new_kernel(l, n, out, "col2im");
    c2->ops = "col2im";
    c2->red = RED_SUM;
    c2->n_red = 2;
    c2->red_ext[0] = KH;
    c2->red_ext[1] = KW;
    IExpr *cond = NULL, *si[4];
    si[0] = v[0];
    si[1] = ADD(l, MUL(l, ADD(l, MUL(l, v[1], KH), v[4]), KW), v[5]);
    si[2] = window_out(l, v[2], v[4], cv->stride[0], cv->pad[0], cv->dil[0], dy->shape.d[2], &cond);
    si[3] = window_out(l, v[3], v[5], cv->stride[1], cv->pad[1], cv->dil[1], dy->shape.d[3], &cond);
    c2->body = vx_load(a, DT_F32, dcols, 4, si, cond, 0);
    emit(l, c2);
    return true;
  }
  /* filter gradient */
  const Node *x = l->g->nodes[n->in[0]], *dy = l->g->nodes[n->in[1]];
  int64_t KH = n->shape.d[2], KW = n->shape.d[3];
  bool pw = conv_is_pointwise(cv, KH, KW);
  bool sh = conv_is_shifted(cv, KH, KW, x->shape.d[2], dy->shape.d[2]);
  int cols = pw ? -1 : sh ? shifted_cols(l, n, x->id, cv, KW, dy->shape.d[3]) : im2col(l, n, x->id, cv, KH, KW, &dy->shape);
  Kernel *k = new_kernel(l, n, out, "conv2d_bwd_filter");
  k->red = RED_SUM;
  k->n_red = 3;
  k->red_ext[0] = dy->shape.d[0];
  k->red_ext[1] = dy->shape.d[2];
  k->red_ext[2] = dy->shape.d[3];
  IExpr *di[4] = {v[4], v[0], v[5], v[6]};
  IExpr *ci[4] = {v[4], ADD(l, MUL(l, ADD(l, MUL(l, v[1], KH), v[2]), KW), v[3]), v[5], v[6]};
  VExpr *xs;
  if (sh)
    xs = shifted_load(l, cols, v[4], v[1], v[2], v[3], v[5], v[6], cv->dil[0]);
  else
    xs = pw ? value_at(l, x->id, ci, NULL) : vx_load(a, DT_F32, cols, 4, ci, NULL, 0);
  k->body = vx_bin(a, VX_MUL, value_at(l, dy->id, di, NULL), xs);
  emit(l, k);
  return true;
}

static void lower_conv(L *l, const Node *n, int out) {
  if (lower_conv_flat(l, n, out) || lower_conv_gemm(l, n, out)) return;
  const ConvAttr *cv = &n->attr.conv;
  Arena *a = l->a;
  IExpr *v[8], *xi[4], *wi[4], *di[4];
  vars(l, v, 7);
  Kernel *k = new_kernel(l, n, out, ir_op_names[n->op]);
  k->red = RED_SUM;
  k->n_red = 3;
  if (n->op == OP_CONV2D) {
    const Node *x = l->g->nodes[n->in[0]], *w = l->g->nodes[n->in[1]];
    int64_t O = w->shape.d[0], Cg = w->shape.d[1], Og = O / cv->groups;
    k->red_ext[0] = Cg;
    k->red_ext[1] = w->shape.d[2];
    k->red_ext[2] = w->shape.d[3];
    IExpr *guard = NULL;
    xi[0] = v[0];
    xi[1] = cv->groups == 1 ? v[4] : ADD(l, MUL(l, ix_bin(a, IX_DIV, v[1], C(l, Og)), Cg), v[4]);
    xi[2] = window_in(l, v[2], v[5], cv->stride[0], cv->pad[0], cv->dil[0]);
    xi[3] = window_in(l, v[3], v[6], cv->stride[1], cv->pad[1], cv->dil[1]);
    if (cv->pad[0]) guard = AND(l, guard, in_range(l, xi[2], x->shape.d[2]));
    if (cv->pad[1]) guard = AND(l, guard, in_range(l, xi[3], x->shape.d[3]));
    wi[0] = v[1], wi[1] = v[4], wi[2] = v[5], wi[3] = v[6];
    k->body = vx_bin(a, VX_MUL, value_at(l, n->in[0], xi, guard), value_at(l, n->in[1], wi, NULL));
  } else if (n->op == OP_CONV2D_BWD_DATA) {
    const Node *dy = l->g->nodes[n->in[0]], *w = l->g->nodes[n->in[1]];
    int64_t O = w->shape.d[0], Cg = w->shape.d[1], Og = O / cv->groups;
    k->red_ext[0] = Og;
    k->red_ext[1] = w->shape.d[2];
    k->red_ext[2] = w->shape.d[3];
    IExpr *cond = NULL;
    di[0] = v[0];
    di[1] = cv->groups == 1 ? v[4] : ADD(l, MUL(l, ix_bin(a, IX_DIV, v[1], C(l, Cg)), Og), v[4]);
    di[2] = window_out(l, v[2], v[5], cv->stride[0], cv->pad[0], cv->dil[0], dy->shape.d[2], &cond);
    di[3] = window_out(l, v[3], v[6], cv->stride[1], cv->pad[1], cv->dil[1], dy->shape.d[3], &cond);
    wi[0] = di[1];
    wi[1] = cv->groups == 1 ? v[1] : ix_bin(a, IX_MOD, v[1], C(l, Cg));
    wi[2] = v[5], wi[3] = v[6];
    k->body = vx_bin(a, VX_MUL, value_at(l, n->in[0], di, cond), value_at(l, n->in[1], wi, NULL));
  } else {
    const Node *x = l->g->nodes[n->in[0]], *dy = l->g->nodes[n->in[1]];
    int64_t O = n->shape.d[0], Cg = n->shape.d[1], Og = O / cv->groups;
    k->red_ext[0] = dy->shape.d[0];
    k->red_ext[1] = dy->shape.d[2];
    k->red_ext[2] = dy->shape.d[3];
    IExpr *guard = NULL;
    xi[0] = v[4];
    xi[1] = cv->groups == 1 ? v[1] : ADD(l, MUL(l, ix_bin(a, IX_DIV, v[0], C(l, Og)), Cg), v[1]);
    xi[2] = window_in(l, v[5], v[2], cv->stride[0], cv->pad[0], cv->dil[0]);
    xi[3] = window_in(l, v[6], v[3], cv->stride[1], cv->pad[1], cv->dil[1]);
    if (cv->pad[0]) guard = AND(l, guard, in_range(l, xi[2], x->shape.d[2]));
    if (cv->pad[1]) guard = AND(l, guard, in_range(l, xi[3], x->shape.d[3]));
    di[0] = v[4], di[1] = v[0], di[2] = v[5], di[3] = v[6];
    k->body = vx_bin(a, VX_MUL, value_at(l, n->in[0], xi, guard), value_at(l, n->in[1], di, NULL));
  }
  emit(l, k);
}

static void lower_pool(L *l, const Node *n, int out) {
  const PoolAttr *pa = &n->attr.pool;
  Arena *a = l->a;
  IExpr *v[6], *xi[4];
  vars(l, v, 6);
  Kernel *k = new_kernel(l, n, out, ir_op_names[n->op]);
  k->n_red = 2;
  k->red_ext[0] = pa->k[0];
  k->red_ext[1] = pa->k[1];
  const Node *x = l->g->nodes[n->in[0]];
  double area = (double)pa->k[0] * pa->k[1];
  if ((n->op == OP_MAXPOOL2D || n->op == OP_MAXPOOL2D_ARGMAX) && (pa->pad[0] || pa->pad[1]) &&
      x->dtype == DT_F32) {
    /* padded windows read a copy padded with -inf: the window loop then
     * has no guards and vectorizes like an unpadded one (same maxima and
     * window indices: padding never wins, as with the guarded -inf) */
    int xp = padded(l, n, x->id, pa->pad[0], pa->pad[1], true, true);
    xi[0] = v[0], xi[1] = v[1];
    xi[2] = window_in(l, v[2], v[4], pa->stride[0], 0, 1);
    xi[3] = window_in(l, v[3], v[5], pa->stride[1], 0, 1);
    k->red = n->op == OP_MAXPOOL2D ? RED_MAX : RED_ARGMAX;
    k->body = vx_load(a, DT_F32, xp, 4, xi, NULL, 0);
  } else if (n->op == OP_MAXPOOL2D || n->op == OP_MAXPOOL2D_ARGMAX || n->op == OP_AVGPOOL2D) {
    IExpr *guard = NULL;
    xi[0] = v[0], xi[1] = v[1];
    xi[2] = window_in(l, v[2], v[4], pa->stride[0], pa->pad[0], 1);
    xi[3] = window_in(l, v[3], v[5], pa->stride[1], pa->pad[1], 1);
    if (pa->pad[0]) guard = AND(l, guard, in_range(l, xi[2], x->shape.d[2]));
    if (pa->pad[1]) guard = AND(l, guard, in_range(l, xi[3], x->shape.d[3]));
    VExpr *body = value_at(l, n->in[0], xi, guard);
    if (n->op == OP_AVGPOOL2D) {
      k->red = RED_SUM;
      k->epilogue = vx_bin(a, VX_DIV, acc(l), vx_const(a, DT_F32, area));
    } else {
      k->red = n->op == OP_MAXPOOL2D ? RED_MAX : RED_ARGMAX;
      if (guard) {
        /* padding is -inf for max pooling */
        VExpr *c = ix_value(l, guard, DT_F32);
        body = vx_select(a, c, body, vx_const(a, DT_F32, -INFINITY));
      }
    }
    k->body = body;
  } else if (pa->stride[0] == pa->k[0] && pa->stride[1] == pa->k[1] && pa->pad[0] == 0 && pa->pad[1] == 0) {
    /* adjoints of non-overlapping windows: each input position lies in at
     * most one window, so no reduction: an elementwise gather */
    const Node *dy = l->g->nodes[n->in[0]];
    k->n_red = 0;
    k->red = RED_NONE;
    IExpr *di[4], *cond = NULL;
    di[0] = v[0], di[1] = v[1];
    di[2] = ix_bin(a, IX_DIV, v[2], C(l, pa->k[0]));
    di[3] = ix_bin(a, IX_DIV, v[3], C(l, pa->k[1]));
    if (dy->shape.d[2] * pa->k[0] < n->shape.d[2]) cond = AND(l, cond, ix_bin(a, IX_LT, di[2], C(l, dy->shape.d[2])));
    if (dy->shape.d[3] * pa->k[1] < n->shape.d[3]) cond = AND(l, cond, ix_bin(a, IX_LT, di[3], C(l, dy->shape.d[3])));
    VExpr *g = value_at(l, n->in[0], di, cond);
    if (n->op == OP_AVGPOOL2D_BWD) {
      k->body = vx_bin(a, VX_DIV, g, vx_const(a, DT_F32, area));
    } else {
      VExpr *am = value_at(l, n->in[1], di, cond);
      VExpr *pos = ix_value(l, ADD(l, MUL(l, ix_bin(a, IX_MOD, v[2], C(l, pa->k[0])), pa->k[1]), ix_bin(a, IX_MOD, v[3], C(l, pa->k[1]))), DT_I32);
      VExpr *hit = to_f32(l, vx_bin(a, VX_EQ, am, pos));
      if (cond) {
        VExpr *c = ix_value(l, cond, DT_F32);
        hit = vx_bin(a, VX_MUL, hit, c);
      }
      k->body = vx_select(a, hit, g, vx_const(a, DT_F32, 0));
    }
  } else {
    /* adjoints: sum over the windows that contain this input position */
    const Node *dy = l->g->nodes[n->in[0]];
    IExpr *cond = NULL, *di[4];
    di[0] = v[0], di[1] = v[1];
    di[2] = window_out(l, v[2], v[4], pa->stride[0], pa->pad[0], 1, dy->shape.d[2], &cond);
    di[3] = window_out(l, v[3], v[5], pa->stride[1], pa->pad[1], 1, dy->shape.d[3], &cond);
    VExpr *g = value_at(l, n->in[0], di, cond);
    k->red = RED_SUM;
    if (n->op == OP_AVGPOOL2D_BWD) {
      k->body = g;
      k->epilogue = vx_bin(a, VX_DIV, acc(l), vx_const(a, DT_F32, area));
    } else {
      VExpr *am = value_at(l, n->in[1], di, cond);
      VExpr *pos = ix_value(l, ADD(l, MUL(l, v[4], pa->k[1]), v[5]), DT_I32);
      VExpr *hit = to_f32(l, vx_bin(a, VX_EQ, am, pos));
      if (cond) {
        VExpr *c = ix_value(l, cond, DT_F32);
        hit = vx_bin(a, VX_MUL, hit, c);
      }
      k->body = vx_select(a, hit, g, vx_const(a, DT_F32, 0));
    }
  }
  emit(l, k);
}

static void lower_node(L *l, const Node *n, int out) {
  switch (n->op) {
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: lower_reduce(l, n, out); return;
    case OP_MATMUL: lower_matmul(l, n, out); return;
    case OP_SOFTMAX: case OP_LOG_SOFTMAX: lower_softmax(l, n, out); return;
    case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER: lower_conv(l, n, out); return;
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
      lower_pool(l, n, out);
      return;
    default: break;
  }
  DL_ASSERT(inlinable(n->op));
  Kernel *k = new_kernel(l, n, out, ir_op_names[n->op]);
  IExpr *v[IR_MAX_RANK];
  vars(l, v, n->shape.rank);
  k->body = compute_at(l, n->id, v, NULL);
  emit(l, k);
}

/* A kernel copying (or computing inline) node `id` into buffer `out`. */
static void emit_copy(L *l, int id, int out, const char *what) {
  const Node *n = l->g->nodes[id];
  Kernel *k = new_kernel(l, n, out, what);
  k->ops = what;
  IExpr *v[IR_MAX_RANK];
  vars(l, v, n->shape.rank);
  k->body = value_at(l, id, v, NULL);
  emit(l, k);
}

static void collect_loads(const VExpr *e, bool *seen) {
  if (!e) return;
  if (e->op == VX_LOAD) seen[e->buf] = true;
  collect_loads(e->a, seen);
  collect_loads(e->b, seen);
  collect_loads(e->c, seen);
}

/* Whether node `find` is reachable from `from` through inlined nodes (a
 * materialised node or a leaf is read from its buffer, not entered; nor
 * are `stop` nodes). */
static bool inline_reaches(L *l, int from, int find, const bool *stop, bool *seen) {
  if (from == find) return true;
  if (seen[from] || stop[from] || l->buf[from] >= 0) return false;
  seen[from] = true;
  const Node *n = l->g->nodes[from];
  for (int k = 0; k < n->nin; k++)
    if (inline_reaches(l, n->in[k], find, stop, seen)) return true;
  return false;
}

/* sub[i * nu + j]: update i's value contains update j's value (SGD's
 * momentum buffer in the param's step, Adam's moments in its) and reads
 * j's target nowhere else, so it can read that target after j wrote it —
 * the order of PyTorch's in-place steps — instead of computing j's value
 * again from the old state (one stream fewer per param: the gradient). */
static void find_new_value_reads(L *l, bool *sub) {
  const Graph *g = l->g;
  int nu = g->n_updates, nn = g->n_nodes;
  bool *stop = ARENA_ARRAY(l->a, bool, nn), *seen = ARENA_ARRAY(l->a, bool, nn);
  for (int i = 0; i < nu; i++) {
    int vi = g->updates[i].value;
    for (int j = 0; j < nu; j++) {
      int vj = g->updates[j].value;
      if (j == i || vj == vi || l->buf[vj] >= 0) continue;
      memset(seen, 0, sizeof(bool) * (size_t)nn);
      sub[i * nu + j] = inline_reaches(l, vi, vj, stop, seen);
    }
    /* drop j when i still reads j's old target outside the substituted
     * values (to a fixpoint: a dropped value is entered again) */
    for (bool changed = true; changed;) {
      changed = false;
      memset(stop, 0, sizeof(bool) * (size_t)nn);
      for (int j = 0; j < nu; j++)
        if (sub[i * nu + j]) stop[g->updates[j].value] = true;
      for (int j = 0; j < nu; j++) {
        if (!sub[i * nu + j]) continue;
        memset(seen, 0, sizeof(bool) * (size_t)nn);
        if (inline_reaches(l, vi, g->updates[j].target, stop, seen)) sub[i * nu + j] = false, changed = true;
      }
    }
  }
}

/* The update values, update i reading the targets of the updates j with
 * sub[i * nu + j] (NULL: none) as written; reads[i]: the buffers whose
 * old values they read. */
static void update_values(L *l, const bool *sub, const int *target, VExpr **val, bool **reads, int nreads) {
  const Graph *g = l->g;
  int nu = g->n_updates;
  for (int i = 0; i < nu; i++) {
    for (int j = 0; sub && j < nu; j++)
      if (sub[i * nu + j]) l->buf[g->updates[j].value] = target[j];
    const Node *t = g->nodes[g->updates[i].target];
    IExpr *v[IR_MAX_RANK];
    vars(l, v, t->shape.rank);
    val[i] = value_at(l, g->updates[i].value, v, NULL);
    for (int j = 0; sub && j < nu; j++)
      if (sub[i * nu + j]) l->buf[g->updates[j].value] = -1;
    memset(reads[i], 0, sizeof(bool) * (size_t)nreads);
    collect_loads(val[i], reads[i]);
    for (int j = 0; sub && j < nu; j++)
      if (sub[i * nu + j]) reads[i][target[j]] = false; /* the new value */
  }
}

/* Update i can be written: nobody pending still needs the old value of
 * its target, and the updates whose new values it reads are written. */
static bool update_ready(int nu, int i, const int *target, bool **reads, const bool *sub, const bool *done) {
  for (int j = 0; j < nu; j++)
    if (j != i && !done[j] && (reads[j][target[i]] || (sub && sub[i * nu + j]))) return false;
  return true;
}

static void lower_updates(L *l) {
  const Graph *g = l->g;
  int nu = g->n_updates;
  if (!nu) return;
  Arena *a = l->a;
  VExpr **val = ARENA_ARRAY(a, VExpr *, nu);
  int *target = ARENA_ARRAY(a, int, nu);
  bool *done = ARENA_ARRAY(a, bool, nu);
  bool *staged = ARENA_ARRAY(a, bool, nu); /* value already computed into a temporary */
  bool **reads = ARENA_ARRAY(a, bool *, nu);
  bool *sub = ARENA_ARRAY(a, bool, nu * nu);
  int nreads = l->p->n_bufs + nu; /* room for a temporary per update */
  for (int i = 0; i < nu; i++) {
    target[i] = l->buf[g->updates[i].target];
    reads[i] = ARENA_ARRAY(a, bool, nreads);
  }
  find_new_value_reads(l, sub);
  update_values(l, sub, target, val, reads, nreads);
  /* new-value reads only when an order exists without temporaries */
  for (int left = nu; left > 0;) {
    int pick = -1;
    for (int i = 0; i < nu && pick < 0; i++)
      if (!done[i] && update_ready(nu, i, target, reads, sub, done)) pick = i;
    if (pick < 0) {
      update_values(l, NULL, target, val, reads, nreads);
      sub = NULL;
      break;
    }
    done[pick] = true;
    left--;
  }
  memset(done, 0, sizeof(bool) * (size_t)nu);
  for (int left = nu; left > 0;) {
    int pick = -1;
    for (int i = 0; i < nu && pick < 0; i++)
      if (!done[i] && update_ready(nu, i, target, reads, sub, done)) pick = i;
    if (pick < 0) {
      /* a cycle: compute one pending value into a temporary first. A staged
       * value reads only its temporary, so a cycle always has an unstaged
       * member (e.g. Adam with weight decay on two params: W@m, W@v and W
       * read each other's old values). */
      for (int i = 0; i < nu && pick < 0; i++)
        if (!done[i] && !staged[i]) pick = i;
      DL_ASSERT(pick >= 0);
      staged[pick] = true;
      const Node *vn = g->nodes[g->updates[pick].value];
      int tb = kir_buffer(l->p, arena_printf(a, "%%t%d.new", vn->id), BUF_TEMP, vn->dtype, vn->shape, (int)l->e);
      Kernel *k = new_kernel(l, vn, tb, "update_value");
      k->body = val[pick];
      emit(l, k);
      IExpr *v[IR_MAX_RANK];
      vars(l, v, vn->shape.rank);
      val[pick] = vx_load(a, vn->dtype, tb, vn->shape.rank, v, NULL, 0);
      memset(reads[pick], 0, sizeof(bool) * (size_t)nreads);
      DL_ASSERT(tb < nreads);
      reads[pick][tb] = true;
      continue;
    }
    const Node *vn = g->nodes[g->updates[pick].value];
    Kernel *k = new_kernel(l, vn, target[pick], "update");
    k->ops = arena_printf(a, "update %s", g->nodes[g->updates[pick].target]->attr.leaf.name);
    k->body = val[pick];
    k->phase = PHASE_UPDATE;
    emit(l, k);
    done[pick] = true;
    left--;
  }
}

bool lower_graph(const Graph *g, Program *p, EntryKind e, const LowerOptions *o, Diag *d) {
  (void)d;
  L l;
  memset(&l, 0, sizeof l);
  l.g = g;
  l.p = p;
  l.a = p->arena;
  l.e = e;
  l.fuse = o ? o->fuse : true;
  for (int i = 0; i < ENTRY__COUNT; i++) l.n_kernels += p->entries[i].n_kernels;
  int n = g->n_nodes;
  l.buf = ARENA_ARRAY(l.a, int, n);
  l.cost = ARENA_ARRAY(l.a, int, n);
  l.multiread = ARENA_ARRAY(l.a, bool, n);
  l.uses = ir_use_counts(g, l.a);
  p->entries[e].present = true;
  for (int i = 0; i < n; i++) {
    const Node *nd = g->nodes[i];
    if (reads_repeatedly(nd->op))
      for (int j = 0; j < nd->nin; j++) l.multiread[nd->in[j]] = true;
    if (nd->op == OP_DROPOUT_MASK && p->rng_buf < 0) {
      int64_t four = 4;
      p->rng_buf = kir_buffer(p, "@rng", BUF_RNG, DT_I32, shape_make(1, &four), -1);
    }
  }
  /* role buffers: the first role of a computed node becomes its buffer */
  int *role_buf = ARENA_ARRAY(l.a, int, n);
  for (int i = 0; i < n; i++) role_buf[i] = -1;
  typedef struct { int node; int buf; } Copy;
  Copy *copies = ARENA_ARRAY(l.a, Copy, g->n_outputs + g->n_metrics + g->n_grads + 1);
  int ncopies = 0;
#define CLAIM(node_, name_, role_)                                                                   \
  do {                                                                                               \
    const Node *nd_ = g->nodes[node_];                                                               \
    int b_ = kir_buffer(p, name_, role_, nd_->dtype, nd_->shape, (int)e);                            \
    if (role_buf[node_] < 0 && !is_named_leaf(nd_->op)) role_buf[node_] = b_;                        \
    else copies[ncopies++] = (Copy){node_, b_};                                                      \
  } while (0)
  if (g->loss >= 0 && e != ENTRY_INFER) CLAIM(g->loss, g->loss_name ? g->loss_name : "loss", BUF_LOSS);
  for (int i = 0; i < g->n_outputs; i++) CLAIM(g->outputs[i].node, g->outputs[i].name, BUF_OUTPUT);
  if (e != ENTRY_INFER)
    for (int i = 0; i < g->n_metrics; i++) CLAIM(g->metrics[i].node, g->metrics[i].name, BUF_METRIC);
  for (int i = 0; i < g->n_grads; i++)
    CLAIM(g->grads[i].grad, g->nodes[g->grads[i].param]->attr.leaf.name, BUF_GRAD);
#undef CLAIM
  bool *update_value = ARENA_ARRAY(l.a, bool, n);
  for (int i = 0; i < g->n_updates; i++) update_value[g->updates[i].value] = true;

  /* buffers and kernels in topological order */
  for (int i = 0; i < n; i++) {
    const Node *nd = g->nodes[i];
    l.buf[i] = -1;
    if (is_named_leaf(nd->op)) {
      l.buf[i] = leaf_buffer(&l, nd);
      continue;
    }
    int c = 0;
    if (inlinable(nd->op)) {
      c = op_has(nd->op, OPF_SHAPE) || nd->op == OP_CONST ? 0 : 1;
      for (int j = 0; j < nd->nin; j++)
        if (l.buf[nd->in[j]] < 0) c += l.cost[nd->in[j]];
    }
    l.cost[i] = c;
    bool materialize = role_buf[i] >= 0 || !inlinable(nd->op) || !l.fuse;
    if (!materialize && nd->op != OP_CONST && nd->op != OP_DROPOUT_MASK) {
      if (l.multiread[i] && c > 0) materialize = true;
      if (l.uses[i] > 1 && c > 2 && !update_value[i]) materialize = true;
      if (c > 24) materialize = true;
    }
    if (!materialize) continue;
    if (nd->op == OP_CONST && role_buf[i] < 0) continue;
    int out = role_buf[i];
    if (out < 0) {
      const Node *src = g->nodes[nd->in ? nd->in[0] : 0];
      if (nd->op == OP_RESHAPE && l.buf[src->id] >= 0 && l.fuse) {
        /* a reshape of a buffer is a view of it */
        out = kir_buffer(p, arena_printf(l.a, "%%t%d", i), BUF_TEMP, nd->dtype, nd->shape, (int)e);
        int root = l.buf[src->id];
        p->bufs[out].alias = p->bufs[root].alias >= 0 ? p->bufs[root].alias : root;
        l.buf[i] = out;
        continue;
      }
      out = new_temp(&l, nd);
    }
    lower_node(&l, nd, out);
    l.buf[i] = out;
  }
  for (int i = 0; i < ncopies; i++) emit_copy(&l, copies[i].node, copies[i].buf, "copy");
  if (e == ENTRY_TRAIN) lower_updates(&l);
  return true;
}
