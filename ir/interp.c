/* interp.c — the reference interpreter: every op of ops.def as plain loops in
 * double precision, PyTorch semantics (maxpool pads with -inf and its argmax
 * takes the first maximum; avgpool divides by k*k; conv2d as F.conv2d with
 * stride, padding, dilation and groups). Relies on ir.h for the graph and on
 * runtime/dlrt.h for the dropout random stream. No speed is attempted. */
#include "ir/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- index helpers ---- */
static void unravel(int64_t lin, const Shape *s, int64_t *idx) {
  for (int i = s->rank - 1; i >= 0; i--) {
    idx[i] = lin % s->d[i];
    lin /= s->d[i];
  }
}
static int64_t ravel(const int64_t *idx, const Shape *s) {
  int64_t o = 0;
  for (int i = 0; i < s->rank; i++) o = o * s->d[i] + idx[i];
  return o;
}
/* Offset in `in` of the element that NumPy broadcasting maps to out[idx]. */
static int64_t bcast_off(const int64_t *idx, const Shape *out, const Shape *in) {
  int lead = out->rank - in->rank;
  int64_t o = 0;
  for (int i = 0; i < in->rank; i++) {
    int64_t d = in->d[i];
    o = o * d + (d == 1 ? 0 : idx[i + lead]);
  }
  return o;
}
static Shape sub_shape(const Shape *s, int from, int to) { /* axes [from, to) */
  Shape r;
  memset(&r, 0, sizeof r);
  for (int i = from; i < to; i++) r.d[r.rank++] = s->d[i];
  return r;
}

/* ---- elementwise scalar functions: v = operands, p = the op's attribute ---- */
typedef double (*EwFn)(const double *v, double p);
static double f_neg(const double *v, double p) { (void)p; return -v[0]; }
static double f_exp(const double *v, double p) { (void)p; return exp(v[0]); }
static double f_log(const double *v, double p) { (void)p; return log(v[0]); }
static double f_sqrt(const double *v, double p) { (void)p; return sqrt(v[0]); }
static double f_abs(const double *v, double p) { (void)p; return fabs(v[0]); }
static double f_relu(const double *v, double p) { (void)p; return v[0] < 0 ? 0.0 : v[0]; }
static double f_sigmoid(const double *v, double p) { (void)p; return 1.0 / (1.0 + exp(-v[0])); }
static double f_tanh(const double *v, double p) { (void)p; return tanh(v[0]); }
static double f_elu(const double *v, double p) { return v[0] > 0 ? v[0] : p * expm1(v[0]); }
static double f_leaky(const double *v, double p) { return v[0] > 0 ? v[0] : v[0] * p; }
static double f_pows(const double *v, double p) { return pow(v[0], p); }
static double f_sign(const double *v, double p) { (void)p; return v[0] > 0 ? 1.0 : v[0] < 0 ? -1.0 : 0.0; }
static double f_step(const double *v, double p) { (void)p; return v[0] > 0 ? 1.0 : 0.0; }
static double f_to_i32(const double *v, double p) { (void)p; return trunc(v[0]); }
static double f_ident(const double *v, double p) { (void)p; return v[0]; }
static double f_add(const double *v, double p) { (void)p; return v[0] + v[1]; }
static double f_sub(const double *v, double p) { (void)p; return v[0] - v[1]; }
static double f_mul(const double *v, double p) { (void)p; return v[0] * v[1]; }
static double f_div(const double *v, double p) { (void)p; return v[0] / v[1]; }
static double f_idiv(const double *v, double p) { (void)p; return v[1] == 0 ? 0.0 : trunc(v[0] / v[1]); }
static double f_pow(const double *v, double p) { (void)p; return pow(v[0], v[1]); }
static double f_max(const double *v, double p) {
  (void)p;
  if (isnan(v[0]) || isnan(v[1])) return NAN;
  return v[0] > v[1] ? v[0] : v[1];
}
static double f_min(const double *v, double p) {
  (void)p;
  if (isnan(v[0]) || isnan(v[1])) return NAN;
  return v[0] < v[1] ? v[0] : v[1];
}
static double f_gt(const double *v, double p) { (void)p; return v[0] > v[1] ? 1.0 : 0.0; }
static double f_ge(const double *v, double p) { (void)p; return v[0] >= v[1] ? 1.0 : 0.0; }
static double f_eq(const double *v, double p) { (void)p; return v[0] == v[1] ? 1.0 : 0.0; }
static double f_select(const double *v, double p) { (void)p; return v[0] != 0 ? v[1] : v[2]; }

