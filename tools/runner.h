/* runner.h — what dlrun does with a runnable model (SPEC §6): train on a
 * dataset with per-epoch reports, evaluate, run one step from safetensors
 * files, predict, and benchmark. Independent of how the model was compiled
 * (JIT from .dl or loaded from an AOT library). */
#ifndef TOOLS_RUNNER_H
#define TOOLS_RUNNER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "runtime/dlrt_model.h"

typedef struct {
  const char *data, *data_dir;
  int epochs;
  uint64_t seed;
  const char *save, *load, *log;
  const char *params, *feed, *grads_out, *params_out, *out; /* step / predict */
  int steps;                                                /* bench */
  /* bench --per-kernel: hooks of the backend's profiler (NULL: off); the
   * counters are reset after warm-up and the table printed at the end */
  void (*profile_reset)(void);
  void (*profile_print)(FILE *out);
  int max_steps;                                            /* train: steps per epoch at most */
  bool quiet;
} RunOptions;

/* Each returns 0 on success or 1 after printing `dlrun: error: ...`. */
int run_train(DlrtModel *m, const RunOptions *o);
int run_eval(DlrtModel *m, const RunOptions *o);
int run_step(DlrtModel *m, const RunOptions *o);
int run_predict(DlrtModel *m, const RunOptions *o);
int run_bench(DlrtModel *m, const RunOptions *o);

#endif
