/* sema_losses.c — built-ins that decompose into several IR primitives, with
 * PyTorch's definitions: the losses (mse, l1, huber, cross_entropy,
 * bce_with_logits, multi_margin; scalar means over the batch), the accuracy
 * metric, batchnorm (batch statistics and running-stat updates in training,
 * the state otherwise) and dropout (a DROPOUT_MASK in training only). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "frontend/sema.h"

#define G (A->S->g)
#define D (A->S->d)
#define L (A->loc)

static int cst(Args *A, double v) { return ir_scalar(G, (float)v, L); }
static int bin(Args *A, OpKind op, int a, int b) { return ir_bin(G, op, a, b, L, D); }
static int un(Args *A, OpKind op, int a) { return ir_un(G, op, a, L, D); }

static uint32_t all_axes(Args *A, int x) {
  int r = x >= 0 ? sema_node(A->S, x)->shape.rank : 0;
  return r ? (uint32_t)((1u << r) - 1) : 0;
}

/* Mean over every element (a scalar stays as it is). */
static int mean_all(Args *A, int x) {
  if (x < 0) return -1;
  uint32_t m = all_axes(A, x);
  return m ? ir_reduce(G, OP_MEAN, x, m, false, L, D) : x;
}

static bool is_f32(Args *A, int i, int x) {
  if (sema_node(A->S, x)->dtype == DT_F32) return true;
  diag_error(D, A->e[i]->loc, "%s: %s must be f32, got %s", A->fname, A->params[i], sema_shape_str(A->S, x));
  return false;
}

/* p and t of a regression loss: both f32, the same shape. */
static bool pred_target(Args *A, int *p, int *t) {
  *p = arg_tensor(A, 0);
  *t = arg_tensor(A, 1);
  if (*p < 0 || *t < 0 || !is_f32(A, 0, *p) || !is_f32(A, 1, *t)) return false;
  if (!shape_eq(&sema_node(A->S, *p)->shape, &sema_node(A->S, *t)->shape)) {
    diag_error(D, L, "%s: %s %s and target %s must have the same shape", A->fname,
               A->op == OP_MEAN && strcmp(A->fname, "bce_with_logits") == 0 ? "logits" : "prediction",
               sema_shape_str(A->S, *p), sema_shape_str(A->S, *t));
    return false;
  }
  return true;
}

/* logits/scores f32[B, C] and class indices i32[B]. */
static bool scores_labels(Args *A, int *s, int *y, int64_t *B, int64_t *C) {
  *s = arg_tensor(A, 0);
  *y = arg_tensor(A, 1);
  if (*s < 0 || *y < 0) return false;
  Node *sn = sema_node(A->S, *s), *yn = sema_node(A->S, *y);
  if (sn->shape.rank != 2 || sn->dtype != DT_F32) {
    diag_error(D, A->e[0]->loc, "%s: %s must be f32[B, C], got %s", A->fname, A->params[0], sema_shape_str(A->S, *s));
    return false;
  }
  if (yn->dtype != DT_I32 || yn->shape.rank != 1) {
    diag_error(D, A->e[1]->loc, "%s: %s must be i32[B] class indices, got %s", A->fname, A->params[1],
               sema_shape_str(A->S, *y));
    return false;
  }
  if (yn->shape.d[0] != sn->shape.d[0]) {
    diag_error(D, L, "%s: labels %s do not match %s %s (batch %" PRId64 ")", A->fname, sema_shape_str(A->S, *y),
               A->params[0], sema_shape_str(A->S, *s), sn->shape.d[0]);
    return false;
  }
  *B = sn->shape.d[0];
  *C = sn->shape.d[1];
  return true;
}

static int onehot(Args *A, int y, int64_t B, int64_t C) {
  int64_t d[2] = {B, C};
  Shape s = shape_make(2, d);
  return ir_op(G, OP_ONEHOT, 1, &y, NULL, &s, DT_F32, L, D);
}

/* where(cond, a, b): the class entries are picked, not multiplied by 0 or
 * 1, so a masked (-inf) or overflowing entry elsewhere in the row stays out
 * of the sum (0 * -inf would be NaN). */
static int where(Args *A, int cond, int a, int b) {
  if (cond < 0 || a < 0 || b < 0) return -1;
  int in[3] = {cond, a, b};
  return ir_op(G, OP_SELECT, 3, in, NULL, NULL, DT_F32, L, D);
}

Value bi_mse(Args *A) {
  int p, t;
  if (!pred_target(A, &p, &t)) return v_err();
  int d = bin(A, OP_SUB, p, t);
  return v_tensor(mean_all(A, bin(A, OP_MUL, d, d)));
}

Value bi_l1(Args *A) {
  int p, t;
  if (!pred_target(A, &p, &t)) return v_err();
  return v_tensor(mean_all(A, un(A, OP_ABS, bin(A, OP_SUB, p, t))));
}

