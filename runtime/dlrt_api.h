/* dlrt_api.h — the C API of an ahead-of-time compiled model. Every
 * `model.so` made by `dlc -o` exports these functions behind its own prefix
 * (`mlp_create`, ...; see the generated model.h), plus one fixed-name entry,
 * `dlc_model_describe`, so a program can dlopen any model.
 *
 * Ownership: a model handle is created by *_create and released by
 * *_destroy. Pointers returned by *_describe and *_tensor_info are static
 * and live as long as the library is loaded. Pointers returned by
 * *_error are owned by the handle and valid until its next call. Buffers
 * passed in are only read (inputs, labels) or written (outputs, loss,
 * metrics) during the call and never retained.
 * Functions return DLC_OK or an error code, never abort. */
#ifndef DLRT_API_H
#define DLRT_API_H

#include <stdint.h>

#include "runtime/dlrt_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: ABI, never reordered. */
typedef enum {
  DLC_OK = 0,
  DLC_ERR_NULL = 1,     /* a required pointer is NULL */
  DLC_ERR_NOMEM = 2,
  DLC_ERR_IO = 3,       /* a file cannot be read or written */
  DLC_ERR_MISMATCH = 4, /* a checkpoint of another model, or wrong names/dtypes/shapes */
  DLC_ERR_NO_ENTRY = 5, /* the model has no such entry (no `train`, no `output`) */
  DLC_ERR_ARG = 6,      /* another bad argument (index out of range, ...) */
} DlcStatus;

/* The description of one tensor: role (DLRT_ROLE_*), name, dtype (DLRT_F32,
 * DLRT_I32), shape. */
typedef struct {
  int32_t role;
  const char *name;
  int32_t dtype;
  int32_t rank;
  const int64_t *shape;
} DlcTensorInfo;

typedef struct DlcModel DlcModel;

/* Generic implementations behind the prefixed functions. */
int dlc_api_create(const DlrtModelDesc *desc, uint64_t seed, DlcModel **out);
void dlc_api_destroy(DlcModel *m);
const char *dlc_api_error(const DlcModel *m);
int dlc_api_num_tensors(const DlrtModelDesc *desc);
int dlc_api_tensor_info(const DlrtModelDesc *desc, int i, DlcTensorInfo *out);
/* inputs: one pointer per `input` in declaration order; labels likewise;
 * outputs: one per `output`; metrics: one float per `metric`. */
int dlc_api_infer(DlcModel *m, const void *const *inputs, void *const *outputs);
int dlc_api_train_step(DlcModel *m, const void *const *inputs, const void *const *labels, float *loss);
int dlc_api_eval_step(DlcModel *m, const void *const *inputs, const void *const *labels, float *loss,
                      float *metrics);
int dlc_api_save(DlcModel *m, const char *path);
int dlc_api_load(DlcModel *m, const char *path);
int dlc_api_set_threads(int n);
/* The model instance behind a handle (for runners that drive it generically). */
DlrtModel *dlc_api_model(DlcModel *m);

#ifdef __cplusplus
}
#endif
#endif
