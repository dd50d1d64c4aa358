/* runner.c — training loop, evaluation, single steps, prediction and
 * benchmarks over a DlrtModel (see runner.h). */
#include "tools/runner.h"
#include "tools/peak.h"

#include <omp.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/dlrt_data.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("dlrun: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

/* Loads a checkpoint; on a mismatch prints the whole report (a line per
 * mismatching tensor, however many) and returns 1. */
static int load_checkpoint(DlrtModel *m, const char *path) {
  char *msg = NULL;
  if (!dlrt_model_load_msg(m, path, 1, &msg)) return 0;
  fail("%s", msg ? msg : "out of memory");
  free(msg);
  return 1;
}

static void shape_text(char *buf, size_t n, const DlrtBufDesc *b) {
  size_t k = (size_t)snprintf(buf, n, "%s[", b->dtype == DLRT_I32 ? "i32" : "f32");
  for (int i = 0; i < b->rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)b->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* ---- binding a dataset to the model's one input and one label ---- */
typedef struct {
  int x, y;          /* buffers */
  int64_t batch;     /* B */
  int loss[DLRT_ENTRY_COUNT];
  int n_metrics;
  const char *metric_names[32];
  int metric[DLRT_ENTRY_COUNT][32];
} Binding;

static int bind(DlrtModel *m, const DlrtDataset *ds, Binding *b) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  memset(b, 0, sizeof *b);
  b->x = b->y = -1;
  int nx = 0, ny = 0;
  for (int i = 0; i < d->n_bufs; i++) {
    if (d->bufs[i].role == DLRT_ROLE_INPUT) b->x = i, nx++;
    if (d->bufs[i].role == DLRT_ROLE_LABEL) b->y = i, ny++;
  }
  if (nx != 1 || ny != 1)
    return fail("a dataset binds to exactly one `input` and one `label`; model %s has %d and %d", d->model, nx, ny);
  const DlrtBufDesc *X = &d->bufs[b->x], *Y = &d->bufs[b->y];
  char sx[128], sy[128];
  shape_text(sx, sizeof sx, X);
  shape_text(sy, sizeof sy, Y);
  if (X->rank < 1 || Y->rank < 1 || X->shape[0] != Y->shape[0])
    return fail("input %s : %s and label %s : %s must share their first (batch) dimension", X->name, sx, Y->name, sy);
  b->batch = X->shape[0];
  int64_t per_x = dlrt_numel(X->shape, X->rank) / b->batch, per_y = dlrt_numel(Y->shape, Y->rank) / b->batch;
  if (X->dtype != DLRT_F32 || per_x != ds->train.feat_size)
    return fail("dataset %s has f32 samples of %lld values; input %s : %s holds %lld per sample", ds->name,
                (long long)ds->train.feat_size, X->name, sx, (long long)per_x);
  if (Y->dtype != ds->train.label_dtype || per_y != ds->train.label_size)
    return fail("dataset %s has %s labels of %lld values; label %s : %s holds %lld per sample", ds->name,
                ds->train.label_dtype == DLRT_I32 ? "i32" : "f32", (long long)ds->train.label_size, Y->name, sy,
                (long long)per_y);
  for (int e = 0; e < DLRT_ENTRY_COUNT; e++) b->loss[e] = dlrt_model_find_role(m, DLRT_ROLE_LOSS, e);
  for (int i = 0; i < d->n_bufs && b->n_metrics < 32; i++)
    if (d->bufs[i].role == DLRT_ROLE_METRIC && d->bufs[i].entry == DLRT_ENTRY_EVAL)
      b->metric_names[b->n_metrics++] = d->bufs[i].name;
  if (b->n_metrics == 0)
    for (int i = 0; i < d->n_bufs && b->n_metrics < 32; i++)
      if (d->bufs[i].role == DLRT_ROLE_METRIC && d->bufs[i].entry == DLRT_ENTRY_TRAIN)
        b->metric_names[b->n_metrics++] = d->bufs[i].name;
  for (int e = 0; e < DLRT_ENTRY_COUNT; e++)
    for (int k = 0; k < b->n_metrics; k++) b->metric[e][k] = dlrt_model_find(m, b->metric_names[k], DLRT_ROLE_METRIC, e);
  return 0;
}

static float scalar(DlrtModel *m, int buf) { return buf >= 0 ? *(float *)dlrt_model_data(m, buf) : NAN; }

