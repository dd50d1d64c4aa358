/* test_golden.c — golden IR tests of the passes (the lit idea): a
 * tests/golden/PASS/NAME.dlir file holds input IR and `; CHECK:` lines. The
 * lines starting with ';' in column 0 (checks and comments) are blanked, the
 * rest is parsed with ir_parse_module, and the printed result is checked
 * with filecheck:
 *   - a graph pass (GRAPH_PASS in passes.def) runs on every graph of the
 *     file (then ir_verify); the output is "; PASS changed|unchanged" and
 *     ir_print of each graph;
 *   - a kernel pass (KERNEL_PASS) runs on the file's kernel program (the form
 *     --emit=opt prints); the output is "; PASS changed|unchanged" and
 *     kir_print of the program. The printed result must parse and print back
 *     byte for byte (the pass left a well-formed program), and after memplan
 *     no two temporaries of an entry that are live at the same time may share
 *     a byte (the one exception: an elementwise kernel writing in place over
 *     an input that dies there and that it reads only at its own index).
 *   test_golden PASS FILE.dlir    one case (exit 0 when it passes)
 *   test_golden --self-test       the checker against known outputs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filecheck.h"
#include "ir/ir_parse.h"
#include "passes/passes.h"
#include "passes/pipeline.h"

typedef struct {
  const char *name;
  bool (*fn)(Graph *, Diag *);
} NamedPass;

static const NamedPass graph_passes[] = {
#define GRAPH_PASS(name, fn, level) {#name, fn},
#include "passes/passes.def"
};

typedef struct {
  const char *name;
  bool (*fn)(Program *, Diag *);
} NamedKernelPass;

static const NamedKernelPass kernel_passes[] = {
#define KERNEL_PASS(name, fn, level) {#name, fn},
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

/* ---- kernel programs ---- */

static int buf_root(const Program *p, int b) { return p->bufs[b].alias >= 0 ? p->bufs[b].alias : b; }

/* last[root(b)] = the last kernel index (in this entry) that reads b */
static void note_reads(const Program *p, const VExpr *e, int k, int *last) {
  if (!e) return;
  if (e->op == VX_LOAD) {
    int r = buf_root(p, e->buf);
    if (last[r] < k) last[r] = k;
  }
  note_reads(p, e->a, k, last);
  note_reads(p, e->b, k, last);
  note_reads(p, e->c, k, last);
}

/* Does e read buffer b (or a view of it) anywhere but at the identity index of a rank-`rank` space? */
static bool reads_off_index(const Program *p, const VExpr *e, int b, int rank) {
  if (!e) return false;
  if (e->op == VX_LOAD && buf_root(p, e->buf) == b) {
    if (e->buf != b || e->guard || e->rank != rank) return true;
    for (int i = 0; i < rank; i++)
      if (e->idx[i]->op != IX_VAR || e->idx[i]->var != i) return true;
  }
  return reads_off_index(p, e->a, b, rank) || reads_off_index(p, e->b, b, rank) ||
         reads_off_index(p, e->c, b, rank);
}

/* The memory plan's invariant, independent of how memplan.c finds it: in
 * every entry, two planned temporaries (role temp, not a view, offset >= 0,
 * written by a kernel of the entry) whose live ranges [first write, last
 * read] overlap never share a byte. Ranges that only touch at kernel k are
 * allowed when k is elementwise, writes the later one and reads the earlier
 * one only at its own index (in place). Returns the number of conflicts. */
