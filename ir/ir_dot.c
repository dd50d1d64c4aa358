/* ir_dot.c — Graphviz of a graph (--emit=dot): one DOT node per graph node,
 * forward / backward / update ops in three fill colours, leaves (inputs,
 * labels, params, state, constants, dropout masks) as their own shapes,
 * edges labelled with the operand's type, updates as dashed edges back to
 * the leaf they overwrite, and — when the kernel program lists the graph
 * nodes of each kernel (Kernel.members) — each kernel as a cluster around
 * them. Relies on ir.h and kernel.h only. */
#include <string.h>

#include "ir/ir_parse.h"

static void dot_str(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', out);
    if (*s == '\n') fputs("\\n", out);
    else fputc(*s, out);
  }
}

static const char *phase_colour(Phase p) {
  switch (p) {
    case PHASE_FORWARD: return "#cfe2ff";  /* blue */
    case PHASE_BACKWARD: return "#ffd8a8"; /* orange */
    case PHASE_UPDATE: return "#c3f0ca";   /* green */
  }
  return "white";
}

static const char *leaf_shape(OpKind op) {
  switch (op) {
    case OP_INPUT: return "invhouse";
    case OP_LABEL: return "invtrapezium";
    case OP_PARAM: return "box3d";
    case OP_STATE: return "cylinder";
    case OP_CONST: return "plain";
    case OP_DROPOUT_MASK: return "diamond";
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH:
    case OP_ELU: case OP_LEAKY_RELU: case OP_POWS: case OP_SIGN: case OP_STEP: case OP_CAST: case OP_ADD: case OP_SUB:
    case OP_MUL: case OP_DIV: case OP_POW: case OP_MAXIMUM: case OP_MINIMUM: case OP_GT: case OP_GE: case OP_EQ:
    case OP_SELECT: case OP_BROADCAST: case OP_RESHAPE: case OP_TRANSPOSE: case OP_SLICE: case OP_UNSLICE:
    case OP_CONCAT: case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: case OP_MATMUL: case OP_SOFTMAX:
    case OP_LOG_SOFTMAX: case OP_ONEHOT: case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER:
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
    case OP__COUNT:
      break;
  }
  return "box";
}

/* The roles a node plays, for its label ("loss", "output logits", ...). */
static void print_roles(const Graph *g, int id, FILE *out) {
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i].node == id) fputs("\\noutput ", out), dot_str(out, g->outputs[i].name);
  for (int i = 0; i < g->n_metrics; i++)
    if (g->metrics[i].node == id) fputs("\\nmetric ", out), dot_str(out, g->metrics[i].name);
  if (g->loss == id) fputs("\\nloss ", out), dot_str(out, g->loss_name ? g->loss_name : "loss");
  for (int i = 0; i < g->n_grads; i++)
    if (g->grads[i].grad == id) fputs("\\ngrad ", out), dot_str(out, g->nodes[g->grads[i].param]->attr.leaf.name);
}

static void print_node(const Graph *g, int id, FILE *out) {
  const Node *n = g->nodes[id];
  char b[160];
  bool named = op_has(n->op, OPF_LEAF) && n->op != OP_CONST && n->op != OP_DROPOUT_MASK;
  fprintf(out, "    n%d [label=\"", id);
  if (named) {
    fprintf(out, "%s ", ir_op_names[n->op]);
    dot_str(out, n->attr.leaf.name);
  } else if (n->op == OP_CONST) {
    fprintf(out, "%.6g", n->attr.scalar.v);
  } else {
    fprintf(out, "%%%d %s", id, ir_op_names[n->op]);
    if (n->name) fputs(" (", out), dot_str(out, n->name), fputc(')', out);
  }
  fprintf(out, "\\n%s", shape_str(n->dtype, &n->shape, b, sizeof b));
  print_roles(g, id, out);
  fputc('"', out);
  if (op_has(n->op, OPF_LEAF))
    fprintf(out, ", shape=%s, style=filled, fillcolor=\"%s\"", leaf_shape(n->op),
            n->op == OP_DROPOUT_MASK ? phase_colour(n->phase) : "#eeeeee");
  else
    fprintf(out, ", shape=box, style=\"rounded,filled\", fillcolor=\"%s\"", phase_colour(n->phase));
  if (n->op == OP_CONST) fputs(", fontsize=8", out);
  fputs("];\n", out);
}

void ir_dot(const Graph *g, const Program *p, EntryKind e, FILE *out) {
  Arena *a = arena_new();
  int *cluster = ARENA_ARRAY(a, int, g->n_nodes + 1); /* kernel index + 1, 0 = none */
  const Entry *en = p && e >= 0 && e < ENTRY__COUNT ? &p->entries[e] : NULL;
  if (en)
    for (int k = 0; k < en->n_kernels; k++)
      for (int i = 0; i < en->kernels[k]->n_members; i++) {
        int m = en->kernels[k]->members[i];
        if (m >= 0 && m < g->n_nodes && !cluster[m]) cluster[m] = k + 1;
      }
  fputs("digraph ", out);
  fputc('"', out);
  dot_str(out, g->name);
  fprintf(out, " (%s)\" {\n", ir_mode_name(g->mode));
  fputs("  rankdir=TB;\n  newrank=true;\n"
        "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];\n",
        out);
  fputs("  labelloc=t;\n  label=\"", out);
  dot_str(out, g->name);
  fprintf(out, " (mode=%s): forward (blue), backward (orange), update (green)\";\n", ir_mode_name(g->mode));
  if (en)
    for (int k = 0; k < en->n_kernels; k++) {
      const Kernel *kn = en->kernels[k];
      bool any = false;
      for (int i = 0; i < g->n_nodes && !any; i++) any = cluster[i] == k + 1;
      if (!any) continue;
      fprintf(out, "  subgraph cluster_k%d {\n    label=\"", k);
      dot_str(out, kn->name ? kn->name : "kernel");
      if (kn->ops && kn->ops[0]) fputs("\\n", out), dot_str(out, kn->ops);
      fputs("\";\n    style=\"rounded,dashed\";\n    color=\"#7f7f7f\";\n    fontsize=9;\n", out);
      for (int i = 0; i < g->n_nodes; i++)
        if (cluster[i] == k + 1) print_node(g, i, out);
      fputs("  }\n", out);
    }
  for (int i = 0; i < g->n_nodes; i++)
    if (!cluster[i]) print_node(g, i, out);
  char b[160];
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    for (int j = 0; j < n->nin; j++) {
      const Node *s = g->nodes[n->in[j]];
      fprintf(out, "  n%d -> n%d [label=\"%s\"];\n", n->in[j], i, shape_str(s->dtype, &s->shape, b, sizeof b));
    }
  }
  for (int i = 0; i < g->n_updates; i++)
    fprintf(out, "  n%d -> n%d [style=dashed, color=\"#2b8a3e\", constraint=false, label=\"update\"];\n",
            g->updates[i].value, g->updates[i].target);
  fputs("}\n", out);
  arena_free(a);
}
