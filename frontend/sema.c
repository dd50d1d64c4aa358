/* sema.c — elaborates the AST into the forward IR graph: scopes and names,
 * consts and `-D` overrides, declarations (input/label/param/state with their
 * initializers), assignments, outputs, metrics, `train` and its optimizer,
 * and the entry points fe_build_graph / fe_model_name / fe_compile_file.
 * Expressions are in sema_expr.c, calls in sema_builtins.c / sema_losses.c,
 * fn and for in sema_fn.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/sema.h"

/* ---- scopes ---- */

Binding *sema_lookup(Sema *S, const char *name) {
  for (Scope *sc = S->scope; sc; sc = sc->parent)
    for (Binding *b = sc->head; b; b = b->next)
      if (strcmp(b->name, name) == 0) return b;
  return NULL;
}

Binding *sema_lookup_assignable(Sema *S, const char *name) {
  for (Scope *sc = S->scope; sc; sc = sc->parent) {
    for (Binding *b = sc->head; b; b = b->next)
      if (strcmp(b->name, name) == 0) return b;
    if (sc == S->frame->scope) break;
  }
  return NULL;
}

void sema_push_scope(Sema *S, Scope *sc) {
  sc->parent = S->scope;
  S->scope = sc;
}

void sema_pop_scope(Sema *S) { S->scope = S->scope->parent; }

Binding *sema_bind_new(Sema *S, Scope *sc, const char *name, Value v, SrcLoc loc) {
  Binding *b = ARENA_NEW(S->a, Binding);
  b->name = name;
  b->v = v;
  b->loc = loc;
  b->next = sc->head;
  sc->head = b;
  return b;
}

/* Binds `name` as an assignment does: rebinds it in the current frame if it
 * is bound there, else creates it in the frame's scope. */
static Binding *assign(Sema *S, const char *name, Value v, SrcLoc loc) {
  Binding *b = sema_lookup_assignable(S, name);
  if (b) {
    b->v = v;
    b->loc = loc;
    b->is_const = false;
    return b;
  }
  return sema_bind_new(S, S->frame->scope, name, v, loc);
}

void sema_name_node(Sema *S, Value v, const char *name) {
  if (v.k != V_TENSOR || v.node < 0) return;
  Node *n = sema_node(S, v.node);
  if (n->name) return;
  n->name = S->frame->prefix[0] ? arena_printf(S->a, "%s%s", S->frame->prefix, name) : name;
}

const char *sema_leaf_name(Sema *S, const char *name, SrcLoc loc, bool *ok) {
  const char *full = S->frame->prefix[0] ? arena_printf(S->a, "%s%s", S->frame->prefix, name) : name;
  *ok = true;
  for (Binding *b = S->leaves; b; b = b->next)
    if (strcmp(b->name, full) == 0) {
      if (strcmp(full, name) == 0)
        diag_error(S->d, loc, "'%s' is already declared (at line %d)", full, b->loc.line);
      else
        diag_error(S->d, loc, "'%s' is already declared: the fn instance name '%.*s' is used twice", full,
                   (int)strlen(S->frame->prefix) - 1, S->frame->prefix);
      *ok = false;
      return full;
    }
  Binding *b = ARENA_NEW(S->a, Binding);
  b->name = full;
  b->loc = loc;
  b->next = S->leaves;
  S->leaves = b;
  return full;
}

/* ---- declarations ---- */

static const char *init_list =
    "zeros, ones, constant(V), normal(std=S), uniform(LO, HI), xavier_uniform, xavier_normal, kaiming_uniform "
    "or kaiming_normal";