static int check_memplan(const Program *p, const char *path, FILE *err) {
  int bad = 0, nb = p->n_bufs;
  int *first = malloc(sizeof(int) * (size_t)(nb ? nb : 1)), *last = malloc(sizeof(int) * (size_t)(nb ? nb : 1));
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present) continue;
    for (int b = 0; b < nb; b++) first[b] = last[b] = -1;
    for (int k = 0; k < en->n_kernels; k++) {
      const Kernel *K = en->kernels[k];
      int o = buf_root(p, K->out_buf);
      if (first[o] < 0) first[o] = k;
      if (last[o] < k) last[o] = k;
      note_reads(p, K->body, k, last);
      note_reads(p, K->epilogue, k, last);
    }
    for (int a = 0; a < nb; a++) {
      const Buffer *A = &p->bufs[a];
      if (A->role != BUF_TEMP || A->alias >= 0 || A->offset < 0 || first[a] < 0) continue;
      for (int b = a + 1; b < nb; b++) {
        const Buffer *B = &p->bufs[b];
        if (B->role != BUF_TEMP || B->alias >= 0 || B->offset < 0 || first[b] < 0) continue;
        int64_t a0 = A->offset, a1 = a0 + shape_numel(&A->shape) * 4;
        int64_t b0 = B->offset, b1 = b0 + shape_numel(&B->shape) * 4;
        if (a1 <= b0 || b1 <= a0) continue;             /* no common byte */
        if (last[a] < first[b] || last[b] < first[a]) continue; /* never live together */
        /* touching at one kernel: in place? */
        int x = -1, y = -1; /* x dies where y is first written */
        if (last[a] == first[b] && first[a] < first[b]) x = a, y = b;
        if (last[b] == first[a] && first[b] < first[a]) x = b, y = a;
        if (x >= 0) {
          const Kernel *K = en->kernels[first[y]];
          if (K->red == RED_NONE && !K->accumulate && !K->epilogue && buf_root(p, K->out_buf) == y &&
              !reads_off_index(p, K->body, x, K->shape.rank))
            continue;
        }
        fprintf(err,
                "%s: memplan conflict in entry %s: %s#%d [bytes %lld..%lld, kernels %d..%d] and %s#%d [bytes "
                "%lld..%lld, kernels %d..%d] are live together and share memory\n",
                path, kir_entry_name(e), A->name, a, (long long)a0, (long long)a1, first[a], last[a], B->name, b,
                (long long)b0, (long long)b1, first[b], last[b]);
        bad++;
      }
    }
  }
  free(first);
  free(last);
  return bad;
}

static const NamedPass *find_graph_pass(const char *pass) {
  for (size_t i = 0; i < sizeof graph_passes / sizeof graph_passes[0]; i++)
    if (!strcmp(graph_passes[i].name, pass)) return &graph_passes[i];
  return NULL;
}

static const NamedKernelPass *find_kernel_pass(const char *pass) {
  for (size_t i = 0; i < sizeof kernel_passes / sizeof kernel_passes[0]; i++)
    if (!strcmp(kernel_passes[i].name, pass)) return &kernel_passes[i];
  return NULL;
}

/* Runs a graph pass on every graph of mod into f; false (after reporting) when it fails. */
static bool run_graph_pass(const NamedPass *np, IrModule *mod, const char *path, Diag *d, FILE *f) {
  if (mod->n_graphs == 0) {
    fprintf(stderr, "%s: no graph to run %s on\n", path, np->name);
    return false;
  }
  for (int i = 0; i < mod->n_graphs; i++) {
    Graph *g = mod->graphs[i];
    bool changed = np->fn(g, d);
    if (d->n_errors || !ir_verify(g, d)) {
      fprintf(stderr, "%s: pass %s left an invalid graph:\n", path, np->name);
      ir_print(g, stderr);
      return false;
    }
    fprintf(f, "; %s %s\n", np->name, changed ? "changed" : "unchanged");
    ir_print(g, f);
  }
  return true;
}

/* Runs a kernel pass on the program of mod into f; false (after reporting) when it fails. */
static bool run_kernel_pass(const NamedKernelPass *kp, IrModule *mod, const char *path, Diag *d, FILE *f) {
  Program *p = mod->prog;
  if (!p) {
    fprintf(stderr, "%s: no kernel program (`program NAME { ... }`) to run %s on\n", path, kp->name);
    return false;
  }
  bool changed = kp->fn(p, d);
  if (d->n_errors) {
    fprintf(stderr, "%s: pass %s reported an error\n", path, kp->name);
    return false;
  }
  /* the result must be a program the parser takes back unchanged */
  char *txt = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&txt, &len);
  kir_print(p, m);
  fclose(m);
  bool ok = true;
  Arena *a2 = arena_new();
  Diag d2;
  diag_init(&d2, stderr);
  IrModule back;
  char *name = malloc(strlen(path) + 32);
  sprintf(name, "%s (after %s)", path, kp->name);
  if (!ir_parse_module(a2, name, txt, &back, &d2) || !back.prog) {
    fprintf(stderr, "%s: the program printed after %s does not parse:\n%s", path, kp->name, txt);
    ok = false;
  } else {
    char *txt2 = NULL;
    size_t len2 = 0;
    FILE *m2 = open_memstream(&txt2, &len2);
    kir_print(back.prog, m2);
    fclose(m2);
    if (strcmp(txt, txt2)) {
      fprintf(stderr, "%s: the program printed after %s does not print back the same:\n%s---\n%s", path,
              kp->name, txt, txt2);
      ok = false;
    }
    free(txt2);
  }
  diag_free(&d2);
  arena_free(a2);
  free(name);
  if (ok && !strcmp(kp->name, "memplan") && check_memplan(p, path, stderr)) {
    fputs(txt, stderr);
    ok = false;
  }
  if (ok) {
    fprintf(f, "; %s %s\n", kp->name, changed ? "changed" : "unchanged");
    fputs(txt, f);
  }
  free(txt);
  return ok;
}

