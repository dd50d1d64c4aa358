/* test_parse.c — the textual IR parsers (ir/ir_parse.h): for every example
 * and conformance model, print → parse → print is byte-identical for the
 * graphs after sema (--emit=ir), after autodiff (--emit=grad), after the
 * graph passes, and for the kernel program (--emit=opt); truncated and
 * garbled text gives errors, never a crash; a printed type that disagrees
 * with the operands is reported at its line and column with a caret; sparse
 * hand-written ids are renumbered. usage: test_parse SOURCE_DIR CONFORMANCE_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_parse.h"
#include "tools/driver.h"

static const char *src_dir, *conf_dir;

/* ---- helpers ---- */
typedef struct {
  char *buf;
  size_t len;
  FILE *f;
} Mem;

static void mem_open(Mem *m) {
  m->buf = NULL;
  m->len = 0;
  m->f = open_memstream(&m->buf, &m->len);
  assert_non_null(m->f);
}
static char *mem_close(Mem *m) {
  fclose(m->f);
  return m->buf;
}

static void print_graphs(Graph *const *gs, int n, FILE *f) {
  for (int i = 0; i < n; i++)
    if (gs[i]) ir_print(gs[i], f);
}

static char *print_module(const IrModule *mod) {
  Mem m;
  mem_open(&m);
  print_graphs(mod->graphs, mod->n_graphs, m.f);
  if (mod->prog) kir_print(mod->prog, m.f);
  return mem_close(&m);
}

/* Parses text and prints it back; NULL (after printing the errors) if it
 * does not parse. */
static char *reprint(const char *name, const char *text) {
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  IrModule mod;
  char *out = NULL;
  if (ir_parse_module(a, name, text, &mod, &d)) out = print_module(&mod);
  diag_free(&d);
  arena_free(a);
  return out;
}

static void assert_round_trip(const char *what, const char *text) {
  char *again = reprint(what, text);
  if (!again || strcmp(again, text) != 0) {
    fprintf(stderr, "round trip of %s differs\n", what);
    if (again) {
      size_t i = 0;
      while (text[i] && text[i] == again[i]) i++;
      size_t s = i > 200 ? i - 200 : 0;
      fprintf(stderr, "--- first difference at byte %zu:\n%.300s\n+++\n%.300s\n", i, text + s, again + s);
    }
    free(again);
    fail();
  }
  free(again);
}

/* The three printed forms of one model: graphs after sema, the train graph
 * after autodiff, graphs after the passes + the kernel program. */
static void round_trip_model(const char *path) {
  DrvOptions o = {.opt_level = 2, .cpu = "native"};
  const DrvStage stages[] = {DRV_STAGE_IR, DRV_STAGE_GRAD, DRV_STAGE_KERNELS};
  for (int s = 0; s < 3; s++) {
    Diag d;
    diag_init(&d, stderr);
    DrvModel m;
    int rc = drv_compile(&m, path, &o, stages[s], &d);
    if (rc != DRV_OK) fprintf(stderr, "%s: does not compile (stage %d)\n", path, (int)stages[s]);
    assert_int_equal(rc, DRV_OK);
    Mem mem;
    mem_open(&mem);
    if (stages[s] == DRV_STAGE_GRAD) {
      Graph *g = m.graph[ENTRY_TRAIN];
      for (int e = 0; !g && e < ENTRY__COUNT; e++) g = m.graph[e];
      print_graphs(&g, 1, mem.f);
    } else {
      print_graphs(m.graph, ENTRY__COUNT, mem.f);
    }
    if (m.prog) kir_print(m.prog, mem.f);
    char *text = mem_close(&mem);
    char what[1200];
    snprintf(what, sizeof what, "%s.%d.dlir", path, (int)stages[s]);
    assert_round_trip(what, text);
    free(text);
    drv_free(&m);
    diag_free(&d);
  }
}