typedef struct {
  double loss;
  double metric[32];
  int64_t n;
} Totals;

/* Evaluates every sample of a split: full batches, then each leftover sample
 * as a batch of B copies of itself (so every test sample counts once). */
static int evaluate(DlrtModel *m, const Binding *b, const DlrtSplit *s, Totals *t) {
  memset(t, 0, sizeof *t);
  int e = DLRT_ENTRY_EVAL;
  if (!dlrt_model_desc(m)->entries[e]) return 1;
  float *x = dlrt_model_data(m, b->x);
  void *y = dlrt_model_data(m, b->y);
  int64_t B = b->batch, full = s->n / B;
  for (int64_t i = 0; i < full; i++) {
    dlrt_gather_batch(s, NULL, i * B, B, x, y);
    if (dlrt_model_run(m, e)) return fail("%s", dlrt_model_error(m));
    t->loss += (double)scalar(m, b->loss[e]) * (double)B;
    for (int k = 0; k < b->n_metrics; k++) t->metric[k] += (double)scalar(m, b->metric[e][k]) * (double)B;
  }
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
  if (!idx) return fail("out of memory");
  for (int64_t i = full * B; i < s->n; i++) {
    for (int64_t j = 0; j < B; j++) idx[j] = i;
    dlrt_gather_batch(s, idx, 0, B, x, y);
    if (dlrt_model_run(m, e)) {
      free(idx);
      return fail("%s", dlrt_model_error(m));
    }
    t->loss += (double)scalar(m, b->loss[e]);
    for (int k = 0; k < b->n_metrics; k++) t->metric[k] += (double)scalar(m, b->metric[e][k]);
  }
  free(idx);
  t->n = s->n;
  t->loss /= (double)s->n;
  for (int k = 0; k < b->n_metrics; k++) t->metric[k] /= (double)s->n;
  return 0;
}

static int load_dataset(const RunOptions *o, DlrtDataset *ds) {
  char err[512];
  if (!o->data) return fail("--data DATASET is required (fashion-mnist, mnist, xor, spiral, linreg)");
  if (dlrt_dataset_load(o->data, o->data_dir, o->seed, ds, err, sizeof err)) return fail("%s", err);
  return 0;
}

static void progress(int epoch, int epochs, int64_t i, int64_t n, double loss) {
  int width = 30, fill = n ? (int)(width * i / n) : width;
  fprintf(stderr, "\repoch %d/%d [", epoch, epochs);
  for (int k = 0; k < width; k++) fputc(k < fill ? '=' : (k == fill ? '>' : ' '), stderr);
  fprintf(stderr, "] %lld/%lld  loss %.4f", (long long)i, (long long)n, loss);
  fflush(stderr);
}

