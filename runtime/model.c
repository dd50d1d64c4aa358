/* model.c — model instances: buffer allocation, initialisation, entry
 * calls and checkpoints (see dlrt_model.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dlrt_model.h"

struct DlrtModel {
  const DlrtModelDesc *desc;
  void **bufs;
  void **owned; /* allocations to free */
  int n_owned;
  uint64_t seed;
  char err[256]; /* why the last dlrt_model_run failed */
};

static int64_t desc_numel(const DlrtBufDesc *b) { return dlrt_numel(b->shape, b->rank); }

DlrtModel *dlrt_model_new(const DlrtModelDesc *desc, uint64_t seed, char *err, size_t errlen) {
  if (!desc || desc->n_bufs < 0) {
    snprintf(err, errlen, "no model description");
    return NULL;
  }
  DlrtModel *m = calloc(1, sizeof *m);
  if (!m) goto oom;
  m->desc = desc;
  m->seed = seed;
  m->bufs = calloc((size_t)desc->n_bufs + 1, sizeof(void *));
  m->owned = calloc((size_t)desc->n_bufs + 2, sizeof(void *));
  if (!m->bufs || !m->owned) goto oom;
  char *arena = NULL;
  if (desc->arena_bytes > 0) {
    arena = dlrt_alloc((size_t)desc->arena_bytes);
    if (!arena) goto oom;
    m->owned[m->n_owned++] = arena;
  }
  for (int i = 0; i < desc->n_bufs; i++) {
    const DlrtBufDesc *b = &desc->bufs[i];
    if (b->alias >= 0) continue;
    if (b->offset >= 0 && arena) {
      m->bufs[i] = arena + b->offset;
      continue;
    }
    size_t bytes = (size_t)desc_numel(b) * 4;
    m->bufs[i] = dlrt_alloc(bytes);
    if (!m->bufs[i]) goto oom;
    m->owned[m->n_owned++] = m->bufs[i];
  }
  for (int i = 0; i < desc->n_bufs; i++) {
    const DlrtBufDesc *b = &desc->bufs[i];
    if (b->alias >= 0) m->bufs[i] = m->bufs[b->alias];
    if (b->role == DLRT_ROLE_PARAM || b->role == DLRT_ROLE_STATE || b->role == DLRT_ROLE_OPTSTATE) {
      if (b->dtype == DLRT_F32)
        dlrt_init_tensor(m->bufs[i], b->shape, b->rank, b->init, dlrt_stream_seed(seed, b->name));
      /* i32 state (the step counter) starts at zero */
    }
    if (b->role == DLRT_ROLE_RNG) {
      uint64_t *r = m->bufs[i];
      r[0] = dlrt_stream_seed(seed, "@rng");
      r[1] = 0;
    }
  }
  return m;
oom:
  snprintf(err, errlen, "out of memory while allocating the model's buffers");
  dlrt_model_free(m);
  return NULL;
}

void dlrt_model_free(DlrtModel *m) {
  if (!m) return;
  for (int i = 0; i < m->n_owned; i++) dlrt_free(m->owned[i]);
  free(m->owned);
  free(m->bufs);
  free(m);
}

const DlrtModelDesc *dlrt_model_desc(const DlrtModel *m) { return m->desc; }

int dlrt_model_find(const DlrtModel *m, const char *name, int role, int entry) {
  for (int i = 0; i < m->desc->n_bufs; i++) {
    const DlrtBufDesc *b = &m->desc->bufs[i];
    if (b->role == role && b->entry == entry && strcmp(b->name, name) == 0) return i;
  }
  return -1;
}

int dlrt_model_find_role(const DlrtModel *m, int role, int entry) {
  for (int i = 0; i < m->desc->n_bufs; i++) {
    const DlrtBufDesc *b = &m->desc->bufs[i];
    if (b->role == role && b->entry == entry) return i;
  }
  return -1;
}

void *dlrt_model_data(const DlrtModel *m, int buf) { return buf >= 0 && buf < m->desc->n_bufs ? m->bufs[buf] : NULL; }

int64_t dlrt_model_numel(const DlrtModel *m, int buf) { return desc_numel(&m->desc->bufs[buf]); }

