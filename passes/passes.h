/* passes.h — graph→graph passes. Each pass is `bool pass_NAME(Graph *, Diag *)`:
 * it rewrites the graph in place (appending nodes; the node array stays in
 * topological order), reports user errors to `d` and returns false on error. */
#ifndef PASSES_PASSES_H
#define PASSES_PASSES_H

#include <stdbool.h>

#include "ir/ir.h"

/* Reverse-mode automatic differentiation of g->loss (a scalar f32 of a
 * MODE_TRAIN graph). Appends the backward nodes (PHASE_BACKWARD, each at the
 * loc of the forward node it differentiates) and fills g->grads with one entry
 * per non-frozen PARAM, in node order. A param the loss does not depend on
 * gets a CONST 0 of its shape as its gradient. */
bool pass_autodiff(Graph *g, Diag *d);

/* Appends the optimizer step of g->opt (SPEC §4, torch.optim semantics) as
 * PHASE_UPDATE nodes and g->updates entries, for every param in g->grads.
 * Creates the optimizer state leaves (STATE, opt_state=true, zeros):
 * "NAME@momentum" (sgd with momentum), "NAME@m" and "NAME@v" (adam/adamw)
 * and the shared i32[] "@step" (adam/adamw). A param whose gradient is the
 * CONST 0 autodiff gives to params the loss does not reach is left alone, as
 * torch.optim skips params whose .grad is None. No-op for OPT_NONE. */
bool pass_optimizer(Graph *g, Diag *d);

/* Optimisation passes on one graph (after autodiff and the optimizer; listed
 * in passes.def, run by pipeline.c). Each returns true when it changed the
 * graph; errors, if any, go to d. Rewriting helpers: passes/rewrite.h. */
bool pass_simplify(Graph *g, Diag *d); /* constant folding, algebraic identities */
bool pass_cse(Graph *g, Diag *d);      /* common subexpression elimination */
bool pass_dce(Graph *g, Diag *d);      /* dead code elimination */

#endif
