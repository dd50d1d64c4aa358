/* test_opt_levels.c — a model gives the same training step at -O0 and -O2:
 * JIT-compiles MODEL.dl at both levels, creates both with one seed, feeds the
 * same deterministic inputs (labels 0, valid for any class count), runs one
 * training step and compares loss, outputs, metrics, gradients and updated
 * params/state elementwise: |a - b| <= 1e-5 |b| + 1e-6 (1 + max|B|): 1e-5
 * relative, with an absolute term (a millionth of the tensor's scale) for
 * elements that cancel to near zero.
 * With --bitwise VAR=VALUE it compares, both at -O2, the backend with the
 * environment variable set and without, which must agree bit for bit
 * (DLC_IMAGE_FUSION=0: without per-image fusion, a convolution's data
 * gradient and its col2im in one pass through scratch); --env VAR=VALUE
 * likewise within the tolerance above (DLC_POOL_SCATTER=0: max pooling's
 * adjoint as the gather, whose 9-term sums LLVM may reassociate, instead of
 * the scatter). --image-fusion is --bitwise DLC_IMAGE_FUSION=0.
 * usage: test_opt_levels [--image-fusion | --bitwise VAR=VALUE | --env VAR=VALUE] MODEL.dl */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/driver.h"

static int build(const char *path, int level, DrvModel *m, DlrtModel **inst) {
  Diag d;
  diag_init(&d, stderr);
  DrvOptions o = {.opt_level = level, .cpu = "native"};
  int rc = drv_compile(m, path, &o, DRV_STAGE_JIT, &d);
  diag_free(&d);
  if (rc) return rc;
  char err[256];
  *inst = dlrt_model_new(&m->desc, 1234, err, sizeof err);
  if (!*inst) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  const DlrtModelDesc *desc = &m->desc;
  for (int i = 0; i < desc->n_bufs; i++) {
    const DlrtBufDesc *b = &desc->bufs[i];
    int64_t n = dlrt_numel(b->shape, b->rank);
    if (b->role == DLRT_ROLE_INPUT && b->dtype == DLRT_F32) {
      float *x = dlrt_model_data(*inst, i);
      for (int64_t k = 0; k < n; k++) x[k] = dlrt_uniform01(99, (uint64_t)k);
    } else if (b->role == DLRT_ROLE_LABEL && b->dtype == DLRT_F32) {
      float *x = dlrt_model_data(*inst, i);
      for (int64_t k = 0; k < n; k++) x[k] = dlrt_uniform01(77, (uint64_t)k);
    }
    /* i32 labels stay 0 */
  }
  return 0;
}

int main(int argc, char **argv) {
  char var[64] = "", *val = NULL;
  if (argc == 3 && !strcmp(argv[1], "--image-fusion")) snprintf(var, sizeof var, "DLC_IMAGE_FUSION=0");
  else if (argc == 4 && (!strcmp(argv[1], "--bitwise") || !strcmp(argv[1], "--env")))
    snprintf(var, sizeof var, "%s", argv[2]);
  else if (argc != 2) return 2;
  bool variant = var[0] != 0;                           /* two backend variants at -O2 */
  bool bitwise = variant && strcmp(argv[1], "--env") != 0; /* ... compared bit for bit */
  if (variant && !(val = strchr(var, '='))) return 2;
  if (variant) *val++ = 0;
  const char *path = argv[argc - 1];
  DrvModel m0, m2;
  DlrtModel *a = NULL, *b = NULL;
  if (variant) setenv(var, val, 1);
  if (build(path, variant ? 2 : 0, &m0, &a)) return 1;
  if (variant) unsetenv(var);
  if (build(path, 2, &m2, &b)) return 1;
  if (!m0.desc.entries[DLRT_ENTRY_TRAIN]) {
    printf("no training step: nothing to compare\n");
    return 0;
  }
  dlrt_model_run(a, DLRT_ENTRY_TRAIN);
  dlrt_model_run(b, DLRT_ENTRY_TRAIN);
  int bad = 0, compared = 0;
  for (int i = 0; i < m0.desc.n_bufs; i++) {
    const DlrtBufDesc *d0 = &m0.desc.bufs[i];
    int role = d0->role;
    if (role == DLRT_ROLE_TEMP || role == DLRT_ROLE_INPUT || role == DLRT_ROLE_LABEL || role == DLRT_ROLE_RNG) continue;
    if (d0->entry != -1 && d0->entry != DLRT_ENTRY_TRAIN) continue;
    int j = dlrt_model_find(b, d0->name, role, d0->entry);
    if (j < 0) {
      printf("FAIL %s: missing in the second build\n", d0->name);
      bad++;
      continue;
    }
    int64_t n = dlrt_numel(d0->shape, d0->rank);
    if (d0->dtype == DLRT_I32) {
      if (memcmp(dlrt_model_data(a, i), dlrt_model_data(b, j), (size_t)n * 4)) {
        printf("FAIL %s: i32 values differ\n", d0->name);
        bad++;
      }
      continue;
    }
    const float *x = dlrt_model_data(a, i), *y = dlrt_model_data(b, j);
    if (bitwise) {
      if (memcmp(x, y, (size_t)n * 4)) {
        printf("FAIL %s: differs without %s=%s\n", d0->name, var, val);
        bad++;
      }
      compared++;
      continue;
    }
    double scale = 0;
    for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(y[k]));
    for (int64_t k = 0; k < n; k++) {
      double tol = 1e-5 * fabs(y[k]) + 1e-6 * (1.0 + scale);
      if (!(fabs((double)x[k] - y[k]) <= tol)) {
        if (variant)
          printf("FAIL %s[%lld] (role %d): %s=%s %.9g, default %.9g\n", d0->name, (long long)k, role, var, val, x[k],
                 y[k]);
        else
          printf("FAIL %s[%lld] (role %d): -O0 %.9g, -O2 %.9g\n", d0->name, (long long)k, role, x[k], y[k]);
        bad++;
        break;
      }
    }
    compared++;
  }
  printf("%s: %d tensors compared, %d differ\n", path, compared, bad);
  dlrt_model_free(a);
  dlrt_model_free(b);
  drv_free(&m0);
  drv_free(&m2);
  return bad ? 1 : 0;
}
