/* diag.c — error reporting with `FILE:LINE:COL: error: MSG`, the source line
 * and a caret (the source text is registered by the frontend). */
#include "ir/diag.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void diag_init(Diag *d, FILE *out) {
  memset(d, 0, sizeof *d);
  d->out = out;
  d->max_errors = 20;
}

void diag_free(Diag *d) {
  for (DiagSource *s = d->sources; s;) {
    DiagSource *n = s->next;
    free(s);
    s = n;
  }
  d->sources = NULL;
}

void diag_add_source(Diag *d, const char *file, const char *text) {
  DiagSource *s = calloc(1, sizeof *s);
  DL_ASSERT(s != NULL);
  s->file = file;
  s->text = text;
  s->next = d->sources;
  d->sources = s;
}

static void print_excerpt(Diag *d, SrcLoc loc) {
  if (!d->out || !loc.file || loc.line <= 0) return;
  for (DiagSource *s = d->sources; s; s = s->next) {
    if (strcmp(s->file, loc.file) != 0) continue;
    const char *p = s->text;
    for (int line = 1; line < loc.line && *p; p++)
      if (*p == '\n') line++;
    const char *e = p;
    while (*e && *e != '\n') e++;
    fprintf(d->out, "  %.*s\n  ", (int)(e - p), p);
    for (int c = 1; c < loc.col && p + c - 1 < e; c++) fputc(p[c - 1] == '\t' ? '\t' : ' ', d->out);
    fputs("^\n", d->out);
    return;
  }
}

static void report(Diag *d, SrcLoc loc, const char *kind, const char *fmt, va_list ap) {
  char msg[440];
  vsnprintf(msg, sizeof msg, fmt, ap);
  char line[512];
  if (loc.file)
    snprintf(line, sizeof line, "%s:%d:%d: %s: %s", loc.file, loc.line, loc.col, kind, msg);
  else
    snprintf(line, sizeof line, "%s: %s", kind, msg);
  bool is_error = strcmp(kind, "error") == 0;
  if (is_error && d->n_errors == 0) snprintf(d->first, sizeof d->first, "%s", line);
  if (is_error) d->n_errors++;
  if (!d->out || (is_error && d->n_errors > d->max_errors)) return;
  fprintf(d->out, "%s\n", line);
  print_excerpt(d, loc);
}

void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap) { report(d, loc, "error", fmt, ap); }

void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(d, loc, "error", fmt, ap);
  va_end(ap);
}

void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(d, loc, "note", fmt, ap);
  va_end(ap);
}

_Noreturn void dl_assert_fail(const char *file, int line, const char *expr) {
  fprintf(stderr, "%s:%d: internal error: assertion failed: %s\n", file, line, expr);
  fflush(stderr);
  abort();
}
