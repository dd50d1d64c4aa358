/* test_parser.c — cmocka tests of the .dl parser: statements, precedence
 * and associativity, slices, calls with keyword arguments, fn/for blocks,
 * newlines inside brackets, error recovery (several errors in one run), the
 * AST printer, and robustness on truncated and garbled input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

static Arena *A;
static Diag D;

static int setup(void **state) {
  (void)state;
  A = arena_new();
  diag_init(&D, NULL);
  return 0;
}
static int teardown(void **state) {
  (void)state;
  diag_free(&D);
  arena_free(A);
  return 0;
}

static Ast *parse(const char *src) {
  diag_free(&D);
  diag_init(&D, NULL);
  return fe_parse(A, "p.dl", src, &D);
}

/* The AST printed as text (for structure checks). */
static char *print(const Ast *ast) {
  static char buf[8192];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  fe_print_ast(ast, f);
  fclose(f);
  return buf;
}

static const Expr *rhs(const Ast *ast, int i) { return ast->top.items[i]->value; }

static void test_statements(void **state) {
  (void)state;
  Ast *ast = parse(
      "model mlp\n"
      "const B = 4\n"
      "input x : f32[B, 2*B]\n"
      "label y : i32[B]\n"
      "param W : f32[8, 3] = normal(std=0.1) frozen\n"
      "state s : f32[] = zeros\n"
      "h = relu(x @ W)\n"
      "output h, x\n"
      "metric acc = accuracy(h, y)\n"
      "train loss with adam(lr=1e-3)\n");
  assert_non_null(ast);
  assert_int_equal(ast->top.n, 10);
  assert_int_equal(ast->top.items[0]->kind, ST_MODEL);
  assert_string_equal(fe_model_name(ast), "mlp");
  const Stmt *p = ast->top.items[4];
  assert_int_equal(p->kind, ST_DECL);
  assert_int_equal(p->decl, DECL_PARAM);
  assert_true(p->frozen);
  assert_int_equal(p->type.ndims, 2);
  assert_int_equal(ast->top.items[5]->type.ndims, 0);
  assert_int_equal(ast->top.items[7]->nnames, 2);
  assert_int_equal(ast->top.items[9]->kind, ST_TRAIN);
  assert_string_equal(ast->top.items[9]->value->args[0].name, "lr");
}

static void test_precedence(void **state) {
  (void)state;
  Ast *ast = parse("a = -x ** 2\nb = x + y * z @ w\nc = x ** y ** z\nd = x - y - z\ne = -2 * x\nf = x ** -1\n");
  assert_non_null(ast);
  const Expr *e = rhs(ast, 0); /* -(x ** 2) */
  assert_int_equal(e->kind, EX_NEG);
  assert_int_equal(e->lhs->kind, EX_BINARY);
  assert_int_equal(e->lhs->op, BIN_POW);
  e = rhs(ast, 1); /* x + ((y * z) @ w) */
  assert_int_equal(e->op, BIN_ADD);
  assert_int_equal(e->rhs->op, BIN_MATMUL);
  assert_int_equal(e->rhs->lhs->op, BIN_MUL);
  e = rhs(ast, 2); /* x ** (y ** z) */
  assert_int_equal(e->op, BIN_POW);
  assert_int_equal(e->lhs->kind, EX_NAME);
  assert_int_equal(e->rhs->op, BIN_POW);
  e = rhs(ast, 3); /* (x - y) - z */
  assert_int_equal(e->op, BIN_SUB);
  assert_int_equal(e->lhs->op, BIN_SUB);
  e = rhs(ast, 4); /* (-2) * x with -2 folded */
  assert_int_equal(e->op, BIN_MUL);
  assert_int_equal(e->lhs->kind, EX_INT);
  assert_int_equal(e->lhs->ival, -2);
  e = rhs(ast, 5);
  assert_int_equal(e->rhs->kind, EX_INT);
  assert_int_equal(e->rhs->ival, -1);
}

static void test_postfix_and_slices(void **state) {
  (void)state;
  Ast *ast = parse("a = x[:, 0:2, ::3, -2:, 1]\nb = W.T.T\nc = x.shape[1]\nd = f(x)[0]\n");
  assert_non_null(ast);
  const Expr *e = rhs(ast, 0);
  assert_int_equal(e->kind, EX_INDEX);
  assert_int_equal(e->nslices, 5);
  assert_true(e->slices[0].is_range && !e->slices[0].start && !e->slices[0].stop && !e->slices[0].step);
  assert_true(e->slices[1].is_range && e->slices[1].start && e->slices[1].stop && !e->slices[1].step);
  assert_true(e->slices[2].is_range && !e->slices[2].start && !e->slices[2].stop && e->slices[2].step);
  assert_int_equal(e->slices[3].start->ival, -2);
  assert_false(e->slices[4].is_range);
  assert_int_equal(rhs(ast, 1)->kind, EX_DOT_T);
  assert_int_equal(rhs(ast, 1)->lhs->kind, EX_DOT_T);
  assert_int_equal(rhs(ast, 2)->kind, EX_SHAPE);
  assert_int_equal(rhs(ast, 3)->kind, EX_INDEX);
  assert_int_equal(rhs(ast, 3)->lhs->kind, EX_CALL);
}