Value bi_huber(Args *A) {
  int p, t;
  double delta;
  if (!pred_target(A, &p, &t) || !arg_float(A, 2, 1.0, &delta)) return v_err();
  if (!(delta > 0)) {
    diag_error(D, A->e[2]->loc, "huber: delta must be > 0, got %g", delta);
    return v_err();
  }
  /* F.huber_loss: |d| < delta ? 0.5 d^2 : delta (|d| - 0.5 delta) */
  int d = bin(A, OP_SUB, p, t);
  int a = un(A, OP_ABS, d);
  int c = bin(A, OP_GT, cst(A, delta), a);
  int q = bin(A, OP_MUL, bin(A, OP_MUL, cst(A, 0.5), d), d);
  int lin = bin(A, OP_MUL, cst(A, delta), bin(A, OP_SUB, a, cst(A, 0.5 * delta)));
  if (c < 0 || q < 0 || lin < 0) return v_err();
  int in[3] = {c, q, lin};
  int sel = ir_op(G, OP_SELECT, 3, in, NULL, NULL, DT_F32, L, D);
  return v_tensor(mean_all(A, sel));
}

Value bi_cross_entropy(Args *A) {
  int s, y;
  int64_t B, C;
  if (!scores_labels(A, &s, &y, &B, &C)) return v_err();
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.axis.axis = 1;
  int ls = ir_op(G, OP_LOG_SOFTMAX, 1, &s, &at, NULL, DT_F32, L, D);
  int picked = ir_reduce(G, OP_SUM, where(A, onehot(A, y, B, C), ls, cst(A, 0.0)), 1u << 1, false, L, D);
  return v_tensor(un(A, OP_NEG, mean_all(A, picked)));
}

Value bi_bce_with_logits(Args *A) {
  int s, t;
  if (!pred_target(A, &s, &t)) return v_err();
  /* max(s, 0) - s t + log(1 + exp(-|s|)) */
  int soft = un(A, OP_LOG, bin(A, OP_ADD, cst(A, 1.0), un(A, OP_EXP, un(A, OP_NEG, un(A, OP_ABS, s)))));
  int v = bin(A, OP_ADD, bin(A, OP_SUB, un(A, OP_RELU, s), bin(A, OP_MUL, s, t)), soft);
  return v_tensor(mean_all(A, v));
}

Value bi_multi_margin(Args *A) {
  int s, y;
  int64_t B, C;
  double margin;
  if (!scores_labels(A, &s, &y, &B, &C) || !arg_float(A, 2, 1.0, &margin)) return v_err();
  /* F.multi_margin_loss (p=1): mean_b sum_{j != y_b} max(0, margin - s[b,y_b] + s[b,j]) / C */
  int oh = onehot(A, y, B, C);
  int sy = ir_reduce(G, OP_SUM, where(A, oh, s, cst(A, 0.0)), 1u << 1, true, L, D);
  int h = un(A, OP_RELU, bin(A, OP_ADD, bin(A, OP_SUB, cst(A, margin), sy), s));
  int off = where(A, oh, cst(A, 0.0), h);
  return v_tensor(mean_all(A, off)); /* = mean over B of (row sum / C) */
}

Value bi_accuracy(Args *A) {
  int s, y;
  int64_t B, C;
  if (!scores_labels(A, &s, &y, &B, &C)) return v_err();
  int am = ir_reduce(G, OP_ARGMAX, s, 1u << 1, false, L, D);
  return v_tensor(mean_all(A, bin(A, OP_EQ, am, y)));
}

/* ---- batchnorm ---- */

static bool channel_vector(Args *A, int i, int v, int64_t C, int x, bool need_state) {
  Node *n = sema_node(A->S, v);
  bool ok = n->dtype == DT_F32 && n->shape.rank == 1 && n->shape.d[0] == C;
  if (need_state && n->op != OP_STATE) ok = false;
  if (ok) return true;
  const char *what = n->op == OP_STATE || n->op == OP_PARAM || n->op == OP_INPUT || n->op == OP_LABEL
                         ? ir_op_names[n->op] : "computed";
  diag_error(D, A->e[i]->loc, "batchnorm: %s must be a %sf32[%" PRId64 "] (x is %s), got %s %s", A->params[i],
             need_state ? "state " : "", C, sema_shape_str(A->S, x), what, sema_shape_str(A->S, v));
  return false;
}