static bool parse_init(Sema *S, const Expr *e, DlrtInit *init) {
  memset(init, 0, sizeof *init);
  if (e->kind != EX_NAME && e->kind != EX_CALL) {
    diag_error(S->d, e->loc, "expected an initializer: %s", init_list);
    return false;
  }
  static const struct {
    const char *name;
    DlrtInitKind kind;
  } simple[] = {
      {"zeros", DLRT_INIT_ZEROS},
      {"ones", DLRT_INIT_ONES},
      {"xavier_uniform", DLRT_INIT_XAVIER_UNIFORM},
      {"xavier_normal", DLRT_INIT_XAVIER_NORMAL},
      {"kaiming_uniform", DLRT_INIT_KAIMING_UNIFORM},
      {"kaiming_normal", DLRT_INIT_KAIMING_NORMAL},
  };
  for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
    if (strcmp(e->name, simple[i].name) == 0) {
      if (e->kind == EX_CALL && e->nargs > 0) {
        diag_error(S->d, e->loc, "%s takes no arguments", e->name);
        return false;
      }
      init->kind = simple[i].kind;
      return true;
    }
  static const char *const p_constant[] = {"value", NULL};
  static const char *const p_normal[] = {"std", NULL};
  static const char *const p_uniform[] = {"lo", "hi", NULL};
  const char *const *params = NULL;
  int nreq = 0;
  if (strcmp(e->name, "constant") == 0) params = p_constant, nreq = 1, init->kind = DLRT_INIT_CONSTANT;
  else if (strcmp(e->name, "normal") == 0) params = p_normal, nreq = 1, init->kind = DLRT_INIT_NORMAL;
  else if (strcmp(e->name, "uniform") == 0) params = p_uniform, nreq = 2, init->kind = DLRT_INIT_UNIFORM;
  else {
    diag_error(S->d, e->loc, "unknown initializer '%s' (expected %s)", e->name, init_list);
    return false;
  }
  if (e->kind == EX_NAME) {
    diag_error(S->d, e->loc, "%s needs arguments, e.g. %s", e->name,
               init->kind == DLRT_INIT_CONSTANT ? "constant(0.5)"
               : init->kind == DLRT_INIT_NORMAL ? "normal(std=0.01)" : "uniform(-0.1, 0.1)");
    return false;
  }
  Args A;
  Value poison;
  if (!sema_args_eval(S, e, e->name, params, nreq, &A, &poison)) return false;
  double a = 0, b = 0;
  if (!arg_float(&A, 0, 0, &a)) return false;
  if (nreq == 2 && !arg_float(&A, 1, 0, &b)) return false;
  if (init->kind == DLRT_INIT_NORMAL && !(a >= 0)) {
    diag_error(S->d, e->loc, "normal: std must be >= 0, got %g", a);
    return false;
  }
  if (init->kind == DLRT_INIT_UNIFORM && !(a < b)) {
    diag_error(S->d, e->loc, "uniform: LO must be less than HI, got uniform(%g, %g)", a, b);
    return false;
  }
  init->a = (float)a;
  init->b = (float)b;
  return true;
}

static const char *decl_kw(DeclKind k) {
  switch (k) {
    case DECL_INPUT: return "input";
    case DECL_LABEL: return "label";
    case DECL_PARAM: return "param";
    case DECL_STATE: return "state";
  }
  return "?";
}

/* Evaluates a TYPE's dims (each an integer > 0). */
static bool eval_type(Sema *S, const TypeExpr *ty, const char *name, Shape *out) {
  memset(out, 0, sizeof *out);
  if (ty->ndims > IR_MAX_RANK) {
    diag_error(S->d, ty->loc, "'%s' has %d dimensions; at most %d are supported", name, ty->ndims, IR_MAX_RANK);
    return false;
  }
  bool ok = true;
  int64_t numel = 1;
  for (int i = 0; i < ty->ndims; i++) {
    int64_t v = 0;
    if (!sema_eval_int(S, ty->dims[i], "a dimension", &v)) {
      ok = false;
      continue;
    }
    if (v <= 0) {
      diag_error(S->d, ty->dims[i]->loc, "dimension %d of '%s' must be > 0, got %" PRId64, i, name, v);
      ok = false;
      continue;
    }
    if (v > ((int64_t)1 << 40) / numel) {
      diag_error(S->d, ty->dims[i]->loc, "'%s' is too large (more than 2^40 elements)", name);
      return false;
    }
    numel *= v;
    out->d[i] = v;
  }
  out->rank = ty->ndims;
  return ok;
}

