/* sema_expr.c — evaluates expressions to compile-time values or IR nodes:
 * names, number literals (folded at compile time; they take the other
 * operand's dtype next to a tensor), unary minus, + - * / ** @ (broadcasting
 * as NumPy, matmul as torch.matmul incl. rank-1 operands), list literals,
 * NumPy slicing, .T and .shape[i]. Calls go to sema_fn.c / sema_builtins.c. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "frontend/sema.h"

/* ---- values ---- */

static Value v_make(VKind k) {
  Value v;
  memset(&v, 0, sizeof v);
  v.k = k;
  v.node = -1;
  return v;
}
Value v_err(void) { return v_make(V_ERR); }
Value v_skip(void) { return v_make(V_SKIP); }
Value v_int(int64_t i) {
  Value v = v_make(V_INT);
  v.i = i;
  v.f = (double)i;
  return v;
}
Value v_float(double f) {
  Value v = v_make(V_FLOAT);
  v.f = f;
  return v;
}
Value v_tensor(int node) {
  if (node < 0) return v_err();
  Value v = v_make(V_TENSOR);
  v.node = node;
  return v;
}

const char *v_kind_name(Value v) {
  switch (v.k) {
    case V_TENSOR: return "a tensor";
    case V_INT: return "an integer";
    case V_FLOAT: return "a number";
    case V_LIST: return "a list";
    case V_ERR: case V_SKIP: return "an invalid value";
  }
  return "?";
}

Node *sema_node(Sema *S, int id) { return S->g->nodes[id]; }

const char *sema_shape_str2(Sema *S, DType dt, const Shape *s) {
  char buf[160];
  shape_str(dt, s, buf, sizeof buf);
  return arena_strdup(S->a, buf);
}

const char *sema_shape_str(Sema *S, int id) {
  Node *n = sema_node(S, id);
  return sema_shape_str2(S, n->dtype, &n->shape);
}

/* ERR wins over SKIP; returns true (and *out) if either operand is poison. */
static bool merge_poison(Value a, Value b, Value *out) {
  if (a.k == V_ERR || b.k == V_ERR) return *out = v_err(), true;
  if (a.k == V_SKIP || b.k == V_SKIP) return *out = v_skip(), true;
  return false;
}

bool sema_axis(Sema *S, int64_t axis, int rank, const char *fname, int node, SrcLoc loc, int *out) {
  if (axis < -rank || axis >= rank) {
    diag_error(S->d, loc, "%s: axis %" PRId64 " is out of range for %s", fname, axis, sema_shape_str(S, node));
    return false;
  }
  *out = (int)(axis < 0 ? axis + rank : axis);
  return true;
}

int sema_as_tensor(Sema *S, Value v, SrcLoc loc, const char *what) {
  if (v.k == V_TENSOR) return v.node;
  if (v.k == V_ERR || v.k == V_SKIP) return -1;
  diag_error(S->d, loc, "%s must be a tensor, got %s", what, v_kind_name(v));
  return -1;
}

int sema_materialize(Sema *S, Value v, DType dt, SrcLoc loc) {
  if (v.k == V_INT || v.k == V_FLOAT) return ir_const(S->g, (float)v.f, dt, shape_scalar(), loc);
  return sema_as_tensor(S, v, loc, "the value");
}

bool sema_eval_int(Sema *S, const Expr *e, const char *what, int64_t *out) {
  Value v = sema_eval(S, e, NULL);
  switch (v.k) {
    case V_INT: *out = v.i; return true;
    case V_ERR: return false;
    case V_SKIP:
      diag_error(S->d, e->loc, "%s cannot depend on a label (inference has no labels)", what);
      return false;
    case V_FLOAT:
      diag_error(S->d, e->loc, "%s must be an integer, got %g", what, v.f);
      return false;
    case V_TENSOR: case V_LIST:
      diag_error(S->d, e->loc, "%s must be a compile-time integer, got %s", what, v_kind_name(v));
      return false;
  }
  return false;
}

/* ---- arithmetic ---- */


