/* test_diag.c — diagnostics tests: every .dl file in tests/diag starts with
 *   # expect: FILE:LINE:COL: error: MESSAGE
 * (FILE is the basename) and may carry `# defines: NAME=VALUE ...` and
 * `# mode: train|eval|infer` lines. The driver parses and builds each file
 * and compares the first error line (Diag.first) with the expectation.
 * Usage: test_diag [DIR]   (default: DIAG_DIR) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"

#ifndef DIAG_DIR
#define DIAG_DIR "tests/diag"
#endif

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

/* Copies the rest of the line after `key` in text into out; false if absent. */
static int directive(const char *text, const char *key, char *out, size_t n) {
  const char *p = strstr(text, key);
  if (!p) return 0;
  p += strlen(key);
  while (*p == ' ') p++;
  size_t k = 0;
  while (p[k] && p[k] != '\n' && k + 1 < n) k++;
  memcpy(out, p, k);
  out[k] = 0;
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : DIAG_DIR;
  DIR *dp = opendir(dir);
  if (!dp) {
    fprintf(stderr, "test_diag: cannot open %s\n", dir);
    return 1;
  }
  char *names[1024];
  int n = 0;
  struct dirent *de;
  while ((de = readdir(dp)) && n < 1024) {
    size_t len = strlen(de->d_name);
    if (len > 3 && strcmp(de->d_name + len - 3, ".dl") == 0) names[n++] = strdup(de->d_name);
  }
  closedir(dp);
  qsort(names, (size_t)n, sizeof names[0], cmp_str);
  int failed = 0;
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    char *text = read_all(path);
    char expect[512], defs_line[512], mode_s[32];
    if (!text || !directive(text, "# expect:", expect, sizeof expect)) {
      printf("FAIL %s: no '# expect:' line\n", names[i]);
      failed++;
      free(text);
      continue;
    }
    ConstDef defs[16];
    int nd = 0;
    char *dcopy = NULL;
    if (directive(text, "# defines:", defs_line, sizeof defs_line)) {
      dcopy = strdup(defs_line);
      for (char *tok = strtok(dcopy, " "); tok && nd < 16; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (eq) *eq = 0;
        defs[nd].name = tok;
        defs[nd].value = eq ? eq + 1 : NULL;
        nd++;
      }
    }
    GraphMode mode = MODE_TRAIN;
    if (directive(text, "# mode:", mode_s, sizeof mode_s)) {
      if (strncmp(mode_s, "eval", 4) == 0) mode = MODE_EVAL;
      if (strncmp(mode_s, "infer", 5) == 0) mode = MODE_INFER;
    }
    Arena *a = arena_new();
    Diag d;
    diag_init(&d, NULL);
    diag_add_source(&d, names[i], text);
    Ast *ast = fe_parse(a, names[i], text, &d);
    Graph *g = ast ? fe_build_graph(a, ast, mode, defs, nd, &d) : NULL;
    if (g) {
      printf("FAIL %s: no error, expected\n  %s\n", names[i], expect);
      failed++;
    } else if (strcmp(d.first, expect) != 0) {
      printf("FAIL %s:\n  expected: %s\n  got:      %s\n", names[i], expect, d.first);
      failed++;
    }
    diag_free(&d);
    arena_free(a);
    free(dcopy);
    free(text);
    free(names[i]);
  }
  printf("%d diagnostics cases, %d failed\n", n, failed);
  return failed ? 1 : 0;
}
