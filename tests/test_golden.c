/* test_golden.c — golden IR tests of the graph passes (the lit idea): a
 * tests/golden/PASS/NAME.dlir file holds input IR in the printed graph form
 * and `; CHECK:` lines. The lines starting with ';' in column 0 (checks and
 * comments) are blanked, the rest is parsed with ir_parse_module, PASS runs
 * on every graph (then ir_verify), and the printed result is checked with
 * filecheck.
 *   test_golden PASS FILE.dlir    one case (exit 0 when it passes)
 *   test_golden --self-test       the checker against known outputs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filecheck.h"
#include "ir/ir_parse.h"
#include "passes/passes.h"

typedef struct {
  const char *name;
  bool (*fn)(Graph *, Diag *);
} NamedPass;

static const NamedPass graph_passes[] = {
#define GRAPH_PASS(name, fn, level) {#name, fn},
#include "passes/passes.def"
};

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
    n += k;
    if (cap - n < 2) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  buf[n] = 0;
  return buf;
}

static int run_case(const char *pass, const char *path) {
  const NamedPass *np = NULL;
  for (size_t i = 0; i < sizeof graph_passes / sizeof graph_passes[0]; i++)
    if (!strcmp(graph_passes[i].name, pass)) np = &graph_passes[i];
  if (!np) {
    fprintf(stderr, "test_golden: unknown graph pass '%s'\n", pass);
    return 2;
  }
  char *text = read_all(path);
  if (!text) {
    fprintf(stderr, "test_golden: cannot read %s\n", path);
    return 2;
  }
  /* blank the top-level comment lines, keeping line numbers for diagnostics */
  size_t len = strlen(text);
  char *input = malloc(len + 1);
  memcpy(input, text, len + 1);
  for (char *p = input; *p;) {
    char *e = strchr(p, '\n');
    if (*p == ';')
      for (char *q = p; q < (e ? e : p + strlen(p)); q++) *q = ' ';
    p = e ? e + 1 : p + strlen(p);
  }
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  IrModule mod;
  int rc = 1;
  if (!ir_parse_module(a, path, input, &mod, &d)) goto done;
  if (mod.n_graphs == 0) {
    fprintf(stderr, "%s: no graph to run %s on\n", path, pass);
    goto done;
  }
  char *out = NULL;
  size_t out_len = 0;
  FILE *f = open_memstream(&out, &out_len);
  for (int i = 0; i < mod.n_graphs; i++) {
    Graph *g = mod.graphs[i];
    bool changed = np->fn(g, &d);
    if (d.n_errors || !ir_verify(g, &d)) {
      fprintf(stderr, "%s: pass %s left an invalid graph:\n", path, pass);
      ir_print(g, stderr);
      fclose(f);
      free(out);
      goto done;
    }
    fprintf(f, "; %s %s\n", pass, changed ? "changed" : "unchanged");
    ir_print(g, f);
  }
  fclose(f);
  rc = filecheck(text, path, out, stderr) ? 1 : 0;
  free(out);
done:
  diag_free(&d);
  arena_free(a);
  free(input);
  free(text);
  return rc;
}

/* The checker must reject what it should. */
static int self_test(void) {
  static const char *const out = "graph t {\n  %1 = add(x, y)\n  %2 = mul(%1, x)\n  output z = %2\n}\n";
  static const struct { const char *checks; int want_fails; } cases[] = {
      {"; CHECK: add(x, y)\n; CHECK-NEXT: mul(%1, x)\n; CHECK: output z", 0},
      {"; CHECK: mul(\n; CHECK: add(", 1},                   /* order matters */
      {"; CHECK: graph t\n; CHECK-NEXT: mul(", 1},          /* not the next line */
      {"; CHECK: add(\n; CHECK-NOT: mul(\n; CHECK: output", 1},
      {"; CHECK: add(\n; CHECK-NOT: sub(\n; CHECK: output", 0},
      {"; CHECK: output\n; CHECK-NOT: add(", 0},            /* NOT after the last match only */
      {"; CHECK: graph\n; CHECK-NOT: output", 1},           /* trailing NOT up to the end */
      {"; CHECK: nothing like this", 1},
      {"no directives here", 1},
  };
  FILE *null = fopen("/dev/null", "w");
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = filecheck(cases[i].checks, "self-test", out, null ? null : stderr);
    if (got != cases[i].want_fails) {
      fprintf(stderr, "self-test case %zu: %d failures, want %d\n", i, got, cases[i].want_fails);
      bad++;
    }
  }
  if (null) fclose(null);
  return bad ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--self-test")) return self_test();
  if (argc != 3) {
    fprintf(stderr, "usage: test_golden PASS FILE.dlir | test_golden --self-test\n");
    return 2;
  }
  return run_case(argv[1], argv[2]);
}
