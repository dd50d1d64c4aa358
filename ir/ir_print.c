/* ir_print.c — the textual form of a graph (--emit=ir, --emit=grad): one
 * value per line with its op, operands, attributes, type and source
 * location; roles (outputs, metrics, loss, grads, updates) at the end. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

static const char *init_name(int k) {
  static const char *const names[] = {"zeros", "ones", "constant", "normal", "uniform",
                                      "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"};
  return k >= 0 && k <= 8 ? names[k] : "?";
}

void ir_print_ref(const Graph *g, int id, FILE *out) {
  const Node *n = g->nodes[id];
  if (op_has(n->op, OPF_LEAF) && n->op != OP_CONST && n->op != OP_DROPOUT_MASK)
    fputs(n->attr.leaf.name, out);
  else
    fprintf(out, "%%%d", id);
}

static void print_ints(FILE *out, const char *key, const int *v, int n) {
  fprintf(out, ", %s=[", key);
  for (int i = 0; i < n; i++) fprintf(out, i ? ",%d" : "%d", v[i]);
  fputc(']', out);
}

static void print_attrs(const Node *n, FILE *out) {
  switch (n->op) {
    case OP_ELU: fprintf(out, ", alpha=%.9g", n->attr.scalar.v); break;
    case OP_LEAKY_RELU: fprintf(out, ", slope=%.9g", n->attr.scalar.v); break;
    case OP_POWS: fprintf(out, ", p=%.9g", n->attr.scalar.v); break;
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: {
      fputs(", axes=[", out);
      int k = 0;
      for (int i = 0; i < 32; i++)
        if (n->attr.reduce.axes & (1u << i)) fprintf(out, k++ ? ",%d" : "%d", i);
      fprintf(out, "], keepdim=%s", n->attr.reduce.keepdim ? "true" : "false");
      break;
    }
    case OP_TRANSPOSE: print_ints(out, "perm", n->attr.perm.perm, n->shape.rank); break;
    case OP_SLICE: case OP_UNSLICE: {
      int r = n->shape.rank;
      fputs(", start=[", out);
      for (int i = 0; i < r; i++) fprintf(out, i ? ",%lld" : "%lld", (long long)n->attr.slice.start[i]);
      fputs("], step=[", out);
      for (int i = 0; i < r; i++) fprintf(out, i ? ",%lld" : "%lld", (long long)n->attr.slice.step[i]);
      fputc(']', out);
      break;
    }
    case OP_CONCAT: case OP_SOFTMAX: case OP_LOG_SOFTMAX: fprintf(out, ", axis=%d", n->attr.axis.axis); break;
    case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER:
      print_ints(out, "stride", n->attr.conv.stride, 2);
      print_ints(out, "pad", n->attr.conv.pad, 2);
      print_ints(out, "dilation", n->attr.conv.dil, 2);
      fprintf(out, ", groups=%d", n->attr.conv.groups);
      break;
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
      print_ints(out, "k", n->attr.pool.k, 2);
      print_ints(out, "stride", n->attr.pool.stride, 2);
      print_ints(out, "pad", n->attr.pool.pad, 2);
      break;
    case OP_DROPOUT_MASK: fprintf(out, "p=%.9g, salt=%" PRIu64, n->attr.dropout.p, n->attr.dropout.salt); break;
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST:
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH:
    case OP_SIGN: case OP_STEP: case OP_CAST: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW:
    case OP_MAXIMUM: case OP_MINIMUM: case OP_GT: case OP_GE: case OP_EQ: case OP_SELECT: case OP_BROADCAST:
    case OP_RESHAPE: case OP_MATMUL: case OP_ONEHOT: case OP__COUNT:
      break;
  }
}

static void print_loc(SrcLoc l, const char *name, FILE *out) {
  if (!l.file && !name) return;
  fputs("  #", out);
  if (name) fprintf(out, " %s", name);
  if (l.file) fprintf(out, " %s:%d:%d", l.file, l.line, l.col);
}

static const char *const phase_names[] = {"forward", "backward", "update"};

void ir_print(const Graph *g, FILE *out) {
  static const char *const modes[] = {"train", "eval", "infer"};
  char b[160];
  fprintf(out, "graph %s(mode=%s) {\n", g->name, modes[g->mode]);
  /* leaves first: the signature */
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (!op_has(n->op, OPF_LEAF) || n->op == OP_CONST || n->op == OP_DROPOUT_MASK) continue;
    fprintf(out, "  %s %s : %s", ir_op_names[n->op], n->attr.leaf.name, shape_str(n->dtype, &n->shape, b, sizeof b));
    if (n->op == OP_PARAM || n->op == OP_STATE) {
      const DlrtInit *in = &n->attr.leaf.init;
      fprintf(out, " = %s", init_name(in->kind));
      if (in->kind == DLRT_INIT_CONSTANT || in->kind == DLRT_INIT_NORMAL) fprintf(out, "(%.9g)", in->a);
      if (in->kind == DLRT_INIT_UNIFORM) fprintf(out, "(%.9g, %.9g)", in->a, in->b);
      if (n->attr.leaf.frozen) fputs(" frozen", out);
      if (n->attr.leaf.opt_state) fputs(" optstate", out);
    }
    print_loc(n->loc, NULL, out);
    fputc('\n', out);
  }
  int phase = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (op_has(n->op, OPF_LEAF) && n->op != OP_CONST && n->op != OP_DROPOUT_MASK) continue;
    if ((int)n->phase != phase) {
      phase = (int)n->phase;
      fprintf(out, "  ; %s\n", phase_names[phase]);
    }
    fprintf(out, "  %%%d = %s(", i, ir_op_names[n->op]);
    if (n->op == OP_CONST) fprintf(out, "%.9g", n->attr.scalar.v);
    for (int j = 0; j < n->nin; j++) {
      if (j) fputs(", ", out);
      ir_print_ref(g, n->in[j], out);
    }
    print_attrs(n, out);
    fprintf(out, ") : %s", shape_str(n->dtype, &n->shape, b, sizeof b));
    print_loc(n->loc, n->name && !op_has(n->op, OPF_LEAF) ? n->name : NULL, out);
    fputc('\n', out);
  }
  for (int i = 0; i < g->n_outputs; i++) {
    fprintf(out, "  output %s = ", g->outputs[i].name);
    ir_print_ref(g, g->outputs[i].node, out);
    fputc('\n', out);
  }
  for (int i = 0; i < g->n_metrics; i++) {
    fprintf(out, "  metric %s = ", g->metrics[i].name);
    ir_print_ref(g, g->metrics[i].node, out);
    fputc('\n', out);
  }
  if (g->loss >= 0) {
    fprintf(out, "  loss %s = ", g->loss_name ? g->loss_name : "loss");
    ir_print_ref(g, g->loss, out);
    fputc('\n', out);
  }
  const Optimizer *o = &g->opt;
  if (o->kind == OPT_SGD)
    fprintf(out, "  optimizer sgd(lr=%.9g, momentum=%.9g, weight_decay=%.9g, nesterov=%s)\n", o->lr, o->momentum,
            o->weight_decay, o->nesterov ? "true" : "false");
  else if (o->kind == OPT_ADAM || o->kind == OPT_ADAMW)
    fprintf(out, "  optimizer %s(lr=%.9g, beta1=%.9g, beta2=%.9g, eps=%.9g, weight_decay=%.9g)\n",
            o->kind == OPT_ADAM ? "adam" : "adamw", o->lr, o->beta1, o->beta2, o->eps, o->weight_decay);
  for (int i = 0; i < g->n_grads; i++) {
    fprintf(out, "  grad %s = ", g->nodes[g->grads[i].param]->attr.leaf.name);
    ir_print_ref(g, g->grads[i].grad, out);
    fputc('\n', out);
  }
  for (int i = 0; i < g->n_updates; i++) {
    fprintf(out, "  update %s = ", g->nodes[g->updates[i].target]->attr.leaf.name);
    ir_print_ref(g, g->updates[i].value, out);
    fputc('\n', out);
  }
  fputs("}\n", out);
}