Value bi_batchnorm(Args *A) {
  Sema *S = A->S;
  int x = arg_tensor(A, 0), gamma = arg_tensor(A, 1), beta = arg_tensor(A, 2);
  int rm = arg_tensor(A, 3), rv = arg_tensor(A, 4);
  double eps, mom;
  if (x < 0 || gamma < 0 || beta < 0 || rm < 0 || rv < 0) return v_err();
  if (!arg_float(A, 5, 1e-5, &eps) || !arg_float(A, 6, 0.1, &mom)) return v_err();
  Node *xn = sema_node(S, x);
  if (xn->shape.rank < 2 || xn->dtype != DT_F32) { /* [N, C], [N, C, L], [N, C, H, W], ... as F.batch_norm */
    diag_error(D, A->e[0]->loc, "batchnorm: x must be f32[N, C, ...] (channels on axis 1), got %s",
               sema_shape_str(S, x));
    return v_err();
  }
  int64_t C = xn->shape.d[1];
  if (!channel_vector(A, 1, gamma, C, x, false) || !channel_vector(A, 2, beta, C, x, false) ||
      !channel_vector(A, 3, rm, C, x, true) || !channel_vector(A, 4, rv, C, x, true))
    return v_err();
  if (rm == rv) {
    diag_error(D, A->e[4]->loc, "batchnorm: mean and var must be different states");
    return v_err();
  }
  if (!(eps >= 0)) {
    diag_error(D, A->e[5]->loc, "batchnorm: eps must be >= 0, got %g", eps);
    return v_err();
  }
  if (!(mom >= 0 && mom <= 1)) {
    diag_error(D, A->e[6]->loc, "batchnorm: momentum must be in [0, 1], got %g", mom);
    return v_err();
  }
  int r = xn->shape.rank;
  int64_t cd[IR_MAX_RANK];
  for (int i = 0; i < r; i++) cd[i] = i == 1 ? C : 1;
  Shape cs = shape_make(r, cd);
  uint32_t mask = (uint32_t)((1u << r) - 1) & ~(1u << 1);
  int g_r = ir_reshape(G, gamma, cs, L, D), b_r = ir_reshape(G, beta, cs, L, D);
  if (S->mode != MODE_TRAIN) {
    int m = ir_reshape(G, rm, cs, L, D), v = ir_reshape(G, rv, cs, L, D);
    int xhat = bin(A, OP_DIV, bin(A, OP_SUB, x, m), un(A, OP_SQRT, bin(A, OP_ADD, v, cst(A, eps))));
    return v_tensor(bin(A, OP_ADD, bin(A, OP_MUL, xhat, g_r), b_r));
  }
  int64_t n = shape_numel(&xn->shape) / C;
  if (n <= 1) {
    diag_error(D, L, "batchnorm: training needs more than 1 value per channel, x is %s", sema_shape_str(S, x));
    return v_err();
  }
  for (int i = 0; i < S->g->n_updates; i++)
    if (S->g->updates[i].target == rm || S->g->updates[i].target == rv) {
      int t = S->g->updates[i].target;
      diag_error(D, A->e[t == rm ? 3 : 4]->loc, "batchnorm: state '%s' is already updated by another batchnorm",
                 sema_node(S, t)->attr.leaf.name);
      return v_err();
    }
  int m = ir_reduce(G, OP_MEAN, x, mask, true, L, D);
  int dm = bin(A, OP_SUB, x, m);
  int v = ir_reduce(G, OP_MEAN, bin(A, OP_MUL, dm, dm), mask, true, L, D); /* biased */
  int y = bin(A, OP_ADD, bin(A, OP_MUL, bin(A, OP_DIV, dm, un(A, OP_SQRT, bin(A, OP_ADD, v, cst(A, eps)))), g_r), b_r);
  int64_t c1[1] = {C};
  Shape vs = shape_make(1, c1);
  int m1 = ir_reshape(G, m, vs, L, D), v1 = ir_reshape(G, v, vs, L, D);
  int rm_new = bin(A, OP_ADD, bin(A, OP_MUL, cst(A, 1.0 - mom), rm), bin(A, OP_MUL, cst(A, mom), m1));
  int rv_new = bin(A, OP_ADD, bin(A, OP_MUL, cst(A, 1.0 - mom), rv),
                   bin(A, OP_MUL, cst(A, mom * (double)n / (double)(n - 1)), v1)); /* unbiased */
  if (y < 0 || rm_new < 0 || rv_new < 0) return v_err();
  ir_add_update(G, rm, rm_new);
  ir_add_update(G, rv, rv_new);
  return v_tensor(y);
}

/* ---- dropout ---- */

static uint64_t fnv1a(uint64_t h, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

Value bi_dropout(Args *A) {
  Sema *S = A->S;
  int x = arg_tensor(A, 0);
  double p;
  if (x < 0 || !arg_float(A, 1, 0.5, &p)) return v_err();
  if (!(p >= 0 && p < 1)) {
    diag_error(D, A->e[1]->loc, "dropout: p must be in [0, 1), got %g", p);
    return v_err();
  }
  if (!is_f32(A, 0, x)) return v_err();
  if (S->mode != MODE_TRAIN || p == 0) return v_tensor(x);
  /* salt: unique per call site, fn instance and unrolled repetition */
  int rep = 0;
  for (int i = 0; i < S->g->n_nodes; i++) {
    Node *n = S->g->nodes[i];
    if (n->op == OP_DROPOUT_MASK && n->loc.line == L.line && n->loc.col == L.col) rep++;
  }
  char key[64];
  snprintf(key, sizeof key, ":%d:%d#%d", L.line, L.col, rep);
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.dropout.p = (float)p;
  at.dropout.salt = fnv1a(fnv1a(0xcbf29ce484222325ull, S->frame->prefix), key);
  Shape s = sema_node(S, x)->shape;
  int mask = ir_op(G, OP_DROPOUT_MASK, 0, NULL, &at, &s, DT_F32, L, D);
  return v_tensor(bin(A, OP_MUL, x, mask));
}