static int visit_models(const char *dir, bool nested) {
  DIR *dp = opendir(dir);
  if (!dp) return 0;
  int n = 0;
  char **names = NULL;
  struct dirent *de;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.') continue;
    names = realloc(names, sizeof(char *) * (size_t)(n + 1));
    names[n++] = strdup(de->d_name);
  }
  closedir(dp);
  int done = 0;
  for (int i = 0; i < n; i++) {
    char path[1024];
    size_t l = strlen(names[i]);
    if (nested) snprintf(path, sizeof path, "%s/%s/model.dl", dir, names[i]);
    else if (l > 3 && !strcmp(names[i] + l - 3, ".dl")) snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    else path[0] = 0;
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (f) {
      fclose(f);
      round_trip_model(path);
      done++;
    }
    free(names[i]);
  }
  free(names);
  return done;
}

static void test_round_trip_examples(void **state) {
  (void)state;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/examples", src_dir);
  assert_true(visit_models(dir, false) > 0);
}

static void test_round_trip_conformance(void **state) {
  (void)state;
  assert_true(visit_models(conf_dir, true) > 0);
}

/* ---- malformed input ---- */
static char *model_text(const char *rel, DrvStage stage) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", src_dir, rel);
  DrvOptions o = {.opt_level = 2, .cpu = "native"};
  Diag d;
  diag_init(&d, stderr);
  DrvModel m;
  assert_int_equal(drv_compile(&m, path, &o, stage, &d), DRV_OK);
  Mem mem;
  mem_open(&mem);
  if (stage == DRV_STAGE_KERNELS) kir_print(m.prog, mem.f);
  else print_graphs(m.graph, ENTRY__COUNT, mem.f);
  drv_free(&m);
  diag_free(&d);
  return mem_close(&mem);
}

/* Parses without crashing; a parse that succeeds prints again. */
static int parse_quietly(const char *text) {
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, NULL);
  IrModule mod;
  bool ok = ir_parse_module(a, "fuzz.dlir", text, &mod, &d);
  if (ok) free(print_module(&mod));
  else assert_true(d.n_errors > 0);
  diag_free(&d);
  arena_free(a);
  return ok;
}

static void fuzz(const char *text) {
  size_t n = strlen(text);
  char *buf = malloc(n + 1);
  int ok = 0, runs = 0;
  for (size_t cut = 0; cut < n; cut += 1 + cut / 64) { /* truncated */
    memcpy(buf, text, cut);
    buf[cut] = 0;
    ok += parse_quietly(buf);
    runs++;
  }
  static const char junk[] = "%#[](),:=\"\\\n -0123456789aeifx@.{};";
  uint64_t r = 0x9E3779B97F4A7C15ull;
  for (int it = 0; it < 1500; it++) { /* garbled: a few bytes replaced */
    memcpy(buf, text, n + 1);
    for (int k = 0; k < 1 + it % 3; k++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (size_t)(r >> 33) % n;
      buf[at] = junk[(r >> 13) % (sizeof junk - 1)];
    }
    ok += parse_quietly(buf);
    runs++;
  }
  assert_true(ok < runs); /* most of them are errors */
  free(buf);
}

static void test_malformed_graphs(void **state) {
  (void)state;
  char *text = model_text("examples/mnist_mlp.dl", DRV_STAGE_GRAD);
  fuzz(text);
  free(text);
  assert_false(parse_quietly(""));
  assert_false(parse_quietly("graph"));
  assert_false(parse_quietly("graph g(mode=train) {\n"));
  assert_false(parse_quietly("graph g(mode=train) {\n  %0 = relu(%0) : f32[]\n}\n"));
  assert_false(parse_quietly("graph g(mode=infer) {\n  input x : f32[2]\n  %1 = frob(x) : f32[2]\n}\n"));
  assert_false(parse_quietly("graph g(mode=infer) {\n  input x : f32[2]\n  input x : f32[2]\n}\n"));
  assert_false(parse_quietly("graph g(mode=infer) {\n  input x : f32[2]\n  %1 = sum(x, axes=[40], keepdim=false) : f32[]\n}\n"));
  assert_false(parse_quietly("graph g(mode=infer) {\n  input x : f32[2,2,2,2,2,2,2,2,2]\n}\n"));
  assert_false(parse_quietly("graph g(mode=infer) {\n  input x : f32[2]\n  %1 = relu(x) : f32[2]\n  output y = %7\n}\n"));
}

