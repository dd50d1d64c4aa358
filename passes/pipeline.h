/* pipeline.h — runs the passes of passes.def in a straight line for an
 * optimisation level, with --print-after, --time-passes, --verify-each and
 * the DLC_DEBUG knob (1: pass names and timings, 2: also the IR after every
 * pass that changed it; 3, LLVM IR, is the backend's). */
#ifndef PASSES_PIPELINE_H
#define PASSES_PIPELINE_H

#include <stdio.h>

#include "ir/kernel.h"

typedef struct {
  int opt_level;           /* 0..2: a pass runs when opt_level >= its level in passes.def */
  bool verify_each;        /* ir_verify after every graph pass (always in builds without NDEBUG) */
  const char *print_after; /* a pass or phase name, "all", or NULL */
  bool time_passes;        /* accumulate per-pass times */
  FILE *out;               /* where --print-after and DLC_DEBUG output go (stderr when NULL) */
} PipelineOptions;

/* Graph passes on one graph (after autodiff). False on error. */
bool pipeline_run_graph(Graph *g, const PipelineOptions *o, Diag *d);
/* Kernel passes on the lowered program. False on error. */
bool pipeline_run_kernels(Program *p, const PipelineOptions *o, Diag *d);

/* True for the names --print-after accepts: "all", every pass of
 * passes.def, and the phases "autodiff", "optimizer", "lower". */
bool pipeline_is_pass_name(const char *name);
/* Hooks for the phases the driver runs outside the pass list: record the
 * phase's time (see pipeline_time_phase) and print the IR it produced when
 * --print-after names it (or is "all"). */
void pipeline_after_graph_phase(const PipelineOptions *o, const char *phase, const Graph *g, double secs);
void pipeline_after_kernel_phase(const PipelineOptions *o, const char *phase, const Program *p, double secs);
/* Records `secs` for a phase row of the --time-passes table (frontend,
 * autodiff, lowering, llvm-opt, jit, ...); rows keep first-seen order. */
void pipeline_time_phase(const char *phase, double secs);
/* Prints the --time-passes table of everything recorded so far. */
void pipeline_print_times(FILE *out);
void pipeline_reset_times(void);
/* The DLC_DEBUG level (0 when unset). */
int pipeline_debug_level(void);

/* kernel passes (passes/fuse_epilogue.c, passes/fold_pad.c, passes/schedule.c, passes/memplan.c) */
bool pass_fuse_epilogue(Program *p, Diag *d);
bool pass_fold_pad(Program *p, Diag *d);
bool pass_schedule(Program *p, Diag *d);
bool pass_memplan(Program *p, Diag *d);

#endif
