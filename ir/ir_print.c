/* ir_print.c — the textual form of a graph (--emit=ir, --emit=grad): one
 * value per line with its op, operands, attributes, type and source
 * location; roles (outputs, metrics, loss, grads, updates) at the end. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/ir_parse.h"

const char *ir_init_name(int k) {
  static const char *const names[] = {"zeros", "ones", "constant", "normal", "uniform",
                                      "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"};
  return k >= 0 && k <= 8 ? names[k] : "?";
}

const char *ir_phase_name(Phase p) {
  switch (p) {
    case PHASE_FORWARD: return "forward";
    case PHASE_BACKWARD: return "backward";
    case PHASE_UPDATE: return "update";
  }
  return "?";
}

const char *ir_mode_name(GraphMode m) {
  switch (m) {
    case MODE_TRAIN: return "train";
    case MODE_EVAL: return "eval";
    case MODE_INFER: return "infer";
  }
  return "?";
}

static bool word_char(char ch, bool first) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '.' || ch == '@' || ch == '%' ||
      ch == '/')
    return true;
  return !first && ((ch >= '0' && ch <= '9') || ch == '-');
}

void ir_print_word(FILE *out, const char *s) {
  bool bare = s[0] != 0 && !(s[0] == '%' && s[1] >= '0' && s[1] <= '9');
  for (const char *q = s; bare && *q; q++) bare = word_char(*q, q == s);
  if (bare) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (const char *q = s; *q; q++) {
    if (*q == '"' || *q == '\\') fputc('\\', out);
    if (*q == '\n') fputs("\\n", out);
    else fputc(*q, out);
  }
  fputc('"', out);
}

void ir_print_init(FILE *out, const DlrtInit *in) {
  fputs(ir_init_name(in->kind), out);
  if (in->kind == DLRT_INIT_UNIFORM || in->b != 0)
    fprintf(out, "(%.9g, %.9g)", in->a, in->b);
  else if (in->kind == DLRT_INIT_CONSTANT || in->kind == DLRT_INIT_NORMAL || in->a != 0)
    fprintf(out, "(%.9g)", in->a);
}

void ir_print_loc(FILE *out, SrcLoc l, const char *name) {
  if (!l.file && !name) return;
  fputs("  #", out);
  if (name) {
    fputc(' ', out);
    ir_print_word(out, name);
  }
  if (l.file) {
    fputc(' ', out);
    ir_print_word(out, l.file);
    fprintf(out, ":%d:%d", l.line, l.col);
  }
}

static bool named_leaf(const Node *n) {
  return op_has(n->op, OPF_LEAF) && n->op != OP_CONST && n->op != OP_DROPOUT_MASK;
}

void ir_print_ref(const Graph *g, int id, FILE *out) {
  const Node *n = g->nodes[id];
  if (named_leaf(n))
    ir_print_word(out, n->attr.leaf.name);
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

static void print_role(const Graph *g, const char *kw, const char *name, int id, FILE *out) {
  fprintf(out, "  %s ", kw);
  ir_print_word(out, name);
  fputs(" = ", out);
  ir_print_ref(g, id, out);
  fputc('\n', out);
}

void ir_print(const Graph *g, FILE *out) {
  char b[160];
  fputs("graph ", out);
  ir_print_word(out, g->name);
  fprintf(out, "(mode=%s) {\n", ir_mode_name(g->mode));
  /* leaves first: the signature */
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (!named_leaf(n)) continue;
    fprintf(out, "  %s ", ir_op_names[n->op]);
    ir_print_word(out, n->attr.leaf.name);
    fprintf(out, " : %s", shape_str(n->dtype, &n->shape, b, sizeof b));
    if (n->op == OP_PARAM || n->op == OP_STATE) {
      fputs(" = ", out);
      ir_print_init(out, &n->attr.leaf.init);
      if (n->attr.leaf.frozen) fputs(" frozen", out);
      if (n->attr.leaf.opt_state) fputs(" optstate", out);
    }
    ir_print_loc(out, n->loc, NULL);
    fputc('\n', out);
  }
  int phase = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (named_leaf(n)) continue;
    if ((int)n->phase != phase) {
      phase = (int)n->phase;
      fprintf(out, "  ; %s\n", ir_phase_name(n->phase));
    }
    fprintf(out, "  %%%d = %s(", i, ir_op_names[n->op]);
    if (n->op == OP_CONST) fprintf(out, "%.9g", n->attr.scalar.v);
    for (int j = 0; j < n->nin; j++) {
      if (j) fputs(", ", out);
      ir_print_ref(g, n->in[j], out);
    }
    print_attrs(n, out);
    fprintf(out, ") : %s", shape_str(n->dtype, &n->shape, b, sizeof b));
    ir_print_loc(out, n->loc, n->name && !op_has(n->op, OPF_LEAF) ? n->name : NULL);
    fputc('\n', out);
  }
  for (int i = 0; i < g->n_outputs; i++) print_role(g, "output", g->outputs[i].name, g->outputs[i].node, out);
  for (int i = 0; i < g->n_metrics; i++) print_role(g, "metric", g->metrics[i].name, g->metrics[i].node, out);
  if (g->loss >= 0) print_role(g, "loss", g->loss_name ? g->loss_name : "loss", g->loss, out);
  const Optimizer *o = &g->opt;
  switch (o->kind) {
    case OPT_SGD:
      fprintf(out, "  optimizer sgd(lr=%.9g, momentum=%.9g, weight_decay=%.9g, nesterov=%s)", o->lr, o->momentum,
              o->weight_decay, o->nesterov ? "true" : "false");
      break;
    case OPT_ADAM: case OPT_ADAMW:
      fprintf(out, "  optimizer %s(lr=%.9g, beta1=%.9g, beta2=%.9g, eps=%.9g, weight_decay=%.9g)",
              o->kind == OPT_ADAM ? "adam" : "adamw", o->lr, o->beta1, o->beta2, o->eps, o->weight_decay);
      break;
    case OPT_NONE: break;
  }
  if (o->kind != OPT_NONE) {
    ir_print_loc(out, o->loc, NULL);
    fputc('\n', out);
  }
  for (int i = 0; i < g->n_grads; i++)
    print_role(g, "grad", g->nodes[g->grads[i].param]->attr.leaf.name, g->grads[i].grad, out);
  for (int i = 0; i < g->n_updates; i++)
    print_role(g, "update", g->nodes[g->updates[i].target]->attr.leaf.name, g->updates[i].value, out);
  fputs("}\n", out);
}
