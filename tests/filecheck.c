/* filecheck.c — the FileCheck idea for the golden IR tests (filecheck.h):
 * CHECK, CHECK-NEXT and CHECK-NOT over lines, by substring, in order. */
#include "filecheck.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum { FC_CHECK, FC_NEXT, FC_NOT } FcKind;
typedef struct {
  FcKind kind;
  char *pat;
  int line; /* in the checks file */
} FcDirective;

typedef struct {
  char **lines;
  int n;
} Lines;

static char *dup_range(const char *s, size_t n) {
  char *r = malloc(n + 1);
  memcpy(r, s, n);
  r[n] = 0;
  return r;
}

static Lines split_lines(const char *text) {
  Lines l = {0};
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    l.lines = realloc(l.lines, sizeof(char *) * (size_t)(l.n + 1));
    l.lines[l.n++] = dup_range(p, n);
    p += n + (e ? 1 : 0);
  }
  return l;
}

static void free_lines(Lines *l) {
  for (int i = 0; i < l->n; i++) free(l->lines[i]);
  free(l->lines);
}

/* "; CHECK-NEXT: pat" -> directive; false for other lines. */
static bool parse_directive(const char *line, int lineno, FcDirective *out) {
  static const struct { const char *tag; FcKind kind; } tags[] = {
      {"CHECK-NEXT:", FC_NEXT}, {"CHECK-NOT:", FC_NOT}, {"CHECK:", FC_CHECK}};
  while (*line == ' ' || *line == '\t') line++;
  if (*line != ';') return false;
  line++;
  while (*line == ' ' || *line == '\t') line++;
  for (int i = 0; i < 3; i++) {
    size_t k = strlen(tags[i].tag);
    if (strncmp(line, tags[i].tag, k)) continue;
    const char *p = line + k, *e = p + strlen(p);
    while (*p == ' ' || *p == '\t') p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    out->kind = tags[i].kind;
    out->pat = dup_range(p, (size_t)(e - p));
    out->line = lineno;
    return true;
  }
  return false;
}

static int find_from(const Lines *out, int from, int to, const char *pat) {
  for (int i = from; i < to; i++)
    if (strstr(out->lines[i], pat)) return i;
  return -1;
}

int filecheck(const char *checks, const char *checks_name, const char *output, FILE *err) {
  Lines cl = split_lines(checks), ol = split_lines(output);
  FcDirective *dir = calloc((size_t)cl.n + 1, sizeof *dir);
  int nd = 0, fails = 0;
  for (int i = 0; i < cl.n; i++)
    if (parse_directive(cl.lines[i], i + 1, &dir[nd])) nd++;
  if (nd == 0) {
    fprintf(err, "%s: error: no CHECK directive\n", checks_name);
    fails = 1;
  }
  int pos = 0;        /* first output line not yet consumed */
  int last = -1;      /* line of the previous positive match */
  int pending = -1;   /* first CHECK-NOT waiting for the next match */
  for (int k = 0; k < nd; k++) {
    FcDirective *d = &dir[k];
    if (d->kind == FC_NOT) {
      if (pending < 0) pending = k;
      continue;
    }
    int at;
    if (d->kind == FC_NEXT) {
      at = last >= 0 && last + 1 < ol.n && strstr(ol.lines[last + 1], d->pat) ? last + 1 : -1;
      if (at < 0)
        fprintf(err, "%s:%d: error: CHECK-NEXT: '%s' not on output line %d (\"%s\")\n", checks_name, d->line, d->pat,
                last + 2, last >= 0 && last + 1 < ol.n ? ol.lines[last + 1] : "<end of output>");
    } else {
      at = find_from(&ol, pos, ol.n, d->pat);
      if (at < 0)
        fprintf(err, "%s:%d: error: CHECK: '%s' not found from output line %d on\n", checks_name, d->line, d->pat,
                pos + 1);
    }
    if (at < 0) {
      fails++;
      pending = -1;
      continue;
    }
    for (int j = pending; pending >= 0 && j < k; j++) {
      int bad = find_from(&ol, pos, at, dir[j].pat);
      if (bad >= 0) {
        fprintf(err, "%s:%d: error: CHECK-NOT: '%s' found on output line %d (\"%s\")\n", checks_name, dir[j].line,
                dir[j].pat, bad + 1, ol.lines[bad]);
        fails++;
      }
    }
    pending = -1;
    last = at;
    pos = at + 1;
  }
  for (int j = pending; pending >= 0 && j < nd; j++) {
    int bad = find_from(&ol, pos, ol.n, dir[j].pat);
    if (bad >= 0) {
      fprintf(err, "%s:%d: error: CHECK-NOT: '%s' found on output line %d (\"%s\")\n", checks_name, dir[j].line,
              dir[j].pat, bad + 1, ol.lines[bad]);
      fails++;
    }
  }
  if (fails) {
    fprintf(err, "--- output checked ---\n");
    for (int i = 0; i < ol.n; i++) fprintf(err, "%4d | %s\n", i + 1, ol.lines[i]);
  }
  for (int k = 0; k < nd; k++) free(dir[k].pat);
  free(dir);
  free_lines(&cl);
  free_lines(&ol);
  return fails;
}