static Value fold_numbers(Sema *S, BinOp op, Value a, Value b, SrcLoc loc) {
  if (op == BIN_MATMUL) {
    diag_error(S->d, loc, "'@' needs two tensors, got %s and %s", v_kind_name(a), v_kind_name(b));
    return v_err();
  }
  if (a.k == V_INT && b.k == V_INT) {
    int64_t r = 0;
    bool ovf = false;
    switch (op) {
      case BIN_ADD: ovf = __builtin_add_overflow(a.i, b.i, &r); break;
      case BIN_SUB: ovf = __builtin_sub_overflow(a.i, b.i, &r); break;
      case BIN_MUL: ovf = __builtin_mul_overflow(a.i, b.i, &r); break;
      case BIN_DIV:
        if (b.i == 0) {
          diag_error(S->d, loc, "division by zero");
          return v_err();
        }
        if (a.i == INT64_MIN && b.i == -1) ovf = true;
        else r = a.i / b.i;
        break;
      case BIN_POW:
        if (b.i < 0) return v_float(pow((double)a.i, (double)b.i));
        r = 1;
        for (int64_t k = 0; k < b.i && !ovf; k++) {
          ovf = __builtin_mul_overflow(r, a.i, &r);
          if (r == 0 || r == 1) break;
        }
        if (!ovf && a.i == -1) r = (b.i % 2) ? -1 : 1;
        break;
      case BIN_MATMUL: break;
    }
    if (ovf) {
      diag_error(S->d, loc, "integer overflow in %" PRId64 " %s %" PRId64, a.i, ast_binop_name(op), b.i);
      return v_err();
    }
    return v_int(r);
  }
  double x = a.f, y = b.f, r = 0;
  switch (op) {
    case BIN_ADD: r = x + y; break;
    case BIN_SUB: r = x - y; break;
    case BIN_MUL: r = x * y; break;
    case BIN_DIV:
      if (y == 0) {
        diag_error(S->d, loc, "division by zero");
        return v_err();
      }
      r = x / y;
      break;
    case BIN_POW: r = pow(x, y); break;
    case BIN_MATMUL: break;
  }
  return v_float(r);
}

static OpKind binop_kind(BinOp op) {
  switch (op) {
    case BIN_ADD: return OP_ADD;
    case BIN_SUB: return OP_SUB;
    case BIN_MUL: return OP_MUL;
    case BIN_DIV: return OP_DIV;
    case BIN_POW: return OP_POW;
    case BIN_MATMUL: return OP_MATMUL;
  }
  return OP_ADD;
}

Value sema_matmul(Sema *S, int a, int b, SrcLoc loc) {
  Node *A = sema_node(S, a), *B = sema_node(S, b);
  int ra = A->shape.rank, rb = B->shape.rank;
  if (ra >= 2 && rb >= 2) return v_tensor(ir_bin(S->g, OP_MATMUL, a, b, loc, S->d));
  if (ra == 0 || rb == 0) {
    diag_error(S->d, loc, "matmul: %s @ %s: operands must have rank 1 or more", sema_shape_str(S, a),
               sema_shape_str(S, b));
    return v_err();
  }
  int64_t ka = A->shape.d[ra - 1], kb = rb == 1 ? B->shape.d[0] : B->shape.d[rb - 2];
  if (ka != kb) {
    diag_error(S->d, loc, "matmul: %s @ %s: inner dimensions %" PRId64 " and %" PRId64 " differ",
               sema_shape_str(S, a), sema_shape_str(S, b), ka, kb);
    return v_err();
  }
  /* as torch.matmul: a rank-1 operand becomes [1,K] / [K,1], that axis is dropped afterwards */
  int a2 = a, b2 = b;
  if (ra == 1) {
    int64_t d[2] = {1, ka};
    a2 = ir_reshape(S->g, a, shape_make(2, d), loc, S->d);
  }
  if (rb == 1) {
    int64_t d[2] = {kb, 1};
    b2 = ir_reshape(S->g, b, shape_make(2, d), loc, S->d);
  }
  int r = ir_bin(S->g, OP_MATMUL, a2, b2, loc, S->d);
  if (r < 0) return v_err();
  Shape s = sema_node(S, r)->shape, o;
  memset(&o, 0, sizeof o);
  for (int i = 0; i < s.rank; i++) {
    if (ra == 1 && i == s.rank - 2) continue;
    if (rb == 1 && i == s.rank - 1) continue;
    o.d[o.rank++] = s.d[i];
  }
  return v_tensor(ir_reshape(S->g, r, o, loc, S->d));
}