static void eval_elemwise(const Graph *g, const Node *n, double **val, EwFn f, double p) {
  int64_t idx[IR_MAX_RANK];
  int64_t numel = shape_numel(&n->shape);
  double *y = val[n->id];
  for (int64_t i = 0; i < numel; i++) {
    double v[3] = {0, 0, 0};
    unravel(i, &n->shape, idx);
    for (int k = 0; k < n->nin && k < 3; k++)
      v[k] = val[n->in[k]][bcast_off(idx, &n->shape, &g->nodes[n->in[k]]->shape)];
    y[i] = f(v, p);
  }
}

/* ---- shape ops ---- */
static void eval_transpose(const Node *n, const Node *x, const double *xv, double *y) {
  int64_t idx[IR_MAX_RANK], xi[IR_MAX_RANK];
  int64_t numel = shape_numel(&n->shape);
  for (int64_t i = 0; i < numel; i++) {
    unravel(i, &n->shape, idx);
    for (int k = 0; k < n->shape.rank; k++) xi[n->attr.perm.perm[k]] = idx[k];
    y[i] = xv[ravel(xi, &x->shape)];
  }
}
static void eval_slice(const Node *n, const Node *x, const double *xv, double *y) {
  int64_t idx[IR_MAX_RANK];
  int64_t numel = shape_numel(&n->shape);
  for (int64_t i = 0; i < numel; i++) {
    unravel(i, &n->shape, idx);
    for (int k = 0; k < n->shape.rank; k++) idx[k] = n->attr.slice.start[k] + idx[k] * n->attr.slice.step[k];
    y[i] = xv[ravel(idx, &x->shape)];
  }
}
static void eval_unslice(const Node *n, const Node *x, const double *xv, double *y) {
  int64_t idx[IR_MAX_RANK];
  int64_t numel = shape_numel(&x->shape);
  memset(y, 0, sizeof(double) * (size_t)shape_numel(&n->shape));
  for (int64_t i = 0; i < numel; i++) {
    unravel(i, &x->shape, idx);
    for (int k = 0; k < x->shape.rank; k++) idx[k] = n->attr.slice.start[k] + idx[k] * n->attr.slice.step[k];
    y[ravel(idx, &n->shape)] = xv[i];
  }
}
static void eval_concat(const Graph *g, const Node *n, double **val) {
  int64_t idx[IR_MAX_RANK];
  int ax = n->attr.axis.axis;
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    const Node *x = g->nodes[n->in[k]];
    int64_t numel = shape_numel(&x->shape);
    for (int64_t i = 0; i < numel; i++) {
      unravel(i, &x->shape, idx);
      idx[ax] += off;
      val[n->id][ravel(idx, &n->shape)] = val[x->id][i];
    }
    off += x->shape.d[ax];
  }
}

/* ---- reductions ---- */
/* Output linear index of input element idx: reduced axes set to 0, over the
 * keepdim shape (same linear order with and without keepdim). */
static int64_t red_out(const int64_t *idx, const Shape *xs, uint32_t axes) {
  int64_t o = 0;
  for (int k = 0; k < xs->rank; k++) {
    bool r = (axes & (1u << k)) != 0;
    o = o * (r ? 1 : xs->d[k]) + (r ? 0 : idx[k]);
  }
  return o;
}
static int64_t red_in(const int64_t *idx, const Shape *xs, uint32_t axes) { /* index over the reduced axes */
  int64_t o = 0;
  for (int k = 0; k < xs->rank; k++)
    if (axes & (1u << k)) o = o * xs->d[k] + idx[k];
  return o;
}
static int eval_reduce(const Node *n, const Node *x, const double *xv, double *y) {
  int64_t idx[IR_MAX_RANK];
  uint32_t axes = n->attr.reduce.axes;
  int64_t on = shape_numel(&n->shape), xn = shape_numel(&x->shape);
  double *best = NULL;
  for (int64_t i = 0; i < on; i++) y[i] = n->op == OP_MAX ? -INFINITY : n->op == OP_ARGMAX ? -1.0 : 0.0;
  if (n->op == OP_ARGMAX) {
    best = malloc(sizeof(double) * (size_t)on);
    if (!best) return -1;
  }
  for (int64_t i = 0; i < xn; i++) {
    unravel(i, &x->shape, idx);
    int64_t o = red_out(idx, &x->shape, axes);
    double v = xv[i];
    if (n->op == OP_MAX) {
      if (isnan(v) || v > y[o]) y[o] = v;
    } else if (n->op == OP_ARGMAX) {
      if (y[o] < 0 || v > best[o] || (isnan(v) && !isnan(best[o]))) {
        best[o] = v;
        y[o] = (double)red_in(idx, &x->shape, axes);
      }
    } else { /* SUM, MEAN */
      y[o] += v;
    }
  }
  if (n->op == OP_MEAN) {
    double cnt = (double)xn / (double)on;
    for (int64_t i = 0; i < on; i++) y[i] /= cnt;
  }
  free(best);
  return 0;
}
static void eval_softmax(const Node *n, const double *xv, double *y, bool logsm) {
  int ax = n->attr.axis.axis;
  int64_t outer = 1, len = n->shape.d[ax], inner = 1;
  for (int k = 0; k < ax; k++) outer *= n->shape.d[k];
  for (int k = ax + 1; k < n->shape.rank; k++) inner *= n->shape.d[k];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      const double *xr = xv + o * len * inner + in;
      double *yr = y + o * len * inner + in;
      double mx = -INFINITY, s = 0;
      for (int64_t j = 0; j < len; j++) mx = fmax(mx, xr[j * inner]);
      for (int64_t j = 0; j < len; j++) s += exp(xr[j * inner] - mx);
      for (int64_t j = 0; j < len; j++)
        yr[j * inner] = logsm ? xr[j * inner] - mx - log(s) : exp(xr[j * inner] - mx) / s;
    }
}

