/* lexer.c — turns .dl source text into tokens (SPEC §1): comments, identifiers
 * and keywords, integer and float literals, punctuation, and a TK_NEWLINE at
 * every line end (the parser ignores newlines inside () and []). Columns are
 * 1-based byte offsets. Relies on ast.h and the Diag for errors. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

static const struct {
  const char *word;
  TokKind kind;
} keywords[] = {
    {"model", TK_MODEL}, {"const", TK_CONST},   {"input", TK_INPUT},   {"label", TK_LABEL},
    {"param", TK_PARAM}, {"state", TK_STATE},   {"output", TK_OUTPUT}, {"metric", TK_METRIC},
    {"train", TK_TRAIN}, {"with", TK_WITH},     {"fn", TK_FN},         {"return", TK_RETURN},
    {"for", TK_FOR},     {"in", TK_IN},         {"frozen", TK_FROZEN},
};

const char *lex_kind_name(TokKind k) {
  switch (k) {
    case TK_EOF: return "end of file";
    case TK_NEWLINE: return "end of line";
    case TK_IDENT: return "a name";
    case TK_INT: return "an integer";
    case TK_FLOAT: return "a number";
    case TK_MODEL: return "'model'";
    case TK_CONST: return "'const'";
    case TK_INPUT: return "'input'";
    case TK_LABEL: return "'label'";
    case TK_PARAM: return "'param'";
    case TK_STATE: return "'state'";
    case TK_OUTPUT: return "'output'";
    case TK_METRIC: return "'metric'";
    case TK_TRAIN: return "'train'";
    case TK_WITH: return "'with'";
    case TK_FN: return "'fn'";
    case TK_RETURN: return "'return'";
    case TK_FOR: return "'for'";
    case TK_IN: return "'in'";
    case TK_FROZEN: return "'frozen'";
    case TK_LPAREN: return "'('";
    case TK_RPAREN: return "')'";
    case TK_LBRACKET: return "'['";
    case TK_RBRACKET: return "']'";
    case TK_LBRACE: return "'{'";
    case TK_RBRACE: return "'}'";
    case TK_COMMA: return "','";
    case TK_COLON: return "':'";
    case TK_ASSIGN: return "'='";
    case TK_PLUS: return "'+'";
    case TK_MINUS: return "'-'";
    case TK_STAR: return "'*'";
    case TK_STARSTAR: return "'**'";
    case TK_SLASH: return "'/'";
    case TK_AT: return "'@'";
    case TK_DOT: return "'.'";
    case TK_DOTDOT: return "'..'";
  }
  return "?";
}

typedef struct {
  Arena *a;
  Diag *d;
  const char *file;
  Token *toks;
  int n, cap;
} Lexer;

static void push(Lexer *L, TokKind k, SrcLoc loc, const char *s, size_t len) {
  if (L->n == L->cap) {
    int cap = L->cap ? L->cap * 2 : 256;
    L->toks = arena_grow(L->a, L->toks, sizeof(Token), (size_t)L->n, (size_t)cap);
    L->cap = cap;
  }
  Token *t = &L->toks[L->n++];
  memset(t, 0, sizeof *t);
  t->kind = k;
  t->loc = loc;
  t->text = arena_strndup(L->a, s, len);
}

/* Length of the number starting at p (digits, optional fraction unless it is
 * the start of `..`, optional exponent); *is_float says whether it has a
 * fraction or exponent; *bad that it is malformed (e.g. `1e`, `1.5.2`). */
static size_t scan_number(const char *p, bool *is_float, bool *bad) {
  size_t i = 0;
  *is_float = false;
  *bad = false;
  while (isdigit((unsigned char)p[i])) i++;
  if (p[i] == '.' && p[i + 1] != '.') {
    *is_float = true;
    i++;
    while (isdigit((unsigned char)p[i])) i++;
  }
  if (p[i] == 'e' || p[i] == 'E') {
    size_t j = i + 1;
    if (p[j] == '+' || p[j] == '-') j++;
    if (isdigit((unsigned char)p[j])) {
      *is_float = true;
      while (isdigit((unsigned char)p[j])) j++;
      i = j;
    } else {
      *bad = true;
      i = j;
    }
  }
  /* a number running into letters or another '.' (e.g. `12abc`, `1.5.2`) */
  while (isalnum((unsigned char)p[i]) || p[i] == '_' || (p[i] == '.' && p[i + 1] != '.' && *is_float)) {
    *bad = true;
    i++;
  }
  return i;
}

