/* sema_builtins.c — calls of built-in functions (SPEC §3): matching
 * positional and keyword arguments, argument conversions with messages that
 * name the function and parameter, and the built-in table with the
 * elementwise, linear-algebra, reduction, shape and conv/pool handlers.
 * Losses, metrics, batchnorm and dropout are in sema_losses.c. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frontend/sema.h"

/* ---- argument binding ---- */

bool sema_bind_args(Sema *S, const Expr *call, const char *fname, const char *const *params, int nreq,
                    const Expr **out) {
  int np = 0;
  while (params[np]) np++;
  for (int i = 0; i < np; i++) out[i] = NULL;
  bool ok = true;
  int pos = 0;
  for (int k = 0; k < call->nargs; k++) {
    const Arg *a = &call->args[k];
    int idx = -1;
    if (!a->name) {
      if (pos >= np) {
        if (np == 0) diag_error(S->d, a->loc, "%s: takes no arguments", fname);
        else diag_error(S->d, a->loc, "%s: too many arguments (takes at most %d)", fname, np);
        return false;
      }
      idx = pos++;
    } else {
      for (int i = 0; i < np; i++)
        if (strcmp(params[i], a->name) == 0) idx = i;
      if (idx < 0) {
        diag_error(S->d, a->loc, "%s: unknown argument '%s'", fname, a->name);
        ok = false;
        continue;
      }
    }
    if (out[idx]) {
      diag_error(S->d, a->loc, "%s: argument '%s' is given twice", fname, params[idx]);
      ok = false;
      continue;
    }
    out[idx] = a->value;
  }
  for (int i = 0; ok && i < nreq; i++)
    if (!out[i]) {
      diag_error(S->d, call->loc, "%s: missing argument '%s'", fname, params[i]);
      ok = false;
    }
  return ok;
}

bool sema_args_eval(Sema *S, const Expr *call, const char *fname, const char *const *params, int nreq, Args *A,
                    Value *poison) {
  memset(A, 0, sizeof *A);
  A->S = S;
  A->call = call;
  A->fname = fname;
  A->loc = call->loc;
  A->params = params;
  *poison = v_err();
  if (!sema_bind_args(S, call, fname, params, nreq, A->e)) return false;
  bool bad = false, skip = false;
  for (int i = 0; params[i]; i++) {
    A->v[i] = v_err();
    if (!A->e[i]) continue;
    A->v[i] = sema_eval(S, A->e[i], NULL);
    if (A->v[i].k == V_ERR) bad = true;
    if (A->v[i].k == V_SKIP) skip = true;
  }
  if (bad) return false;
  if (skip) {
    *poison = v_skip();
    return false;
  }
  return true;
}

/* ---- argument accessors ---- */

bool arg_given(Args *A, int i) { return A->e[i] != NULL; }

static SrcLoc arg_loc(Args *A, int i) { return A->e[i] ? A->e[i]->loc : A->loc; }

int arg_tensor(Args *A, int i) {
  if (!A->e[i]) return -1;
  const char *what = arena_printf(A->S->a, "%s: argument '%s'", A->fname, A->params[i]);
  return sema_as_tensor(A->S, A->v[i], arg_loc(A, i), what);
}

bool arg_int(Args *A, int i, int64_t def, int64_t *out) {
  if (!A->e[i]) {
    *out = def;
    return true;
  }
  Value v = A->v[i];
  if (v.k == V_INT) {
    *out = v.i;
    return true;
  }
  if (v.k == V_FLOAT)
    diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' must be an integer, got %g", A->fname, A->params[i], v.f);
  else
    diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' must be an integer, got %s", A->fname, A->params[i],
               v_kind_name(v));
  return false;
}

bool arg_float(Args *A, int i, double def, double *out) {
  if (!A->e[i]) {
    *out = def;
    return true;
  }
  Value v = A->v[i];
  if (v.k == V_INT || v.k == V_FLOAT) {
    *out = v.f;
    return true;
  }
  diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' must be a number, got %s", A->fname, A->params[i],
             v_kind_name(v));
  return false;
}