/* ---- contractions ---- */
static void eval_matmul(const Node *n, const Node *a, const Node *b, const double *av, const double *bv,
                        double *y) {
  int r = n->shape.rank, ra = a->shape.rank, rb = b->shape.rank;
  int64_t M = n->shape.d[r - 2], N = n->shape.d[r - 1], K = a->shape.d[ra - 1];
  Shape ob = sub_shape(&n->shape, 0, r - 2), ab = sub_shape(&a->shape, 0, ra - 2), bb = sub_shape(&b->shape, 0, rb - 2);
  int64_t nb = shape_numel(&ob);
  int64_t idx[IR_MAX_RANK];
  for (int64_t bi = 0; bi < nb; bi++) {
    unravel(bi, &ob, idx);
    const double *A = av + bcast_off(idx, &ob, &ab) * M * K;
    const double *Bm = bv + bcast_off(idx, &ob, &bb) * K * N;
    double *Y = y + bi * M * N;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += A[i * K + k] * Bm[k * N + j];
        Y[i * N + j] = s;
      }
  }
}

/* The one loop nest of conv2d and both its backward ops:
 * y[n,o,oh,ow] = sum_{c,kh,kw} x[n, grp*Cg + c, ih, iw] * w[o, c, kh, kw]. */
typedef enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER } ConvMode;
static void conv_loop(const ConvAttr *cv, const Shape *xs, const Shape *ws, const Shape *ys, double *x, double *w,
                      double *y, ConvMode mode) {
  int64_t N = xs->d[0], C = xs->d[1], H = xs->d[2], W = xs->d[3];
  int64_t O = ws->d[0], Cg = ws->d[1], KH = ws->d[2], KW = ws->d[3];
  int64_t OH = ys->d[2], OW = ys->d[3];
  int64_t Og = O / cv->groups;
  (void)C;
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < O; o++) {
      int64_t grp = o / Og;
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double *yp = &y[((n * O + o) * OH + oh) * OW + ow];
          double acc = 0;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t kh = 0; kh < KH; kh++) {
              int64_t ih = oh * cv->stride[0] - cv->pad[0] + kh * cv->dil[0];
              if (ih < 0 || ih >= H) continue;
              for (int64_t kw = 0; kw < KW; kw++) {
                int64_t iw = ow * cv->stride[1] - cv->pad[1] + kw * cv->dil[1];
                if (iw < 0 || iw >= W) continue;
                double *xp = &x[((n * xs->d[1] + grp * Cg + c) * H + ih) * W + iw];
                double *wp = &w[((o * Cg + c) * KH + kh) * KW + kw];
                switch (mode) {
                  case CONV_FWD: acc += *xp * *wp; break;
                  case CONV_BWD_DATA: *xp += *yp * *wp; break;
                  case CONV_BWD_FILTER: *wp += *xp * *yp; break;
                }
              }
            }
          if (mode == CONV_FWD) *yp = acc;
        }
    }
}

/* Max pooling: value and window-local index of the first maximum, as torch
 * (padding never wins; -inf everywhere keeps the first in-bounds index). */