/* The feeds of class indices the entry reads hold classes: an index out of
 * range would select no class (a zero row of the one-hot) and change the
 * loss silently, where PyTorch raises an error. */
static int check_classes(DlrtModel *m, int entry) {
  for (int i = 0; i < m->desc->n_bufs; i++) {
    const DlrtBufDesc *b = &m->desc->bufs[i];
    if (b->classes <= 0 || b->dtype != DLRT_I32 || (b->entry != -1 && b->entry != entry) ||
        (b->role == DLRT_ROLE_LABEL && entry == DLRT_ENTRY_INFER))
      continue;
    const int32_t *v = m->bufs[i];
    int64_t n = desc_numel(b);
    for (int64_t j = 0; j < n; j++)
      if (v[j] < 0 || v[j] >= b->classes) {
        snprintf(m->err, sizeof m->err, "%s %s: value %d at index %lld is not a class index in [0, %lld)",
                 b->role == DLRT_ROLE_LABEL ? "label" : "input", b->name, (int)v[j], (long long)j,
                 (long long)b->classes);
        return 1;
      }
  }
  return 0;
}

const char *dlrt_model_error(const DlrtModel *m) { return m->err; }

int dlrt_model_run(DlrtModel *m, int entry) {
  m->err[0] = 0;
  if (entry < 0 || entry >= DLRT_ENTRY_COUNT || !m->desc->entries[entry]) {
    snprintf(m->err, sizeof m->err, "the model has no %s entry",
             entry == DLRT_ENTRY_TRAIN ? "training" : entry == DLRT_ENTRY_EVAL ? "evaluation" : "inference");
    return 1;
  }
  if (check_classes(m, entry)) return 2;
  m->desc->entries[entry](m->bufs);
  if (entry == DLRT_ENTRY_TRAIN && m->desc->rng_buf >= 0) ((uint64_t *)m->bufs[m->desc->rng_buf])[1]++;
  return 0;
}

static int is_checkpointed(int role) {
  return role == DLRT_ROLE_PARAM || role == DLRT_ROLE_STATE || role == DLRT_ROLE_OPTSTATE;
}

int dlrt_model_save(const DlrtModel *m, const char *path, char *err, size_t errlen) {
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  for (int i = 0; i < m->desc->n_bufs; i++) {
    const DlrtBufDesc *b = &m->desc->bufs[i];
    if (!is_checkpointed(b->role)) continue;
    if (!dlrt_st_add(&set, b->name, b->dtype, b->rank, b->shape, m->bufs[i])) {
      dlrt_st_free(&set);
      snprintf(err, errlen, "out of memory while saving %s", path);
      return 1;
    }
  }
  int rc = dlrt_st_write(path, &set, err, errlen);
  dlrt_st_free(&set);
  return rc;
}

/* A message that grows as lines are added: a mismatch report has a line per
 * tensor and a model may have any number of them (SPEC §7: each mismatch is
 * reported). On out of memory the text is dropped (s = NULL). */
typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} Msg;

static void msg_add(Msg *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg_add(Msg *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if (b->len + (size_t)k + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + (size_t)k + 1) nc *= 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
      free(b->s);
      memset(b, 0, sizeof *b);
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = nc;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)k;
}

/* Copies a report into a caller's fixed buffer. One that does not fit is cut
 * at a line end and says how many lines are left out, never silently. */
static void copy_report(char *err, size_t errlen, const char *msg) {
  if (!err || errlen == 0) return;
  if (!msg) msg = "out of memory while listing the mismatches";
  size_t n = strlen(msg), cut = 0;
  if (n < errlen) {
    memcpy(err, msg, n + 1);
    return;
  }
  for (size_t i = 0; i + 80 < errlen; i++) /* leaves room for the note */
    if (msg[i] == '\n') cut = i;
  if (cut == 0) {
    snprintf(err, errlen, "%s", msg);
    return;
  }
  int more = 0;
  for (size_t i = cut; i < n; i++) more += msg[i] == '\n';
  memcpy(err, msg, cut);
  snprintf(err + cut, errlen - cut, "\n... and %d more lines (the message buffer is too small)", more);
}