static void test_malformed_kernels(void **state) {
  (void)state;
  char *text = model_text("examples/mnist_mlp.dl", DRV_STAGE_KERNELS);
  fuzz(text);
  free(text);
  const char *head = "program p {\n  buffer x#0 : f32[4] input\n  buffer y#1 : f32[4] output entry=infer\n"
                     "  entry infer {\n    kernel k0_a [relu] -> y#1 : f32[4] flops=4\n      body = ";
  const char *bodies[] = {"relu(x#0[i0])\n  }\n}\n", "relu(x#0[i1])\n  }\n}\n", "relu(y#0[i0])\n  }\n}\n",
                          "relu(x#0[i0, i0])\n  }\n}\n", "acc\n  }\n}\n", "add(x#0[i0], 1:i32)\n  }\n}\n",
                          "((((((((((\n", "relu(x#9[i0])\n  }\n}\n"};
  for (int i = 0; i < 8; i++) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", head, bodies[i]);
    assert_int_equal(parse_quietly(buf), i == 0);
  }
  char deep[8000] = "program p {\n  buffer x#0 : f32[4] input\n  entry infer {\n    kernel k0 [] -> x#0 : f32[4]\n      body = ";
  for (int i = 0; i < 1000; i++) strcat(deep, "neg(");
  assert_false(parse_quietly(deep));
}

/* ---- diagnostics ---- */
static void test_type_mismatch_location(void **state) {
  (void)state;
  const char *text = "graph g(mode=infer) {\n"
                     "  input x : f32[4,3]\n"
                     "  param W : f32[3,2] = zeros\n"
                     "  %2 = matmul(x, W) : f32[4,5]  # t.dl:1:2\n"
                     "  output y = %2\n"
                     "}\n";
  Arena *a = arena_new();
  Mem m;
  mem_open(&m);
  Diag d;
  diag_init(&d, m.f);
  IrModule mod;
  assert_false(ir_parse_module(a, "bad.dlir", text, &mod, &d));
  char *out = mem_close(&m);
  assert_string_equal(d.first,
                      "bad.dlir:4:23: error: type mismatch: matmul is printed as f32[4,5] but its operands give f32[4,2]");
  assert_non_null(strstr(out, "  %2 = matmul(x, W) : f32[4,5]  # t.dl:1:2\n"));
  assert_non_null(strstr(out, "\n                        ^\n"));
  free(out);
  diag_free(&d);
  arena_free(a);
}

/* Sparse ids and leaves after their users are renumbered; names, quoted
 * words and locations are restored onto the nodes. */
