/* data.c — dataset loading (synthetic xor/spiral/linreg and IDX
 * fashion-mnist/mnist through zlib), per-epoch shuffling and batch gathering
 * for dlrun. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/dlrt_data.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

void dlrt_split_free(DlrtSplit *s) {
  if (!s) return;
  dlrt_free(s->x);
  dlrt_free(s->y);
  memset(s, 0, sizeof *s);
}

void dlrt_dataset_free(DlrtDataset *ds) {
  if (!ds) return;
  dlrt_split_free(&ds->train);
  dlrt_split_free(&ds->test);
}

/* Allocates a split of n samples with a rank-1 feature of `feat` floats. */
static int split_alloc(DlrtSplit *s, int64_t n, int64_t feat, int32_t label_dtype,
                       int num_classes) {
  memset(s, 0, sizeof *s);
  s->n = n;
  s->feat_rank = 1;
  s->feat_shape[0] = feat;
  s->feat_size = feat;
  s->label_dtype = label_dtype;
  s->label_size = 1;
  s->num_classes = num_classes;
  s->x = dlrt_alloc((size_t)(n * feat) * sizeof(float));
  s->y = dlrt_alloc((size_t)n * 4);
  if (!s->x || !s->y) {
    dlrt_split_free(s);
    return -1;
  }
  return 0;
}

/* ---- synthetic sets ---------------------------------------------------- */

static int make_xor(DlrtSplit *s) {
  if (split_alloc(s, 4, 2, DLRT_I32, 2)) return -1;
  int32_t *y = s->y;
  for (int i = 0; i < 4; i++) {
    int a = (i >> 1) & 1, b = i & 1;
    s->x[2 * i] = (float)a;
    s->x[2 * i + 1] = (float)b;
    y[i] = a ^ b;
  }
  return 0;
}

/* CS231n spiral: K=3 classes of N points; class-major order. */
static int make_spiral(DlrtSplit *s, int64_t N, uint64_t seed) {
  const int K = 3;
  if (split_alloc(s, K * N, 2, DLRT_I32, K)) return -1;
  int32_t *y = s->y;
  for (int j = 0; j < K; j++) {
    for (int64_t i = 0; i < N; i++) {
      int64_t ix = j * N + i;
      double frac = N > 1 ? (double)i / (double)(N - 1) : 0.0;
      double r = frac;
      double t = 4.0 * j + 4.0 * frac + 0.2 * dlrt_normal(seed, (uint64_t)ix);
      s->x[2 * ix] = (float)(r * sin(t));
      s->x[2 * ix + 1] = (float)(r * cos(t));
      y[ix] = j;
    }
  }
  return 0;
}

/* y = x.[2, -3.4] + 4.2 + N(0, 0.01^2). */
static int make_linreg(DlrtSplit *s, int64_t n, uint64_t xseed, uint64_t nseed) {
  if (split_alloc(s, n, 2, DLRT_F32, 0)) return -1;
  float *y = s->y;
  for (int64_t i = 0; i < n; i++) {
    float a = dlrt_normal(xseed, (uint64_t)(2 * i));
    float b = dlrt_normal(xseed, (uint64_t)(2 * i + 1));
    s->x[2 * i] = a;
    s->x[2 * i + 1] = b;
    y[i] = (float)(2.0 * a - 3.4 * b + 4.2 + 0.01 * dlrt_normal(nseed, (uint64_t)i));
  }
  return 0;
}

/* ---- IDX files --------------------------------------------------------- */

typedef struct {
  gzFile f;
  char path[1024];
} Idx;

static int idx_open(Idx *ix, const char *path, char *err, size_t errlen) {
  snprintf(ix->path, sizeof ix->path, "%s", path);
  ix->f = gzopen(ix->path, "rb");
  if (!ix->f) {
    int e = errno;
    snprintf(ix->path, sizeof ix->path, "%s.gz", path);
    ix->f = gzopen(ix->path, "rb");
    if (!ix->f) {
      seterr(err, errlen, "cannot open %s (or %s.gz): %s", path, path,
             strerror(e ? e : ENOENT));
      return -1;
    }
  }
  return 0;
}

