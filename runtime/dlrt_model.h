/* dlrt_model.h — a compiled model at run time: the description of its
 * buffers and entry points (made by the JIT driver or embedded in an AOT
 * library), and an instance holding the memory: parameters, state,
 * optimizer state, feeds, results and temporaries. Checkpoints are
 * safetensors (SPEC §7). Depends only on dlrt. */
#ifndef DLRT_MODEL_H
#define DLRT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/dlrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Buffer roles and entries: ABI values, never reordered (equal to the
 * compiler's BufRole / EntryKind). */
enum {
  DLRT_ROLE_INPUT = 0, DLRT_ROLE_LABEL = 1, DLRT_ROLE_PARAM = 2, DLRT_ROLE_STATE = 3, DLRT_ROLE_OPTSTATE = 4,
  DLRT_ROLE_GRAD = 5, DLRT_ROLE_OUTPUT = 6, DLRT_ROLE_METRIC = 7, DLRT_ROLE_LOSS = 8, DLRT_ROLE_TEMP = 9,
  DLRT_ROLE_RNG = 10,
};
enum { DLRT_ENTRY_TRAIN = 0, DLRT_ENTRY_EVAL = 1, DLRT_ENTRY_INFER = 2, DLRT_ENTRY_COUNT = 3 };

typedef struct {
  const char *name;
  int32_t role;
  int32_t dtype;
  int32_t rank;
  int64_t shape[DLRT_MAX_RANK];
  DlrtInit init;
  int32_t entry;  /* -1: shared by all entries */
  int32_t alias;  /* >= 0: same memory as that buffer */
  int64_t offset; /* >= 0: offset in the temp arena */
  int64_t classes; /* > 0: i32 class indices, each in [0, classes) (checked by dlrt_model_run) */
} DlrtBufDesc;

typedef void (*DlrtEntryFn)(void **bufs);

typedef struct {
  const char *model;
  int32_t n_bufs;
  const DlrtBufDesc *bufs;
  DlrtEntryFn entries[DLRT_ENTRY_COUNT]; /* NULL when absent */
  int64_t arena_bytes;
  int32_t rng_buf;                       /* -1 if none */
  const char *optimizer;                 /* e.g. "sgd(lr=0.1, momentum=0.9)", for display */
  int64_t flops[DLRT_ENTRY_COUNT];       /* per call, estimated */
  void (*set_threads)(int n);            /* the thread pool the entries run on */
} DlrtModelDesc;

typedef struct DlrtModel DlrtModel;

/* Allocates every buffer and initialises params/state/optimizer state from
 * `seed` (each tensor from its own stream, named after it). */
DlrtModel *dlrt_model_new(const DlrtModelDesc *desc, uint64_t seed, char *err, size_t errlen);
void dlrt_model_free(DlrtModel *m);
const DlrtModelDesc *dlrt_model_desc(const DlrtModel *m);
/* Buffer index by name, role and entry (entry -1 for shared); -1 if absent. */
int dlrt_model_find(const DlrtModel *m, const char *name, int role, int entry);
/* The first buffer of a role for an entry (-1 if none); e.g. the one input. */
int dlrt_model_find_role(const DlrtModel *m, int role, int entry);
void *dlrt_model_data(const DlrtModel *m, int buf);
int64_t dlrt_model_numel(const DlrtModel *m, int buf);
/* Runs one entry; the train entry also advances the random step. Returns
 * 1 if the model has no such entry, 2 if a feed of class indices the entry
 * reads holds one out of range (nothing runs); dlrt_model_error says why. */
int dlrt_model_run(DlrtModel *m, int entry);
const char *dlrt_model_error(const DlrtModel *m);
/* Checkpoints: params, state and optimizer state (and "@step"). */
int dlrt_model_save(const DlrtModel *m, const char *path, char *err, size_t errlen);
/* Loads tensors by name. `require_all`: every param and state must be
 * present. Each mismatch (unknown name, dtype, shape, missing) is reported
 * in err, a line each, and nothing is changed if any is found. A report
 * longer than errlen is cut at a line end and says how many lines it left
 * out; the _msg forms return the whole report instead, in *msg (malloc'ed,
 * the caller frees it; NULL on success, or if memory ran out). */
int dlrt_model_load(DlrtModel *m, const char *path, int require_all, char *err, size_t errlen);
int dlrt_model_load_set(DlrtModel *m, const DlrtTensorSet *set, int require_all, int allow_unknown, char *err,
                        size_t errlen);
int dlrt_model_load_msg(DlrtModel *m, const char *path, int require_all, char **msg);
int dlrt_model_load_set_msg(DlrtModel *m, const DlrtTensorSet *set, int require_all, int allow_unknown,
                            char **msg);
/* Whether tensor t can fill buffer b: same dtype and shape, or a scalar
 * buffer and a [1] tensor (as PyTorch-made files often hold scalars). */
int dlrt_tensor_fits(const DlrtTensor *t, const DlrtBufDesc *b);

#ifdef __cplusplus
}
#endif
#endif
