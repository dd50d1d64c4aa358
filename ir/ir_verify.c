/* ir_verify.c — structural checks of a graph: topological operand order,
 * arity, dtypes and shapes re-derived with ir_infer, and consistent roles.
 * Run after every pass in tests and with --verify-each. */
#include <string.h>

#include "ir/ir.h"

static bool valid_id(const Graph *g, int id) { return id >= 0 && id < g->n_nodes; }

bool ir_verify(const Graph *g, Diag *d) {
  int before = d->n_errors;
  char b0[128], b1[128];
  for (int i = 0; i < g->n_nodes; i++) {
    const Node *n = g->nodes[i];
    if (n->id != i) diag_error(d, n->loc, "verify: node %d has id %d", i, n->id);
    if ((unsigned)n->op >= OP__COUNT) {
      diag_error(d, n->loc, "verify: node %%%d has an invalid op", i);
      continue;
    }
    bool ok = true;
    for (int j = 0; j < n->nin; j++)
      if (n->in[j] < 0 || n->in[j] >= i) {
        diag_error(d, n->loc, "verify: %%%d (%s) operand %d refers to %%%d, not an earlier node", i,
                   ir_op_names[n->op], j, n->in[j]);
        ok = false;
      }
    if (!ok || op_has(n->op, OPF_LEAF)) {
      if (op_has(n->op, OPF_LEAF) && n->nin != 0) diag_error(d, n->loc, "verify: leaf %%%d has operands", i);
      if (op_has(n->op, OPF_LEAF) && n->op != OP_CONST && n->op != OP_DROPOUT_MASK && !n->attr.leaf.name)
        diag_error(d, n->loc, "verify: leaf %%%d has no name", i);
      if (n->op != OP_DROPOUT_MASK) continue;
    }
    Node *ops[64];
    if (n->nin > 64) continue;
    for (int j = 0; j < n->nin; j++) ops[j] = g->nodes[n->in[j]];
    DType dt;
    Shape sh;
    Diag quiet;
    diag_init(&quiet, NULL);
    if (!ir_infer(n->op, n->nin, ops, &n->attr, &n->shape, n->dtype, &dt, &sh, &quiet, n->loc)) {
      diag_error(d, n->loc, "verify: %%%d (%s) is ill-typed: %s", i, ir_op_names[n->op], quiet.first);
    } else if (dt != n->dtype || !shape_eq(&sh, &n->shape)) {
      diag_error(d, n->loc, "verify: %%%d (%s) is %s but its operands give %s", i, ir_op_names[n->op],
                 shape_str(n->dtype, &n->shape, b0, sizeof b0), shape_str(dt, &sh, b1, sizeof b1));
    }
    diag_free(&quiet);
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (!valid_id(g, g->outputs[i].node)) diag_error(d, (SrcLoc){0}, "verify: output %s is dangling", g->outputs[i].name);
  for (int i = 0; i < g->n_metrics; i++)
    if (!valid_id(g, g->metrics[i].node)) diag_error(d, (SrcLoc){0}, "verify: metric %s is dangling", g->metrics[i].name);
  if (g->loss != -1 && (!valid_id(g, g->loss) || g->nodes[g->loss]->shape.rank != 0))
    diag_error(d, (SrcLoc){0}, "verify: the loss is not a scalar node");
  for (int i = 0; i < g->n_grads; i++) {
    const GradOf *gr = &g->grads[i];
    if (!valid_id(g, gr->param) || !valid_id(g, gr->grad) || g->nodes[gr->param]->op != OP_PARAM ||
        !shape_eq(&g->nodes[gr->param]->shape, &g->nodes[gr->grad]->shape))
      diag_error(d, (SrcLoc){0}, "verify: gradient %d does not match its param", i);
  }
  for (int i = 0; i < g->n_updates; i++) {
    const Update *u = &g->updates[i];
    if (!valid_id(g, u->target) || !valid_id(g, u->value)) {
      diag_error(d, (SrcLoc){0}, "verify: update %d is dangling", i);
      continue;
    }
    const Node *t = g->nodes[u->target], *v = g->nodes[u->value];
    if ((t->op != OP_PARAM && t->op != OP_STATE) || t->dtype != v->dtype || !shape_eq(&t->shape, &v->shape))
      diag_error(d, v->loc, "verify: update of %s: %s := %s", t->attr.leaf.name ? t->attr.leaf.name : "?",
                 shape_str(t->dtype, &t->shape, b0, sizeof b0), shape_str(v->dtype, &v->shape, b1, sizeof b1));
  }
  return d->n_errors == before;
}