static void pool_loop(const Node *n, const Shape *xs, const Shape *ys, const double *x, double *y, double *dx,
                      const double *dy, const double *am) {
  const PoolAttr *pa = &n->attr.pool;
  int64_t N = xs->d[0], C = xs->d[1], H = xs->d[2], W = xs->d[3], OH = ys->d[2], OW = ys->d[3];
  double kk = (double)pa->k[0] * pa->k[1];
  for (int64_t nc = 0; nc < N * C; nc++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t oi = (nc * OH + oh) * OW + ow;
        int64_t h0 = oh * pa->stride[0] - pa->pad[0], w0 = ow * pa->stride[1] - pa->pad[1];
        double best = -INFINITY, sum = 0;
        int64_t bi = -1;
        for (int64_t kh = 0; kh < pa->k[0]; kh++)
          for (int64_t kw = 0; kw < pa->k[1]; kw++) {
            int64_t ih = h0 + kh, iw = w0 + kw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            int64_t xi = (nc * H + ih) * W + iw;
            int64_t local = kh * pa->k[1] + kw;
            if (n->op == OP_MAXPOOL2D || n->op == OP_MAXPOOL2D_ARGMAX) {
              double v = x[xi];
              if (bi < 0) bi = local;
              if (v > best || isnan(v)) {
                best = v;
                bi = local;
              }
            } else if (n->op == OP_AVGPOOL2D) {
              sum += x[xi];
            } else if (n->op == OP_AVGPOOL2D_BWD) {
              dx[xi] += dy[oi] / kk;
            } else if ((int64_t)am[oi] == local) { /* MAXPOOL2D_BWD */
              dx[xi] += dy[oi];
            }
          }
        if (n->op == OP_MAXPOOL2D) y[oi] = best;
        else if (n->op == OP_MAXPOOL2D_ARGMAX) y[oi] = (double)bi;
        else if (n->op == OP_AVGPOOL2D) y[oi] = sum / kk;
      }
}

