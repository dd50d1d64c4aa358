/* driver.h — the compilation pipeline shared by dlc and dlrun: read and
 * parse a model, build the graphs of its three modes (train, eval, infer),
 * differentiate and add the optimizer update, lower to kernels, generate
 * LLVM code and JIT it into a runnable model description. Each stage can be
 * stopped after (for --emit). */
#ifndef TOOLS_DRIVER_H
#define TOOLS_DRIVER_H

#include <stdbool.h>

#include "backend/backend.h"
#include "frontend/frontend.h"
#include "ir/kernel.h"
#include "runtime/dlrt_model.h"

/* Exit statuses (SPEC §5). */
enum { DRV_OK = 0, DRV_USER_ERROR = 1, DRV_USAGE = 2, DRV_INTERNAL = 3 };

typedef struct {
  const ConstDef *defs;
  int ndefs;
  int opt_level;     /* 0..2 */
  const char *cpu;   /* NULL or "native": the host */
  bool verify_each;  /* verify the graph after every pass */
  bool time_passes;
  const char *print_after; /* --print-after=PASS|all */
  unsigned jit_entries;    /* DRV_STAGE_JIT: bit e compiles entry e (0: every entry) */
  const char *tool;        /* "dlc", "dlrun": errors without a source location are printed as
                            * `TOOL: error: MESSAGE` (NULL: `error: MESSAGE`) */
} DrvOptions;

typedef struct {
  Arena *arena;
  const char *path;
  const char *model;
  Ast *ast;
  Graph *graph[ENTRY__COUNT]; /* NULL where the model has no such entry */
  Program *prog;
  CgModule *mod;
  CgJit *jit, *jit2; /* JIT: the training entry, the other entries (compiled in parallel) */
  DlrtBufDesc *bufs;
  DlrtModelDesc desc;
  double t_frontend, t_passes, t_llvm, t_jit; /* seconds */
} DrvModel;

typedef enum { DRV_STAGE_AST, DRV_STAGE_IR, DRV_STAGE_GRAD, DRV_STAGE_KERNELS, DRV_STAGE_LLVM, DRV_STAGE_JIT } DrvStage;

/* Runs the pipeline up to and including `stage`. Returns a DRV_* status;
 * errors go to d. */
int drv_compile(DrvModel *m, const char *path, const DrvOptions *o, DrvStage stage, Diag *d);
void drv_free(DrvModel *m);
/* Reads a whole file into the arena (NUL-terminated); NULL on error. */
char *drv_read_file(Arena *a, const char *path, size_t *len);
/* Parses "-D NAME=VALUE" text into a ConstDef; false if malformed. */
bool drv_parse_define(const char *arg, ConstDef *out);
double drv_now(void);
/* The run-time description of a kernel program's buffers (allocated from a),
 * with d's model, buffers, arena size, rng buffer and FLOPs filled in; the
 * entry points and thread hook are the caller's to set. */
DlrtBufDesc *drv_program_desc(Arena *a, const Program *p, DlrtModelDesc *d);
/* Parses argv[*i] if it is an option every tool shares: -D NAME=VALUE (or
 * -DNAME=VALUE; VALUE a decimal integer), -O0|-O1|-O2, --cpu=NAME (not
 * empty), --time-passes, --verify-each, --print-after=PASS|all: the options
 * of compilation. Returns 1 when consumed (*i on its last word), 0 when it is
 * not such an option, -1 on a malformed one (message in err). o->defs must
 * have room for max_defs entries. */
int drv_parse_common_option(DrvOptions *o, int max_defs, int argc, char **argv, int *i, char *err, size_t errlen);
/* An error without a source location, as `TOOL: error: MESSAGE` (counted in d). */
void drv_error(Diag *d, const char *tool, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Collects what a call prints into a Diag (r->d, which shares d's sources),
 * then drv_relay_end copies it to d, errors without a location as
 * `TOOL: error: ...`, and adds its error count. */
typedef struct {
  Diag d;
  char *buf;
  size_t len;
  FILE *ms;
} DrvRelay;
Diag *drv_relay_begin(DrvRelay *r, Diag *d);
void drv_relay_end(DrvRelay *r, Diag *d, const char *tool);

#endif
