/* test_sema.c — cmocka tests of sema (AST -> forward IR): the conformance
 * models in every mode with param/state names matching their checkpoints,
 * fn instance naming, for unrolling, -D, mode-dependent dropout/batchnorm and
 * label skipping, matmul/slicing/reduction shapes, op attributes, optimizers,
 * losses, and several errors reported in one run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"
#include "runtime/dlrt.h"

#ifndef CONFORMANCE_DIR
#define CONFORMANCE_DIR "../shared/conformance"
#endif

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

static Graph *build_defs(const char *src, GraphMode mode, const ConstDef *defs, int nd) {
  diag_free(&D);
  diag_init(&D, NULL);
  Ast *ast = fe_parse(A, "s.dl", src, &D);
  return ast ? fe_build_graph(A, ast, mode, defs, nd, &D) : NULL;
}
static Graph *build(const char *src, GraphMode mode) { return build_defs(src, mode, NULL, 0); }

static Graph *build_ok(const char *src, GraphMode mode) {
  Graph *g = build(src, mode);
  if (!g) fprintf(stderr, "unexpected error: %s\n", D.first);
  assert_non_null(g);
  assert_true(ir_verify(g, &D));
  return g;
}

/* The node bound to output NAME. */
static Node *out(Graph *g, const char *name) {
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->outputs[i].name, name) == 0) return g->nodes[g->outputs[i].node];
  fail_msg("no output %s", name);
  return NULL;
}

static void assert_shape(const Node *n, int rank, int64_t d0, int64_t d1, int64_t d2) {
  assert_int_equal(n->shape.rank, rank);
  int64_t d[3] = {d0, d1, d2};
  for (int i = 0; i < rank && i < 3; i++) assert_int_equal(n->shape.d[i], d[i]);
}

static int count_op(const Graph *g, OpKind op) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == op;
  return n;
}

static void test_conformance_models(void **state) {
  (void)state;
  DIR *dp = opendir(CONFORMANCE_DIR);
  if (!dp) skip();
  struct dirent *de;
  int models = 0;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.') continue;
    char path[2048], st[2048];
    snprintf(path, sizeof path, "%s/%s/model.dl", CONFORMANCE_DIR, de->d_name);
    snprintf(st, sizeof st, "%s/%s/params.safetensors", CONFORMANCE_DIR, de->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    fclose(f);
    models++;
    for (int mode = 0; mode < 3; mode++) {
      diag_free(&D);
      diag_init(&D, stderr);
      Graph *g = fe_compile_file(A, path, (GraphMode)mode, NULL, 0, &D);
      assert_non_null(g);
      assert_true(ir_verify(g, &D));
      assert_true(g->n_outputs >= 1);
      if (mode == MODE_INFER) {
        assert_int_equal(g->loss, -1);
        assert_int_equal(g->n_metrics, 0);
        assert_int_equal(count_op(g, OP_LABEL), 0);
      } else {
        assert_true(g->loss >= 0);
        assert_int_equal(g->nodes[g->loss]->shape.rank, 0);
        assert_true(g->opt.kind != OPT_NONE);
      }
      /* every param and state is in the checkpoint under the same name and shape, and back */
      DlrtTensorSet set;
      memset(&set, 0, sizeof set);
      char err[256];
      if (dlrt_st_read(st, &set, err, sizeof err) != 0) fail_msg("%s: %s", st, err);
      int leaves = 0;
      for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->op != OP_PARAM && n->op != OP_STATE) continue;
        leaves++;
        int found = 0;
        for (int k = 0; k < set.n; k++)
          if (strcmp(set.t[k].name, n->attr.leaf.name) == 0) {
            found = 1;
            assert_int_equal(set.t[k].rank, n->shape.rank);
            for (int r = 0; r < n->shape.rank; r++) assert_int_equal(set.t[k].shape[r], n->shape.d[r]);
          }
        if (!found) fail_msg("%s: leaf %s not in the checkpoint", de->d_name, n->attr.leaf.name);
      }
      int in_file = 0;
      for (int k = 0; k < set.n; k++) in_file += strchr(set.t[k].name, '@') == NULL;
      assert_int_equal(in_file, leaves);
      dlrt_st_free(&set);
    }
  }
  closedir(dp);
  assert_true(models >= 10);
}

static const char *leaf_name(Graph *g, int k) {
  int seen = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == OP_PARAM && seen++ == k) return g->nodes[i]->attr.leaf.name;
  return "";
}

