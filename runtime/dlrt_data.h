/* dlrt_data.h — datasets for dlrun (SPEC §6): the built-in synthetic sets
 * (xor, spiral, linreg), IDX image sets (fashion-mnist, mnist), seeded
 * per-epoch shuffling and batch gathering. Linked into the runner only. */
#ifndef DLRT_DATA_H
#define DLRT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/dlrt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t n;                 /* samples */
  int feat_rank; int64_t feat_shape[4]; int64_t feat_size;  /* per sample, e.g. rank 1 [784] or [2] */
  float *x;                  /* n * feat_size, owned */
  int32_t label_dtype;       /* DLRT_I32 (class index) or DLRT_F32 */
  int64_t label_size;        /* elements per sample: 1 for class labels, 1 for linreg */
  void *y;                   /* n * label_size, owned */
  int num_classes;           /* 0 for regression */
} DlrtSplit;
typedef struct { char name[32]; DlrtSplit train, test; } DlrtDataset;

/* Default directory of the Debian package dataset-fashion-mnist. */
#define DLRT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* name: "xor" | "spiral" | "linreg" | "fashion-mnist" | "mnist"; data_dir may be NULL
   (fashion-mnist default: /usr/share/datasets/fashion-mnist; mnist requires data_dir). */
int dlrt_dataset_load(const char *name, const char *data_dir, uint64_t seed, DlrtDataset *out, char *err, size_t errlen);
void dlrt_dataset_free(DlrtDataset *ds);
/* Seeded Fisher-Yates permutation of 0..n-1 for one epoch (same seed+epoch -> same order). */
void dlrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch);
/* Copies samples perm[first .. first+count) into contiguous batch buffers x (count*feat_size floats) and y.
   (perm NULL: samples first .. first+count; x or y NULL: not copied.) */
void dlrt_gather_batch(const DlrtSplit *s, const int64_t *perm, int64_t first, int64_t count, float *x, void *y);

/* Helpers. */
/* Frees the buffers of one split and zeroes it. */
void dlrt_split_free(DlrtSplit *s);
/* Loads one IDX image file + label file pair (gzipped or not; the paths are
 * tried as given, then with ".gz" appended) into `out`: images f32 in
 * [0,1], feat_shape [rows*cols], labels i32 < num_classes. */
int dlrt_idx_load_split(const char *images_path, const char *labels_path, int num_classes,
                        DlrtSplit *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
