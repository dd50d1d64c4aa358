/* grad.h — private interface between autodiff.c (the reverse walk and the
 * gradient accumulator) and grad_rules.c (one vector-Jacobian rule per op). */
#ifndef PASSES_GRAD_H
#define PASSES_GRAD_H

#include <stdbool.h>

#include "ir/ir.h"

typedef struct {
  Graph *g;
  int n_fwd;    /* nodes [0, n_fwd) are the forward graph being differentiated */
  int *grad;    /* per forward node: its accumulated gradient node id, or -1 */
  bool *needs;  /* per forward node: a trainable param depends on it */
} GradCtx;

/* True if gradient flowing into forward node `id` is needed. */
static inline bool grad_wanted(const GradCtx *c, int id) { return id >= 0 && id < c->n_fwd && c->needs[id]; }
/* Add-or-set: grad[id] := grad[id] + gv (or gv if none yet). gv must have the
 * node's shape. Ignored when the gradient of `id` is not wanted. */
void grad_accum(GradCtx *c, int id, int gv);
/* Applies the vector-Jacobian rule of forward node n with upstream gradient gy
 * (shape of n), accumulating into n's operands. */
void grad_rule(GradCtx *c, const Node *n, int gy);

#endif