int run_train(DlrtModel *m, const RunOptions *o) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  if (!d->entries[DLRT_ENTRY_TRAIN]) return fail("model %s has no `train` statement", d->model);
  if (o->load && load_checkpoint(m, o->load)) return 1;
  DlrtDataset ds;
  if (load_dataset(o, &ds)) return 1;
  Binding b;
  if (bind(m, &ds, &b)) {
    dlrt_dataset_free(&ds);
    return 1;
  }
  int64_t B = b.batch, n = ds.train.n, steps = n / B;
  if (o->max_steps > 0 && o->max_steps < steps) steps = o->max_steps;
  if (n / B == 0) {
    dlrt_dataset_free(&ds);
    return fail("dataset %s has %lld training samples, fewer than the batch size %lld", ds.name, (long long)n,
                (long long)B);
  }
  bool test_loss = b.loss[DLRT_ENTRY_EVAL] >= 0; /* the eval entry's loss (always there with `train`) */
  FILE *log = NULL; /* opened once the run can start: a refused run writes no file */
  if (o->log) {
    log = fopen(o->log, "w");
    if (!log) {
      dlrt_dataset_free(&ds);
      return fail("cannot write %s", o->log);
    }
    fputs("epoch,train_loss", log);
    for (int k = 0; k < b.n_metrics; k++) fprintf(log, ",train_%s", b.metric_names[k]);
    if (test_loss) fputs(",test_loss", log);
    for (int k = 0; k < b.n_metrics; k++) fprintf(log, ",test_%s", b.metric_names[k]);
    fputs(",samples_per_s,seconds\n", log);
  }
  int64_t *perm = malloc(sizeof(int64_t) * (size_t)n);
  float *x = dlrt_model_data(m, b.x);
  void *y = dlrt_model_data(m, b.y);
  bool tty = isatty(2) && !o->quiet;
  int rc = 0;
  int epochs = o->epochs > 0 ? o->epochs : 1;
  printf("model %s: %s, batch %lld, %lld steps per epoch, optimizer %s\n", d->model, ds.name, (long long)B,
         (long long)steps, d->optimizer ? d->optimizer : "(not recorded in a kernel program)");
  fflush(stdout);
  for (int ep = 1; ep <= epochs && rc == 0; ep++) {
    dlrt_shuffle(perm, n, o->seed, (uint64_t)ep);
    double t0 = now(), last = t0, sum_loss = 0, sum_metric[32] = {0};
    for (int64_t s = 0; s < steps; s++) {
      dlrt_gather_batch(&ds.train, perm, s * B, B, x, y);
      if (dlrt_model_run(m, DLRT_ENTRY_TRAIN)) {
        if (tty) fputc('\n', stderr);
        rc = fail("epoch %d step %lld: %s", ep, (long long)s + 1, dlrt_model_error(m));
        break;
      }
      float l = scalar(m, b.loss[DLRT_ENTRY_TRAIN]);
      sum_loss += l;
      for (int k = 0; k < b.n_metrics; k++)
        sum_metric[k] += scalar(m, b.metric[DLRT_ENTRY_TRAIN][k]);
      if (!isfinite(l)) {
        if (tty) fputc('\n', stderr);
        rc = fail("epoch %d step %lld: the loss is %f; training diverged (try a smaller learning rate)", ep,
                  (long long)s + 1, (double)l);
        break;
      }
      double t = now();
      if (tty && t - last > 0.2) {
        progress(ep, epochs, s + 1, steps, sum_loss / (double)(s + 1));
        last = t;
      }
    }
    if (rc) break;
    double secs = now() - t0, sps = (double)(steps * B) / secs;
    if (tty) fputs("\r\033[K", stderr);
    printf("epoch %d/%d  train loss %.4f", ep, epochs, sum_loss / (double)steps);
    for (int k = 0; k < b.n_metrics; k++) printf("  %s %.4f", b.metric_names[k], sum_metric[k] / (double)steps);
    Totals t;
    bool have_test = evaluate(m, &b, &ds.test, &t) == 0;
    if (have_test) {
      printf("  | test");
      if (test_loss) printf(" loss %.4f", t.loss);
      for (int k = 0; k < b.n_metrics; k++) printf("  %s %.4f", b.metric_names[k], t.metric[k]);
    }
    printf("  | %.0f samples/s  %.2fs\n", sps, secs);
    fflush(stdout);
    if (log) {
      fprintf(log, "%d,%.6f", ep, sum_loss / (double)steps);
      for (int k = 0; k < b.n_metrics; k++) fprintf(log, ",%.6f", sum_metric[k] / (double)steps);
      if (test_loss) fprintf(log, ",%.6f", have_test ? t.loss : NAN);
      for (int k = 0; k < b.n_metrics; k++) fprintf(log, ",%.6f", have_test ? t.metric[k] : NAN);
      fprintf(log, ",%.1f,%.3f\n", sps, secs);
      fflush(log);
    }
  }
  free(perm);
  if (log) fclose(log);
  dlrt_dataset_free(&ds);
  if (rc == 0 && o->save) {
    char err[1024];
    if (dlrt_model_save(m, o->save, err, sizeof err)) return fail("%s", err);
    printf("saved %s\n", o->save);
  }
  return rc;
}

int run_eval(DlrtModel *m, const RunOptions *o) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  if (!d->entries[DLRT_ENTRY_EVAL]) return fail("model %s has no loss or metric to evaluate", d->model);
  if (o->load && load_checkpoint(m, o->load)) return 1;
  DlrtDataset ds;
  if (load_dataset(o, &ds)) return 1;
  Binding b;
  Totals t;
  int rc = bind(m, &ds, &b);
  if (!rc) rc = evaluate(m, &b, &ds.test, &t);
  if (!rc) {
    printf("test samples %lld", (long long)t.n);
    if (b.loss[DLRT_ENTRY_EVAL] >= 0) printf("  loss %.4f", t.loss); /* a model without `train` has none */
    for (int k = 0; k < b.n_metrics; k++) printf("  %s %.4f", b.metric_names[k], t.metric[k]);
    putchar('\n');
  }
  dlrt_dataset_free(&ds);
  return rc;
}

