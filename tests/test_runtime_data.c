/* test_runtime_data.c — cmocka tests of libdlrt_data: synthetic datasets,
 * fashion-mnist loading, shuffling and batch gathering. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/dlrt_data.h"
#include "tests/test_runtime.h"

static void test_xor(void **state) {
  (void)state;
  DlrtDataset ds;
  char err[256];
  assert_int_equal(dlrt_dataset_load("xor", NULL, 1, &ds, err, sizeof err), 0);
  assert_string_equal(ds.name, "xor");
  DlrtSplit *sp[2] = {&ds.train, &ds.test};
  for (int k = 0; k < 2; k++) {
    DlrtSplit *s = sp[k];
    assert_int_equal(s->n, 4);
    assert_int_equal(s->feat_rank, 1);
    assert_int_equal(s->feat_shape[0], 2);
    assert_int_equal(s->feat_size, 2);
    assert_int_equal(s->label_dtype, DLRT_I32);
    assert_int_equal(s->label_size, 1);
    assert_int_equal(s->num_classes, 2);
    int seen = 0;
    for (int i = 0; i < 4; i++) {
      int a = (int)s->x[2 * i], b = (int)s->x[2 * i + 1];
      assert_true(s->x[2 * i] == (float)a && s->x[2 * i + 1] == (float)b);
      assert_int_equal(((int32_t *)s->y)[i], a ^ b);
      seen |= 1 << (a * 2 + b);
    }
    assert_int_equal(seen, 15);
  }
  dlrt_dataset_free(&ds);
}

static void test_spiral(void **state) {
  (void)state;
  DlrtDataset a, b, c;
  char err[256];
  assert_int_equal(dlrt_dataset_load("spiral", NULL, 7, &a, err, sizeof err), 0);
  assert_int_equal(dlrt_dataset_load("spiral", NULL, 7, &b, err, sizeof err), 0);
  assert_int_equal(dlrt_dataset_load("spiral", NULL, 8, &c, err, sizeof err), 0);
  assert_int_equal(a.train.n, 900);
  assert_int_equal(a.test.n, 300);
  assert_int_equal(a.train.feat_size, 2);
  assert_int_equal(a.train.num_classes, 3);
  assert_int_equal(a.train.label_dtype, DLRT_I32);
  int cnt[3] = {0, 0, 0};
  for (int64_t i = 0; i < a.train.n; i++) {
    int32_t y = ((int32_t *)a.train.y)[i];
    assert_true(y >= 0 && y < 3);
    cnt[y]++;
    double r = hypot(a.train.x[2 * i], a.train.x[2 * i + 1]);
    assert_true(r <= 1.0 + 1e-6);
  }
  assert_int_equal(cnt[0], 300);
  assert_int_equal(cnt[1], 300);
  assert_int_equal(cnt[2], 300);
  /* CS231n layout: class j point i has r = i/(N-1) */
  assert_true(fabs(hypot(a.train.x[2 * 299], a.train.x[2 * 299 + 1]) - 1.0) < 1e-6);
  assert_true(fabs(hypot(a.train.x[2 * 150], a.train.x[2 * 150 + 1]) - 150.0 / 299) < 1e-6);
  /* the mean angle of class 1's outer point is near 8 rad (+- noise) */
  double t = atan2(a.train.x[2 * 599], a.train.x[2 * 599 + 1]); /* atan2(sin, cos) */
  double d = remainder(t - 8.0, 2 * 3.14159265358979323846);
  assert_true(fabs(d) < 1.0);
  assert_memory_equal(a.train.x, b.train.x, 900 * 2 * sizeof(float));
  assert_memory_equal(a.test.x, b.test.x, 300 * 2 * sizeof(float));
  assert_true(memcmp(a.train.x, c.train.x, 900 * 2 * sizeof(float)) != 0);
  assert_true(memcmp(a.train.x, a.test.x, 300 * 2 * sizeof(float)) != 0);
  dlrt_dataset_free(&a);
  dlrt_dataset_free(&b);
  dlrt_dataset_free(&c);
}

/* Least-squares fit of y = w0 x0 + w1 x1 + b by the normal equations. */
static void lstsq3(const DlrtSplit *s, double w[3]) {
  double A[3][4] = {{0}};
  const float *y = s->y;
  for (int64_t i = 0; i < s->n; i++) {
    double f[3] = {s->x[2 * i], s->x[2 * i + 1], 1.0};
    for (int r = 0; r < 3; r++) {
      for (int c = 0; c < 3; c++) A[r][c] += f[r] * f[c];
      A[r][3] += f[r] * y[i];
    }
  }
  for (int p = 0; p < 3; p++)
    for (int r = p + 1; r < 3; r++) {
      double m = A[r][p] / A[p][p];
      for (int c = p; c < 4; c++) A[r][c] -= m * A[p][c];
    }
  for (int r = 2; r >= 0; r--) {
    double v = A[r][3];
    for (int c = r + 1; c < 3; c++) v -= A[r][c] * w[c];
    w[r] = v / A[r][r];
  }
}

