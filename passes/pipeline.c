/* pipeline.c — the straight-line pass pipeline (see pipeline.h). */
#include "passes/pipeline.h"

#include "passes/passes.h"

bool pipeline_run_graph(Graph *g, const PipelineOptions *o, Diag *d) {
#define GRAPH_PASS(name, fn, level) \
  if (o->opt_level >= (level)) (void)fn(g, d);
#include "passes/passes.def"
  if (o->verify_each && !ir_verify(g, d)) return false;
  return d->n_errors == 0;
}

bool pipeline_run_kernels(Program *p, const PipelineOptions *o, Diag *d) {
#define KERNEL_PASS(name, fn, level) \
  if (o->opt_level >= (level)) (void)fn(p, d);
#include "passes/passes.def"
  return d->n_errors == 0;
}

void pipeline_print_times(FILE *out) { (void)out; }
