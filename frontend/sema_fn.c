/* sema_fn.c — `fn` calls and `for` loops (SPEC §3). A call instantiates the
 * fn's body in a fresh scope (whose parent is the global scope) with the
 * params and state it declares named `INSTANCE.NAME`; the instance is the
 * assignment target when the call is the whole RHS of `NAME = f(...)` and NAME
 * was unbound, else FN + the count of earlier unnamed calls of FN in the same
 * enclosing instance. Nested instances join with '.'. A `for` unrolls at
 * compile time with the loop variable as an integer in its own scope;
 * assignments in the body rebind the enclosing names. */
#include <inttypes.h>
#include <string.h>

#include "frontend/sema.h"

#define MAX_CALL_DEPTH 64
#define MAX_LOOP_ITERS 100000

const Stmt *sema_find_fn(Sema *S, const char *name) {
  for (int i = 0; i < S->nfns; i++)
    if (strcmp(S->fns[i]->name, name) == 0) return S->fns[i];
  return NULL;
}

static const char *instance_name(Sema *S, const Stmt *fn, const char *hint) {
  if (hint) return hint;
  Counter *c;
  for (c = S->frame->counters; c; c = c->next)
    if (strcmp(c->fn, fn->name) == 0) break;
  if (!c) {
    c = ARENA_NEW(S->a, Counter);
    c->fn = fn->name;
    c->next = S->frame->counters;
    S->frame->counters = c;
  }
  return arena_printf(S->a, "%s%d", fn->name, c->n++);
}

Value sema_call_fn(Sema *S, const Stmt *fn, const Expr *call, const char *inst_hint) {
  for (Frame *f = S->frame; f; f = f->parent)
    if (f->fn == fn) {
      diag_error(S->d, call->loc, "recursive call of fn '%s' (a fn cannot call itself, directly or indirectly)",
                 fn->name);
      return v_err();
    }
  if (S->call_depth >= MAX_CALL_DEPTH) {
    diag_error(S->d, call->loc, "fn calls are nested more than %d deep", MAX_CALL_DEPTH);
    return v_err();
  }
  int np = fn->nnames;
  const char **params = ARENA_ARRAY(S->a, const char *, np + 1);
  const Expr **args = ARENA_ARRAY(S->a, const Expr *, np + 1);
  for (int i = 0; i < np; i++) params[i] = fn->names[i].name;
  if (!sema_bind_args(S, call, fn->name, params, np, args)) return v_err();
  Value *vals = ARENA_ARRAY(S->a, Value, np + 1);
  bool bad = false;
  for (int i = 0; i < np; i++) {
    vals[i] = sema_eval(S, args[i], NULL);
    if (vals[i].k == V_ERR) bad = true;
  }
  if (bad) return v_err();

  const char *inst = instance_name(S, fn, inst_hint);
  Scope *sc = ARENA_NEW(S->a, Scope);
  sc->parent = S->global;
  Frame *fr = ARENA_NEW(S->a, Frame);
  fr->prefix = arena_printf(S->a, "%s%s.", S->frame->prefix, inst);
  fr->scope = sc;
  fr->fn = fn;
  fr->parent = S->frame;
  for (int i = 0; i < np; i++) sema_bind_new(S, sc, params[i], vals[i], fn->names[i].loc);

  Scope *saved_scope = S->scope;
  Frame *saved_frame = S->frame;
  S->scope = sc;
  S->frame = fr;
  S->call_depth++;
  int before = S->d->n_errors;
  Block body = fn->body;
  body.n--; /* the last statement is the return */
  sema_exec_block(S, &body);
  const Stmt *ret = fn->body.items[fn->body.n - 1];
  Value v = sema_eval(S, ret->value, NULL);
  S->call_depth--;
  S->scope = saved_scope;
  S->frame = saved_frame;
  if (S->d->n_errors > before) {
    diag_note(S->d, call->loc, "in the call of fn '%s' (instance '%s')", fn->name, inst);
    return v_err();
  }
  return v;
}

void sema_exec_for(Sema *S, const Stmt *s) {
  int64_t from, to;
  bool ok1 = sema_eval_int(S, s->value, "the start of the range", &from);
  bool ok2 = sema_eval_int(S, s->value2, "the end of the range", &to);
  if (!ok1 || !ok2) return;
  if (to > from && (to - from > MAX_LOOP_ITERS || S->loop_iters + (to - from) > 10 * MAX_LOOP_ITERS)) {
    diag_error(S->d, s->loc, "for loop runs %" PRId64 " times; at most %d iterations are allowed", to - from,
               MAX_LOOP_ITERS);
    return;
  }
  for (int64_t i = from; i < to; i++) {
    S->loop_iters++;
    Scope sc;
    memset(&sc, 0, sizeof sc);
    sema_push_scope(S, &sc);
    Binding *b = sema_bind_new(S, &sc, s->name, v_int(i), s->name_loc);
    b->is_loopvar = true;
    int before = S->d->n_errors;
    sema_exec_block(S, &s->body);
    sema_pop_scope(S);
    if (S->d->n_errors > before) break; /* do not repeat the same errors every iteration */
  }
}