static void test_fn_instances(void **state) {
  (void)state;
  Graph *g = build_ok(
      "input x : f32[2, 3]\n"
      "fn lin(x, n) {\n"
      "  param W : f32[x.shape[1], n] = xavier_uniform\n"
      "  return x @ W\n"
      "}\n"
      "fn two(x) {\n"
      "  a = lin(x, 4)\n"           /* named: a */
      "  b = lin(a, 5) + lin(a, 5)\n" /* unnamed: lin0, lin1 */
      "  return b\n"
      "}\n"
      "p = two(x)\n"                   /* p.a.W p.lin0.W p.lin1.W */
      "q = relu(two(x))\n"             /* two0.* */
      "r = lin(x, 2)\n"                /* r.W */
      "r = lin(r, 2)\n"                /* lin0.W: r was bound */
      "output p, q, r\n",
      MODE_INFER);
  const char *want[] = {"p.a.W", "p.lin0.W", "p.lin1.W", "two0.a.W", "two0.lin0.W", "two0.lin1.W", "r.W", "lin0.W"};
  for (int k = 0; k < 8; k++) assert_string_equal(leaf_name(g, k), want[k]);
  assert_shape(out(g, "p"), 2, 2, 5, 0);
  assert_shape(out(g, "r"), 2, 2, 2, 0);
}

static void test_fn_errors(void **state) {
  (void)state;
  assert_null(build("fn f(x) {\n return g(x)\n}\nfn g(x) {\n return f(x)\n}\ninput x : f32[2]\ny = f(x)\n", MODE_TRAIN));
  assert_non_null(strstr(D.first, "recursive call of fn 'f'"));
  assert_null(build("fn relu(x) {\n return x\n}\n", MODE_TRAIN));
  assert_non_null(strstr(D.first, "fn 'relu' has the name of a built-in function"));
  assert_null(build("fn f(x) {\n return x\n}\nfn f(y) {\n return y\n}\n", MODE_TRAIN));
  assert_non_null(strstr(D.first, "fn 'f' is already defined"));
  /* keyword arguments to fns, and fns defined after their use */
  Graph *g = build_ok("input x : f32[2]\ny = scale(k=3, x=x)\noutput y\nfn scale(x, k) {\n return x * k\n}\n", MODE_TRAIN);
  assert_shape(out(g, "y"), 1, 2, 0, 0);
}

static void test_for_and_consts(void **state) {
  (void)state;
  Graph *g = build_ok(
      "const B = 2\n"
      "const C = 3 * B\n"
      "input x : f32[B, C]\n"
      "h = x\n"
      "for i in 1..C/2 { h = h[:, :C - i] }\n" /* i = 1, 2: widths 5, 4 */
      "for i in 0..0 { h = junk }\n"          /* empty range: never evaluated */
      "output h\n",
      MODE_INFER);
  assert_shape(out(g, "h"), 2, 2, 4, 0);
  ConstDef defs[] = {{"B", "8"}};
  g = build_defs("const B = 2\nconst C = 3 * B\ninput x : f32[B, C]\noutput x\n", MODE_TRAIN, defs, 1);
  assert_non_null(g);
  assert_shape(out(g, "x"), 2, 8, 24, 0);
  ConstDef bad[] = {{"B", "abc"}, {"NOPE", "3"}};
  assert_null(build_defs("const B = 2\ninput x : f32[B]\n", MODE_TRAIN, bad, 2));
  assert_int_equal(D.n_errors, 2);
  assert_string_equal(D.first, "s.dl:1:1: error: -D B=abc: value is not an integer");
}

static void test_modes(void **state) {
  (void)state;
  const char *src =
      "input x : f32[4, 3]\nlabel y : i32[4]\n"
      "param g : f32[3] = ones\nparam b : f32[3] = zeros\nstate m : f32[3] = zeros\nstate v : f32[3] = ones\n"
      "h = dropout(batchnorm(x, g, b, m, v), 0.25)\n"
      "for i in 0..2 { h = dropout(h, 0.5) }\n"
      "logits = h * 2\nloss = cross_entropy(logits, y)\nmetric acc = accuracy(logits, y)\n"
      "output logits\ntrain loss with sgd(lr=0.1)\n";
  Graph *g = build_ok(src, MODE_TRAIN);
  assert_int_equal(count_op(g, OP_DROPOUT_MASK), 3);
  assert_int_equal(g->n_updates, 2);
  assert_int_equal(g->n_metrics, 1);
  uint64_t salts[3];
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == OP_DROPOUT_MASK) salts[k++] = g->nodes[i]->attr.dropout.salt;
  assert_true(salts[0] != salts[1] && salts[1] != salts[2] && salts[0] != salts[2]);
  g = build_ok(src, MODE_EVAL);
  assert_int_equal(count_op(g, OP_DROPOUT_MASK), 0);
  assert_int_equal(g->n_updates, 0);
  assert_true(g->loss >= 0);
  assert_int_equal(g->n_metrics, 1);
  g = build_ok(src, MODE_INFER);
  assert_int_equal(g->loss, -1);
  assert_int_equal(g->n_metrics, 0);
  assert_int_equal(count_op(g, OP_LABEL), 0);
  assert_int_equal(g->n_outputs, 1);
}

