/* ir_parse_cursor.c — the line cursor shared by the textual IR parsers
 * (ir_parse.c for graphs, kir_parse.c for kernel programs): words (bare or
 * double-quoted), numbers, types, initializers and `# NAME FILE:LINE:COL`
 * comments, with errors at the text's line and column. Newlines are
 * significant; spaces and tabs are not. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_parse.h"

/* ---- the cursor ---- */
SrcLoc irp_loc(const IrpCur *c) { return (SrcLoc){c->file, c->line, (int)(c->p - c->line_start) + 1}; }

bool irp_error(IrpCur *c, SrcLoc at, const char *fmt, ...) {
  if (!c->failed) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(c->d, at, fmt, ap);
    va_end(ap);
  }
  c->failed = true;
  return false;
}

void irp_ws(IrpCur *c) {
  while (*c->p == ' ' || *c->p == '\t' || *c->p == '\r') c->p++;
}

static void next_line(IrpCur *c) {
  while (*c->p && *c->p != '\n') c->p++;
  if (*c->p == '\n') {
    c->p++;
    c->line++;
    c->line_start = c->p;
  }
}

void irp_skip_blank(IrpCur *c) {
  for (;;) {
    irp_ws(c);
    if (*c->p == '\n' || *c->p == '#' || (c->p[0] == '/' && c->p[1] == '/')) {
      next_line(c);
      continue;
    }
    return;
  }
}

bool irp_at_eol(IrpCur *c) {
  irp_ws(c);
  return *c->p == '\n' || *c->p == 0;
}

bool irp_eol(IrpCur *c) {
  if (!irp_at_eol(c)) return irp_error(c, irp_loc(c), "unexpected text at the end of the line");
  next_line(c);
  return true;
}

bool irp_peek(IrpCur *c, char ch) {
  irp_ws(c);
  return *c->p == ch;
}

bool irp_accept(IrpCur *c, const char *s) {
  irp_ws(c);
  size_t n = strlen(s);
  if (strncmp(c->p, s, n) != 0) return false;
  c->p += n;
  return true;
}

static void describe_here(const IrpCur *c, char *buf, size_t n) {
  if (*c->p == 0) snprintf(buf, n, "the end of the text");
  else if (*c->p == '\n') snprintf(buf, n, "the end of the line");
  else {
    int k = 0;
    while (k < 12 && c->p[k] && c->p[k] != '\n') k++;
    snprintf(buf, n, "'%.*s'", k, c->p);
  }
}

bool irp_expect(IrpCur *c, const char *s) {
  if (irp_accept(c, s)) return true;
  char here[40];
  describe_here(c, here, sizeof here);
  return irp_error(c, irp_loc(c), "expected '%s', found %s", s, here);
}

static bool word_char(char ch, bool first) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '.' || ch == '@' || ch == '%' ||
      ch == '/')
    return true;
  return !first && ((ch >= '0' && ch <= '9') || ch == '-');
}

bool irp_is_word_start(IrpCur *c) {
  irp_ws(c);
  return *c->p == '"' || word_char(*c->p, true);
}

bool irp_word(IrpCur *c, const char **out) {
  irp_ws(c);
  SrcLoc at = irp_loc(c);
  if (*c->p == '"') {
    const char *q = c->p + 1;
    size_t n = 0;
    for (const char *r = q; *r != '"'; r++) {
      if (*r == 0 || *r == '\n') return irp_error(c, at, "unterminated string");
      if (*r == '\\' && r[1] && r[1] != '\n') r++;
      n++;
    }
    char *s = arena_alloc(c->a, n + 1), *w = s;
    for (; *q != '"'; q++) {
      if (*q == '\\') {
        q++;
        *w++ = *q == 'n' ? '\n' : *q;
      } else {
        *w++ = *q;
      }
    }
    c->p = q + 1;
    *out = s;
    return true;
  }
  if (!word_char(*c->p, true)) {
    char here[40];
    describe_here(c, here, sizeof here);
    return irp_error(c, at, "expected a name, found %s", here);
  }
  const char *s = c->p;
  while (word_char(*c->p, c->p == s)) c->p++;
  *out = arena_strndup(c->a, s, (size_t)(c->p - s));
  return true;
}

bool irp_keyword(IrpCur *c, const char *kw) {
  irp_ws(c);
  size_t n = strlen(kw);
  if (strncmp(c->p, kw, n) != 0 || word_char(c->p[n], false)) return false;
  c->p += n;
  return true;
}