static void exec_decl(Sema *S, const Stmt *s) {
  const char *kw = decl_kw(s->decl);
  Shape shape;
  bool ok = eval_type(S, &s->type, s->name, &shape);
  DlrtInit init;
  memset(&init, 0, sizeof init);
  if (s->decl == DECL_PARAM || s->decl == DECL_STATE) {
    if (s->type.dtype != DT_F32) {
      diag_error(S->d, s->type.loc, "%s '%s' must be f32", kw, s->name);
      ok = false;
    }
    if (!s->value) {
      diag_error(S->d, s->name_loc, "%s '%s' needs an initializer, e.g. '= zeros'", kw, s->name);
      ok = false;
    } else if (!parse_init(S, s->value, &init)) {
      ok = false;
    }
  } else if (s->value) {
    diag_error(S->d, s->value->loc, "%s '%s' cannot have an initializer (it is fed by the caller)", kw, s->name);
    ok = false;
  }
  bool name_ok;
  const char *full = sema_leaf_name(S, s->name, s->name_loc, &name_ok);
  if (s->decl == DECL_INPUT) S->has_input = true; /* even when malformed: no second error */
  if (!ok || !name_ok) {
    assign(S, s->name, v_err(), s->name_loc);
    return;
  }
  if (s->decl == DECL_LABEL && S->mode == MODE_INFER) {
    Value v = v_skip();
    v.has_shape = true;
    v.dt = s->type.dtype;
    v.shape = shape;
    assign(S, s->name, v, s->name_loc);
    return;
  }
  static const OpKind ops[] = {OP_INPUT, OP_LABEL, OP_PARAM, OP_STATE};
  int id = ir_leaf(S->g, ops[s->decl], full, s->type.dtype, shape, s->name_loc);
  Node *n = sema_node(S, id);
  n->attr.leaf.init = init;
  n->attr.leaf.frozen = s->frozen;
  assign(S, s->name, v_tensor(id), s->name_loc);
}

/* ---- consts and -D ---- */

static const ConstDef *find_def(Sema *S, const char *name, int64_t *val) {
  for (int i = S->ndefs - 1; i >= 0; i--)
    if (S->def_ok[i] && strcmp(S->defs[i].name, name) == 0) {
      *val = S->def_vals[i];
      return &S->defs[i];
    }
  return NULL;
}

static void exec_const(Sema *S, const Stmt *s) {
  Binding *old = sema_lookup_assignable(S, s->name);
  if (old && old->is_const) {
    diag_error(S->d, s->name_loc, "const '%s' is already defined (at line %d)", s->name, old->loc.line);
    return;
  }
  if (old && old->is_loopvar) {
    diag_error(S->d, s->name_loc, "cannot redefine the loop variable '%s'", s->name);
    return;
  }
  int64_t v = 0;
  Value val;
  if (!S->frame->fn && find_def(S, s->name, &v)) {
    val = v_int(v); /* -D overrides the declared value */
  } else if (sema_eval_int(S, s->value, "a const", &v)) {
    val = v_int(v);
  } else {
    val = v_err();
  }
  Binding *b = assign(S, s->name, val, s->name_loc);
  b->is_const = true;
}

static bool top_level_const(const Ast *ast, const char *name) {
  for (int i = 0; i < ast->top.n; i++)
    if (ast->top.items[i]->kind == ST_CONST && strcmp(ast->top.items[i]->name, name) == 0) return true;
  return false;
}

static const Stmt *find_const(const Ast *ast, const char *name) {
  for (int i = 0; i < ast->top.n; i++)
    if (ast->top.items[i]->kind == ST_CONST && strcmp(ast->top.items[i]->name, name) == 0) return ast->top.items[i];
  return NULL;
}

/* Checks the -D definitions: reported at the const's declaration, or at
 * line 1, column 1 of the model when it declares no such const. */