static void test_shapes(void **state) {
  (void)state;
  Graph *g = build_ok(
      "input v : f32[4]\ninput M : f32[3, 4]\ninput N : f32[4, 5]\ninput T : f32[2, 3, 4]\ninput X : f32[7, 5]\n"
      "a = v @ N\nb = M @ v\nc = v @ v\nd = T @ N\n"
      "e = X[1:-1:2, -1]\nf = X[:100, 2:]\ng = X[3]\nh = M.T\n"
      "i = sum(T, axis=[0, -1], keepdim=true)\nj = mean(T)\nk = argmax(T, -1)\nl = max(T, axis=1)\n"
      "m = flatten(T)\nn = reshape(T, [-1, 2, 3])\no = concat([M, M], -1)\np = transpose(T, [2, 0, 1])\n"
      "output a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p\n",
      MODE_INFER);
  assert_shape(out(g, "a"), 1, 5, 0, 0);
  assert_shape(out(g, "b"), 1, 3, 0, 0);
  assert_shape(out(g, "c"), 0, 0, 0, 0);
  assert_shape(out(g, "d"), 3, 2, 3, 5);
  assert_shape(out(g, "e"), 1, 3, 0, 0);
  assert_shape(out(g, "f"), 2, 7, 3, 0);
  assert_shape(out(g, "g"), 1, 5, 0, 0);
  assert_shape(out(g, "h"), 2, 4, 3, 0);
  Node *i = out(g, "i");
  assert_shape(i, 3, 1, 3, 1);
  assert_int_equal(i->attr.reduce.axes, 5u);
  assert_shape(out(g, "j"), 0, 0, 0, 0);
  assert_int_equal(out(g, "k")->dtype, DT_I32);
  assert_shape(out(g, "k"), 2, 2, 3, 0);
  assert_shape(out(g, "l"), 2, 2, 4, 0);
  assert_shape(out(g, "m"), 2, 2, 12, 0);
  assert_shape(out(g, "n"), 3, 4, 2, 3);
  assert_shape(out(g, "o"), 2, 3, 8, 0);
  assert_shape(out(g, "p"), 3, 4, 2, 3);
  /* the slice of e: start 1 step 2 on axis 0, start 4 on axis 1, then the axis is dropped */
  Node *e = out(g, "e");
  assert_int_equal(e->op, OP_RESHAPE);
  Node *s = g->nodes[e->in[0]];
  assert_int_equal(s->op, OP_SLICE);
  assert_int_equal(s->attr.slice.start[0], 1);
  assert_int_equal(s->attr.slice.step[0], 2);
  assert_int_equal(s->attr.slice.start[1], 4);
}

static void test_attrs_and_literals(void **state) {
  (void)state;
  Graph *g = build_ok(
      "input x : f32[2, 3, 8, 8]\nlabel y : i32[2]\nparam w : f32[4, 3, 3, 3] = kaiming_uniform\n"
      "a = elu(x, alpha=0.5)\nb = leaky_relu(x)\nc = x ** 2\nd = x ** x\ne = pow(x, 3)\nf = 2 ** x\n"
      "g = softmax(x, axis=-3)\nh = conv2d(x, w, stride=[2, 1], pad=1, dilation=2)\n"
      "i = maxpool2d(x, 2)\nj = avgpool2d(x, 3, stride=1, pad=1)\nk = y + 1\nl = global_avgpool(x)\n"
      "m = maximum(x, 0)\n"
      "output a, b, c, d, e, f, g, h, i, j, l, m\n",
      MODE_TRAIN);
  assert_true(out(g, "a")->attr.scalar.v == 0.5f);
  assert_true(out(g, "b")->attr.scalar.v == 0.01f);
  assert_int_equal(out(g, "c")->op, OP_POWS);
  assert_true(out(g, "c")->attr.scalar.v == 2.0f);
  assert_int_equal(out(g, "d")->op, OP_POW);
  assert_int_equal(out(g, "e")->op, OP_POWS);
  assert_int_equal(out(g, "f")->op, OP_POW);
  assert_int_equal(out(g, "g")->attr.axis.axis, 1);
  Node *h = out(g, "h");
  assert_int_equal(h->attr.conv.stride[0], 2);
  assert_int_equal(h->attr.conv.stride[1], 1);
  assert_int_equal(h->attr.conv.dil[0], 2);
  assert_int_equal(h->attr.conv.pad[1], 1);
  assert_shape(h, 4, 2, 4, 3);
  assert_int_equal(h->shape.d[3], 6);
  assert_int_equal(out(g, "i")->attr.pool.stride[0], 2);
  assert_shape(out(g, "j"), 4, 2, 3, 8);
  assert_int_equal(out(g, "j")->shape.d[3], 8);
  assert_shape(out(g, "l"), 2, 2, 3, 0);
  assert_int_equal(out(g, "m")->op, OP_MAXIMUM);
  /* a literal takes the other operand's dtype; assignments name their nodes */
  int k = -1;
  for (int n = 0; n < g->n_nodes; n++)
    if (g->nodes[n]->name && strcmp(g->nodes[n]->name, "k") == 0) k = n;
  assert_true(k >= 0);
  assert_int_equal(g->nodes[k]->dtype, DT_I32);
  assert_int_equal(g->nodes[g->nodes[k]->in[1]]->dtype, DT_I32);
  for (int n = 0; n < g->n_nodes; n++) assert_true(g->nodes[n]->loc.line > 0);
}

