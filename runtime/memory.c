/* memory.c — 64-byte aligned, zero-filled buffers for tensors (dlrt_alloc /
 * dlrt_free) and dlrt_numel. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/dlrt.h"

#include <stdlib.h>
#include <string.h>

void *dlrt_alloc(size_t bytes) {
  /* Round up to a multiple of 64 (and at least 64) so vector loops may read
   * a full cache line, and so that a 0-byte request still returns a pointer. */
  if (bytes > SIZE_MAX - 64) return NULL;
  size_t sz = (bytes + 63) & ~(size_t)63;
  if (sz == 0) sz = 64;
  void *p = NULL;
  if (posix_memalign(&p, 64, sz) != 0) return NULL;
  memset(p, 0, sz);
  return p;
}

void dlrt_free(void *p) { free(p); }

int64_t dlrt_numel(const int64_t *shape, int rank) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}