bool arg_pair(Args *A, int i, int def, int out[2]) {
  if (!A->e[i]) {
    out[0] = out[1] = def;
    return true;
  }
  Value v = A->v[i];
  int64_t x[2];
  if (v.k == V_INT) {
    x[0] = x[1] = v.i;
  } else if (v.k == V_LIST && v.n == 2 && v.items[0].k == V_INT && v.items[1].k == V_INT) {
    x[0] = v.items[0].i;
    x[1] = v.items[1].i;
  } else {
    diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' must be an integer or a list [h, w] of integers",
               A->fname, A->params[i]);
    return false;
  }
  for (int k = 0; k < 2; k++) {
    if (x[k] < -1000000 || x[k] > 1000000) {
      diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' is out of range (%" PRId64 ")", A->fname, A->params[i],
                 x[k]);
      return false;
    }
    out[k] = (int)x[k];
  }
  return true;
}

static bool pair_at_least(Args *A, int i, const int v[2], int min) {
  if (v[0] >= min && v[1] >= min) return true;
  diag_error(A->S->d, arg_loc(A, i), "%s: %s must be >= %d, got %d", A->fname, A->params[i], min,
             v[0] < min ? v[0] : v[1]);
  return false;
}

/* ---- elementwise ---- */

static Value bi_unary(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  NodeAttr at;
  memset(&at, 0, sizeof at);
  if (A->op == OP_ELU || A->op == OP_LEAKY_RELU) {
    double v;
    if (!arg_float(A, 1, A->defv, &v)) return v_err();
    at.scalar.v = (float)v;
  }
  return v_tensor(ir_op(A->S->g, A->op, 1, &x, &at, NULL, DT_F32, A->loc, A->S->d));
}

static Value bi_pow(Args *A) {
  if (A->v[0].k != V_TENSOR) {
    diag_error(A->S->d, arg_loc(A, 0), "pow: argument 'x' must be a tensor, got %s", v_kind_name(A->v[0]));
    return v_err();
  }
  if (A->v[1].k == V_LIST) {
    diag_error(A->S->d, arg_loc(A, 1), "pow: argument 'p' must be a number or a tensor, got a list");
    return v_err();
  }
  return sema_arith(A->S, BIN_POW, A->v[0], A->v[1], A->loc);
}

static Value bi_binary(Args *A) {
  Value a = A->v[0], b = A->v[1];
  if (a.k != V_TENSOR && b.k != V_TENSOR) {
    if ((a.k == V_INT || a.k == V_FLOAT) && (b.k == V_INT || b.k == V_FLOAT)) {
      bool mx = A->op == OP_MAXIMUM;
      if (a.k == V_INT && b.k == V_INT) return v_int(mx ? (a.i > b.i ? a.i : b.i) : (a.i < b.i ? a.i : b.i));
      return v_float(mx ? fmax(a.f, b.f) : fmin(a.f, b.f));
    }
    diag_error(A->S->d, A->loc, "%s: arguments must be tensors or numbers", A->fname);
    return v_err();
  }
  DType dt = sema_node(A->S, a.k == V_TENSOR ? a.node : b.node)->dtype;
  int x = sema_materialize(A->S, a, dt, arg_loc(A, 0));
  int y = sema_materialize(A->S, b, dt, arg_loc(A, 1));
  if (x < 0 || y < 0) return v_err();
  return v_tensor(ir_bin(A->S->g, A->op, x, y, A->loc, A->S->d));
}

/* ---- linear algebra and shape ---- */

/* Reads a list of integers (or a single integer if allow_int). */
static bool int_list(Args *A, int i, bool allow_int, int64_t *out, int max, int *n) {
  Value v = A->v[i];
  if (allow_int && v.k == V_INT) {
    out[0] = v.i;
    *n = 1;
    return true;
  }
  bool ok = v.k == V_LIST && v.n <= max;
  for (int k = 0; ok && k < v.n; k++) {
    if (v.items[k].k != V_INT) ok = false;
    else out[k] = v.items[k].i;
  }
  if (!ok) {
    if (v.k == V_LIST && v.n > max)
      diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' has %d entries; at most %d are supported", A->fname,
                 A->params[i], v.n, max);
    else
      diag_error(A->S->d, arg_loc(A, i), "%s: argument '%s' must be %s of integers", A->fname, A->params[i],
                 allow_int ? "an integer or a list" : "a list");
    return false;
  }
  *n = v.n;
  return true;
}