static void check_defs(Sema *S) {
  SrcLoc first = {S->ast->file, 1, 1};
  S->def_vals = ARENA_ARRAY(S->a, int64_t, S->ndefs + 1);
  S->def_ok = ARENA_ARRAY(S->a, bool, S->ndefs + 1);
  for (int i = 0; i < S->ndefs; i++) {
    const ConstDef *c = &S->defs[i];
    const char *name = c->name ? c->name : "";
    const Stmt *decl = find_const(S->ast, name);
    SrcLoc loc = decl ? decl->loc : first;
    if (!c->value) {
      diag_error(S->d, loc, "-D %s: missing value (use -D NAME=VALUE)", name);
      continue;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(c->value, &end, 10);
    if (c->value[0] == 0 || *end != 0 || errno == ERANGE || c->value[0] == ' ') {
      diag_error(S->d, loc, "-D %s=%s: value is not an integer", name, c->value);
      continue;
    }
    S->def_vals[i] = v;
    if (!top_level_const(S->ast, name))
      diag_error(S->d, loc, "-D %s=%s: the model declares no const %s", name, c->value, name);
    else
      S->def_ok[i] = true;
  }
}

/* ---- outputs, metrics, train ---- */

static void exec_output(Sema *S, const Stmt *s) {
  if (!S->need_input) S->need_input = true, S->need_input_loc = s->loc;
  for (int i = 0; i < s->nnames; i++) {
    const NameRef *r = &s->names[i];
    Binding *b = sema_lookup(S, r->name);
    if (!b) {
      diag_error(S->d, r->loc, "output: unknown name '%s'", r->name);
      continue;
    }
    for (int j = 0; j < S->g->n_outputs; j++)
      if (strcmp(S->g->outputs[j].name, r->name) == 0) {
        diag_error(S->d, r->loc, "output '%s' is listed twice", r->name);
        b = NULL;
        break;
      }
    if (!b || v_poison(b->v)) continue;
    if (b->v.k != V_TENSOR) {
      diag_error(S->d, r->loc, "output '%s' is %s, not a tensor", r->name, v_kind_name(b->v));
      continue;
    }
    ir_add_output(S->g, r->name, b->v.node);
  }
}

static void exec_metric(Sema *S, const Stmt *s) {
  if (S->mode == MODE_INFER) {
    assign(S, s->name, v_skip(), s->name_loc);
    return;
  }
  Value v = sema_eval(S, s->value, NULL);
  for (int j = 0; j < S->g->n_metrics; j++)
    if (strcmp(S->g->metrics[j].name, s->name) == 0) {
      diag_error(S->d, s->name_loc, "metric '%s' is defined twice", s->name);
      v = v_err();
      break;
    }
  if (!v_poison(v)) {
    int id = sema_materialize(S, v, DT_F32, s->value->loc);
    if (id < 0) {
      v = v_err();
    } else {
      Node *n = sema_node(S, id);
      if (n->shape.rank != 0) {
        diag_error(S->d, s->value->loc, "metric '%s' must be a scalar, got %s", s->name, sema_shape_str(S, id));
        v = v_err();
      } else {
        if (n->dtype != DT_F32) id = ir_op(S->g, OP_CAST, 1, &id, NULL, NULL, DT_F32, s->value->loc, S->d);
        sema_name_node(S, v_tensor(id), s->name);
        ir_add_metric(S->g, s->name, id);
        v = v_tensor(id);
      }
    }
  }
  assign(S, s->name, v, s->name_loc);
}

static bool parse_optimizer(Sema *S, const Expr *e, Optimizer *opt) {
  memset(opt, 0, sizeof *opt);
  opt->loc = e->loc;
  opt->beta1 = 0.9f;
  opt->beta2 = 0.999f;
  opt->eps = 1e-8f;
  if (e->kind != EX_NAME && e->kind != EX_CALL) {
    diag_error(S->d, e->loc, "expected an optimizer: sgd(lr, ...), adam(...) or adamw(...)");
    return false;
  }
  static const char *const p_sgd[] = {"lr", "momentum", "weight_decay", "nesterov", NULL};
  static const char *const p_adam[] = {"lr", "beta1", "beta2", "eps", "weight_decay", NULL};
  bool sgd = false;
  if (strcmp(e->name, "sgd") == 0) opt->kind = OPT_SGD, sgd = true;
  else if (strcmp(e->name, "adam") == 0) opt->kind = OPT_ADAM;
  else if (strcmp(e->name, "adamw") == 0) opt->kind = OPT_ADAMW;
  else {
    diag_error(S->d, e->loc, "unknown optimizer '%s' (expected sgd, adam or adamw)", e->name);
    return false;
  }
  Args A;
  Value poison;
  Expr bare;
  if (e->kind == EX_NAME) { /* `with adam` = adam() */
    bare = *e;
    bare.kind = EX_CALL;
    bare.nargs = 0;
    e = &bare;
  }
  if (!sema_args_eval(S, e, e->name, sgd ? p_sgd : p_adam, sgd ? 1 : 0, &A, &poison)) return false;
  double lr, mom = 0, wd, b1, b2, eps;
  int64_t nest = 0;
  if (sgd) {
    if (!arg_float(&A, 0, 0, &lr) || !arg_float(&A, 1, 0, &mom) || !arg_float(&A, 2, 0, &wd) ||
        !arg_int(&A, 3, 0, &nest))
      return false;
    if (mom < 0) return diag_error(S->d, e->loc, "sgd: momentum must be >= 0, got %g", mom), false;
    if (nest && mom <= 0) return diag_error(S->d, e->loc, "sgd: nesterov=true needs momentum > 0"), false;
  } else {
    if (!arg_float(&A, 0, 1e-3, &lr) || !arg_float(&A, 1, 0.9, &b1) || !arg_float(&A, 2, 0.999, &b2) ||
        !arg_float(&A, 3, 1e-8, &eps) || !arg_float(&A, 4, opt->kind == OPT_ADAMW ? 0.01 : 0.0, &wd))
      return false;
    if (!(b1 >= 0 && b1 < 1)) return diag_error(S->d, e->loc, "%s: beta1 must be in [0, 1), got %g", e->name, b1), false;
    if (!(b2 >= 0 && b2 < 1)) return diag_error(S->d, e->loc, "%s: beta2 must be in [0, 1), got %g", e->name, b2), false;
    if (!(eps >= 0)) return diag_error(S->d, e->loc, "%s: eps must be >= 0, got %g", e->name, eps), false;
    opt->beta1 = (float)b1;
    opt->beta2 = (float)b2;
    opt->eps = (float)eps;
  }
  if (!(lr > 0)) return diag_error(S->d, e->loc, "%s: lr must be > 0, got %g", e->name, lr), false;
  if (!(wd >= 0)) return diag_error(S->d, e->loc, "%s: weight_decay must be >= 0, got %g", e->name, wd), false;
  opt->lr = (float)lr;
  opt->momentum = (float)mom;
  opt->weight_decay = (float)wd;
  opt->nesterov = nest != 0;
  return true;
}

static void exec_train(Sema *S, const Stmt *s) {
  if (S->has_train) {
    diag_error(S->d, s->loc, "only one 'train' statement is allowed (the first is at line %d)", S->train_loc.line);
    return;
  }
  S->has_train = true;
  S->train_loc = s->loc;
  if (!S->need_input) S->need_input = true, S->need_input_loc = s->loc;
  Optimizer opt;
  bool opt_ok = parse_optimizer(S, s->value, &opt);
  Binding *b = sema_lookup(S, s->name);
  if (!b) {
    diag_error(S->d, s->name_loc, "train: unknown name '%s'", s->name);
    return;
  }
  if (S->mode == MODE_INFER || v_poison(b->v) || !opt_ok) return;
  if (b->v.k != V_TENSOR) {
    diag_error(S->d, s->name_loc, "train target '%s' must be a scalar f32[] loss, got %s", s->name,
               v_kind_name(b->v));
    return;
  }
  Node *n = sema_node(S, b->v.node);
  if (n->shape.rank != 0 || n->dtype != DT_F32) {
    diag_error(S->d, s->name_loc, "train target '%s' must be a scalar f32[] loss, got %s", s->name,
               sema_shape_str(S, b->v.node));
    return;
  }
  if (n->op == OP_INPUT || n->op == OP_LABEL || n->op == OP_PARAM || n->op == OP_STATE || n->op == OP_CONST) {
    diag_error(S->d, s->name_loc, "train target '%s' must be computed from the model, not a %s", s->name,
               ir_op_names[n->op]);
    return;
  }
  S->g->loss = b->v.node;
  S->g->loss_name = arena_strdup(S->a, s->name);
  S->g->opt = opt;
}

/* ---- statements ---- */

void sema_exec_block(Sema *S, const Block *b) {
  for (int i = 0; i < b->n; i++) {
    const Stmt *s = b->items[i];
    switch (s->kind) {
      case ST_MODEL: break;
      case ST_FN: break; /* hoisted */
      case ST_RETURN: break; /* evaluated by sema_call_fn */
      case ST_CONST: exec_const(S, s); break;
      case ST_DECL: exec_decl(S, s); break;
      case ST_ASSIGN: {
        Binding *old = sema_lookup_assignable(S, s->name);
        if (old && old->is_loopvar) {
          diag_error(S->d, s->name_loc, "cannot assign to the loop variable '%s'", s->name);
          break;
        }
        const char *hint = !old && s->value->kind == EX_CALL ? s->name : NULL;
        Value v = sema_eval(S, s->value, hint);
        sema_name_node(S, v, s->name);
        assign(S, s->name, v, s->name_loc);
        break;
      }
      case ST_OUTPUT: exec_output(S, s); break;
      case ST_METRIC: exec_metric(S, s); break;
      case ST_TRAIN: exec_train(S, s); break;
      case ST_FOR: sema_exec_for(S, s); break;
    }
  }
}

static void hoist_fns(Sema *S) {
  const Block *top = &S->ast->top;
  S->fns = ARENA_ARRAY(S->a, const Stmt *, top->n + 1);
  const Stmt *model = NULL;
  for (int i = 0; i < top->n; i++) {
    const Stmt *s = top->items[i];
    if (s->kind == ST_MODEL) {
      if (model) diag_error(S->d, s->loc, "the model is already named '%s' (at line %d)", model->name, model->loc.line);
      else model = s;
    }
    if (s->kind != ST_FN) continue;
    if (sema_is_builtin(s->name)) {
      diag_error(S->d, s->name_loc, "fn '%s' has the name of a built-in function", s->name);
      continue;
    }
    const Stmt *prev = sema_find_fn(S, s->name);
    if (prev) {
      diag_error(S->d, s->name_loc, "fn '%s' is already defined (at line %d)", s->name, prev->loc.line);
      continue;
    }
    S->fns[S->nfns++] = s;
  }
}

Graph *fe_build_graph(Arena *a, const Ast *ast, GraphMode mode, const ConstDef *defs, int ndefs, Diag *d) {
  if (!ast) return NULL;
  int before = d->n_errors;
  Sema S;
  memset(&S, 0, sizeof S);
  S.a = a;
  S.d = d;
  S.mode = mode;
  S.ast = ast;
  S.defs = defs;
  S.ndefs = defs ? ndefs : 0;
  S.g = ir_graph_new(a, fe_model_name(ast), mode);
  Scope *global = ARENA_NEW(a, Scope);
  Frame *top = ARENA_NEW(a, Frame);
  top->prefix = "";
  top->scope = global;
  S.global = global;
  S.scope = global;
  S.frame = top;
  check_defs(&S);
  hoist_fns(&S);
  sema_exec_block(&S, &ast->top);
  if (S.need_input && !S.has_input)
    diag_error(d, S.need_input_loc, "the model declares no input; add one with 'input NAME : TYPE'");
  return d->n_errors > before ? NULL : S.g;
}

const char *fe_model_name(const Ast *ast) {
  if (!ast) return "model";
  for (int i = 0; i < ast->top.n; i++)
    if (ast->top.items[i]->kind == ST_MODEL) return ast->top.items[i]->name;
  return ast->stem;
}

Graph *fe_compile_file(Arena *a, const char *path, GraphMode mode, const ConstDef *defs, int ndefs, Diag *d) {
  SrcLoc none = {NULL, 0, 0};
  FILE *f = fopen(path, "rb");
  if (!f) {
    diag_error(d, none, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t k = fread(buf + n, 1, cap - n - 1, f);
    n += k;
    if (k == 0) break;
  }
  bool err = ferror(f) != 0;
  fclose(f);
  if (!buf || err) {
    free(buf);
    diag_error(d, none, "cannot read '%s'", path);
    return NULL;
  }
  if (memchr(buf, 0, n)) {
    free(buf);
    diag_error(d, none, "'%s' is not a text file (it contains NUL bytes)", path);
    return NULL;
  }
  char *text = arena_strndup(a, buf, n);
  free(buf);
  const char *file = arena_strdup(a, path);
  diag_add_source(d, file, text);
  Ast *ast = fe_parse(a, file, text, d);
  if (!ast) return NULL;
  return fe_build_graph(a, ast, mode, defs, ndefs, d);
}