static int eval_node(const Graph *g, const Node *n, double *const *leaf_values, uint64_t seed, uint64_t step,
                     double **val) {
  double *y = val[n->id];
  int64_t numel = shape_numel(&n->shape);
  const Node *x = n->nin > 0 ? g->nodes[n->in[0]] : NULL;
  const Node *x1 = n->nin > 1 ? g->nodes[n->in[1]] : NULL;
  double *xv = x ? val[x->id] : NULL;
  double *x1v = x1 ? val[x1->id] : NULL;
  double p = n->attr.scalar.v;
  bool i32 = n->dtype == DT_I32;
  switch (n->op) {
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE:
      if (!leaf_values || !leaf_values[n->id]) {
        fprintf(stderr, "interp: no value given for leaf %%%d (%s)\n", n->id,
                n->attr.leaf.name ? n->attr.leaf.name : "?");
        return -1;
      }
      memcpy(y, leaf_values[n->id], sizeof(double) * (size_t)numel);
      return 0;
    case OP_CONST:
      for (int64_t i = 0; i < numel; i++) y[i] = p;
      return 0;
    case OP_DROPOUT_MASK: {
      double pd = n->attr.dropout.p;
      double scale = 1.0 / (1.0 - pd);
      uint64_t s = dlrt_mix64(seed ^ n->attr.dropout.salt, step);
      for (int64_t i = 0; i < numel; i++) y[i] = (double)dlrt_uniform01(s, (uint64_t)i) >= pd ? scale : 0.0;
      return 0;
    }
    case OP_NEG: eval_elemwise(g, n, val, f_neg, 0); return 0;
    case OP_EXP: eval_elemwise(g, n, val, f_exp, 0); return 0;
    case OP_LOG: eval_elemwise(g, n, val, f_log, 0); return 0;
    case OP_SQRT: eval_elemwise(g, n, val, f_sqrt, 0); return 0;
    case OP_ABS: eval_elemwise(g, n, val, f_abs, 0); return 0;
    case OP_RELU: eval_elemwise(g, n, val, f_relu, 0); return 0;
    case OP_SIGMOID: eval_elemwise(g, n, val, f_sigmoid, 0); return 0;
    case OP_TANH: eval_elemwise(g, n, val, f_tanh, 0); return 0;
    case OP_ELU: eval_elemwise(g, n, val, f_elu, p); return 0;
    case OP_LEAKY_RELU: eval_elemwise(g, n, val, f_leaky, p); return 0;
    case OP_POWS: eval_elemwise(g, n, val, f_pows, p); return 0;
    case OP_SIGN: eval_elemwise(g, n, val, f_sign, 0); return 0;
    case OP_STEP: eval_elemwise(g, n, val, f_step, 0); return 0;
    case OP_CAST: eval_elemwise(g, n, val, i32 ? f_to_i32 : f_ident, 0); return 0;
    case OP_ADD: eval_elemwise(g, n, val, f_add, 0); return 0;
    case OP_SUB: eval_elemwise(g, n, val, f_sub, 0); return 0;
    case OP_MUL: eval_elemwise(g, n, val, f_mul, 0); return 0;
    case OP_DIV: eval_elemwise(g, n, val, i32 ? f_idiv : f_div, 0); return 0;
    case OP_POW: eval_elemwise(g, n, val, f_pow, 0); return 0;
    case OP_MAXIMUM: eval_elemwise(g, n, val, f_max, 0); return 0;
    case OP_MINIMUM: eval_elemwise(g, n, val, f_min, 0); return 0;
    case OP_GT: eval_elemwise(g, n, val, f_gt, 0); return 0;
    case OP_GE: eval_elemwise(g, n, val, f_ge, 0); return 0;
    case OP_EQ: eval_elemwise(g, n, val, f_eq, 0); return 0;
    case OP_SELECT: eval_elemwise(g, n, val, f_select, 0); return 0;
    case OP_BROADCAST: eval_elemwise(g, n, val, f_ident, 0); return 0;
    case OP_RESHAPE: memcpy(y, xv, sizeof(double) * (size_t)numel); return 0;
    case OP_TRANSPOSE: eval_transpose(n, x, xv, y); return 0;
    case OP_SLICE: eval_slice(n, x, xv, y); return 0;
    case OP_UNSLICE: eval_unslice(n, x, xv, y); return 0;
    case OP_CONCAT: eval_concat(g, n, val); return 0;
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: return eval_reduce(n, x, xv, y);
    case OP_MATMUL: eval_matmul(n, x, x1, xv, x1v, y); return 0;
    case OP_SOFTMAX: eval_softmax(n, xv, y, false); return 0;
    case OP_LOG_SOFTMAX: eval_softmax(n, xv, y, true); return 0;
    case OP_ONEHOT: {
      int64_t C = n->shape.d[n->shape.rank - 1], m = shape_numel(&x->shape);
      for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < C; c++) y[i * C + c] = xv[i] == (double)c ? 1.0 : 0.0;
      return 0;
    }
    case OP_CONV2D: conv_loop(&n->attr.conv, &x->shape, &x1->shape, &n->shape, xv, x1v, y, CONV_FWD); return 0;
    case OP_CONV2D_BWD_DATA: /* (dy, w) -> dx */
      memset(y, 0, sizeof(double) * (size_t)numel);
      conv_loop(&n->attr.conv, &n->shape, &x1->shape, &x->shape, y, x1v, xv, CONV_BWD_DATA);
      return 0;
    case OP_CONV2D_BWD_FILTER: /* (x, dy) -> dw */
      memset(y, 0, sizeof(double) * (size_t)numel);
      conv_loop(&n->attr.conv, &x->shape, &n->shape, &x1->shape, xv, y, x1v, CONV_BWD_FILTER);
      return 0;
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_AVGPOOL2D:
      pool_loop(n, &x->shape, &n->shape, xv, y, NULL, NULL, NULL);
      return 0;
    case OP_MAXPOOL2D_BWD: /* (dy, argmax) -> dx */
      memset(y, 0, sizeof(double) * (size_t)numel);
      pool_loop(n, &n->shape, &x->shape, NULL, NULL, y, xv, x1v);
      return 0;
    case OP_AVGPOOL2D_BWD: /* dy -> dx */
      memset(y, 0, sizeof(double) * (size_t)numel);
      pool_loop(n, &n->shape, &x->shape, NULL, NULL, y, xv, NULL);
      return 0;
    case OP__COUNT: break;
  }
  fprintf(stderr, "interp: %%%d has an unknown op\n", n->id);
  return -1;
}

int interp_run(const Graph *g, double *const *leaf_values, uint64_t seed, uint64_t step, InterpState *out) {
  out->n = g->n_nodes;
  out->val = calloc((size_t)(g->n_nodes > 0 ? g->n_nodes : 1), sizeof(double *));
  if (!out->val) return -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    int64_t m = shape_numel(&n->shape);
    out->val[i] = calloc((size_t)(m > 0 ? m : 1), sizeof(double));
    if (!out->val[i]) {
      fprintf(stderr, "interp: out of memory at %%%d\n", i);
      return -1;
    }
    if (eval_node(g, n, leaf_values, seed, step, out->val) != 0) return -1;
  }
  return 0;
}

void interp_free(InterpState *s) {
  if (!s || !s->val) return;
  for (int i = 0; i < s->n; i++) free(s->val[i]);
  free(s->val);
  s->val = NULL;
  s->n = 0;
}