static const char *list_str(Sema *S, const int64_t *v, int n) {
  char buf[256];
  int k = snprintf(buf, sizeof buf, "[");
  for (int i = 0; i < n && k < (int)sizeof buf; i++)
    k += snprintf(buf + k, sizeof buf - (size_t)k, i ? ", %" PRId64 : "%" PRId64, v[i]);
  if (k < (int)sizeof buf) snprintf(buf + k, sizeof buf - (size_t)k, "]");
  return arena_strdup(S->a, buf);
}

static Value bi_transpose(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  int64_t p[IR_MAX_RANK];
  int n;
  if (!int_list(A, 1, false, p, IR_MAX_RANK, &n)) return v_err();
  int r = sema_node(A->S, x)->shape.rank;
  NodeAttr at;
  memset(&at, 0, sizeof at);
  unsigned seen = 0;
  bool ok = n == r;
  for (int i = 0; ok && i < n; i++) {
    int64_t a = p[i] < 0 ? p[i] + r : p[i];
    if (a < 0 || a >= r || (seen & (1u << a))) ok = false;
    else seen |= 1u << a, at.perm.perm[i] = (int)a;
  }
  if (!ok) {
    diag_error(A->S->d, arg_loc(A, 1), "transpose: %s is not a permutation of the %d axes of %s", list_str(A->S, p, n),
               r, sema_shape_str(A->S, x));
    return v_err();
  }
  return v_tensor(ir_op(A->S->g, OP_TRANSPOSE, 1, &x, &at, NULL, DT_F32, A->loc, A->S->d));
}

static Value bi_reshape(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  int64_t d[IR_MAX_RANK];
  int n;
  if (!int_list(A, 1, false, d, IR_MAX_RANK, &n)) return v_err();
  int64_t numel = shape_numel(&sema_node(A->S, x)->shape), known = 1;
  int infer = -1;
  for (int i = 0; i < n; i++) {
    if (d[i] == -1 && infer < 0) {
      infer = i;
    } else if (d[i] <= 0) {
      diag_error(A->S->d, arg_loc(A, 1), "reshape: %s: dimensions must be > 0 (one may be -1)", list_str(A->S, d, n));
      return v_err();
    } else if (__builtin_mul_overflow(known, d[i], &known)) {
      known = -1;
      break;
    }
  }
  const char *req = list_str(A->S, d, n);
  if (known > 0 && infer >= 0 && numel % known == 0) d[infer] = numel / known;
  else if (infer >= 0) known = -1;
  if (known < 0 || (infer < 0 && known != numel)) {
    diag_error(A->S->d, A->loc, "reshape: cannot reshape %s (%" PRId64 " elements) into %s", sema_shape_str(A->S, x),
               numel, req);
    return v_err();
  }
  return v_tensor(ir_reshape(A->S->g, x, shape_make(n, d), A->loc, A->S->d));
}

static Value bi_flatten(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  Shape s = sema_node(A->S, x)->shape;
  if (s.rank < 2) {
    diag_error(A->S->d, A->loc, "flatten: needs a tensor of rank 2 or more, got %s", sema_shape_str(A->S, x));
    return v_err();
  }
  if (s.rank == 2) return v_tensor(x);
  int64_t d[2] = {s.d[0], shape_numel(&s) / s.d[0]};
  return v_tensor(ir_reshape(A->S->g, x, shape_make(2, d), A->loc, A->S->d));
}