bool irp_int(IrpCur *c, int64_t *out) {
  irp_ws(c);
  const char *s = c->p;
  if (*s == '-' || *s == '+') s++;
  if (*s < '0' || *s > '9') return irp_error(c, irp_loc(c), "expected an integer");
  char *end;
  errno = 0;
  long long v = strtoll(c->p, &end, 10);
  if (errno) return irp_error(c, irp_loc(c), "integer out of range");
  c->p = end;
  *out = v;
  return true;
}

bool irp_u64(IrpCur *c, uint64_t *out) {
  irp_ws(c);
  if (*c->p < '0' || *c->p > '9') return irp_error(c, irp_loc(c), "expected an unsigned integer");
  char *end;
  errno = 0;
  unsigned long long v = strtoull(c->p, &end, 10);
  if (errno) return irp_error(c, irp_loc(c), "integer out of range");
  c->p = end;
  *out = v;
  return true;
}

bool irp_float(IrpCur *c, float *out) {
  irp_ws(c);
  const char *s = c->p;
  if (*s == '-' || *s == '+') s++;
  bool ok = (*s >= '0' && *s <= '9') || *s == '.' || !strncmp(s, "inf", 3) || !strncmp(s, "nan", 3);
  if (!ok) return irp_error(c, irp_loc(c), "expected a number");
  char *end;
  float v = strtof(c->p, &end);
  if (end == c->p) return irp_error(c, irp_loc(c), "expected a number");
  c->p = end;
  *out = v;
  return true;
}

bool irp_type(IrpCur *c, DType *dt, Shape *sh) {
  irp_ws(c);
  SrcLoc at = irp_loc(c);
  if (irp_keyword(c, "f32")) *dt = DT_F32;
  else if (irp_keyword(c, "i32")) *dt = DT_I32;
  else return irp_error(c, at, "expected a type (f32[...] or i32[...])");
  memset(sh, 0, sizeof *sh);
  if (*c->p != '[') return irp_error(c, irp_loc(c), "expected '[' after the dtype");
  c->p++;
  if (*c->p == ']') {
    c->p++;
    return true;
  }
  for (;;) {
    if (sh->rank == IR_MAX_RANK) return irp_error(c, irp_loc(c), "more than %d dimensions", IR_MAX_RANK);
    int64_t v;
    SrcLoc dl = irp_loc(c);
    if (!irp_int(c, &v)) return false;
    if (v < 1) return irp_error(c, dl, "dimension %lld is not positive", (long long)v);
    sh->d[sh->rank++] = v;
    if (irp_accept(c, "]")) return true;
    if (!irp_expect(c, ",")) return false;
  }
}

bool irp_init(IrpCur *c, DlrtInit *out) {
  SrcLoc at = irp_loc(c);
  const char *w;
  if (!irp_word(c, &w)) return false;
  memset(out, 0, sizeof *out);
  out->kind = -1;
  for (int k = 0; k <= DLRT_INIT_KAIMING_NORMAL; k++)
    if (!strcmp(w, ir_init_name(k))) out->kind = k;
  if (out->kind < 0) return irp_error(c, at, "unknown initializer '%s'", w);
  if (*c->p != '(') return true;
  c->p++;
  if (!irp_float(c, &out->a)) return false;
  if (irp_accept(c, ",") && !irp_float(c, &out->b)) return false;
  return irp_expect(c, ")");
}

bool irp_loc_comment(IrpCur *c, const char **name, SrcLoc *loc) {
  *name = NULL;
  memset(loc, 0, sizeof *loc);
  if (!irp_accept(c, "#")) return true;
  if (irp_at_eol(c)) return true;
  const char *w;
  if (!irp_word(c, &w)) return false;
  if (*c->p != ':') {
    *name = w;
    if (irp_at_eol(c)) return true;
    if (!irp_word(c, &w)) return false;
  }
  int64_t line, col;
  if (!irp_expect(c, ":") || !irp_int(c, &line) || !irp_expect(c, ":") || !irp_int(c, &col)) return false;
  *loc = (SrcLoc){w, (int)line, (int)col};
  return true;
}

bool ir_is_dlir_path(const char *path) {
  size_t n = strlen(path);
  return n > 5 && !strcmp(path + n - 5, ".dlir");
}
