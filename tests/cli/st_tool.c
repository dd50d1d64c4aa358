/* st_tool.c — a small safetensors utility for the CLI tests (tests/cli.cmake).
 *   st_tool write OUT NAME DTYPE SHAPE VALUES [NAME DTYPE SHAPE VALUES]...
 *       DTYPE F32|I32, SHAPE "2,3" ("" for a scalar), VALUES "1,2,3,..."
 *       (a single value is repeated to fill the shape)
 *   st_tool get FILE NAME        prints the tensor's values, one per line
 *   st_tool validate FILE        checks the file against SPEC §7 by hand
 *       (header length, JSON entries, contiguous data offsets covering the
 *       data exactly) and with dlrt_st_read; prints the tensor names
 * Exit status 0 on success, 1 on any failure (with a message on stderr). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dlrt.h"

static int parse_list(const char *s, double *out, int max) {
  int n = 0;
  while (*s && n < max) {
    char *end;
    out[n++] = strtod(s, &end);
    if (end == s) return -1;
    s = end;
    if (*s == ',') s++;
  }
  return n;
}

static int cmd_write(int argc, char **argv) {
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  for (int i = 3; i + 3 < argc; i += 4) {
    const char *name = argv[i], *dt = argv[i + 1];
    double shp[DLRT_MAX_RANK];
    int rank = parse_list(argv[i + 2], shp, DLRT_MAX_RANK);
    int64_t shape[DLRT_MAX_RANK];
    for (int k = 0; k < rank; k++) shape[k] = (int64_t)shp[k];
    int64_t n = dlrt_numel(shape, rank);
    double *vals = malloc(sizeof(double) * (size_t)(n + 1));
    int nv = parse_list(argv[i + 3], vals, (int)n);
    if (rank < 0 || nv < 1 || (nv != n && nv != 1)) {
      fprintf(stderr, "st_tool: %s: %d values for %lld elements\n", name, nv, (long long)n);
      return 1;
    }
    int32_t dtype = strcmp(dt, "I32") == 0 ? DLRT_I32 : DLRT_F32;
    void *data = malloc(4 * (size_t)(n + 1));
    for (int64_t k = 0; k < n; k++) {
      double v = vals[nv == 1 ? 0 : k];
      if (dtype == DLRT_F32) ((float *)data)[k] = (float)v;
      else ((int32_t *)data)[k] = (int32_t)v;
    }
    dlrt_st_add(&set, name, dtype, rank, shape, data);
    free(data);
    free(vals);
  }
  char err[512];
  if (dlrt_st_write(argv[2], &set, err, sizeof err)) {
    fprintf(stderr, "st_tool: %s\n", err);
    return 1;
  }
  dlrt_st_free(&set);
  return 0;
}

static int cmd_get(const char *path, const char *name) {
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  char err[512];
  if (dlrt_st_read(path, &set, err, sizeof err)) {
    fprintf(stderr, "st_tool: %s\n", err);
    return 1;
  }
  const DlrtTensor *t = dlrt_st_find(&set, name);
  if (!t) {
    fprintf(stderr, "st_tool: %s: no tensor %s\n", path, name);
    return 1;
  }
  int64_t n = dlrt_numel(t->shape, t->rank);
  for (int64_t k = 0; k < n; k++) {
    if (t->dtype == DLRT_F32) printf("%.9g\n", (double)((const float *)t->data)[k]);
    else printf("%d\n", ((const int32_t *)t->data)[k]);
  }
  dlrt_st_free(&set);
  return 0;
}

/* Hand check of the layout: every "data_offsets":[b,e] pair; sorted by
 * begin they must tile [0, data size) exactly. */
static int cmd_validate(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "st_tool: cannot open %s\n", path); return 1; }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)size + 1);
  if (fread(b, 1, (size_t)size, f) != (size_t)size) { fclose(f); return 1; }
  fclose(f);
  if (size < 8) { fprintf(stderr, "st_tool: %s: shorter than 8 bytes\n", path); return 1; }
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
  if (hl > (uint64_t)size - 8) { fprintf(stderr, "st_tool: %s: header length %llu too large\n", path, (unsigned long long)hl); return 1; }
  char *hdr = malloc(hl + 1);
  memcpy(hdr, b + 8, hl);
  hdr[hl] = 0;
  if (hdr[0] != '{') { fprintf(stderr, "st_tool: %s: header is not a JSON object\n", path); return 1; }
  long data = size - 8 - (long)hl;
  long begins[4096], ends[4096];
  int n = 0;
  for (const char *p = strstr(hdr, "\"data_offsets\""); p && n < 4096; p = strstr(p + 1, "\"data_offsets\"")) {
    const char *q = strchr(p, '[');
    if (!q || sscanf(q, "[ %ld , %ld ]", &begins[n], &ends[n]) != 2) {
      fprintf(stderr, "st_tool: %s: bad data_offsets\n", path);
      return 1;
    }
    n++;
  }
  long pos = 0;
  for (int k = 0; k < n; k++) { /* selection by begin */
    int best = -1;
    for (int j = 0; j < n; j++)
      if (begins[j] == pos && ends[j] >= begins[j]) best = j;
    if (best < 0) { fprintf(stderr, "st_tool: %s: no tensor data starts at offset %ld\n", path, pos); return 1; }
    pos = ends[best];
    begins[best] = -1;
  }
  if (pos != data) { fprintf(stderr, "st_tool: %s: tensors cover %ld of %ld data bytes\n", path, pos, data); return 1; }
  DlrtTensorSet set;
  memset(&set, 0, sizeof set);
  char err[512];
  if (dlrt_st_read(path, &set, err, sizeof err)) { fprintf(stderr, "st_tool: %s\n", err); return 1; }
  if (set.n != n) { fprintf(stderr, "st_tool: %s: %d tensors read, %d offsets\n", path, set.n, n); return 1; }
  for (int k = 0; k < set.n; k++) printf("%s\n", set.t[k].name);
  dlrt_st_free(&set);
  free(hdr);
  free(b);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "write") == 0 && (argc - 3) % 4 == 0) return cmd_write(argc, argv);
  if (argc == 4 && strcmp(argv[1], "get") == 0) return cmd_get(argv[2], argv[3]);
  if (argc == 3 && strcmp(argv[1], "validate") == 0) return cmd_validate(argv[2]);
  fprintf(stderr, "usage: st_tool write OUT (NAME DTYPE SHAPE VALUES)... | get FILE NAME | validate FILE\n");
  return 2;
}