Value sema_arith(Sema *S, BinOp op, Value a, Value b, SrcLoc loc) {
  Value p;
  if (merge_poison(a, b, &p)) return p;
  if (a.k == V_LIST || b.k == V_LIST) {
    diag_error(S->d, loc, "'%s' cannot be applied to a list", ast_binop_name(op));
    return v_err();
  }
  bool ta = a.k == V_TENSOR, tb = b.k == V_TENSOR;
  if (!ta && !tb) return fold_numbers(S, op, a, b, loc);
  if (op == BIN_MATMUL) {
    if (!ta || !tb) {
      diag_error(S->d, loc, "'@' needs two tensors, got %s and %s", v_kind_name(a), v_kind_name(b));
      return v_err();
    }
    return sema_matmul(S, a.node, b.node, loc);
  }
  if (op == BIN_POW && ta && !tb) {
    NodeAttr at;
    memset(&at, 0, sizeof at);
    at.scalar.v = (float)b.f;
    return v_tensor(ir_op(S->g, OP_POWS, 1, &a.node, &at, NULL, DT_F32, loc, S->d));
  }
  int x = ta ? a.node : ir_const(S->g, (float)a.f, sema_node(S, b.node)->dtype, shape_scalar(), loc);
  int y = tb ? b.node : ir_const(S->g, (float)b.f, sema_node(S, a.node)->dtype, shape_scalar(), loc);
  return v_tensor(ir_bin(S->g, binop_kind(op), x, y, loc, S->d));
}

/* ---- postfix ---- */

static Value eval_index(Sema *S, const Expr *e) {
  Value base = sema_eval(S, e->lhs, NULL);
  if (v_poison(base)) return base;
  int x = sema_as_tensor(S, base, e->lhs->loc, "the sliced value");
  if (x < 0) return v_err();
  Node *n = sema_node(S, x);
  Shape in = n->shape;
  if (e->nslices > in.rank) {
    diag_error(S->d, e->loc, "too many indices: %d given for %s", e->nslices, sema_shape_str(S, x));
    return v_err();
  }
  NodeAttr at;
  memset(&at, 0, sizeof at);
  Shape out = in, kept;
  memset(&kept, 0, sizeof kept);
  bool identity = true;
  bool ok = true;
  for (int i = 0; i < in.rank; i++) {
    int64_t dim = in.d[i], start = 0, step = 1, len = dim;
    const SliceItem *s = i < e->nslices ? &e->slices[i] : NULL;
    bool drop = false;
    if (s && !s->is_range) {
      int64_t idx;
      if (!sema_eval_int(S, s->start, "an index", &idx)) { ok = false; continue; }
      if (idx < -dim || idx >= dim) {
        diag_error(S->d, s->loc, "index %" PRId64 " is out of range for axis %d of %s", idx, i, sema_shape_str(S, x));
        ok = false;
        continue;
      }
      start = idx < 0 ? idx + dim : idx;
      len = 1;
      drop = true;
    } else if (s) {
      int64_t b = 0, en = dim;
      if (s->step && !sema_eval_int(S, s->step, "a slice step", &step)) { ok = false; continue; }
      if (step <= 0) {
        diag_error(S->d, s->step->loc, "slice step must be > 0, got %" PRId64, step);
        ok = false;
        continue;
      }
      if (s->start && !sema_eval_int(S, s->start, "a slice bound", &b)) { ok = false; continue; }
      if (s->stop && !sema_eval_int(S, s->stop, "a slice bound", &en)) { ok = false; continue; }
      if (b < 0) b += dim;
      if (en < 0) en += dim;
      b = b < 0 ? 0 : b > dim ? dim : b;
      en = en < 0 ? 0 : en > dim ? dim : en;
      len = en > b ? (en - b + step - 1) / step : 0;
      if (len == 0) {
        diag_error(S->d, s->loc, "the slice selects no elements of axis %d of %s", i, sema_shape_str(S, x));
        ok = false;
        continue;
      }
      start = b;
    }
    at.slice.start[i] = start;
    at.slice.step[i] = step;
    out.d[i] = len;
    if (start != 0 || len != dim) identity = false;
    if (!drop) kept.d[kept.rank++] = len;
  }
  if (!ok) return v_err();
  int r = x;
  if (!identity) r = ir_op(S->g, OP_SLICE, 1, &x, &at, &out, DT_F32, e->loc, S->d);
  if (r >= 0 && kept.rank != in.rank) r = ir_reshape(S->g, r, kept, e->loc, S->d);
  return v_tensor(r);
}