static void test_sparse_ids_and_locations(void **state) {
  (void)state;
  const char *text = "# hand-written\n"
                     "graph \"my model\"(mode=infer) {\n"
                     "  %100 = relu(\"x y\") : f32[2]  # h \"dir:1/a.dl\":7:9\n"
                     "  input \"x y\" : f32[2]\n"
                     "  %7 = neg(%100) : f32[2]  # b.dl:3:4\n"
                     "  output out = %7\n"
                     "}\n";
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  IrModule mod;
  assert_true(ir_parse_module(a, "s.dlir", text, &mod, &d));
  assert_int_equal(mod.n_graphs, 1);
  Graph *g = mod.graphs[0];
  assert_int_equal(g->n_nodes, 3);
  assert_int_equal(g->nodes[0]->op, OP_INPUT);
  assert_int_equal(g->nodes[1]->op, OP_RELU);
  assert_string_equal(g->nodes[1]->name, "h");
  assert_string_equal(g->nodes[1]->loc.file, "dir:1/a.dl");
  assert_int_equal(g->nodes[1]->loc.line, 7);
  assert_int_equal(g->nodes[1]->loc.col, 9);
  assert_int_equal(g->nodes[2]->in[0], 1);
  assert_int_equal(g->outputs[0].node, 2);
  char *out = print_module(&mod);
  assert_string_equal(out, "graph \"my model\"(mode=infer) {\n"
                           "  input \"x y\" : f32[2]\n"
                           "  ; forward\n"
                           "  %1 = relu(\"x y\") : f32[2]  # h \"dir:1/a.dl\":7:9\n"
                           "  %2 = neg(%1) : f32[2]  # b.dl:3:4\n"
                           "  output out = %2\n"
                           "}\n");
  assert_round_trip("s2.dlir", out);
  free(out);
  diag_free(&d);
  arena_free(a);
}

/* Kernel fields that the printer shows only when they differ from their
 * defaults survive: alias, init, phase, flops, id, members, dtype suffixes. */
static void test_kernel_fields(void **state) {
  (void)state;
  const char *text = "program p {\n"
                     "  buffer x#0 : f32[2,2] param init=uniform(-1, 1)\n"
                     "  buffer x#1 : f32[4] grad entry=train offset=64 alias=x#0\n"
                     "  buffer n#2 : i32[4] temp entry=train offset=0\n"
                     "  buffer @rng#3 : i32[4] rng\n"
                     "  arena 128 bytes\n"
                     "  entry train {\n"
                     "    kernel odd [\"update \\\"x\\\"\"] -> n#2 : i32[4] sum over [2] accumulate phase=update flops=9 id=4 "
                     "members=[3,1]  # m.dl:1:1\n"
                     "      body = cast(add(x#0[(i0 / 2), (i0 % 2)] if (i1 < 1) else -inf, rand(i1, salt=7)), i32)\n"
                     "      epilogue = add(acc:i32, select(index(i0, i32), 3:i32, -2:i32))\n"
                     "  }\n"
                     "}\n";
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  IrModule mod;
  assert_true(ir_parse_module(a, "k.dlir", text, &mod, &d));
  Program *p = mod.prog;
  assert_non_null(p);
  assert_int_equal(p->n_bufs, 4);
  assert_int_equal(p->bufs[1].alias, 0);
  assert_int_equal(p->bufs[1].offset, 64);
  assert_int_equal(p->bufs[0].init.kind, DLRT_INIT_UNIFORM);
  assert_int_equal(p->rng_buf, 3);
  assert_int_equal(p->arena_bytes, 128);
  Kernel *k = p->entries[ENTRY_TRAIN].kernels[0];
  assert_int_equal(k->id, 4);
  assert_int_equal(k->phase, PHASE_UPDATE);
  assert_int_equal(k->flops, 9);
  assert_true(k->accumulate);
  assert_int_equal(k->n_members, 2);
  assert_int_equal(k->members[0], 3);
  assert_int_equal(k->body->dtype, DT_I32);
  assert_int_equal(k->epilogue->b->c->i, -2);
  assert_int_equal(k->epilogue->b->c->dtype, DT_I32);
  char *out = print_module(&mod);
  assert_string_equal(out, text);
  free(out);
  diag_free(&d);
  arena_free(a);
}

int main(int argc, char **argv) {
  src_dir = argc > 1 ? argv[1] : ".";
  conf_dir = argc > 2 ? argv[2] : "../shared/conformance";
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_type_mismatch_location),   cmocka_unit_test(test_sparse_ids_and_locations),
      cmocka_unit_test(test_kernel_fields),            cmocka_unit_test(test_malformed_graphs),
      cmocka_unit_test(test_malformed_kernels),        cmocka_unit_test(test_round_trip_examples),
      cmocka_unit_test(test_round_trip_conformance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
