/* pipeline.c — the straight-line pass pipeline (see pipeline.h). The pass
 * list is passes.def; this file adds what every pass gets for free: the
 * -O level gate, verification, --print-after, timing and DLC_DEBUG output.
 * The timing table is process-wide (a compiler run is one process). */
#include "passes/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/passes.h"

typedef enum { ROW_PHASE, ROW_GRAPH_PASS, ROW_KERNEL_PASS } RowKind;
typedef struct {
  const char *name;
  RowKind kind;
  double secs;
  int runs, changed;
} TimeRow;

#define MAX_ROWS 64
static TimeRow rows[MAX_ROWS];
static int n_rows;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int pipeline_debug_level(void) {
  const char *s = getenv("DLC_DEBUG");
  return s ? atoi(s) : 0;
}

static void record(const char *name, RowKind kind, double secs, bool changed) {
  TimeRow *r = NULL;
  for (int i = 0; i < n_rows && !r; i++)
    if (rows[i].kind == kind && !strcmp(rows[i].name, name)) r = &rows[i];
  if (!r) {
    if (n_rows == MAX_ROWS) return;
    r = &rows[n_rows++];
    r->name = name;
    r->kind = kind;
  }
  r->secs += secs;
  r->runs++;
  r->changed += changed;
}

void pipeline_time_phase(const char *phase, double secs) { record(phase, ROW_PHASE, secs, false); }

void pipeline_reset_times(void) { n_rows = 0; }

void pipeline_print_times(FILE *out) {
  static const char *const kinds[] = {"phase", "graph pass", "kernel pass"};
  double total = 0;
  for (int i = 0; i < n_rows; i++) total += rows[i].secs;
  fputs("===--------------------------------------------------------===\n"
        "                  dlc execution time report\n"
        "===--------------------------------------------------------===\n",
        out);
  fprintf(out, "  %10s  %6s  %4s  %7s  %-11s  %s\n", "time (ms)", "share", "runs", "changed", "kind", "name");
  for (int i = 0; i < n_rows; i++) {
    const TimeRow *r = &rows[i];
    char changed[16] = "-";
    if (r->kind != ROW_PHASE) snprintf(changed, sizeof changed, "%d", r->changed);
    fprintf(out, "  %10.3f  %5.1f%%  %4d  %7s  %-11s  %s\n", r->secs * 1e3, total > 0 ? 100.0 * r->secs / total : 0.0,
            r->runs, changed, kinds[r->kind], r->name);
  }
  fprintf(out, "  %10.3f  100.0%%  %4s  %7s  %-11s  %s\n", total * 1e3, "", "", "", "total");
}

bool pipeline_is_pass_name(const char *name) {
  static const char *const phases[] = {"all", "autodiff", "optimizer", "lower"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, phases[i])) return true;
