/* pipeline.h — runs the passes of passes.def in a straight line for an
 * optimisation level, with --print-after, --time-passes and --verify-each. */
#ifndef PASSES_PIPELINE_H
#define PASSES_PIPELINE_H

#include <stdio.h>

#include "ir/kernel.h"

typedef struct {
  int opt_level;           /* 0..2 */
  bool verify_each;        /* ir_verify after every graph pass */
  const char *print_after; /* a pass name, "all", or NULL */
  bool time_passes;        /* accumulate per-pass times */
  FILE *out;               /* where --print-after goes (stderr when NULL) */
} PipelineOptions;

/* Graph passes on one graph (after autodiff). False on error. */
bool pipeline_run_graph(Graph *g, const PipelineOptions *o, Diag *d);
/* Kernel passes on the lowered program. False on error. */
bool pipeline_run_kernels(Program *p, const PipelineOptions *o, Diag *d);
/* Prints the --time-passes table of the passes run so far. */
void pipeline_print_times(FILE *out);

/* kernel passes (passes/fuse_epilogue.c, passes/memplan.c) */
bool pass_fuse_epilogue(Program *p, Diag *d);
bool pass_memplan(Program *p, Diag *d);

#endif
