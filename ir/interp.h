/* interp.h — the plain reference interpreter of a graph: every op of
 * ops.def as straightforward loops in double precision, with PyTorch's
 * semantics. Every compiled op and every gradient is tested against it. */
#ifndef IR_INTERP_H
#define IR_INTERP_H

#include <stdint.h>

#include "ir/ir.h"

typedef struct {
  int n;        /* number of nodes evaluated (g->n_nodes) */
  double **val; /* val[node id] = the node's value, numel doubles, row-major; i32 stored as doubles */
} InterpState;

/* Evaluates all nodes of g in order. leaf_values[i] gives the data of leaf
 * node i (INPUT/LABEL/PARAM/STATE; other entries are ignored and may be NULL).
 * DROPOUT_MASK draws as the compiled code does: u = dlrt_uniform01(
 * dlrt_mix64(seed ^ salt, step), linear index), keep when u >= p.
 * Returns 0 on success; on error (a missing leaf value, out of memory) writes
 * a message to stderr and returns -1. `out` owns malloc'd arrays: release
 * with interp_free (also after an error). */
int interp_run(const Graph *g, double *const *leaf_values, uint64_t seed, uint64_t step, InterpState *out);
void interp_free(InterpState *s);

#endif