static void test_linreg(void **state) {
  (void)state;
  DlrtDataset ds;
  char err[256];
  assert_int_equal(dlrt_dataset_load("linreg", NULL, 3, &ds, err, sizeof err), 0);
  assert_int_equal(ds.train.n, 1000);
  assert_int_equal(ds.test.n, 200);
  assert_int_equal(ds.train.feat_size, 2);
  assert_int_equal(ds.train.label_dtype, DLRT_F32);
  assert_int_equal(ds.train.label_size, 1);
  assert_int_equal(ds.train.num_classes, 0);
  DlrtSplit *sp[2] = {&ds.train, &ds.test};
  for (int k = 0; k < 2; k++) {
    double w[3];
    lstsq3(sp[k], w);
    assert_true(fabs(w[0] - 2.0) < 1e-2);
    assert_true(fabs(w[1] + 3.4) < 1e-2);
    assert_true(fabs(w[2] - 4.2) < 1e-2);
    /* residual std about 0.01 */
    double ss = 0;
    const float *y = sp[k]->y;
    for (int64_t i = 0; i < sp[k]->n; i++) {
      double r = y[i] - (2.0 * sp[k]->x[2 * i] - 3.4 * sp[k]->x[2 * i + 1] + 4.2);
      ss += r * r;
    }
    double sd = sqrt(ss / (double)sp[k]->n);
    assert_true(sd > 0.008 && sd < 0.012);
  }
  /* x ~ N(0,1) */
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < 2000; i++) {
    s += ds.train.x[i];
    s2 += (double)ds.train.x[i] * ds.train.x[i];
  }
  assert_true(fabs(s / 2000) < 0.1);
  assert_true(fabs(sqrt(s2 / 2000) - 1) < 0.1);
  assert_true(memcmp(ds.train.x, ds.test.x, 400 * sizeof(float)) != 0);
  dlrt_dataset_free(&ds);
}

static void test_unknown_and_mnist(void **state) {
  (void)state;
  DlrtDataset ds;
  char err[256];
  assert_int_not_equal(dlrt_dataset_load("cifar", NULL, 1, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "cifar"));
  assert_int_not_equal(dlrt_dataset_load("mnist", NULL, 1, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "data"));
  assert_int_not_equal(dlrt_dataset_load("mnist", "/nonexistent-mnist", 1, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "/nonexistent-mnist/train-images-idx3-ubyte"));
  dlrt_dataset_free(&ds); /* harmless on a zeroed dataset */
}

static void write_gz(const char *path, const unsigned char *b, size_t n) {
  gzFile f = gzopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
  gzclose(f);
}

static void write_raw(const char *path, const unsigned char *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fwrite(b, 1, n, f);
  fclose(f);
}