static Value bi_concat(Args *A) {
  Value l = A->v[0];
  if (l.k != V_LIST) {
    diag_error(A->S->d, arg_loc(A, 0), "concat: the first argument must be a list of tensors [a, b, ...], got %s",
               v_kind_name(l));
    return v_err();
  }
  int *ids = ARENA_ARRAY(A->S->a, int, l.n);
  for (int i = 0; i < l.n; i++) {
    if (l.items[i].k != V_TENSOR) {
      diag_error(A->S->d, A->e[0]->items[i]->loc, "concat: list element %d must be a tensor, got %s", i,
                 v_kind_name(l.items[i]));
      return v_err();
    }
    ids[i] = l.items[i].node;
  }
  int64_t axis;
  if (!arg_int(A, 1, 0, &axis)) return v_err();
  int ax;
  if (!sema_axis(A->S, axis, sema_node(A->S, ids[0])->shape.rank, "concat", ids[0], arg_loc(A, 1), &ax)) return v_err();
  if (l.n == 1) return v_tensor(ids[0]);
  if (l.n > 64) {
    diag_error(A->S->d, A->loc, "concat: at most 64 tensors are supported");
    return v_err();
  }
  NodeAttr at;
  memset(&at, 0, sizeof at);
  at.axis.axis = ax;
  return v_tensor(ir_op(A->S->g, OP_CONCAT, l.n, ids, &at, NULL, DT_F32, A->loc, A->S->d));
}

/* ---- reductions ---- */

static Value bi_reduce(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  int r = sema_node(A->S, x)->shape.rank;
  uint32_t mask = 0;
  if (!arg_given(A, 1)) {
    mask = r ? (uint32_t)((1u << r) - 1) : 0;
  } else {
    int64_t ax[IR_MAX_RANK + 1];
    int n;
    if (!int_list(A, 1, true, ax, IR_MAX_RANK, &n)) return v_err();
    for (int i = 0; i < n; i++) {
      int a;
      if (!sema_axis(A->S, ax[i], r, A->fname, x, arg_loc(A, 1), &a)) return v_err();
      if (mask & (1u << a)) {
        diag_error(A->S->d, arg_loc(A, 1), "%s: axis %" PRId64 " is given twice", A->fname, ax[i]);
        return v_err();
      }
      mask |= 1u << a;
    }
  }
  int64_t keep;
  if (!arg_int(A, 2, 0, &keep)) return v_err();
  if (mask == 0) return v_tensor(x); /* a scalar: nothing to reduce */
  return v_tensor(ir_reduce(A->S->g, A->op, x, mask, keep != 0, A->loc, A->S->d));
}

static Value bi_argmax(Args *A) {
  int x = arg_tensor(A, 0);
  int64_t axis;
  if (x < 0 || !arg_int(A, 1, 0, &axis)) return v_err();
  int a;
  if (!sema_axis(A->S, axis, sema_node(A->S, x)->shape.rank, "argmax", x, arg_loc(A, 1), &a)) return v_err();
  return v_tensor(ir_reduce(A->S->g, OP_ARGMAX, x, 1u << a, false, A->loc, A->S->d));
}

static Value bi_softmax(Args *A) {
  int x = arg_tensor(A, 0);
  int64_t axis;
  if (x < 0 || !arg_int(A, 1, -1, &axis)) return v_err();
  NodeAttr at;
  memset(&at, 0, sizeof at);
  if (!sema_axis(A->S, axis, sema_node(A->S, x)->shape.rank, A->fname, x, arg_loc(A, 1), &at.axis.axis))
    return v_err();
  return v_tensor(ir_op(A->S->g, A->op, 1, &x, &at, NULL, DT_F32, A->loc, A->S->d));
}

/* ---- convolution and pooling ---- */

