/* rewrite.h — the graph rewriting shared by the graph passes (simplify, cse,
 * dce): a forwarding map ("replace all uses of node A by node B") and
 * compaction (drop nodes, restore topological order, renumber ids, remap the
 * roles). Passes visit nodes in id order, resolve each node's operands
 * through the map first, and may append new nodes (they are moved in front of
 * their first user by compaction). Locations, phases and names of surviving
 * nodes are never touched. */
#ifndef PASSES_REWRITE_H
#define PASSES_REWRITE_H

#include <stdbool.h>

#include "ir/ir.h"

typedef struct {
  Graph *g;
  int *fwd; /* fwd[i]: the node that replaces i (i itself when none) */
  int cap;  /* entries of fwd; nodes appended later map to themselves */
  int n_replaced;
} Rewriter;

void rw_init(Rewriter *r, Graph *g);
/* The node that finally stands for `id` (follows chains of replacements). */
int rw_find(Rewriter *r, int id);
/* Every use of `old` (operands and roles) becomes a use of `with`; `old` is
 * dropped at rw_commit. `with` must not depend on `old`. Named leaves
 * (input, label, param, state) cannot be replaced. */
void rw_replace(Rewriter *r, int old, int with);
/* Resolves the operands of n through the map (call before inspecting n). */
void rw_resolve_operands(Rewriter *r, Node *n);
/* Applies the replacements to every operand and role, drops the replaced
 * nodes and compacts the graph. No-op when nothing was replaced. */
void rw_commit(Rewriter *r);

/* Drops the nodes with keep[i] false (no kept node or role may refer to
 * them), re-sorts the rest topologically (stable: the original order is kept
 * wherever it is already valid, appended nodes move in front of their first
 * user), renumbers ids and remaps operands and roles. */
void rw_compact(Graph *g, const bool *keep);

/* A new array live[n_nodes + 1] (in g's arena) with the graph's roots true:
 * outputs, metrics, the loss, gradients and their parameters, updates. */
bool *rw_roots(Graph *g);

/* INPUT, LABEL, PARAM, STATE: the model's interface, never merged or dropped. */
static inline bool rw_is_named_leaf(OpKind op) {
  return op == OP_INPUT || op == OP_LABEL || op == OP_PARAM || op == OP_STATE;
}

#endif
