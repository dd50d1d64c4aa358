/* sema.h — internal interface between the sema files: compile-time values,
 * scopes, fn instance frames, argument binding for built-ins and fns.
 *   sema.c          statements, declarations, consts and -D, scopes, entry points
 *   sema_expr.c     expressions: names, arithmetic, matmul, slicing, .T, .shape
 *   sema_builtins.c call binding and the built-in table (elementwise, shape, reductions, conv, pooling)
 *   sema_losses.c   losses, accuracy, batchnorm, dropout
 *   sema_fn.c       `fn` instantiation and `for` unrolling
 * Relies on ast.h and the IR builders of ir/ir.h (which report shape errors). */
#ifndef FRONTEND_SEMA_H
#define FRONTEND_SEMA_H

#include "frontend/ast.h"

/* A value during elaboration. V_ERR: an error was already reported (propagates
 * silently). V_SKIP: depends on a label in MODE_INFER (propagates silently,
 * statements producing it are dropped); a label itself keeps its type. */
typedef enum { V_ERR, V_SKIP, V_TENSOR, V_INT, V_FLOAT, V_LIST } VKind;

typedef struct Value {
  VKind k;
  int node;        /* V_TENSOR */
  int64_t i;       /* V_INT */
  double f;        /* V_FLOAT; V_INT as a double too */
  struct Value *items; /* V_LIST */
  int n;
  bool has_shape;  /* V_SKIP of a label */
  DType dt;
  Shape shape;
} Value;

typedef struct Binding {
  const char *name;
  Value v;
  SrcLoc loc;
  bool is_const;   /* `const` (top level: may be overridden by -D) */
  bool is_loopvar;
  struct Binding *next;
} Binding;

typedef struct Scope {
  Binding *head;
  struct Scope *parent;
} Scope;

typedef struct Counter {
  const char *fn;
  int n;
  struct Counter *next;
} Counter;

/* One fn instance being elaborated (or the top level). */
typedef struct Frame {
  const char *prefix; /* "" at top level; "c1." inside instance c1; "a.b." nested */
  Scope *scope;       /* assignments land here; fn scopes' parent is the global scope */
  Counter *counters;  /* unnamed calls per fn, for instance names */
  const Stmt *fn;     /* NULL at top level */
  struct Frame *parent;
} Frame;

typedef struct Sema {
  Arena *a;
  Diag *d;
  Graph *g;
  GraphMode mode;
  const Ast *ast;
  const ConstDef *defs;
  int ndefs;
  int64_t *def_vals;
  bool *def_ok; /* the -D is valid and names a top-level const */
  Scope *global;
  Scope *scope; /* innermost */
  Frame *frame;
  const Stmt **fns;
  int nfns;
  int call_depth;
  long loop_iters;
  bool has_input;
  Binding *leaves;      /* every leaf name declared so far (for clashes) */
  bool has_train;
  SrcLoc train_loc;
  bool need_input;      /* an output or train statement was seen */
  SrcLoc need_input_loc;
} Sema;

/* ---- values ---- */
Value v_err(void);
Value v_skip(void);
Value v_int(int64_t i);
Value v_float(double f);
Value v_tensor(int node);
static inline bool v_poison(Value v) { return v.k == V_ERR || v.k == V_SKIP; }
const char *v_kind_name(Value v); /* "a tensor", "an integer", ... */
Node *sema_node(Sema *S, int id);
/* "f32[4,3]" of node id (arena string). */
const char *sema_shape_str(Sema *S, int id);
const char *sema_shape_str2(Sema *S, DType dt, const Shape *s);