#define GRAPH_PASS(pname, fn, level) \
  if (!strcmp(name, #pname)) return true;
#define KERNEL_PASS(pname, fn, level) \
  if (!strcmp(name, #pname)) return true;
#include "passes/passes.def"
  return false;
}

static FILE *out_of(const PipelineOptions *o) { return o->out ? o->out : stderr; }

static bool print_requested(const PipelineOptions *o, const char *name) {
  return o->print_after && (!strcmp(o->print_after, "all") || !strcmp(o->print_after, name));
}

static const char *mode_name(GraphMode m) {
  switch (m) {
    case MODE_TRAIN: return "train";
    case MODE_EVAL: return "eval";
    case MODE_INFER: return "infer";
  }
  return "?";
}

/* --print-after (whether or not it changed) and DLC_DEBUG=2 (when changed). */
static void maybe_print_graph(const PipelineOptions *o, const char *name, const Graph *g, bool changed, int debug) {
  if (!print_requested(o, name) && !(debug >= 2 && changed)) return;
  FILE *f = out_of(o);
  fprintf(f, "; *** IR after %s (graph %s, mode=%s) ***%s\n", name, g->name, mode_name(g->mode),
          changed ? "" : " (unchanged)");
  if (changed) ir_print(g, f);
  fflush(f);
}

static void maybe_print_kernels(const PipelineOptions *o, const char *name, const Program *p, bool changed,
                                int debug) {
  if (!print_requested(o, name) && !(debug >= 2 && changed)) return;
  FILE *f = out_of(o);
  fprintf(f, "; *** kernels after %s (model %s) ***%s\n", name, p->model, changed ? "" : " (unchanged)");
  if (changed) kir_print(p, f);
  fflush(f);
}

/* "dlc-debug: graph pass cse on m(train): changed, 0.012 ms"; phases have no "changed". */
static void debug_line(const PipelineOptions *o, const char *what, const char *name, const char *on, int changed,
                       double secs) {
  fprintf(out_of(o), "dlc-debug: %s %s on %s: %s%.3f ms\n", what, name, on,
          changed < 0 ? "" : changed ? "changed, " : "unchanged, ", secs * 1e3);
}

void pipeline_after_graph_phase(const PipelineOptions *o, const char *phase, const Graph *g, double secs) {
  int debug = pipeline_debug_level();
  record(phase, ROW_PHASE, secs, true);
  if (debug >= 1) debug_line(o, "phase", phase, g->name, -1, secs);
  maybe_print_graph(o, phase, g, true, debug);
}

void pipeline_after_kernel_phase(const PipelineOptions *o, const char *phase, const Program *p, double secs) {
  int debug = pipeline_debug_level();
  record(phase, ROW_PHASE, secs, true);
  if (debug >= 1) debug_line(o, "phase", phase, p->model, -1, secs);
  maybe_print_kernels(o, phase, p, true, debug);
}

static bool verify_after(const Graph *g, const char *pass, const PipelineOptions *o, Diag *d) {
#ifdef NDEBUG
  if (!o->verify_each) return true;
#else
  (void)o;
#endif
  if (ir_verify(g, d)) return true;
  diag_error(d, (SrcLoc){0}, "internal error: the graph %s (mode=%s) is invalid after pass %s", g->name,
             mode_name(g->mode), pass);
  return false;
}

static bool run_graph_pass(Graph *g, const char *name, bool (*fn)(Graph *, Diag *), const PipelineOptions *o,
                           Diag *d, int debug) {
  int errors = d->n_errors;
  double t0 = now();
  bool changed = fn(g, d);
  double secs = now() - t0;
  record(name, ROW_GRAPH_PASS, secs, changed);
  if (debug >= 1) {
    char on[160];
    snprintf(on, sizeof on, "%s(%s)", g->name, mode_name(g->mode));
    debug_line(o, "graph pass", name, on, changed, secs);
  }
  if (d->n_errors > errors) return false;
  maybe_print_graph(o, name, g, changed, debug);
  return verify_after(g, name, o, d);
}

bool pipeline_run_graph(Graph *g, const PipelineOptions *o, Diag *d) {
  int debug = pipeline_debug_level();
#define GRAPH_PASS(name, fn, level) \
  if (o->opt_level >= (level) && !run_graph_pass(g, #name, fn, o, d, debug)) return false;
#include "passes/passes.def"
  return d->n_errors == 0;
}

static bool run_kernel_pass(Program *p, const char *name, bool (*fn)(Program *, Diag *), const PipelineOptions *o,
                            Diag *d, int debug) {
  int errors = d->n_errors;
  double t0 = now();
  bool changed = fn(p, d);
  double secs = now() - t0;
  record(name, ROW_KERNEL_PASS, secs, changed);
  if (debug >= 1) debug_line(o, "kernel pass", name, p->model, changed, secs);
  if (d->n_errors > errors) return false;
  maybe_print_kernels(o, name, p, changed, debug);
  return true;
}

bool pipeline_run_kernels(Program *p, const PipelineOptions *o, Diag *d) {
  int debug = pipeline_debug_level();
#define KERNEL_PASS(name, fn, level) \
  if (o->opt_level >= (level) && !run_kernel_pass(p, #name, fn, o, d, debug)) return false;
#include "passes/passes.def"
  return d->n_errors == 0;
}
