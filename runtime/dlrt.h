/* dlrt.h — the dlc runtime: the only interface generated code calls, and the
 * services dlrun and every AOT library share: aligned buffers, threads
 * (OpenMP underneath), the counter-based random generator, parameter
 * initialisation and safetensors I/O. Depends on nothing of the compiler.
 * Datasets live in dlrt_data.h (linked into dlrun only). */
#ifndef DLRT_H
#define DLRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- memory ---------------------------------------------------------- */
/* 64-byte aligned, zero-filled; NULL when out of memory. */
void *dlrt_alloc(size_t bytes);
void dlrt_free(void *p);

/* ---- threads --------------------------------------------------------- */
/* A kernel body over [begin, end) of its outer iteration space. */
typedef void (*DlrtKernelFn)(void *ctx, int64_t begin, int64_t end);
/* Splits [0, n) into static chunks of at least `grain` iterations and runs
 * them on the thread pool; serial when n <= grain or one thread is set.
 * Chunk boundaries depend only on n, grain and the thread count. */
void dlrt_parallel_for(DlrtKernelFn fn, void *ctx, int64_t n, int64_t grain);
/* The layout dlrt_parallel_for uses: chunks = clamp(n / max(grain,1), 1,
 * threads) (0 when n <= 0); chunk i of `chunks` covers [begin, end), the
 * first n % chunks chunks one iteration longer. Calls nested inside a
 * parallel region run serially. */
int64_t dlrt_chunk_count(int64_t n, int64_t grain, int threads);
/* Scratch memory of the calling thread, at least `bytes` long and 64-byte
 * aligned, kept (and grown when asked for more) for the thread's lifetime:
 * generated GEMM kernels pack their operand panels into it. The contents are
 * undefined; a thread must not hold on to it across two kernels. */
void *dlrt_scratch(int64_t bytes);
void dlrt_chunk_range(int64_t n, int64_t chunks, int64_t i, int64_t *begin, int64_t *end);
/* n <= 0 means: OMP_NUM_THREADS if set, else the number of cores. */
void dlrt_set_threads(int n);
int dlrt_get_threads(void);

/* ---- counter-based random numbers ------------------------------------ */
/* splitmix64 finaliser of seed + counter * 0x9E3779B97F4A7C15:
 *   z = seed + counter * 0x9E3779B97F4A7C15;
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *   z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *   return z ^ (z >> 31);
 * Generated code (dropout) inlines exactly this function. */
uint64_t dlrt_mix64(uint64_t seed, uint64_t counter);
/* (dlrt_mix64(seed, counter) >> 40) * 2^-24, in [0, 1). */
float dlrt_uniform01(uint64_t seed, uint64_t counter);
/* Standard normal by Box-Muller from counters 2*counter and 2*counter+1:
 *   u1 = uniform01(seed, 2c) (0 replaced by 2^-25), u2 = uniform01(seed, 2c+1),
 *   z = sqrt(-2 ln u1) * cos(2 pi u2), computed in double, rounded to float. */
float dlrt_normal(uint64_t seed, uint64_t counter);
/* Seed of one named stream (e.g. one parameter): mix64(seed, fnv1a(name)). */
uint64_t dlrt_stream_seed(uint64_t seed, const char *name);
/* 64-bit FNV-1a of a NUL-terminated string. */
uint64_t dlrt_fnv1a(const char *s);
/* 64-bit FNV-1a of n bytes, continuing from h (DLRT_FNV1A_BASIS to start). */
#define DLRT_FNV1A_BASIS 0xcbf29ce484222325ull
uint64_t dlrt_fnv1a_bytes(uint64_t h, const void *data, size_t n);

/* ---- initialisation (SPEC §2) ---------------------------------------- */
/* Values are ABI: never reorder. */
typedef enum {
  DLRT_INIT_ZEROS = 0,
  DLRT_INIT_ONES = 1,
  DLRT_INIT_CONSTANT = 2,        /* a = value */
  DLRT_INIT_NORMAL = 3,          /* a = std (mean 0) */
  DLRT_INIT_UNIFORM = 4,         /* [a, b) */
  DLRT_INIT_XAVIER_UNIFORM = 5,
  DLRT_INIT_XAVIER_NORMAL = 6,
  DLRT_INIT_KAIMING_UNIFORM = 7, /* gain sqrt(2), fan_in */
  DLRT_INIT_KAIMING_NORMAL = 8,
} DlrtInitKind;
typedef struct {
  int32_t kind;
  float a, b;
} DlrtInit;
/* Fans as SPEC §2: rank 2 [in,out]; rank 4 [out,in/g,kh,kw]; rank 1 fan_in =
 * shape[0] (and fan_out = shape[0]); rank 0 fan 1. Element i draws from
 * counter i of stream `stream_seed`, so the result is thread-independent. */
void dlrt_init_tensor(float *data, const int64_t *shape, int rank, DlrtInit init,
                      uint64_t stream_seed);
/* The fans dlrt_init_tensor uses (rank >= 3 as rank 4: [out, in/g, k...]). */
void dlrt_fans(const int64_t *shape, int rank, double *fan_in, double *fan_out);

/* ---- safetensors (SPEC §7) ------------------------------------------- */
/* Values are ABI: never reorder. */
typedef enum { DLRT_F32 = 0, DLRT_I32 = 1 } DlrtDType;
#define DLRT_MAX_RANK 8
typedef struct {
  char *name;  /* owned by the set */
  int32_t dtype;
  int32_t rank;
  int64_t shape[DLRT_MAX_RANK];
  void *data;  /* owned by the set, 64-byte aligned */
  size_t nbytes;
} DlrtTensor;
typedef struct {
  int n, cap;
  DlrtTensor *t;
} DlrtTensorSet;

/* Reads a safetensors file (or stream: only as far as its header says);
 * on error returns nonzero and writes a message. */
int dlrt_st_read(const char *path, DlrtTensorSet *out, char *err, size_t errlen);
/* Writes PATH atomically (temporary file in the same directory, fsync,
 * rename): a reader never sees a half-written file. */
int dlrt_st_write(const char *path, const DlrtTensorSet *set, char *err, size_t errlen);
/* Appends a copy of the data under NAME; returns the new tensor or NULL. */
DlrtTensor *dlrt_st_add(DlrtTensorSet *set, const char *name, int32_t dtype, int rank,
                        const int64_t *shape, const void *data);
const DlrtTensor *dlrt_st_find(const DlrtTensorSet *set, const char *name);
void dlrt_st_free(DlrtTensorSet *set);
/* Parses an in-memory safetensors image (path only names it in errors). */
int dlrt_st_parse(const void *bytes, size_t size, const char *path, DlrtTensorSet *out,
                  char *err, size_t errlen);
/* "F32"/"I32" (NULL if unknown) and element size in bytes (0 if unknown). */
const char *dlrt_dtype_name(int32_t dtype);
size_t dlrt_dtype_size(int32_t dtype);
/* Number of elements of a shape. */
int64_t dlrt_numel(const int64_t *shape, int rank);

#ifdef __cplusplus
}
#endif
#endif
