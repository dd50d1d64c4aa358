/* api.c — the generic C API behind every AOT library's prefixed functions
 * (see dlrt_api.h): handles, feeding by role and order, error codes and
 * messages instead of aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dlrt_api.h"

struct DlcModel {
  DlrtModel *m;
  const DlrtModelDesc *desc;
  char err[2048];
  char *report; /* a checkpoint mismatch report (a line per tensor, so of any
                   length): the error message while set */
};

/* The buffer for a new error message; drops the previous report. */
static char *errbuf(DlcModel *h) {
  free(h->report);
  h->report = NULL;
  return h->err;
}

static int set_err(DlcModel *h, int code, const char *msg) {
  if (h) snprintf(errbuf(h), sizeof h->err, "%s", msg);
  return code;
}

int dlc_api_create(const DlrtModelDesc *desc, uint64_t seed, DlcModel **out) {
  if (!desc || !out) return DLC_ERR_NULL;
  *out = NULL;
  DlcModel *h = calloc(1, sizeof *h);
  if (!h) return DLC_ERR_NOMEM;
  h->desc = desc;
  h->m = dlrt_model_new(desc, seed, h->err, sizeof h->err);
  if (!h->m) {
    free(h);
    return DLC_ERR_NOMEM;
  }
  *out = h;
  return DLC_OK;
}

void dlc_api_destroy(DlcModel *h) {
  if (!h) return;
  dlrt_model_free(h->m);
  free(h->report);
  free(h);
}

const char *dlc_api_error(const DlcModel *h) {
  if (!h) return "null model handle";
  return h->report ? h->report : h->err;
}

DlrtModel *dlc_api_model(DlcModel *h) { return h ? h->m : NULL; }

/* Visible tensors: everything but temporaries and the rng state. */
static int visible(const DlrtBufDesc *b) { return b->role != DLRT_ROLE_TEMP && b->role != DLRT_ROLE_RNG; }

int dlc_api_num_tensors(const DlrtModelDesc *desc) {
  if (!desc) return 0;
  int n = 0;
  for (int i = 0; i < desc->n_bufs; i++) n += visible(&desc->bufs[i]);
  return n;
}

int dlc_api_tensor_info(const DlrtModelDesc *desc, int idx, DlcTensorInfo *out) {
  if (!desc || !out) return DLC_ERR_NULL;
  int n = 0;
  for (int i = 0; i < desc->n_bufs; i++) {
    const DlrtBufDesc *b = &desc->bufs[i];
    if (!visible(b)) continue;
    if (n++ != idx) continue;
    out->role = b->role;
    out->name = b->name;
    out->dtype = b->dtype;
    out->rank = b->rank;
    out->shape = b->shape;
    return DLC_OK;
  }
  return DLC_ERR_ARG;
}

/* Copies data into (dir > 0) or out of (dir < 0) every buffer of `role` for
 * `entry` (-1 = shared), in declaration order. */
static int copy_role(DlcModel *h, int role, int entry, const void *const *in, void *const *out) {
  int k = 0;
  for (int i = 0; i < h->desc->n_bufs; i++) {
    const DlrtBufDesc *b = &h->desc->bufs[i];
    if (b->role != role || b->entry != entry) continue;
    size_t bytes = (size_t)dlrt_numel(b->shape, b->rank) * 4;
    if (in) {
      if (!in[k]) return set_err(h, DLC_ERR_NULL, "a NULL input or label pointer");
      memcpy(dlrt_model_data(h->m, i), in[k], bytes);
    } else {
      if (!out[k]) return set_err(h, DLC_ERR_NULL, "a NULL output pointer");
      memcpy(out[k], dlrt_model_data(h->m, i), bytes);
    }
    k++;
  }
  return DLC_OK;
}

static int count_role(const DlrtModelDesc *d, int role, int entry) {
  int n = 0;
  for (int i = 0; i < d->n_bufs; i++) n += d->bufs[i].role == role && d->bufs[i].entry == entry;
  return n;
}