/* A tiny synthetic mnist in a temp dir: plain and gzipped, and corrupted. */
static void test_idx_small(void **state) {
  (void)state;
  char dir[] = "/tmp/dlrt_idx_test.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p[512], err[512];
  unsigned char img[16 + 3 * 4], lab[8 + 3], timg[16 + 2 * 4], tlab[8 + 2];
  unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  unsigned char lh[8] = {0, 0, 8, 1, 0, 0, 0, 3};
  memcpy(img, ih, 16);
  memcpy(lab, lh, 8);
  for (int i = 0; i < 12; i++) img[16 + i] = (unsigned char)(i * 20);
  lab[8] = 0; lab[9] = 9; lab[10] = 4;
  memcpy(timg, ih, 16);
  timg[7] = 2;
  memcpy(tlab, lh, 8);
  tlab[7] = 2;
  for (int i = 0; i < 8; i++) timg[16 + i] = 255;
  tlab[8] = 1; tlab[9] = 2;
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
  write_raw(p, img, sizeof img);
  snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
  write_gz(p, lab, sizeof lab);
  snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
  write_gz(p, timg, sizeof timg);
  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
  write_raw(p, tlab, sizeof tlab);
  DlrtDataset ds;
  int rc = dlrt_dataset_load("mnist", dir, 0, &ds, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(ds.train.n, 3);
  assert_int_equal(ds.train.feat_size, 4);
  assert_int_equal(ds.test.n, 2);
  assert_true(ds.train.x[1] == 20.0f / 255.0f);
  assert_true(ds.test.x[3] == 1.0f);
  assert_int_equal(((int32_t *)ds.train.y)[1], 9);
  assert_int_equal(((int32_t *)ds.test.y)[1], 2);
  dlrt_dataset_free(&ds);
  /* label out of range */
  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
  tlab[9] = 10;
  write_raw(p, tlab, sizeof tlab);
  assert_int_not_equal(dlrt_dataset_load("mnist", dir, 0, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "t10k-labels-idx1-ubyte"));
  assert_non_null(strstr(err, "out of range"));
  /* count mismatch */
  tlab[9] = 1;
  tlab[7] = 3;
  write_raw(p, tlab, sizeof tlab);
  assert_int_not_equal(dlrt_dataset_load("mnist", dir, 0, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "labels"));
  /* bad magic */
  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
  tlab[7] = 2;
  tlab[3] = 3;
  write_raw(p, tlab, sizeof tlab);
  assert_int_not_equal(dlrt_dataset_load("mnist", dir, 0, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "magic"));
  /* truncated pixels */
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
  write_raw(p, img, sizeof img - 1);
  assert_int_not_equal(dlrt_dataset_load("mnist", dir, 0, &ds, err, sizeof err), 0);
  assert_non_null(strstr(err, "truncated"));
  assert_non_null(strstr(err, "train-images-idx3-ubyte"));
  const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz",
                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
}

static void test_fashion_mnist(void **state) {
  (void)state;
  char p[512];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", DLRT_FASHION_MNIST_DIR);
  char p2[512];
  snprintf(p2, sizeof p2, "%s/train-images-idx3-ubyte", DLRT_FASHION_MNIST_DIR);
  if (access(p, R_OK) != 0 && access(p2, R_OK) != 0) {
    print_message("fashion-mnist not installed in %s: skipped\n", DLRT_FASHION_MNIST_DIR);
    skip();
  }
  DlrtDataset ds;
  char err[512];
  int rc = dlrt_dataset_load("fashion-mnist", NULL, 0, &ds, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(ds.train.n, 60000);
  assert_int_equal(ds.test.n, 10000);
  assert_int_equal(ds.train.feat_rank, 1);
  assert_int_equal(ds.train.feat_shape[0], 784);
  assert_int_equal(ds.train.num_classes, 10);
  DlrtSplit *sp[2] = {&ds.train, &ds.test};
  for (int k = 0; k < 2; k++) {
    int cnt[10] = {0};
    for (int64_t i = 0; i < sp[k]->n; i++) {
      int32_t y = ((int32_t *)sp[k]->y)[i];
      assert_true(y >= 0 && y <= 9);
      cnt[y]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(cnt[c], sp[k]->n / 10);
    float mn = 1, mx = 0;
    for (int64_t i = 0; i < sp[k]->n * 784; i++) {
      if (sp[k]->x[i] < mn) mn = sp[k]->x[i];
      if (sp[k]->x[i] > mx) mx = sp[k]->x[i];
    }
    assert_true(mn == 0.0f && mx == 1.0f);
  }
  dlrt_dataset_free(&ds);
}

static void test_shuffle_gather(void **state) {
  (void)state;
  int64_t ns[] = {0, 1, 2, 10, 1000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    int64_t n = ns[k];
    int64_t *a = malloc((size_t)(n + 1) * sizeof *a), *b = malloc((size_t)(n + 1) * sizeof *b);
    char *seen = calloc((size_t)n + 1, 1);
    dlrt_shuffle(a, n, 42, 3);
    dlrt_shuffle(b, n, 42, 3);
    for (int64_t i = 0; i < n; i++) {
      assert_true(a[i] >= 0 && a[i] < n);
      assert_int_equal(seen[a[i]], 0);
      seen[a[i]] = 1;
    }
    if (n) assert_memory_equal(a, b, (size_t)n * sizeof *a);
    if (n >= 10) {
      dlrt_shuffle(b, n, 42, 4);
      assert_true(memcmp(a, b, (size_t)n * sizeof *a) != 0);
      dlrt_shuffle(b, n, 43, 3);
      assert_true(memcmp(a, b, (size_t)n * sizeof *a) != 0);
      int fixed = 0;
      for (int64_t i = 0; i < n; i++) fixed += a[i] == i;
      assert_true(fixed < n / 2);
    }
    free(a);
    free(b);
    free(seen);
  }
  DlrtDataset ds;
  char err[256];
  assert_int_equal(dlrt_dataset_load("linreg", NULL, 1, &ds, err, sizeof err), 0);
  int64_t perm[1000];
  dlrt_shuffle(perm, 1000, 5, 0);
  float x[7 * 2], y[7];
  dlrt_gather_batch(&ds.train, perm, 993, 7, x, y);
  for (int k = 0; k < 7; k++) {
    int64_t i = perm[993 + k];
    assert_true(x[2 * k] == ds.train.x[2 * i] && x[2 * k + 1] == ds.train.x[2 * i + 1]);
    assert_true(y[k] == ((float *)ds.train.y)[i]);
  }
  dlrt_gather_batch(&ds.train, NULL, 10, 2, x, y); /* NULL perm: identity */
  assert_true(x[0] == ds.train.x[20] && y[1] == ((float *)ds.train.y)[11]);
  dlrt_dataset_free(&ds);
}

int run_data_tests(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_xor),           cmocka_unit_test(test_spiral),
      cmocka_unit_test(test_linreg),        cmocka_unit_test(test_unknown_and_mnist),
      cmocka_unit_test(test_idx_small),     cmocka_unit_test(test_fashion_mnist),
      cmocka_unit_test(test_shuffle_gather),
  };
  return cmocka_run_group_tests_name("runtime_data", tests, NULL, NULL);
}
