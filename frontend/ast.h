/* ast.h — tokens and the abstract syntax tree of the .dl language (SPEC §1–§4),
 * shared by the lexer, the parser, the AST printer and sema. Every token and
 * node carries a SrcLoc; everything lives in the compilation's arena. */
#ifndef FRONTEND_AST_H
#define FRONTEND_AST_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/frontend.h"

/* ---- tokens ---- */
typedef enum {
  TK_EOF,
  TK_NEWLINE,
  TK_IDENT,
  TK_INT,
  TK_FLOAT,
  /* keywords */
  TK_MODEL, TK_CONST, TK_INPUT, TK_LABEL, TK_PARAM, TK_STATE, TK_OUTPUT, TK_METRIC,
  TK_TRAIN, TK_WITH, TK_FN, TK_RETURN, TK_FOR, TK_IN, TK_FROZEN,
  /* punctuation */
  TK_LPAREN, TK_RPAREN, TK_LBRACKET, TK_RBRACKET, TK_LBRACE, TK_RBRACE,
  TK_COMMA, TK_COLON, TK_ASSIGN, TK_PLUS, TK_MINUS, TK_STAR, TK_STARSTAR,
  TK_SLASH, TK_AT, TK_DOT, TK_DOTDOT,
} TokKind;

typedef struct {
  TokKind kind;
  SrcLoc loc;
  const char *text; /* arena copy of the spelling */
  int64_t ival;     /* TK_INT */
  double fval;      /* TK_INT, TK_FLOAT */
} Token;

/* Tokenizes `text`; always ends with TK_EOF. Reports bad characters and
 * malformed numbers to d (and skips them). */
Token *lex_tokenize(Arena *a, const char *file, const char *text, Diag *d, int *ntok);
/* "')'", "identifier", "end of line", ... for messages. */
const char *lex_kind_name(TokKind k);

/* ---- expressions ---- */
typedef enum {
  EX_INT,    /* ival */
  EX_FLOAT,  /* fval */
  EX_NAME,   /* name */
  EX_CALL,   /* name(args) */
  EX_LIST,   /* [items] */
  EX_NEG,    /* -lhs */
  EX_BINARY, /* lhs op rhs */
  EX_INDEX,  /* lhs[slices] */
  EX_DOT_T,  /* lhs.T */
  EX_SHAPE,  /* lhs.shape[rhs] */
} ExprKind;

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_MATMUL, BIN_POW } BinOp;
/* "+", "-", "*", "/", "@", "**" (ast_print.c). */
const char *ast_binop_name(BinOp op);

typedef struct Expr Expr;
typedef struct {
  const char *name; /* NULL: positional */
  SrcLoc loc;
  Expr *value;
} Arg;
typedef struct {
  bool is_range;            /* a:b:s; otherwise `start` is an index */
  Expr *start, *stop, *step; /* each may be NULL in a range */
  SrcLoc loc;
} SliceItem;

struct Expr {
  ExprKind kind;
  SrcLoc loc;
  int depth; /* height of the tree below (bounded by the parser) */
  int64_t ival;
  double fval;
  const char *name;
  BinOp op;
  Expr *lhs, *rhs;
  Arg *args;
  int nargs;
  Expr **items;
  int nitems;
  SliceItem *slices;
  int nslices;
};

/* ---- statements ---- */
typedef enum {
  ST_MODEL,  /* name */
  ST_CONST,  /* name = value */
  ST_DECL,   /* decl name : type [= value] [frozen] */
  ST_ASSIGN, /* name = value */
  ST_OUTPUT, /* names */
  ST_METRIC, /* name = value */
  ST_TRAIN,  /* name with value */
  ST_FN,     /* name(names) { body } — body ends with ST_RETURN */
  ST_FOR,    /* for name in value..value2 { body } */
  ST_RETURN, /* value */
} StmtKind;

typedef enum { DECL_INPUT, DECL_LABEL, DECL_PARAM, DECL_STATE } DeclKind;

typedef struct {
  DType dtype;
  Expr **dims;
  int ndims;
  SrcLoc loc;
} TypeExpr;

typedef struct {
  const char *name;
  SrcLoc loc;
} NameRef;

typedef struct Stmt Stmt;
typedef struct {
  Stmt **items;
  int n;
} Block;

struct Stmt {
  StmtKind kind;
  SrcLoc loc;
  const char *name;
  SrcLoc name_loc;
  Expr *value, *value2;
  DeclKind decl;
  TypeExpr type;
  bool frozen;
  NameRef *names;
  int nnames;
  Block body;
};

struct Ast {
  const char *file;
  const char *stem; /* the file's stem as an identifier (default model name) */
  Block top;
};

#endif