/* Copies every input (and label, when `labels`) from a feed file. */
static int load_feed(DlrtModel *m, const char *path, bool labels) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  char err[512];
  if (!path) return fail("--feed FEED.safetensors is required");
  if (dlrt_st_read(path, &set, err, sizeof err)) return fail("%s", err);
  int problems = 0;
  for (int i = 0; i < d->n_bufs; i++) {
    const DlrtBufDesc *b = &d->bufs[i];
    if (b->role != DLRT_ROLE_INPUT && !(labels && b->role == DLRT_ROLE_LABEL)) continue;
    char want[128];
    shape_text(want, sizeof want, b);
    const DlrtTensor *t = dlrt_st_find(&set, b->name);
    if (!t) {
      fail("%s: missing %s %s : %s", path, b->role == DLRT_ROLE_INPUT ? "input" : "label", b->name, want);
      problems++;
      continue;
    }
    if (!dlrt_tensor_fits(t, b)) {
      DlrtBufDesc got = *b;
      got.dtype = t->dtype;
      got.rank = t->rank;
      memcpy(got.shape, t->shape, sizeof got.shape);
      char have[128];
      shape_text(have, sizeof have, &got);
      fail("%s: %s is %s, the model expects %s", path, b->name, have, want);
      problems++;
      continue;
    }
    memcpy(dlrt_model_data(m, i), t->data, t->nbytes);
  }
  dlrt_st_free(&set);
  return problems ? 1 : 0;
}

static int write_role(DlrtModel *m, const char *path, const int *roles, int nroles, int entry) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  for (int i = 0; i < d->n_bufs; i++) {
    const DlrtBufDesc *b = &d->bufs[i];
    bool want = false;
    for (int r = 0; r < nroles; r++) want |= b->role == roles[r];
    if (!want || (b->entry != -1 && b->entry != entry)) continue;
    /* `output loss` names the loss twice (its output and loss buffers hold
     * the same value): the file holds it once */
    if (dlrt_st_find(&set, b->name)) continue;
    /* scalar results are written as shape [1], as PyTorch's reference files hold them */
    static const int64_t one[1] = {1};
    bool scalar_out = b->rank == 0 && (b->role == DLRT_ROLE_LOSS || b->role == DLRT_ROLE_METRIC || b->role == DLRT_ROLE_OUTPUT);
    dlrt_st_add(&set, b->name, b->dtype, scalar_out ? 1 : b->rank, scalar_out ? one : b->shape, dlrt_model_data(m, i));
  }
  char err[512];
  int rc = dlrt_st_write(path, &set, err, sizeof err);
  dlrt_st_free(&set);
  return rc ? fail("%s", err) : 0;
}

int run_step(DlrtModel *m, const RunOptions *o) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  if (!d->entries[DLRT_ENTRY_TRAIN]) return fail("model %s has no `train` statement", d->model);
  char err[4096];
  if (o->params) {
    DlrtTensorSet set;
    memset(&set, 0, sizeof set);
    if (dlrt_st_read(o->params, &set, err, sizeof err)) return fail("%s", err);
    char *msg = NULL;
    int rc = dlrt_model_load_set_msg(m, &set, 1, 0, &msg);
    dlrt_st_free(&set);
    if (rc) fail("%s: the parameters do not match the model:\n%s", o->params, msg ? msg : "(out of memory)");
    free(msg);
    if (rc) return 1;
  }
  if (load_feed(m, o->feed, true)) return 1;
  if (dlrt_model_run(m, DLRT_ENTRY_TRAIN)) return fail("%s: %s", o->feed, dlrt_model_error(m));
  int lb = dlrt_model_find_role(m, DLRT_ROLE_LOSS, DLRT_ENTRY_TRAIN);
  printf("loss %.9g\n", (double)scalar(m, lb));
  int rc = 0;
  static const int grads[] = {DLRT_ROLE_GRAD};
  static const int params[] = {DLRT_ROLE_PARAM, DLRT_ROLE_STATE, DLRT_ROLE_OPTSTATE};
  static const int outs[] = {DLRT_ROLE_OUTPUT, DLRT_ROLE_METRIC, DLRT_ROLE_LOSS};
  if (o->grads_out) rc |= write_role(m, o->grads_out, grads, 1, DLRT_ENTRY_TRAIN);
  if (o->params_out) rc |= write_role(m, o->params_out, params, 3, DLRT_ENTRY_TRAIN);
  if (o->out) rc |= write_role(m, o->out, outs, 3, DLRT_ENTRY_TRAIN);
  return rc;
}

