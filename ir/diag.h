/* diag.h — source locations and diagnostics shared by every compiler stage.
 * Errors print as `FILE:LINE:COL: error: MESSAGE`, then the source line and
 * a caret under the column (when the source text is registered). */
#ifndef IR_DIAG_H
#define IR_DIAG_H

#include <stdarg.h>
#include <stdio.h>

typedef struct {
  const char *file; /* NULL: no location */
  int line, col;    /* 1-based */
} SrcLoc;

typedef struct DiagSource {
  const char *file;
  const char *text;
  struct DiagSource *next;
} DiagSource;

typedef struct Diag {
  FILE *out;        /* where messages go; NULL = collect only (count) */
  int n_errors;
  int max_errors;   /* stop printing after this many (default 20) */
  DiagSource *sources;
  char first[512];  /* the first error line, without the source excerpt */
} Diag;

void diag_init(Diag *d, FILE *out);
void diag_free(Diag *d);
/* Registers FILE's text so errors can show the source line (not copied). */
void diag_add_source(Diag *d, const char *file, const char *text);
void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap);
void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Internal invariant: stays on in release builds. */
#define DL_ASSERT(x)                                                              \
  do {                                                                            \
    if (!(x)) dl_assert_fail(__FILE__, __LINE__, #x);                             \
  } while (0)
_Noreturn void dl_assert_fail(const char *file, int line, const char *expr);

#endif
