/* autodiff.c — reverse-mode automatic differentiation as a graph→graph pass.
 * Marks the forward nodes a trainable param flows into, then walks the
 * forward graph in reverse topological order from the loss, applying one
 * vector-Jacobian rule per op (grad_rules.c) and accumulating gradients with
 * an add-or-set helper. New nodes are PHASE_BACKWARD at the loc of the forward
 * node they differentiate. Relies on ir/ builders for shapes. */
#include <stdlib.h>
#include <string.h>

#include "passes/grad.h"
#include "passes/passes.h"

void grad_accum(GradCtx *c, int id, int gv) {
  if (!grad_wanted(c, id)) return;
  DL_ASSERT(gv >= 0);
  Graph *g = c->g;
  DL_ASSERT(shape_eq(&g->nodes[gv]->shape, &g->nodes[id]->shape));
  if (c->grad[id] < 0) {
    c->grad[id] = gv;
  } else {
    c->grad[id] = ir_bin(g, OP_ADD, c->grad[id], gv, g->nodes[id]->loc, NULL);
  }
}

/* needs[i]: node i is f32 and depends (through differentiable ops) on a
 * non-frozen param. */
static void mark_needs(GradCtx *c) {
  const Graph *g = c->g;
  for (int i = 0; i < c->n_fwd; i++) {
    const Node *n = g->nodes[i];
    bool need = false;
    if (n->dtype != DT_F32) {
      need = false;
    } else if (n->op == OP_PARAM) {
      need = !n->attr.leaf.frozen;
    } else if (!op_has(n->op, OPF_LEAF) && !op_has(n->op, OPF_NONDIFF)) {
      for (int j = 0; j < n->nin && !need; j++) need = c->needs[n->in[j]];
    }
    c->needs[i] = need;
  }
}

bool pass_autodiff(Graph *g, Diag *d) {
  if (g->mode != MODE_TRAIN || g->loss < 0) {
    diag_error(d, (SrcLoc){0}, "autodiff: the graph has no loss to differentiate (not a training graph)");
    return false;
  }
  const Node *loss = g->nodes[g->loss];
  if (loss->dtype != DT_F32 || shape_numel(&loss->shape) != 1) {
    char b[128];
    diag_error(d, loss->loc, "the loss must be a scalar f32, got %s",
               shape_str(loss->dtype, &loss->shape, b, sizeof b));
    return false;
  }
  GradCtx c;
  c.g = g;
  c.n_fwd = g->n_nodes;
  c.grad = ARENA_ARRAY(g->arena, int, c.n_fwd);
  c.needs = ARENA_ARRAY(g->arena, bool, c.n_fwd);
  for (int i = 0; i < c.n_fwd; i++) c.grad[i] = -1;
  mark_needs(&c);

  if (c.needs[g->loss]) c.grad[g->loss] = ir_const(g, 1.0f, DT_F32, loss->shape, loss->loc);
  for (int i = g->loss; i >= 0; i--) {
    if (c.grad[i] < 0 || !c.needs[i]) continue;
    const Node *n = g->nodes[i];
    grad_rule(&c, n, c.grad[i]);
  }
  for (int i = 0; i < c.n_fwd; i++) {
    const Node *n = g->nodes[i];
    if (n->op != OP_PARAM || n->attr.leaf.frozen || n->dtype != DT_F32) continue;
    int gv = c.grad[i];
    if (gv < 0) gv = ir_const(g, 0.0f, DT_F32, n->shape, n->loc);
    ir_add_grad(g, i, gv);
  }
  for (int i = c.n_fwd; i < g->n_nodes; i++) g->nodes[i]->phase = PHASE_BACKWARD;
  return true;
}