static void test_multiline_and_blocks(void **state) {
  (void)state;
  Ast *ast = parse(
      "y = conv2d(x, w,\n"
      "           stride=[2,\n"
      "                   2],\n"
      "           pad=1)\n"
      "fn block(x, c) {\n"
      "  param w : f32[c, x.shape[1], 3, 3] = kaiming_normal\n"
      "  h = relu(conv2d(x, w, pad=1))\n"
      "  return h\n"
      "}\n"
      "for i in 0..2*2 { h = block(h, 4) }\n"
      "for j in 0..1 {\n"
      "  for k in j..3 {\n"
      "    h = h + k\n"
      "  }\n"
      "}\n");
  assert_non_null(ast);
  assert_int_equal(ast->top.n, 4);
  assert_int_equal(rhs(ast, 0)->nargs, 4);
  const Stmt *fn = ast->top.items[1];
  assert_int_equal(fn->kind, ST_FN);
  assert_int_equal(fn->nnames, 2);
  assert_int_equal(fn->body.n, 3);
  assert_int_equal(fn->body.items[2]->kind, ST_RETURN);
  const Stmt *f = ast->top.items[2];
  assert_int_equal(f->kind, ST_FOR);
  assert_int_equal(f->body.n, 1);
  assert_int_equal(f->value2->op, BIN_MUL);
  assert_int_equal(ast->top.items[3]->body.items[0]->body.n, 1);
  const char *txt = print(ast);
  assert_non_null(strstr(txt, "(fn block (x c)"));
  assert_non_null(strstr(txt, "(= y (call conv2d x w stride=(list 2 2) pad=1))"));
}

static void test_error_recovery(void **state) {
  (void)state;
  /* four independent errors; the good lines in between still parse */
  Ast *ast = parse("a = (1 +\nb = 2\nc = = 3\nd = relu(x\ne = 5\nf = 1 2\n");
  assert_null(ast);
  assert_int_equal(D.n_errors, 4);
  assert_string_equal(D.first, "p.dl:2:3: error: expected ')', found '='");
  ast = parse("fn f(x) {\n  y = @\n  return x\n}\nz = )\n");
  assert_null(ast);
  assert_int_equal(D.n_errors, 2);
  ast = parse("for i in 0..3 {\n  input x : f32[2]\n}\n");
  assert_null(ast);
  assert_string_equal(D.first, "p.dl:2:3: error: 'input' is not allowed inside a for loop (only at the top level)");
}

static void test_model_name_stem(void **state) {
  (void)state;
  diag_free(&D);
  diag_init(&D, NULL);
  Ast *ast = fe_parse(A, "dir/my-net.v2.dl", "x = 1\n", &D);
  assert_non_null(ast);
  assert_string_equal(fe_model_name(ast), "my_net_v2");
  ast = fe_parse(A, "3d.dl", "", &D);
  assert_string_equal(fe_model_name(ast), "_3d");
}

static void test_deep_nesting(void **state) {
  (void)state;
  char *src = malloc(200000);
  strcpy(src, "y = ");
  size_t n = strlen(src);
  for (int i = 0; i < 50000; i++) src[n++] = '(';
  src[n] = 0;
  assert_null(parse(src));
  n = 4;
  for (int i = 0; i < 50000; i++) src[n++] = '-';
  src[n++] = '1';
  src[n] = 0;
  assert_null(parse(src));
  free(src);
}

/* Truncations and byte garbling of a real model must never crash. */
static void test_fuzz(void **state) {
  (void)state;
  const char *model =
      "const B = 4\ninput x : f32[B, 3, 6, 6]\nlabel y : i32[B]\n"
      "fn blk(x, c) {\n  param w : f32[c, x.shape[1], 3, 3] = kaiming_normal\n  return relu(conv2d(x, w, pad=1))\n}\n"
      "h = blk(x, 4)\nfor i in 0..2 { h = blk(h, 4) }\nz = flatten(maxpool2d(h, 2))[:, 1:-1:2] @ ones_like\n"
      "loss = cross_entropy(z, y)\noutput z\ntrain loss with sgd(lr=0.1, momentum=0.9)\n";
  size_t len = strlen(model);
  char buf[1024];
  for (size_t cut = 0; cut <= len; cut++) {
    memcpy(buf, model, cut);
    buf[cut] = 0;
    Ast *ast = parse(buf);
    if (ast) fe_build_graph(A, ast, MODE_TRAIN, NULL, 0, &D);
  }
  unsigned seed = 12345;
  const char garble[] = "()[]{},:=+-*/@.#\n 0a_$\xff";
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(buf, model, len + 1);
    for (int k = 0; k < 3; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t pos = (seed >> 8) % len;
      seed = seed * 1103515245u + 12345u;
      buf[pos] = garble[(seed >> 8) % (sizeof garble - 1)];
    }
    Ast *ast = parse(buf);
    if (ast) fe_build_graph(A, ast, (GraphMode)(iter % 3), NULL, 0, &D);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_statements),          cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_postfix_and_slices),  cmocka_unit_test(test_multiline_and_blocks),
      cmocka_unit_test(test_error_recovery),      cmocka_unit_test(test_model_name_stem),
      cmocka_unit_test(test_deep_nesting),        cmocka_unit_test(test_fuzz),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