int run_predict(DlrtModel *m, const RunOptions *o) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  if (!d->entries[DLRT_ENTRY_INFER]) return fail("model %s has no `output` statement", d->model);
  if (o->load && load_checkpoint(m, o->load)) return 1;
  if (load_feed(m, o->feed, false)) return 1;
  if (dlrt_model_run(m, DLRT_ENTRY_INFER)) return fail("%s: %s", o->feed, dlrt_model_error(m));
  if (!o->out) return fail("--out OUT.safetensors is required");
  static const int outs[] = {DLRT_ROLE_OUTPUT};
  return write_role(m, o->out, outs, 1, DLRT_ENTRY_INFER);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int run_bench(DlrtModel *m, const RunOptions *o) {
  const DlrtModelDesc *d = dlrt_model_desc(m);
  int steps = o->steps > 0 ? o->steps : 100;
  double *t = malloc(sizeof(double) * (size_t)steps);
  if (!t) return fail("out of memory");
  int x = dlrt_model_find_role(m, DLRT_ROLE_INPUT, -1);
  int64_t B = x >= 0 && d->bufs[x].rank > 0 ? d->bufs[x].shape[0] : 1;
  printf("model %s, batch %lld, %d threads, %d steps after warm-up\n", d->model, (long long)B, dlrt_get_threads(),
         steps);
  const char *isa = NULL;
  double core_peak = peak_gflops_per_core(&isa);
  int cores = omp_get_num_procs();
  int pth = dlrt_get_threads() < cores ? dlrt_get_threads() : cores;
  double peak = core_peak * (pth > 0 ? pth : 1);
  if (peak > 0)
    printf("measured peak %.1f GFLOP/s per core (%s loop) x %d core%s = %.1f GFLOP/s\n", core_peak, isa, pth,
           pth == 1 ? "" : "s", peak);
  /* f32 inputs get data, uniform in [0, 1) (an image's range): never-written
   * memory is the kernel's shared zero page, whose reads cost no memory
   * traffic and which would flatter every kernel that streams its input.
   * Labels stay 0, a valid class for any model. */
  for (int b = 0; b < d->n_bufs; b++) {
    const DlrtBufDesc *bd = &d->bufs[b];
    if (bd->role != DLRT_ROLE_INPUT || bd->dtype != DLRT_F32 || bd->alias >= 0) continue;
    int64_t n = dlrt_numel(bd->shape, bd->rank);
    float *v = dlrt_model_data(m, b);
    for (int64_t i = 0; v && i < n; i++) v[i] = dlrt_uniform01(0x62656e6368ull + (uint64_t)b, (uint64_t)i);
  }
  static const char *const names[] = {"train step", "eval step", "inference"};
  for (int e = 0; e < DLRT_ENTRY_COUNT; e++) {
    if (!d->entries[e] || e == DLRT_ENTRY_EVAL) continue;
    for (int i = 0; i < 5; i++) dlrt_model_run(m, e);
  }
  if (o->profile_reset) o->profile_reset(); /* time the measured steps only */
  for (int e = 0; e < DLRT_ENTRY_COUNT; e++) {
    if (!d->entries[e] || e == DLRT_ENTRY_EVAL) continue;
    for (int i = 0; i < steps; i++) {
      double t0 = now();
      dlrt_model_run(m, e);
      t[i] = now() - t0;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    double med = t[steps / 2];
    double gf = (double)d->flops[e] / med * 1e-9;
    printf("%-10s  median %.3f ms  (min %.3f, p90 %.3f)  %.0f steps/s  %.0f samples/s  %.2f GFLOP/s", names[e],
           med * 1e3, t[0] * 1e3, t[(steps * 9) / 10] * 1e3, 1.0 / med, (double)B / med, gf);
    if (peak > 0) printf("  %.0f%% of peak", 100.0 * gf / peak);
    printf("\n");
  }
  if (o->profile_print) {
    printf("per-kernel CPU time of the calling thread over the %d measured steps of each entry:", steps);
    fflush(stdout);
    o->profile_print(stdout);
  }
  free(t);
  return 0;
}