static Value eval_shape(Sema *S, const Expr *e) {
  Value base = sema_eval(S, e->lhs, NULL);
  const Shape *sh;
  DType dt;
  if (base.k == V_SKIP && base.has_shape) {
    sh = &base.shape;
    dt = base.dt;
  } else if (v_poison(base)) {
    return base;
  } else if (base.k == V_TENSOR) {
    sh = &sema_node(S, base.node)->shape;
    dt = sema_node(S, base.node)->dtype;
  } else {
    diag_error(S->d, e->loc, "'.shape' needs a tensor, got %s", v_kind_name(base));
    return v_err();
  }
  int64_t i;
  if (!sema_eval_int(S, e->rhs, "a shape index", &i)) return v_err();
  if (i < -sh->rank || i >= sh->rank) {
    diag_error(S->d, e->rhs->loc, "shape index %" PRId64 " is out of range for %s (rank %d)", i,
               sema_shape_str2(S, dt, sh), sh->rank);
    return v_err();
  }
  return v_int(sh->d[i < 0 ? i + sh->rank : i]);
}

static Value eval_name(Sema *S, const Expr *e) {
  Binding *b = sema_lookup(S, e->name);
  if (b) return b->v;
  if (strcmp(e->name, "true") == 0) return v_int(1);
  if (strcmp(e->name, "false") == 0) return v_int(0);
  if (sema_find_fn(S, e->name) || sema_is_builtin(e->name))
    diag_error(S->d, e->loc, "'%s' is a function; call it as %s(...)", e->name, e->name);
  else
    diag_error(S->d, e->loc, "unknown name '%s'", e->name);
  return v_err();
}

Value sema_eval(Sema *S, const Expr *e, const char *inst_hint) {
  switch (e->kind) {
    case EX_INT: return v_int(e->ival);
    case EX_FLOAT: return v_float(e->fval);
    case EX_NAME: return eval_name(S, e);
    case EX_CALL: {
      const Stmt *fn = sema_find_fn(S, e->name);
      if (fn) return sema_call_fn(S, fn, e, inst_hint);
      bool found = false;
      Value v = sema_call_builtin(S, e, &found);
      if (found) return v;
      diag_error(S->d, e->loc, "unknown function '%s'", e->name);
      return v_err();
    }
    case EX_LIST: {
      Value v = v_make(V_LIST);
      v.items = ARENA_ARRAY(S->a, Value, e->nitems);
      v.n = e->nitems;
      Value p = v_int(0);
      bool poisoned = false;
      for (int i = 0; i < e->nitems; i++) {
        v.items[i] = sema_eval(S, e->items[i], NULL);
        if (merge_poison(p, v.items[i], &p)) poisoned = true;
      }
      return poisoned ? p : v;
    }
    case EX_NEG: {
      Value x = sema_eval(S, e->lhs, NULL);
      switch (x.k) {
        case V_ERR: case V_SKIP: return x;
        case V_INT:
          if (x.i == INT64_MIN) {
            diag_error(S->d, e->loc, "integer overflow");
            return v_err();
          }
          return v_int(-x.i);
        case V_FLOAT: return v_float(-x.f);
        case V_TENSOR: return v_tensor(ir_un(S->g, OP_NEG, x.node, e->loc, S->d));
        case V_LIST:
          diag_error(S->d, e->loc, "unary '-' cannot be applied to a list");
          return v_err();
      }
      return v_err();
    }
    case EX_BINARY: {
      Value a = sema_eval(S, e->lhs, NULL);
      Value b = sema_eval(S, e->rhs, NULL);
      return sema_arith(S, e->op, a, b, e->loc);
    }
    case EX_INDEX: return eval_index(S, e);
    case EX_DOT_T: {
      Value x = sema_eval(S, e->lhs, NULL);
      if (v_poison(x)) return x;
      int id = sema_as_tensor(S, x, e->lhs->loc, "the operand of '.T'");
      if (id < 0) return v_err();
      if (sema_node(S, id)->shape.rank != 2) {
        diag_error(S->d, e->loc, "'.T' needs a rank-2 tensor, got %s; use transpose(x, [...])",
                   sema_shape_str(S, id));
        return v_err();
      }
      NodeAttr at;
      memset(&at, 0, sizeof at);
      at.perm.perm[0] = 1;
      at.perm.perm[1] = 0;
      return v_tensor(ir_op(S->g, OP_TRANSPOSE, 1, &id, &at, NULL, DT_F32, e->loc, S->d));
    }
    case EX_SHAPE: return eval_shape(S, e);
  }
  return v_err();
}
