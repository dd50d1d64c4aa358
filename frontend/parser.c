/* parser.c — recursive-descent parser for the .dl language (SPEC §1–§3).
 * Precedence, high to low: postfix ([..], .T, .shape[i]), `**` (right
 * associative), unary `-`, `* / @`, `+ -`. A newline ends a statement except
 * inside () or []. After a syntax error the parser skips to the next line and
 * goes on, so one run reports every independent error. Relies on lexer.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

typedef struct {
  Arena *a;
  Diag *d;
  Token *t;
  int n, pos;
  int nest;  /* depth of open ( and [: newlines are ignored inside */
  int braces; /* depth of open { */
  bool failed;
  int depth; /* expression recursion depth (guards against stack overflow) */
  SrcLoc open[64]; /* where the innermost open brackets are (by nest depth) */
} Parser;

/* Enters a bracket just consumed: newlines are ignored until it closes. */
static void open_nest(Parser *p) {
  p->nest++;
  if (p->nest < 64) p->open[p->nest] = p->t[p->pos > 0 ? p->pos - 1 : 0].loc;
}

enum { CTX_TOP, CTX_FN, CTX_FOR };
#define MAX_DEPTH 200

static int peek_index(Parser *p) {
  int i = p->pos;
  if (p->nest > 0)
    while (p->t[i].kind == TK_NEWLINE) i++;
  return i;
}
static Token *peek(Parser *p) { return &p->t[peek_index(p)]; }
static Token *peek2(Parser *p) {
  int i = peek_index(p);
  if (p->t[i].kind == TK_EOF) return &p->t[i];
  i++;
  if (p->nest > 0)
    while (p->t[i].kind == TK_NEWLINE) i++;
  return &p->t[i];
}
static bool at(Parser *p, TokKind k) { return peek(p)->kind == k; }
static Token *next(Parser *p) {
  int i = peek_index(p);
  Token *t = &p->t[i];
  if (t->kind != TK_EOF) i++;
  p->pos = i;
  return t;
}
static bool accept(Parser *p, TokKind k) {
  if (!at(p, k)) return false;
  next(p);
  return true;
}

static const char *describe(const Token *t) {
  static char buf[96];
  if (t->kind == TK_IDENT) {
    snprintf(buf, sizeof buf, "'%.60s'", t->text);
    return buf;
  }
  if (t->kind == TK_INT || t->kind == TK_FLOAT) {
    snprintf(buf, sizeof buf, "number '%.60s'", t->text);
    return buf;
  }
  return lex_kind_name(t->kind);
}

/* Reports "expected WHAT, found X" at the offending token — or, when that
 * token starts a new line inside brackets, at the end of the previous line. */
static void expected(Parser *p, const char *what) {
  if (p->failed) return; /* one error per statement */
  p->failed = true;
  int i = peek_index(p);
  Token *t = &p->t[i];
  if (p->nest > 0 && i > 0 && p->t[i - 1].kind == TK_NEWLINE) {
    int j = i - 1;
    while (j > 0 && p->t[j].kind == TK_NEWLINE) j--;
    SrcLoc loc = p->t[j].loc;
    loc.col += (int)strlen(p->t[j].text);
    diag_error(p->d, loc, "expected %s, found end of line", what);
    return;
  }
  diag_error(p->d, t->loc, "expected %s, found %s", what, describe(t));
  if (p->nest > 0 && p->nest < 64 && p->open[p->nest].line < t->loc.line)
    diag_note(p->d, p->open[p->nest], "the bracket opened here is not closed");
}