static Value bi_conv2d(Args *A) {
  Sema *S = A->S;
  int x = arg_tensor(A, 0), w = arg_tensor(A, 1);
  int b = arg_given(A, 2) ? arg_tensor(A, 2) : -2;
  if (x < 0 || w < 0 || b == -1) return v_err();
  NodeAttr at;
  memset(&at, 0, sizeof at);
  int64_t groups;
  if (!arg_pair(A, 3, 1, at.conv.stride) || !pair_at_least(A, 3, at.conv.stride, 1) ||
      !arg_pair(A, 4, 0, at.conv.pad) || !pair_at_least(A, 4, at.conv.pad, 0) ||
      !arg_pair(A, 5, 1, at.conv.dil) || !pair_at_least(A, 5, at.conv.dil, 1) || !arg_int(A, 6, 1, &groups))
    return v_err();
  if (groups < 1 || groups > 1000000) {
    diag_error(S->d, arg_loc(A, 6), "conv2d: groups must be >= 1, got %" PRId64, groups);
    return v_err();
  }
  at.conv.groups = (int)groups;
  int in[2] = {x, w};
  int y = ir_op(S->g, OP_CONV2D, 2, in, &at, NULL, DT_F32, A->loc, S->d);
  if (y < 0 || b < 0) return v_tensor(y);
  Node *wn = sema_node(S, w), *bn = sema_node(S, b);
  int64_t cout = wn->shape.d[0];
  if (bn->shape.rank != 1 || bn->shape.d[0] != cout) {
    diag_error(S->d, arg_loc(A, 2), "conv2d: bias %s must have shape [%" PRId64 "] (the output channels of weight %s)",
               sema_shape_str(S, b), cout, sema_shape_str(S, w));
    return v_err();
  }
  int64_t d[4] = {1, cout, 1, 1};
  int br = ir_reshape(S->g, b, shape_make(4, d), A->loc, S->d);
  return v_tensor(ir_bin(S->g, OP_ADD, y, br, A->loc, S->d));
}

static Value bi_pool(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  NodeAttr at;
  memset(&at, 0, sizeof at);
  if (!arg_pair(A, 1, 1, at.pool.k) || !pair_at_least(A, 1, at.pool.k, 1) ||
      !arg_pair(A, 2, 1, at.pool.stride) || !arg_pair(A, 3, 0, at.pool.pad) || !pair_at_least(A, 3, at.pool.pad, 0))
    return v_err();
  if (!arg_given(A, 2)) {
    at.pool.stride[0] = at.pool.k[0];
    at.pool.stride[1] = at.pool.k[1];
  } else if (!pair_at_least(A, 2, at.pool.stride, 1)) {
    return v_err();
  }
  for (int i = 0; i < 2; i++)
    if (at.pool.pad[i] * 2 > at.pool.k[i]) {
      diag_error(A->S->d, arg_loc(A, 3), "%s: pad %d must be at most half the window size %d", A->fname,
                 at.pool.pad[i], at.pool.k[i]);
      return v_err();
    }
  return v_tensor(ir_op(A->S->g, A->op, 1, &x, &at, NULL, DT_F32, A->loc, A->S->d));
}

static Value bi_global_avgpool(Args *A) {
  int x = arg_tensor(A, 0);
  if (x < 0) return v_err();
  if (sema_node(A->S, x)->shape.rank != 4) {
    diag_error(A->S->d, A->loc, "global_avgpool: input %s must have rank 4 [N,C,H,W]", sema_shape_str(A->S, x));
    return v_err();
  }
  return v_tensor(ir_reduce(A->S->g, OP_MEAN, x, (1u << 2) | (1u << 3), false, A->loc, A->S->d));
}

/* ---- the table ---- */

typedef struct {
  const char *name;
  const char *const *params;
  int nreq;
  Value (*fn)(Args *);
  OpKind op;
  double defv;
} Builtin;

static const char *const P_X[] = {"x", NULL};
static const char *const P_ELU[] = {"x", "alpha", NULL};
static const char *const P_LRELU[] = {"x", "slope", NULL};
static const char *const P_POW[] = {"x", "p", NULL};
static const char *const P_AB[] = {"a", "b", NULL};
static const char *const P_PERM[] = {"x", "perm", NULL};
static const char *const P_SHAPE[] = {"x", "shape", NULL};
static const char *const P_CONCAT[] = {"tensors", "axis", NULL};
static const char *const P_REDUCE[] = {"x", "axis", "keepdim", NULL};
static const char *const P_AXIS[] = {"x", "axis", NULL};
static const char *const P_CONV[] = {"x", "w", "b", "stride", "pad", "dilation", "groups", NULL};
static const char *const P_POOL[] = {"x", "k", "stride", "pad", NULL};
static const char *const P_DROPOUT[] = {"x", "p", NULL};
static const char *const P_BN[] = {"x", "gamma", "beta", "mean", "var", "eps", "momentum", NULL};
static const char *const P_PT[] = {"p", "t", NULL};
static const char *const P_HUBER[] = {"p", "t", "delta", NULL};
static const char *const P_LOGITS_Y[] = {"logits", "y", NULL};
static const char *const P_ST[] = {"s", "t", NULL};
static const char *const P_MARGIN[] = {"s", "y", "margin", NULL};