static int idx_read(Idx *ix, void *buf, size_t n, const char *what, char *err, size_t errlen) {
  unsigned char *p = buf;
  size_t done = 0;
  while (done < n) {
    size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
    int r = gzread(ix->f, p + done, (unsigned)chunk);
    if (r < 0) {
      int zerr = 0;
      const char *m = gzerror(ix->f, &zerr);
      seterr(err, errlen, "%s: read error (%s)", ix->path, m ? m : "zlib error");
      return -1;
    }
    if (r == 0) {
      seterr(err, errlen, "%s: truncated file (%s: got %zu of %zu bytes)", ix->path, what, done, n);
      return -1;
    }
    done += (size_t)r;
  }
  return 0;
}

static uint32_t be32(const unsigned char *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

int dlrt_idx_load_split(const char *images_path, const char *labels_path, int num_classes,
                        DlrtSplit *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  Idx im = {0}, lb = {0};
  unsigned char *raw = NULL;
  int rc = -1;
  unsigned char h[16];
  if (idx_open(&im, images_path, err, errlen)) goto done;
  if (idx_read(&im, h, 16, "header", err, errlen)) goto done;
  if (be32(h) != 0x00000803) {
    seterr(err, errlen, "%s: not an IDX image file (magic 0x%08x, expected 0x00000803)", im.path,
           be32(h));
    goto done;
  }
  uint32_t n = be32(h + 4), rows = be32(h + 8), cols = be32(h + 12);
  if (n == 0 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || n > (1u << 28)) {
    seterr(err, errlen, "%s: implausible IDX dimensions %u x %u x %u", im.path, n, rows, cols);
    goto done;
  }
  if (idx_open(&lb, labels_path, err, errlen)) goto done;
  if (idx_read(&lb, h, 8, "header", err, errlen)) goto done;
  if (be32(h) != 0x00000801) {
    seterr(err, errlen, "%s: not an IDX label file (magic 0x%08x, expected 0x00000801)", lb.path,
           be32(h));
    goto done;
  }
  if (be32(h + 4) != n) {
    seterr(err, errlen, "%s: %u labels but %s has %u images", lb.path, be32(h + 4), im.path, n);
    goto done;
  }
  int64_t feat = (int64_t)rows * cols;
  size_t total = (size_t)n * (size_t)feat;
  if (split_alloc(out, n, feat, DLRT_I32, num_classes)) {
    seterr(err, errlen, "%s: out of memory", im.path);
    goto done;
  }
  raw = malloc(total > n ? total : n);
  if (!raw) {
    seterr(err, errlen, "%s: out of memory", im.path);
    goto done;
  }
  if (idx_read(&im, raw, total, "pixels", err, errlen)) goto done;
  for (size_t i = 0; i < total; i++) out->x[i] = (float)raw[i] * (1.0f / 255.0f);
  if (idx_read(&lb, raw, n, "labels", err, errlen)) goto done;
  int32_t *y = out->y;
  for (uint32_t i = 0; i < n; i++) {
    if (raw[i] >= num_classes) {
      seterr(err, errlen, "%s: label %u of sample %u is out of range 0..%d", lb.path, raw[i], i,
             num_classes - 1);
      goto done;
    }
    y[i] = raw[i];
  }
  rc = 0;
done:
  if (im.f) gzclose(im.f);
  if (lb.f) gzclose(lb.f);
  free(raw);
  if (rc) dlrt_split_free(out);
  return rc;
}

static int load_idx_dataset(const char *dir, DlrtDataset *out, char *err, size_t errlen) {
  char ip[1024], lp[1024];
  snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte", dir);
  snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte", dir);
  if (dlrt_idx_load_split(ip, lp, 10, &out->train, err, errlen)) return -1;
  snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte", dir);
  snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte", dir);
  if (dlrt_idx_load_split(ip, lp, 10, &out->test, err, errlen)) return -1;
  if (out->train.feat_size != out->test.feat_size) {
    seterr(err, errlen, "%s: training and test images differ in size (%lld vs %lld pixels)", dir,
           (long long)out->train.feat_size, (long long)out->test.feat_size);
    return -1;
  }
  return 0;
}

/* ---- entry points ------------------------------------------------------ */

int dlrt_dataset_load(const char *name, const char *data_dir, uint64_t seed, DlrtDataset *out,
                      char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!name) name = "";
  snprintf(out->name, sizeof out->name, "%s", name);
  int rc;
  if (strcmp(name, "xor") == 0) {
    rc = make_xor(&out->train) || make_xor(&out->test);
  } else if (strcmp(name, "spiral") == 0) {
    rc = make_spiral(&out->train, 300, dlrt_stream_seed(seed, "spiral/train")) ||
         make_spiral(&out->test, 100, dlrt_stream_seed(seed, "spiral/test"));
  } else if (strcmp(name, "linreg") == 0) {
    rc = make_linreg(&out->train, 1000, dlrt_stream_seed(seed, "linreg/train/x"),
                     dlrt_stream_seed(seed, "linreg/train/noise")) ||
         make_linreg(&out->test, 200, dlrt_stream_seed(seed, "linreg/test/x"),
                     dlrt_stream_seed(seed, "linreg/test/noise"));
  } else if (strcmp(name, "fashion-mnist") == 0 || strcmp(name, "mnist") == 0) {
    const char *dir = data_dir;
    if (!dir || !*dir) {
      if (strcmp(name, "mnist") == 0) {
        seterr(err, errlen, "dataset 'mnist' needs a data directory (--data-dir DIR)");
        out->name[0] = 0;
        return -1;
      }
      dir = DLRT_FASHION_MNIST_DIR;
    }
    if (load_idx_dataset(dir, out, err, errlen)) {
      dlrt_dataset_free(out);
      if (!data_dir && strcmp(name, "fashion-mnist") == 0) {
        size_t l = err ? strlen(err) : 0;
        if (err && l + 1 < errlen)
          snprintf(err + l, errlen - l, " (install the Debian package dataset-fashion-mnist or "
                                        "pass --data-dir DIR)");
      }
      return -1;
    }
    return 0;
  } else {
    seterr(err, errlen,
           "unknown dataset '%s' (expected xor, spiral, linreg, fashion-mnist or mnist)", name);
    out->name[0] = 0;
    return -1;
  }
  if (rc) {
    dlrt_dataset_free(out);
    seterr(err, errlen, "dataset '%s': out of memory", name);
    return -1;
  }
  return 0;
}

void dlrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  uint64_t s = dlrt_mix64(dlrt_stream_seed(seed, "shuffle"), epoch);
  for (int64_t i = n - 1; i > 0; i--) {
    /* j uniform in [0, i] (modulo bias < 2^-40 for any realistic n) */
    int64_t j = (int64_t)(dlrt_mix64(s, (uint64_t)i) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

void dlrt_gather_batch(const DlrtSplit *s, const int64_t *perm, int64_t first, int64_t count,
                       float *x, void *y) {
  size_t fb = (size_t)s->feat_size * sizeof(float);
  size_t lb = (size_t)s->label_size * 4; /* I32 and F32 are both 4 bytes */
  for (int64_t k = 0; k < count; k++) {
    int64_t i = perm ? perm[first + k] : first + k;
    if (x) memcpy(x + k * s->feat_size, s->x + i * s->feat_size, fb);
    if (y) memcpy((char *)y + (size_t)k * lb, (const char *)s->y + (size_t)i * lb, lb);
  }
}