static void test_optimizers(void **state) {
  (void)state;
  const char *base = "input x : f32[4]\nparam w : f32[4] = uniform(-0.1, 0.1)\nloss = sum(x * w)\ntrain loss with ";
  char src[512];
  snprintf(src, sizeof src, "%ssgd(0.5, momentum=0.9, nesterov=true, weight_decay=1e-4)\n", base);
  Graph *g = build_ok(src, MODE_TRAIN);
  assert_int_equal(g->opt.kind, OPT_SGD);
  assert_true(g->opt.lr == 0.5f && g->opt.momentum == 0.9f && g->opt.nesterov && g->opt.weight_decay == 1e-4f);
  assert_string_equal(g->loss_name, "loss");
  snprintf(src, sizeof src, "%sadam\n", base);
  g = build_ok(src, MODE_TRAIN);
  assert_int_equal(g->opt.kind, OPT_ADAM);
  assert_true(g->opt.lr == 1e-3f && g->opt.beta1 == 0.9f && g->opt.beta2 == 0.999f && g->opt.eps == 1e-8f);
  assert_true(g->opt.weight_decay == 0.0f);
  snprintf(src, sizeof src, "%sadamw(lr=0.01, beta2=0.99)\n", base);
  g = build_ok(src, MODE_EVAL);
  assert_int_equal(g->opt.kind, OPT_ADAMW);
  assert_true(g->opt.weight_decay == 0.01f && g->opt.beta2 == 0.99f);
  Node *w = g->nodes[1];
  assert_int_equal(w->op, OP_PARAM);
  assert_int_equal(w->attr.leaf.init.kind, DLRT_INIT_UNIFORM);
  assert_true(w->attr.leaf.init.a == -0.1f && w->attr.leaf.init.b == 0.1f);
}

static void test_losses(void **state) {
  (void)state;
  Graph *g = build_ok(
      "input s : f32[4, 3]\nlabel y : i32[4]\nlabel t : f32[4, 3]\n"
      "a = mse(s, t)\nb = l1(s, t)\nc = huber(s, t, delta=0.5)\nd = cross_entropy(s, y)\n"
      "e = bce_with_logits(s, t)\nf = multi_margin(s, y, margin=2)\n"
      "metric acc = accuracy(s, y)\nloss = a + b + c + d + e + f\noutput s\ntrain loss with sgd(lr=1)\n",
      MODE_TRAIN);
  assert_int_equal(g->nodes[g->loss]->shape.rank, 0);
  assert_int_equal(g->nodes[g->metrics[0].node]->dtype, DT_F32);
  assert_int_equal(count_op(g, OP_ONEHOT), 2);
  /* huber's two branches; the class scores picked by cross_entropy and
   * multi_margin (not multiplied by the one-hot: 0 * -inf would be NaN) */
  assert_int_equal(count_op(g, OP_SELECT), 4);
}

static void test_multiple_errors(void **state) {
  (void)state;
  assert_null(build(
      "input x : f32[4, 3]\n"
      "a = foo + 1\n"
      "b = relu(x, x)\n"
      "c = x @ x\n"
      "d = a + b + c\n" /* poisoned: no further error */
      "output a, q\n",
      MODE_TRAIN));
  assert_int_equal(D.n_errors, 4);
  assert_string_equal(D.first, "s.dl:2:5: error: unknown name 'foo'");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conformance_models), cmocka_unit_test(test_fn_instances),
      cmocka_unit_test(test_fn_errors),          cmocka_unit_test(test_for_and_consts),
      cmocka_unit_test(test_modes),              cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_attrs_and_literals), cmocka_unit_test(test_optimizers),
      cmocka_unit_test(test_losses),             cmocka_unit_test(test_multiple_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