/* ---- scopes (sema.c) ---- */
Binding *sema_lookup(Sema *S, const char *name);
/* The binding an assignment in the current frame would rebind (NULL: none). */
Binding *sema_lookup_assignable(Sema *S, const char *name);
void sema_push_scope(Sema *S, Scope *sc);
void sema_pop_scope(Sema *S);
Binding *sema_bind_new(Sema *S, Scope *sc, const char *name, Value v, SrcLoc loc);
/* Names a tensor node (if it has no name yet) with the frame prefix. */
void sema_name_node(Sema *S, Value v, const char *name);
void sema_exec_block(Sema *S, const Block *b);
/* Full leaf name (frame prefix + name); reports a clash with an existing leaf. */
const char *sema_leaf_name(Sema *S, const char *name, SrcLoc loc, bool *ok);

/* ---- expressions (sema_expr.c) ---- */
/* inst_hint: the assignment target when the call is the whole RHS of
 * `NAME = f(...)` and NAME is unbound (the fn instance name), else NULL. */
Value sema_eval(Sema *S, const Expr *e, const char *inst_hint);
/* A compile-time integer; false after reporting an error. `what` names it. */
bool sema_eval_int(Sema *S, const Expr *e, const char *what, int64_t *out);
/* Requires a tensor (numbers are not converted); -1 after reporting. */
int sema_as_tensor(Sema *S, Value v, SrcLoc loc, const char *what);
/* Turns a number into a scalar constant of dtype dt (tensors pass through). */
int sema_materialize(Sema *S, Value v, DType dt, SrcLoc loc);
Value sema_arith(Sema *S, BinOp op, Value a, Value b, SrcLoc loc);
Value sema_matmul(Sema *S, int a, int b, SrcLoc loc);
/* Normalizes a possibly negative axis into [0, rank); false after reporting. */
bool sema_axis(Sema *S, int64_t axis, int rank, const char *fname, int node, SrcLoc loc, int *out);

/* ---- calls (sema_builtins.c) ---- */
#define SEMA_MAX_ARGS 12
typedef struct Args {
  Sema *S;
  const Expr *call;
  const char *fname;
  SrcLoc loc;
  OpKind op;
  double defv;
  const char *const *params;
  const Expr *e[SEMA_MAX_ARGS]; /* per parameter; NULL if absent */
  Value v[SEMA_MAX_ARGS];       /* evaluated (V_ERR if absent) */
} Args;
/* Matches positional and keyword arguments of `call` to `params` (NULL
 * terminated, the first nreq required); false after reporting. */
/* Binds and evaluates every given argument into A; false after reporting an
 * error or when an argument is V_ERR / V_SKIP (*poison says which). */
bool sema_args_eval(Sema *S, const Expr *call, const char *fname, const char *const *params, int nreq, Args *A,
                    Value *poison);
bool sema_bind_args(Sema *S, const Expr *call, const char *fname, const char *const *params, int nreq,
                    const Expr **out);
/* Calls the built-in `call->name`; *found = false if there is none. */
Value sema_call_builtin(Sema *S, const Expr *call, bool *found);
bool sema_is_builtin(const char *name);
/* Argument accessors (report errors naming the function and parameter). */
bool arg_given(Args *A, int i);
int arg_tensor(Args *A, int i);                       /* -1 after reporting */
bool arg_int(Args *A, int i, int64_t def, int64_t *out);
bool arg_float(Args *A, int i, double def, double *out);
bool arg_pair(Args *A, int i, int def, int out[2]);   /* int or [h, w] */

/* ---- losses, metrics, batchnorm, dropout (sema_losses.c) ---- */
Value bi_mse(Args *A);
Value bi_l1(Args *A);
Value bi_huber(Args *A);
Value bi_cross_entropy(Args *A);
Value bi_bce_with_logits(Args *A);
Value bi_multi_margin(Args *A);
Value bi_accuracy(Args *A);
Value bi_batchnorm(Args *A);
Value bi_dropout(Args *A);

/* ---- fn and for (sema_fn.c) ---- */
const Stmt *sema_find_fn(Sema *S, const char *name);
Value sema_call_fn(Sema *S, const Stmt *fn, const Expr *call, const char *inst_hint);
void sema_exec_for(Sema *S, const Stmt *s);

#endif
