/* lower.h — graph → kernel program. Decides which values get a buffer (the
 * rest are inlined into their consumers: elementwise fusion by substitution)
 * and emits one kernel per materialised value, plus write-back kernels for
 * parameter and state updates. Needs a verified graph; for MODE_TRAIN, after
 * autodiff and the optimizer pass. */
#ifndef PASSES_LOWER_H
#define PASSES_LOWER_H

#include "ir/kernel.h"

typedef struct {
  bool fuse; /* inline elementwise/shape producers into consumers (-O1 and up) */
} LowerOptions;

/* Adds the graph's kernels to p as entry e (ENTRY_TRAIN for MODE_TRAIN, ...),
 * creating or reusing the shared buffers of leaves by name. */
bool lower_graph(const Graph *g, Program *p, EntryKind e, const LowerOptions *o, Diag *d);

#endif