static void error_at(Parser *p, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_at(Parser *p, SrcLoc loc, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = true;
  va_list ap;
  va_start(ap, fmt);
  diag_verror(p->d, loc, fmt, ap);
  va_end(ap);
}

static bool expect(Parser *p, TokKind k) {
  if (accept(p, k)) return true;
  expected(p, lex_kind_name(k));
  return false;
}

/* Growable arena arrays. */
#define APPEND(p, arr, n, val)                                                               \
  do {                                                                                       \
    (arr) = arena_grow((p)->a, (arr), sizeof(*(arr)), (size_t)(n), (size_t)(n) + 1);         \
    (arr)[(n)++] = (val);                                                                    \
  } while (0)

static Expr *new_expr(Parser *p, ExprKind k, SrcLoc loc) {
  Expr *e = ARENA_NEW(p->a, Expr);
  e->kind = k;
  e->loc = loc;
  return e;
}

static Expr *parse_expr(Parser *p);

#define MAX_TREE_DEPTH 1000
/* Sets e's depth from its children; NULL (after reporting) if the tree gets
 * too deep for the recursive passes over it. */
static Expr *deepen(Parser *p, Expr *e) {
  int d = 0;
#define KID(x) if ((x) && (x)->depth > d) d = (x)->depth
  KID(e->lhs);
  KID(e->rhs);
  for (int i = 0; i < e->nargs; i++) KID(e->args[i].value);
  for (int i = 0; i < e->nitems; i++) KID(e->items[i]);
  for (int i = 0; i < e->nslices; i++) {
    KID(e->slices[i].start);
    KID(e->slices[i].stop);
    KID(e->slices[i].step);
  }
#undef KID
  e->depth = d + 1;
  if (e->depth > MAX_TREE_DEPTH) {
    error_at(p, e->loc, "expression is nested too deeply");
    return NULL;
  }
  return e;
}

static bool parse_args(Parser *p, Expr *call) {
  open_nest(p);
  bool ok = true;
  bool seen_kw = false;
  while (!at(p, TK_RPAREN)) {
    Arg arg;
    memset(&arg, 0, sizeof arg);
    arg.loc = peek(p)->loc;
    if (at(p, TK_IDENT) && peek2(p)->kind == TK_ASSIGN) {
      arg.name = next(p)->text;
      next(p);
      seen_kw = true;
    } else if (seen_kw) {
      error_at(p, arg.loc, "%s", "positional argument after a keyword argument");
      ok = false;
      break;
    }
    arg.value = parse_expr(p);
    if (!arg.value) { ok = false; break; }
    APPEND(p, call->args, call->nargs, arg);
    if (!accept(p, TK_COMMA)) break;
  }
  if (ok && !accept(p, TK_RPAREN)) {
    expected(p, "',' or ')'");
    ok = false;
  }
  p->nest--;
  return ok;
}

static Expr *parse_primary(Parser *p) {
  Token *t = peek(p);
  switch (t->kind) {
    case TK_INT: {
      next(p);
      Expr *e = new_expr(p, EX_INT, t->loc);
      e->ival = t->ival;
      e->fval = t->fval;
      return e;
    }
    case TK_FLOAT: {
      next(p);
      Expr *e = new_expr(p, EX_FLOAT, t->loc);
      e->fval = t->fval;
      return e;
    }
    case TK_IDENT: {
      next(p);
      if (at(p, TK_LPAREN)) {
        next(p);
        Expr *e = new_expr(p, EX_CALL, t->loc);
        e->name = t->text;
        if (!parse_args(p, e)) return NULL;
        return deepen(p, e);
      }
      Expr *e = new_expr(p, EX_NAME, t->loc);
      e->name = t->text;
      return e;
    }
    case TK_LPAREN: {
      next(p);
      open_nest(p);
      Expr *e = parse_expr(p);
      if (e && !expect(p, TK_RPAREN)) e = NULL;
      p->nest--;
      return e;
    }
    case TK_LBRACKET: {
      next(p);
      open_nest(p);
      Expr *e = new_expr(p, EX_LIST, t->loc);
      bool ok = true;
      while (!at(p, TK_RBRACKET)) {
        Expr *it = parse_expr(p);
        if (!it) { ok = false; break; }
        APPEND(p, e->items, e->nitems, it);
        if (!accept(p, TK_COMMA)) break;
      }
      if (ok && !accept(p, TK_RBRACKET)) {
        expected(p, "',' or ']'");
        ok = false;
      }
      if (ok && e->nitems == 0) error_at(p, t->loc, "%s", "empty list '[]'"), ok = false;
      p->nest--;
      return ok ? deepen(p, e) : NULL;
    }
    case TK_EOF: case TK_NEWLINE: case TK_MODEL: case TK_CONST: case TK_INPUT: case TK_LABEL: case TK_PARAM:
    case TK_STATE: case TK_OUTPUT: case TK_METRIC: case TK_TRAIN: case TK_WITH: case TK_FN: case TK_RETURN:
    case TK_FOR: case TK_IN: case TK_FROZEN: case TK_RPAREN: case TK_RBRACKET: case TK_LBRACE: case TK_RBRACE:
    case TK_COMMA: case TK_COLON: case TK_ASSIGN: case TK_PLUS: case TK_MINUS: case TK_STAR: case TK_STARSTAR:
    case TK_SLASH: case TK_AT: case TK_DOT: case TK_DOTDOT:
      break;
  }
  expected(p, "an expression");
  return NULL;
}

static bool parse_slice(Parser *p, SliceItem *s) {
  memset(s, 0, sizeof *s);
  s->loc = peek(p)->loc;
  if (!at(p, TK_COLON)) {
    s->start = parse_expr(p);
    if (!s->start) return false;
    if (!at(p, TK_COLON)) return true; /* a plain index */
  }
  s->is_range = true;
  next(p); /* ':' */
  if (!at(p, TK_COLON) && !at(p, TK_COMMA) && !at(p, TK_RBRACKET)) {
    s->stop = parse_expr(p);
    if (!s->stop) return false;
  }
  if (accept(p, TK_COLON)) {
    if (!at(p, TK_COMMA) && !at(p, TK_RBRACKET)) {
      s->step = parse_expr(p);
      if (!s->step) return false;
    }
  }
  return true;
}

static Expr *parse_postfix(Parser *p) {
  Expr *e = parse_primary(p);
  while (e) {
    Token *t = peek(p);
    if (t->kind == TK_LBRACKET) {
      next(p);
      open_nest(p);
      Expr *ix = new_expr(p, EX_INDEX, t->loc);
      ix->lhs = e;
      bool ok = true;
      do {
        SliceItem s;
        if (!parse_slice(p, &s)) { ok = false; break; }
        APPEND(p, ix->slices, ix->nslices, s);
      } while (accept(p, TK_COMMA) && !at(p, TK_RBRACKET));
      if (ok && !accept(p, TK_RBRACKET)) {
        expected(p, "',' or ']'");
        ok = false;
      }
      p->nest--;
      e = ok ? deepen(p, ix) : NULL;
    } else if (t->kind == TK_DOT) {
      next(p);
      Token *f = peek(p);
      if (f->kind == TK_IDENT && strcmp(f->text, "T") == 0) {
        next(p);
        Expr *x = new_expr(p, EX_DOT_T, t->loc);
        x->lhs = e;
        e = deepen(p, x);
      } else if (f->kind == TK_IDENT && strcmp(f->text, "shape") == 0) {
        next(p);
        if (!expect(p, TK_LBRACKET)) return NULL;
        open_nest(p);
        Expr *x = new_expr(p, EX_SHAPE, t->loc);
        x->lhs = e;
        x->rhs = parse_expr(p);
        bool ok = x->rhs && expect(p, TK_RBRACKET);
        p->nest--;
        e = ok ? deepen(p, x) : NULL;
      } else {
        expected(p, "'T' or 'shape[i]' after '.'");
        return NULL;
      }
    } else {
      break;
    }
  }
  return e;
}

static Expr *parse_unary(Parser *p);

static Expr *parse_power(Parser *p) {
  Expr *e = parse_postfix(p);
  if (e && at(p, TK_STARSTAR)) {
    Token *t = next(p);
    if (++p->depth > MAX_DEPTH) {
      error_at(p, t->loc, "%s", "expression is nested too deeply");
      return NULL;
    }
    Expr *r = parse_unary(p); /* right associative; allows x ** -1 */
    p->depth--;
    if (!r) return NULL;
    Expr *b = new_expr(p, EX_BINARY, t->loc);
    b->op = BIN_POW;
    b->lhs = e;
    b->rhs = r;
    return deepen(p, b);
  }
  return e;
}

static Expr *parse_unary(Parser *p) {
  if (at(p, TK_MINUS)) {
    Token *t = next(p);
    if (++p->depth > MAX_DEPTH) {
      error_at(p, t->loc, "%s", "expression is nested too deeply");
      return NULL;
    }
    Expr *x = parse_unary(p);
    p->depth--;
    if (!x) return NULL;
    /* fold negative literals so that -1 is an integer constant */
    if (x->kind == EX_INT && x->loc.line == t->loc.line) {
      x->ival = -x->ival;
      x->fval = -x->fval;
      x->loc = t->loc;
      return x;
    }
    if (x->kind == EX_FLOAT) {
      x->fval = -x->fval;
      x->loc = t->loc;
      return x;
    }
    Expr *e = new_expr(p, EX_NEG, t->loc);
    e->lhs = x;
    return deepen(p, e);
  }
  return parse_power(p);
}

static Expr *parse_mul(Parser *p) {
  Expr *e = parse_unary(p);
  while (e) {
    TokKind k = peek(p)->kind;
    BinOp op;
    if (k == TK_STAR) op = BIN_MUL;
    else if (k == TK_SLASH) op = BIN_DIV;
    else if (k == TK_AT) op = BIN_MATMUL;
    else break;
    Token *t = next(p);
    Expr *r = parse_unary(p);
    if (!r) return NULL;
    Expr *b = new_expr(p, EX_BINARY, t->loc);
    b->op = op;
    b->lhs = e;
    b->rhs = r;
    e = deepen(p, b);
  }
  return e;
}

static Expr *parse_expr(Parser *p) {
  if (++p->depth > MAX_DEPTH) {
    error_at(p, peek(p)->loc, "%s", "expression is nested too deeply");
    return NULL;
  }
  Expr *e = parse_mul(p);
  while (e) {
    TokKind k = peek(p)->kind;
    if (k != TK_PLUS && k != TK_MINUS) break;
    Token *t = next(p);
    Expr *r = parse_mul(p);
    if (!r) { e = NULL; break; }
    Expr *b = new_expr(p, EX_BINARY, t->loc);
    b->op = k == TK_PLUS ? BIN_ADD : BIN_SUB;
    b->lhs = e;
    b->rhs = r;
    e = deepen(p, b);
  }
  p->depth--;
  return e;
}

/* ---- statements ---- */

static Stmt *new_stmt(Parser *p, StmtKind k, SrcLoc loc) {
  Stmt *s = ARENA_NEW(p->a, Stmt);
  s->kind = k;
  s->loc = loc;
  return s;
}

static bool parse_name(Parser *p, Stmt *s, const char *what) {
  Token *t = peek(p);
  if (t->kind != TK_IDENT) {
    expected(p, what);
    return false;
  }
  next(p);
  s->name = t->text;
  s->name_loc = t->loc;
  return true;
}

static bool parse_type(Parser *p, TypeExpr *ty) {
  Token *t = peek(p);
  ty->loc = t->loc;
  if (t->kind != TK_IDENT) {
    expected(p, "a type such as f32[B, 10]");
    return false;
  }
  if (strcmp(t->text, "f32") == 0) ty->dtype = DT_F32;
  else if (strcmp(t->text, "i32") == 0) ty->dtype = DT_I32;
  else {
    error_at(p, t->loc, "unknown dtype '%s' (expected f32 or i32)", t->text);
    return false;
  }
  next(p);
  if (!expect(p, TK_LBRACKET)) return false;
  open_nest(p);
  bool ok = true;
  while (!at(p, TK_RBRACKET)) {
    Expr *e = parse_expr(p);
    if (!e) { ok = false; break; }
    APPEND(p, ty->dims, ty->ndims, e);
    if (!accept(p, TK_COMMA)) break;
  }
  if (ok && !accept(p, TK_RBRACKET)) {
    expected(p, "',' or ']'");
    ok = false;
  }
  p->nest--;
  return ok;
}

static bool parse_block(Parser *p, Block *b, int ctx, SrcLoc open);

static const char *ctx_name(int ctx) { return ctx == CTX_FN ? "a fn" : "a for loop"; }

static Stmt *parse_stmt(Parser *p, int ctx) {
  Token *t = peek(p);
  SrcLoc loc = t->loc;
  Stmt *s = NULL;
  if (ctx != CTX_TOP) {
    TokKind k = t->kind;
    const char *kw = NULL;
    if (k == TK_MODEL || k == TK_INPUT || k == TK_LABEL || k == TK_OUTPUT || k == TK_METRIC || k == TK_TRAIN ||
        k == TK_FN || (k == TK_CONST && ctx == CTX_FOR))
      kw = t->text;
    if (kw) {
      error_at(p, loc, "'%s' is not allowed inside %s (only at the top level)", kw, ctx_name(ctx));
      return NULL;
    }
  }
  switch (t->kind) {
    case TK_MODEL:
      next(p);
      s = new_stmt(p, ST_MODEL, loc);
      if (!parse_name(p, s, "the model name")) return NULL;
      return s;
    case TK_CONST:
      next(p);
      s = new_stmt(p, ST_CONST, loc);
      if (!parse_name(p, s, "the const name") || !expect(p, TK_ASSIGN)) return NULL;
      if (!(s->value = parse_expr(p))) return NULL;
      return s;
    case TK_INPUT: case TK_LABEL: case TK_PARAM: case TK_STATE:
      next(p);
      s = new_stmt(p, ST_DECL, loc);
      s->decl = t->kind == TK_INPUT ? DECL_INPUT : t->kind == TK_LABEL ? DECL_LABEL
              : t->kind == TK_PARAM ? DECL_PARAM : DECL_STATE;
      if (!parse_name(p, s, "a name")) return NULL;
      if (!expect(p, TK_COLON)) return NULL;
      if (!parse_type(p, &s->type)) return NULL;
      if (accept(p, TK_ASSIGN)) {
        if (!(s->value = parse_expr(p))) return NULL;
      }
      if (at(p, TK_FROZEN)) {
        Token *f = next(p);
        if (s->decl != DECL_PARAM) {
          error_at(p, f->loc, "%s", "only a param can be frozen");
          return NULL;
        }
        s->frozen = true;
      }
      return s;
    case TK_OUTPUT:
      next(p);
      s = new_stmt(p, ST_OUTPUT, loc);
      do {
        Token *n = peek(p);
        if (n->kind != TK_IDENT) {
          expected(p, "the name of a value");
          return NULL;
        }
        next(p);
        NameRef r = {n->text, n->loc};
        APPEND(p, s->names, s->nnames, r);
      } while (accept(p, TK_COMMA));
      return s;
    case TK_METRIC:
      next(p);
      s = new_stmt(p, ST_METRIC, loc);
      if (!parse_name(p, s, "the metric name") || !expect(p, TK_ASSIGN)) return NULL;
      if (!(s->value = parse_expr(p))) return NULL;
      return s;
    case TK_TRAIN:
      next(p);
      s = new_stmt(p, ST_TRAIN, loc);
      if (!parse_name(p, s, "the name of the loss")) return NULL;
      if (!expect(p, TK_WITH)) return NULL;
      if (!(s->value = parse_expr(p))) return NULL;
      return s;
    case TK_FN: {
      next(p);
      s = new_stmt(p, ST_FN, loc);
      if (!parse_name(p, s, "the fn name") || !expect(p, TK_LPAREN)) return NULL;
      open_nest(p);
      while (!at(p, TK_RPAREN)) {
        Token *n = peek(p);
        if (n->kind != TK_IDENT) break;
        next(p);
        for (int i = 0; i < s->nnames; i++)
          if (strcmp(s->names[i].name, n->text) == 0) {
            error_at(p, n->loc, "duplicate parameter '%s'", n->text);
            p->nest--;
            return NULL;
          }
        NameRef r = {n->text, n->loc};
        APPEND(p, s->names, s->nnames, r);
        if (!accept(p, TK_COMMA)) break;
      }
      bool ok = expect(p, TK_RPAREN);
      p->nest--;
      if (!ok) return NULL;
      if (!parse_block(p, &s->body, CTX_FN, peek(p)->loc)) return NULL;
      int nret = 0;
      for (int i = 0; i < s->body.n; i++)
        if (s->body.items[i]->kind == ST_RETURN) {
          nret++;
          if (i != s->body.n - 1) {
            error_at(p, s->body.items[i]->loc, "%s", "'return' must be the last statement of a fn");
            return NULL;
          }
        }
      if (nret == 0) {
        error_at(p, loc, "fn '%s' must end with 'return EXPR'", s->name);
        return NULL;
      }
      return s;
    }
    case TK_FOR:
      next(p);
      s = new_stmt(p, ST_FOR, loc);
      if (!parse_name(p, s, "the loop variable") || !expect(p, TK_IN)) return NULL;
      if (!(s->value = parse_expr(p))) return NULL;
      if (!expect(p, TK_DOTDOT)) return NULL;
      if (!(s->value2 = parse_expr(p))) return NULL;
      if (!parse_block(p, &s->body, ctx == CTX_FN ? CTX_FN : CTX_FOR, peek(p)->loc)) return NULL;
      return s;
    case TK_RETURN:
      next(p);
      if (ctx != CTX_FN) {
        error_at(p, loc, "%s", "'return' outside a fn");
        return NULL;
      }
      s = new_stmt(p, ST_RETURN, loc);
      if (!(s->value = parse_expr(p))) return NULL;
      return s;
    case TK_IDENT:
      if (peek2(p)->kind == TK_ASSIGN) {
        s = new_stmt(p, ST_ASSIGN, loc);
        parse_name(p, s, "a name");
        next(p); /* '=' */
        if (!(s->value = parse_expr(p))) return NULL;
        return s;
      } else {
        /* an expression whose value would be thrown away */
        Expr *e = parse_expr(p);
        if (!e) return NULL;
        if (at(p, TK_NEWLINE) || at(p, TK_EOF) || at(p, TK_RBRACE)) {
          error_at(p, loc, "%s", "the value of this expression is not used; assign it with NAME = EXPR");
          return NULL;
        }
        expected(p, "'='");
        return NULL;
      }
    case TK_EOF: case TK_NEWLINE: case TK_INT: case TK_FLOAT: case TK_WITH: case TK_IN: case TK_FROZEN:
    case TK_LPAREN: case TK_RPAREN: case TK_LBRACKET: case TK_RBRACKET: case TK_LBRACE: case TK_RBRACE:
    case TK_COMMA: case TK_COLON: case TK_ASSIGN: case TK_PLUS: case TK_MINUS: case TK_STAR: case TK_STARSTAR:
    case TK_SLASH: case TK_AT: case TK_DOT: case TK_DOTDOT:
      break;
  }
  expected(p, "a statement");
  return NULL;
}

/* Skips to the start of the next statement: past the next newline, or up to a
 * '}' closing the current block. */
static void sync(Parser *p) {
  p->nest = 0;
  int local = 0;
  for (;;) {
    Token *t = &p->t[p->pos];
    if (t->kind == TK_EOF) return;
    if (t->kind == TK_NEWLINE) {
      p->pos++;
      return;
    }
    if (t->kind == TK_LBRACE) local++;
    if (t->kind == TK_RBRACE) {
      if (local == 0 && p->braces > 0) return;
      if (local > 0) local--;
    }
    p->pos++;
  }
}

/* Parses statements until '}' (in a block) or EOF (top level). */
static void parse_stmts(Parser *p, Block *b, int ctx) {
  for (;;) {
    while (at(p, TK_NEWLINE)) next(p);
    if (at(p, TK_EOF)) return;
    if (at(p, TK_RBRACE)) {
      if (ctx != CTX_TOP) return;
      p->failed = false;
      error_at(p, peek(p)->loc, "%s", "unexpected '}' (no block is open)");
      next(p);
      p->failed = false;
      continue;
    }
    p->failed = false;
    p->depth = 0;
    Stmt *s = parse_stmt(p, ctx);
    if (s && !at(p, TK_NEWLINE) && !at(p, TK_EOF) && !(ctx != CTX_TOP && at(p, TK_RBRACE))) {
      expected(p, "end of line");
      s = NULL;
    }
    if (!s) {
      sync(p);
      continue;
    }
    APPEND(p, b->items, b->n, s);
  }
}

static bool parse_block(Parser *p, Block *b, int ctx, SrcLoc open) {
  if (!expect(p, TK_LBRACE)) return false;
  p->braces++;
  parse_stmts(p, b, ctx);
  p->braces--;
  p->failed = false;
  if (!accept(p, TK_RBRACE)) {
    diag_error(p->d, open, "this '{' is never closed");
    p->failed = true;
    return false;
  }
  return true;
}

/* The file's stem sanitised to an identifier: "models/my-net.dl" -> "my_net". */
static const char *file_stem(Arena *a, const char *file) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  const char *dot = strrchr(base, '.');
  size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  char *s = arena_alloc(a, n + 2);
  size_t k = 0;
  if (n == 0 || (base[0] >= '0' && base[0] <= '9')) s[k++] = '_';
  for (size_t i = 0; i < n; i++) {
    char c = base[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    s[k++] = ok ? c : '_';
  }
  s[k] = 0;
  return s;
}

Ast *fe_parse(Arena *a, const char *file, const char *text, Diag *d) {
  int before = d->n_errors;
  int ntok = 0;
  const char *fname = arena_strdup(a, file ? file : "<input>");
  Token *toks = lex_tokenize(a, fname, text, d, &ntok);
  Parser p;
  memset(&p, 0, sizeof p);
  p.a = a;
  p.d = d;
  p.t = toks;
  p.n = ntok;
  Ast *ast = ARENA_NEW(a, Ast);
  ast->file = fname;
  ast->stem = file_stem(a, fname);
  parse_stmts(&p, &ast->top, CTX_TOP);
  return d->n_errors > before ? NULL : ast;
}