Token *lex_tokenize(Arena *a, const char *file, const char *text, Diag *d, int *ntok) {
  Lexer L = {a, d, file, NULL, 0, 0};
  const char *p = text ? text : "";
  int line = 1;
  const char *line_start = p;
  while (*p) {
    SrcLoc loc = {file, line, (int)(p - line_start) + 1};
    char c = *p;
    if (c == '\n') {
      push(&L, TK_NEWLINE, loc, "\n", 1);
      p++;
      line++;
      line_start = p;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      p++;
      continue;
    }
    if (c == '#') {
      while (*p && *p != '\n') p++;
      continue;
    }
    if (isalpha((unsigned char)c) || c == '_') {
      const char *s = p;
      while (isalnum((unsigned char)*p) || *p == '_') p++;
      size_t len = (size_t)(p - s);
      TokKind k = TK_IDENT;
      for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strlen(keywords[i].word) == len && memcmp(keywords[i].word, s, len) == 0) k = keywords[i].kind;
      push(&L, k, loc, s, len);
      continue;
    }
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)p[1]))) {
      bool is_float, bad;
      size_t len = scan_number(p, &is_float, &bad);
      char *s = arena_strndup(a, p, len);
      p += len;
      if (bad) {
        diag_error(d, loc, "malformed number '%s'", s);
        continue;
      }
      push(&L, is_float ? TK_FLOAT : TK_INT, loc, s, len);
      Token *t = &L.toks[L.n - 1];
      errno = 0;
      if (is_float) {
        t->fval = strtod(s, NULL);
        if (errno == ERANGE && (t->fval > 1.0 || t->fval < -1.0)) diag_error(d, loc, "number '%s' is out of range", s);
      } else {
        unsigned long long v = strtoull(s, NULL, 10);
        if (errno == ERANGE || v > (unsigned long long)INT64_MAX) {
          diag_error(d, loc, "integer '%s' is too large", s);
          v = 0;
        }
        t->ival = (int64_t)v;
        t->fval = (double)v;
      }
      continue;
    }
    TokKind k;
    size_t len = 1;
    switch (c) {
      case '(': k = TK_LPAREN; break;
      case ')': k = TK_RPAREN; break;
      case '[': k = TK_LBRACKET; break;
      case ']': k = TK_RBRACKET; break;
      case '{': k = TK_LBRACE; break;
      case '}': k = TK_RBRACE; break;
      case ',': k = TK_COMMA; break;
      case ':': k = TK_COLON; break;
      case '=': k = TK_ASSIGN; break;
      case '+': k = TK_PLUS; break;
      case '-': k = TK_MINUS; break;
      case '/': k = TK_SLASH; break;
      case '@': k = TK_AT; break;
      case '*':
        k = TK_STAR;
        if (p[1] == '*') k = TK_STARSTAR, len = 2;
        break;
      case '.':
        k = TK_DOT;
        if (p[1] == '.') k = TK_DOTDOT, len = 2;
        break;
      default: {
        unsigned char u = (unsigned char)c;
        if (u >= 0x80) {
          /* skip a whole UTF-8 sequence and show it as written */
          size_t n = 1;
          while (n < 4 && ((unsigned char)p[n] & 0xC0) == 0x80) n++;
          char buf[8];
          memcpy(buf, p, n);
          buf[n] = 0;
          diag_error(d, loc, "unexpected character '%s'", buf);
          p += n;
        } else if (isprint(u)) {
          diag_error(d, loc, "unexpected character '%c'", c);
          p++;
        } else {
          diag_error(d, loc, "unexpected character '\\x%02x'", u);
          p++;
        }
        continue;
      }
    }
    push(&L, k, loc, p, len);
    p += len;
  }
  SrcLoc eof = {file, line, (int)(p - line_start) + 1};
  push(&L, TK_NEWLINE, eof, "\n", 1);
  push(&L, TK_EOF, eof, "", 0);
  *ntok = L.n;
  return L.toks;
}
