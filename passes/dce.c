/* dce.c — dead code elimination. Keeps every node reachable (through
 * operands) from the graph's roles: outputs, metrics, the loss, gradients
 * and updates (both the updated leaf and its new value); drops the rest.
 * Named leaves (input, label, param, state) are always kept: they are the
 * model's interface (buffers, checkpoints, feeds) even when a mode does not
 * read them. Unused constants and dropout masks are dropped (a mask's draws
 * depend only on its salt, so dropping one never changes another).
 * Needs: a valid graph in topological order. Uses rw_compact. */
#include "passes/passes.h"
#include "passes/rewrite.h"

bool pass_dce(Graph *g, Diag *d) {
  (void)d;
  int n = g->n_nodes;
  bool *live = rw_roots(g);
  int n_live = 0;
  /* operands precede their users, so one backward sweep reaches everything */
  for (int i = n - 1; i >= 0; i--) {
    const Node *nd = g->nodes[i];
    if (rw_is_named_leaf(nd->op)) live[i] = true;
    if (!live[i]) continue;
    n_live++;
    for (int j = 0; j < nd->nin; j++) live[nd->in[j]] = true;
  }
  if (n_live == n) return false;
  rw_compact(g, live);
  return true;
}