int dlc_api_infer(DlcModel *h, const void *const *inputs, void *const *outputs) {
  if (!h) return DLC_ERR_NULL;
  if (!h->desc->entries[DLRT_ENTRY_INFER]) return set_err(h, DLC_ERR_NO_ENTRY, "the model has no `output`");
  if ((!inputs && count_role(h->desc, DLRT_ROLE_INPUT, -1)) || !outputs)
    return set_err(h, DLC_ERR_NULL, "inputs and outputs are required");
  int rc = inputs ? copy_role(h, DLRT_ROLE_INPUT, -1, inputs, NULL) : DLC_OK;
  if (rc) return rc;
  if (dlrt_model_run(h->m, DLRT_ENTRY_INFER)) return set_err(h, DLC_ERR_ARG, dlrt_model_error(h->m));
  return copy_role(h, DLRT_ROLE_OUTPUT, DLRT_ENTRY_INFER, NULL, outputs);
}

static int step(DlcModel *h, int entry, const void *const *inputs, const void *const *labels, float *loss,
                float *metrics) {
  if (!h) return DLC_ERR_NULL;
  if (!h->desc->entries[entry])
    return set_err(h, DLC_ERR_NO_ENTRY, entry == DLRT_ENTRY_TRAIN ? "the model has no `train` statement"
                                                                  : "the model has no loss or metric");
  if ((!inputs && count_role(h->desc, DLRT_ROLE_INPUT, -1)) || (!labels && count_role(h->desc, DLRT_ROLE_LABEL, -1)))
    return set_err(h, DLC_ERR_NULL, "inputs and labels are required");
  int rc = inputs ? copy_role(h, DLRT_ROLE_INPUT, -1, inputs, NULL) : DLC_OK;
  if (!rc && labels) rc = copy_role(h, DLRT_ROLE_LABEL, -1, labels, NULL);
  if (rc) return rc;
  if (dlrt_model_run(h->m, entry)) return set_err(h, DLC_ERR_ARG, dlrt_model_error(h->m));
  int lb = dlrt_model_find_role(h->m, DLRT_ROLE_LOSS, entry);
  if (loss) *loss = lb >= 0 ? *(float *)dlrt_model_data(h->m, lb) : 0.0f;
  if (metrics) {
    int k = 0;
    for (int i = 0; i < h->desc->n_bufs; i++)
      if (h->desc->bufs[i].role == DLRT_ROLE_METRIC && h->desc->bufs[i].entry == entry)
        metrics[k++] = *(float *)dlrt_model_data(h->m, i);
  }
  return DLC_OK;
}

int dlc_api_train_step(DlcModel *h, const void *const *inputs, const void *const *labels, float *loss) {
  return step(h, DLRT_ENTRY_TRAIN, inputs, labels, loss, NULL);
}

int dlc_api_eval_step(DlcModel *h, const void *const *inputs, const void *const *labels, float *loss,
                      float *metrics) {
  return step(h, DLRT_ENTRY_EVAL, inputs, labels, loss, metrics);
}

int dlc_api_save(DlcModel *h, const char *path) {
  if (!h || !path) return h ? set_err(h, DLC_ERR_NULL, "no path given") : DLC_ERR_NULL;
  return dlrt_model_save(h->m, path, errbuf(h), sizeof h->err) ? DLC_ERR_IO : DLC_OK;
}

int dlc_api_load(DlcModel *h, const char *path) {
  if (!h || !path) return h ? set_err(h, DLC_ERR_NULL, "no path given") : DLC_ERR_NULL;
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  if (dlrt_st_read(path, &set, errbuf(h), sizeof h->err)) return DLC_ERR_IO;
  char *inner = NULL;
  int rc = dlrt_model_load_set_msg(h->m, &set, 1, 0, &inner);
  dlrt_st_free(&set);
  if (!rc) return DLC_OK;
#define MISMATCH_FMT "%s: checkpoint does not match model %s:\n%s"
  if (inner) {
    size_t n = sizeof MISMATCH_FMT + strlen(path) + strlen(h->desc->model) + strlen(inner);
    h->report = malloc(n);
    if (h->report) snprintf(h->report, n, MISMATCH_FMT, path, h->desc->model, inner);
  }
  if (!h->report) /* out of memory: at least say what went wrong */
    snprintf(h->err, sizeof h->err, MISMATCH_FMT, path, h->desc->model, "(out of memory while listing them)");
#undef MISMATCH_FMT
  free(inner);
  return DLC_ERR_MISMATCH;
}

int dlc_api_set_threads(int n) {
  dlrt_set_threads(n);
  return DLC_OK;
}