static int run_case(const char *pass, const char *path) {
  const NamedPass *np = find_graph_pass(pass);
  const NamedKernelPass *kp = find_kernel_pass(pass);
  if (!np && !kp) {
    fprintf(stderr, "test_golden: unknown pass '%s' (not in passes/passes.def)\n", pass);
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
  char *out = NULL;
  size_t out_len = 0;
  FILE *f = open_memstream(&out, &out_len);
  bool ok = np ? run_graph_pass(np, &mod, path, &d, f) : run_kernel_pass(kp, &mod, path, &d, f);
  fclose(f);
  if (ok) rc = filecheck(text, path, out, stderr) ? 1 : 0;
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
  /* the memory-plan checker: offsets are given, not planned */
  static const char *const plan_head =
      "program p {\n"
      "  buffer x#0 : f32[4,4] input\n"
      "  buffer y#1 : f32[4,4] output entry=infer\n"
      "  buffer a#2 : f32[4,4] temp entry=infer offset=0\n";
  static const struct { const char *rest; int want; } plans[] = {
      /* b is written while a is still read: sharing offset 0 is a conflict */
      {"  buffer b#3 : f32[4,4] temp entry=infer offset=32\n  entry infer {\n"
       "    kernel k0 [exp] -> a#2 : f32[4,4]  # t.dl:1:1\n      body = exp(x#0[i0, i1])\n"
       "    kernel k1 [exp] -> b#3 : f32[4,4]  # t.dl:1:1\n      body = exp(a#2[i0, i1])\n"
       "    kernel k2 [add] -> y#1 : f32[4,4]  # t.dl:1:1\n      body = add(a#2[i0, i1], b#3[i0, i1])\n  }\n}\n",
       1},
      /* in place: a dies in k1, which reads it at its own index */
      {"  buffer b#3 : f32[4,4] temp entry=infer offset=0\n  entry infer {\n"
       "    kernel k0 [exp] -> a#2 : f32[4,4]  # t.dl:1:1\n      body = exp(x#0[i0, i1])\n"
       "    kernel k1 [exp] -> b#3 : f32[4,4]  # t.dl:1:1\n      body = exp(a#2[i0, i1])\n"
       "    kernel k2 [exp] -> y#1 : f32[4,4]  # t.dl:1:1\n      body = exp(b#3[i0, i1])\n  }\n}\n",
       0},
      /* not in place: k1 reads a transposed */
      {"  buffer b#3 : f32[4,4] temp entry=infer offset=0\n  entry infer {\n"
       "    kernel k0 [exp] -> a#2 : f32[4,4]  # t.dl:1:1\n      body = exp(x#0[i0, i1])\n"
       "    kernel k1 [exp] -> b#3 : f32[4,4]  # t.dl:1:1\n      body = exp(a#2[i1, i0])\n"
       "    kernel k2 [exp] -> y#1 : f32[4,4]  # t.dl:1:1\n      body = exp(b#3[i0, i1])\n  }\n}\n",
       1},
      /* disjoint lifetimes may share */
      {"  buffer b#3 : f32[4,4] temp entry=infer offset=0\n  entry infer {\n"
       "    kernel k0 [exp] -> a#2 : f32[4,4]  # t.dl:1:1\n      body = exp(x#0[i0, i1])\n"
       "    kernel k1 [exp] -> y#1 : f32[4,4]  # t.dl:1:1\n      body = exp(a#2[i1, i0])\n"
       "    kernel k2 [exp] -> b#3 : f32[4,4]  # t.dl:1:1\n      body = exp(y#1[i0, i1])\n  }\n}\n",
       0},
  };
  for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
    char text[2048];
    snprintf(text, sizeof text, "%s%s", plan_head, plans[i].rest);
    Arena *a = arena_new();
    Diag d;
    diag_init(&d, stderr);
    IrModule mod;
    if (!ir_parse_module(a, "self-test.dlir", text, &mod, &d) || !mod.prog) {
      fprintf(stderr, "self-test plan %zu does not parse\n", i);
      bad++;
    } else {
      FILE *sink = fopen("/dev/null", "w");
      int got = check_memplan(mod.prog, "self-test", sink ? sink : stderr);
      if (sink) fclose(sink);
      if ((got > 0) != (plans[i].want > 0)) {
        fprintf(stderr, "self-test plan %zu: %d conflicts, want %d\n", i, got, plans[i].want);
        bad++;
      }
    }
    diag_free(&d);
    arena_free(a);
  }
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
