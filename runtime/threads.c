/* threads.c — the thread setting and dlrt_parallel_for, a static-chunked
 * parallel loop on top of OpenMP. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/dlrt.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

static int g_threads = 0; /* 0: not set yet, use the default */

static int default_threads(void) {
  const char *s = getenv("OMP_NUM_THREADS");
  if (s && *s) {
    char *end = NULL;
    long v = strtol(s, &end, 10); /* "4" or the first entry of "4,2" */
    if (end != s && v > 0) return v > 1024 ? 1024 : (int)v;
  }
  int p = omp_get_num_procs();
  return p > 0 ? p : 1;
}

void dlrt_set_threads(int n) { g_threads = n > 0 ? n : default_threads(); }

int dlrt_get_threads(void) {
  if (g_threads <= 0) g_threads = default_threads();
  return g_threads;
}

int64_t dlrt_chunk_count(int64_t n, int64_t grain, int threads) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  if (threads < 1) threads = 1;
  int64_t c = n / grain; /* every chunk holds at least `grain` iterations */
  if (c < 1) c = 1;
  if (c > threads) c = threads;
  return c;
}

void dlrt_chunk_range(int64_t n, int64_t chunks, int64_t i, int64_t *begin, int64_t *end) {
  int64_t base = n / chunks, rem = n % chunks;
  *begin = i * base + (i < rem ? i : rem);
  *end = *begin + base + (i < rem ? 1 : 0);
}

/* Per-thread scratch: a pthread key whose destructor frees it when a pool
 * thread exits (the thread count can change between runs). */
typedef struct {
  void *p;
  int64_t bytes;
} Scratch;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
  Scratch *s = v;
  free(s->p);
  free(s);
}

static void scratch_key_init(void) {
  if (pthread_key_create(&g_scratch_key, scratch_free) != 0) abort();
}

void *dlrt_scratch(int64_t bytes) {
  pthread_once(&g_scratch_once, scratch_key_init);
  Scratch *s = pthread_getspecific(g_scratch_key);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || pthread_setspecific(g_scratch_key, s) != 0) abort(); /* kernels have no error path */
  }
  if (bytes > s->bytes) {
    free(s->p);
    int64_t n = (bytes + 4095) / 4096 * 4096;
    s->p = aligned_alloc(64, (size_t)n);
    if (!s->p) abort(); /* out of memory inside a kernel is fatal */
    s->bytes = n;
  }
  return s->p;
}

void dlrt_parallel_for(DlrtKernelFn fn, void *ctx, int64_t n, int64_t grain) {
  if (n <= 0) return;
  int threads = dlrt_get_threads();
  int64_t chunks = dlrt_chunk_count(n, grain, threads);
  if (chunks <= 1 || omp_in_parallel()) {
    /* Serial fast path; nested calls also run serially (chunk layout is only
     * a work split, the kernel's result does not depend on it). */
    fn(ctx, 0, n);
    return;
  }
  /* The team always has `threads` threads (a stable team size lets the
   * OpenMP runtime reuse its hot team); chunk i runs on thread i. */
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int64_t i = 0; i < chunks; i++) {
    int64_t b, e;
    dlrt_chunk_range(n, chunks, i, &b, &e);
    fn(ctx, b, e);
  }
}