static const Builtin builtins[] = {
    {"exp", P_X, 1, bi_unary, OP_EXP, 0},
    {"log", P_X, 1, bi_unary, OP_LOG, 0},
    {"sqrt", P_X, 1, bi_unary, OP_SQRT, 0},
    {"abs", P_X, 1, bi_unary, OP_ABS, 0},
    {"neg", P_X, 1, bi_unary, OP_NEG, 0},
    {"relu", P_X, 1, bi_unary, OP_RELU, 0},
    {"sigmoid", P_X, 1, bi_unary, OP_SIGMOID, 0},
    {"tanh", P_X, 1, bi_unary, OP_TANH, 0},
    {"elu", P_ELU, 1, bi_unary, OP_ELU, 1.0},
    {"leaky_relu", P_LRELU, 1, bi_unary, OP_LEAKY_RELU, 0.01},
    {"pow", P_POW, 2, bi_pow, OP_POWS, 0},
    {"maximum", P_AB, 2, bi_binary, OP_MAXIMUM, 0},
    {"minimum", P_AB, 2, bi_binary, OP_MINIMUM, 0},
    {"transpose", P_PERM, 2, bi_transpose, OP_TRANSPOSE, 0},
    {"reshape", P_SHAPE, 2, bi_reshape, OP_RESHAPE, 0},
    {"flatten", P_X, 1, bi_flatten, OP_RESHAPE, 0},
    {"concat", P_CONCAT, 1, bi_concat, OP_CONCAT, 0},
    {"sum", P_REDUCE, 1, bi_reduce, OP_SUM, 0},
    {"mean", P_REDUCE, 1, bi_reduce, OP_MEAN, 0},
    {"max", P_REDUCE, 1, bi_reduce, OP_MAX, 0},
    {"argmax", P_AXIS, 2, bi_argmax, OP_ARGMAX, 0},
    {"softmax", P_AXIS, 1, bi_softmax, OP_SOFTMAX, 0},
    {"log_softmax", P_AXIS, 1, bi_softmax, OP_LOG_SOFTMAX, 0},
    {"conv2d", P_CONV, 2, bi_conv2d, OP_CONV2D, 0},
    {"maxpool2d", P_POOL, 2, bi_pool, OP_MAXPOOL2D, 0},
    {"avgpool2d", P_POOL, 2, bi_pool, OP_AVGPOOL2D, 0},
    {"global_avgpool", P_X, 1, bi_global_avgpool, OP_MEAN, 0},
    {"dropout", P_DROPOUT, 2, bi_dropout, OP_DROPOUT_MASK, 0},
    {"batchnorm", P_BN, 5, bi_batchnorm, OP_MEAN, 0},
    {"mse", P_PT, 2, bi_mse, OP_MEAN, 0},
    {"l1", P_PT, 2, bi_l1, OP_MEAN, 0},
    {"huber", P_HUBER, 2, bi_huber, OP_MEAN, 0},
    {"cross_entropy", P_LOGITS_Y, 2, bi_cross_entropy, OP_LOG_SOFTMAX, 0},
    {"bce_with_logits", P_ST, 2, bi_bce_with_logits, OP_MEAN, 0},
    {"multi_margin", P_MARGIN, 2, bi_multi_margin, OP_MEAN, 0},
    {"accuracy", P_LOGITS_Y, 2, bi_accuracy, OP_ARGMAX, 0},
};

static const Builtin *find_builtin(const char *name) {
  for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
    if (strcmp(builtins[i].name, name) == 0) return &builtins[i];
  return NULL;
}

bool sema_is_builtin(const char *name) { return find_builtin(name) != NULL; }

Value sema_call_builtin(Sema *S, const Expr *call, bool *found) {
  const Builtin *b = find_builtin(call->name);
  *found = b != NULL;
  if (!b) return v_err();
  Args A;
  Value poison;
  if (!sema_args_eval(S, call, b->name, b->params, b->nreq, &A, &poison)) return poison;
  A.op = b->op;
  A.defv = b->defv;
  return b->fn(&A);
}