static void shape_text(char *buf, size_t n, int32_t dtype, int rank, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "%s[", dtype == DLRT_I32 ? "i32" : "f32");
  for (int i = 0; i < rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

int dlrt_model_load_set_msg(DlrtModel *m, const DlrtTensorSet *set, int require_all, int allow_unknown,
                            char **msg) {
  Msg rep = {0};
  int problems = 0;
  for (int t = 0; t < set->n; t++) {
    const DlrtTensor *x = &set->t[t];
    int found = -1;
    for (int i = 0; i < m->desc->n_bufs && found < 0; i++)
      if (is_checkpointed(m->desc->bufs[i].role) && strcmp(m->desc->bufs[i].name, x->name) == 0) found = i;
    if (found < 0) {
      if (!allow_unknown) {
        msg_add(&rep, "%s%s: not a parameter or state of model %s", problems ? "\n" : "", x->name,
                m->desc->model);
        problems++;
      }
      continue;
    }
    const DlrtBufDesc *b = &m->desc->bufs[found];
    if (!dlrt_tensor_fits(x, b)) {
      char want[128], got[128];
      shape_text(want, sizeof want, b->dtype, b->rank, b->shape);
      shape_text(got, sizeof got, x->dtype, x->rank, x->shape);
      msg_add(&rep, "%s%s: the file has %s, the model expects %s", problems ? "\n" : "", x->name, got,
              want);
      problems++;
    }
  }
  if (require_all) {
    for (int i = 0; i < m->desc->n_bufs; i++) {
      const DlrtBufDesc *b = &m->desc->bufs[i];
      if ((b->role == DLRT_ROLE_PARAM || b->role == DLRT_ROLE_STATE) && !dlrt_st_find(set, b->name)) {
        msg_add(&rep, "%s%s: missing", problems ? "\n" : "", b->name);
        problems++;
      }
    }
  }
  if (problems) {
    *msg = rep.s;
    return 1;
  }
  *msg = NULL;
  for (int t = 0; t < set->n; t++) {
    const DlrtTensor *x = &set->t[t];
    for (int i = 0; i < m->desc->n_bufs; i++)
      if (is_checkpointed(m->desc->bufs[i].role) && strcmp(m->desc->bufs[i].name, x->name) == 0)
        memcpy(m->bufs[i], x->data, x->nbytes);
  }
  return 0;
}

int dlrt_model_load_set(DlrtModel *m, const DlrtTensorSet *set, int require_all, int allow_unknown, char *err,
                        size_t errlen) {
  char *msg = NULL;
  int rc = dlrt_model_load_set_msg(m, set, require_all, allow_unknown, &msg);
  if (rc) copy_report(err, errlen, msg);
  else if (err && errlen) err[0] = 0;
  free(msg);
  return rc;
}

int dlrt_tensor_fits(const DlrtTensor *t, const DlrtBufDesc *b) {
  if (t->dtype != b->dtype) return 0;
  if (b->rank == 0 && t->rank == 1 && t->shape[0] == 1) return 1;
  if (t->rank != b->rank) return 0;
  for (int k = 0; k < b->rank; k++)
    if (t->shape[k] != b->shape[k]) return 0;
  return 1;
}

int dlrt_model_load_msg(DlrtModel *m, const char *path, int require_all, char **msg) {
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  char err[4096];
  *msg = NULL;
  if (dlrt_st_read(path, &set, err, sizeof err)) {
    Msg b = {0};
    msg_add(&b, "%s", err);
    *msg = b.s;
    return 1;
  }
  char *inner = NULL;
  int rc = dlrt_model_load_set_msg(m, &set, require_all, 0, &inner);
  dlrt_st_free(&set);
  if (rc && inner) {
    Msg b = {0};
    msg_add(&b, "%s: checkpoint does not match the model:\n%s", path, inner);
    *msg = b.s;
  }
  free(inner);
  return rc;
}

int dlrt_model_load(DlrtModel *m, const char *path, int require_all, char *err, size_t errlen) {
  char *msg = NULL;
  int rc = dlrt_model_load_msg(m, path, require_all, &msg);
  if (rc) copy_report(err, errlen, msg);
  free(msg);
  return rc;
}
