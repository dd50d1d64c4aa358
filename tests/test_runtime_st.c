/* test_runtime_st.c — cmocka tests of the safetensors reader/writer:
 * round trips, malformed input, streams, atomic writes; and the
 * checkpoint mismatch report of a model. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/dlrt.h"
#include "runtime/dlrt_api.h"
#include "tests/test_runtime.h"

static char g_dir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/dlrt_st_test.XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  DIR *d = opendir(g_dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(g_dir);
  return 0;
}

static int count_temps(const char *dir) {
  int n = 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

static void make_set(DlrtTensorSet *s) {
  memset(s, 0, sizeof *s);
  for (int rank = 0; rank <= 4; rank++) {
    int64_t shape[4] = {2, 3, 1, 2};
    int64_t n = dlrt_numel(shape, rank);
    float f[24];
    int32_t i32[24];
    for (int k = 0; k < n; k++) {
      f[k] = 0.5f * (float)k - 3.25f;
      i32[k] = k * 1000 - 7;
    }
    char name[32];
    snprintf(name, sizeof name, "f.r%d", rank);
    assert_non_null(dlrt_st_add(s, name, DLRT_F32, rank, shape, f));
    snprintf(name, sizeof name, "i@r%d", rank);
    assert_non_null(dlrt_st_add(s, name, DLRT_I32, rank, shape, i32));
  }
  int64_t z[2] = {0, 5};
  assert_non_null(dlrt_st_add(s, "empty", DLRT_F32, 2, z, NULL));
  assert_non_null(dlrt_st_add(s, "we\"ird\\name\n\xc3\xa9", DLRT_F32, 0, NULL, NULL));
}

static void test_roundtrip(void **state) {
  (void)state;
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
  DlrtTensorSet s, r;
  make_set(&s);
  assert_int_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
  assert_int_equal(count_temps(g_dir), 0);
  size_t len = 0;
  unsigned char *b = slurp(path, &len);
  assert_non_null(b);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
  assert_int_equal(hl % 8, 0);
  assert_true(8 + hl <= len);
  assert_int_equal(b[8], '{');
  free(b);
  int rc = dlrt_st_read(path, &r, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.n, s.n);
  for (int i = 0; i < s.n; i++) {
    /* insertion order is preserved */
    assert_string_equal(r.t[i].name, s.t[i].name);
    const DlrtTensor *t = dlrt_st_find(&r, s.t[i].name);
    assert_ptr_equal(t, &r.t[i]);
    assert_int_equal(t->dtype, s.t[i].dtype);
    assert_int_equal(t->rank, s.t[i].rank);
    for (int k = 0; k < t->rank; k++) assert_int_equal(t->shape[k], s.t[i].shape[k]);
    assert_int_equal(t->nbytes, s.t[i].nbytes);
    assert_int_equal((uintptr_t)t->data % 64, 0);
    if (t->nbytes) assert_memory_equal(t->data, s.t[i].data, t->nbytes);
  }
  assert_null(dlrt_st_find(&r, "nope"));
  /* overwrite an existing file */
  assert_int_equal(dlrt_st_write(path, &r, err, sizeof err), 0);
  dlrt_st_free(&r);
  dlrt_st_free(&s);
  /* an empty set */
  assert_int_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
  assert_int_equal(dlrt_st_read(path, &r, err, sizeof err), 0);
  assert_int_equal(r.n, 0);
  dlrt_st_free(&r);
}

static int parse_str(const char *json, size_t datalen, char *err, size_t errlen) {
  size_t hl = strlen(json);
  unsigned char *b = calloc(8 + hl + datalen + 1, 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, json, hl);
  DlrtTensorSet s;
  int rc = dlrt_st_parse(b, 8 + hl + datalen, "t.st", &s, err, errlen);
  if (rc == 0) dlrt_st_free(&s);
  else {
    assert_int_equal(s.n, 0);
    assert_true(strlen(err) > 0);
  }
  free(b);
  return rc;
}

static void test_header_variants(void **state) {
  (void)state;
  char err[512];
  /* key order, whitespace, metadata, unknown keys, escapes */
  const char *ok1 =
      " {\n \"__metadata__\" : {\"format\":\"pt\", \"x\": [1, 2.5e3, true, null, {\"a\":\"b\"}]},\n"
      "  \"b\" : { \"data_offsets\" : [ 8 , 16 ] , \"shape\":[2] ,\"dtype\":\"I32\"},\t"
      "\"a\\u00e9\\\"\\n\\ud83d\\ude00\":{\"shape\":[1,2],\"dtype\":\"F32\",\"extra\":{},"
      "\"data_offsets\":[0,8]} }   ";
  size_t hl = strlen(ok1);
  unsigned char *b = calloc(8 + hl + 16, 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, ok1, hl);
  float f[2] = {1.5f, -2};
  int32_t v[2] = {7, -9};
  memcpy(b + 8 + hl, f, 8);
  memcpy(b + 8 + hl + 8, v, 8);
  DlrtTensorSet s;
  int rc = dlrt_st_parse(b, 8 + hl + 16, "x", &s, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(s.n, 2);
  const DlrtTensor *t = dlrt_st_find(&s, "a\xc3\xa9\"\n\xf0\x9f\x98\x80");
  assert_non_null(t);
  assert_int_equal(t->rank, 2);
  assert_memory_equal(t->data, f, 8);
  t = dlrt_st_find(&s, "b");
  assert_non_null(t);
  assert_int_equal(t->dtype, DLRT_I32);
  assert_memory_equal(t->data, v, 8);
  dlrt_st_free(&s);
  free(b);
  assert_int_equal(parse_str("{}", 0, err, sizeof err), 0);
  assert_int_equal(parse_str("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                             err, sizeof err),
                   0);
}

static void test_malformed(void **state) {
  (void)state;
  char err[512];
  struct { const char *json; size_t data; const char *want; } bad[] = {
      {"", 0, "bad safetensors header"},
      {"{", 0, "bad safetensors header"},
      {"[]", 0, "bad safetensors header"},
      {"{\"a\":}", 0, "bad"},
      {"{\"a\" {}}", 0, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "out of range"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "out of range"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "shape needs"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
       "too large"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4,
       "overflow"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
      {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
       "rank"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, "overlapping"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, "duplicate"},
      {"{\"a\\q\":{}}", 0, "escape"},
      {"{\"a\\ud800\":{}}", 0, "surrogate"},
      {"{\"a\\u12\"}", 0, "bad"},
      {"{\"a", 0, "unterminated"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[[[[", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":tru}}", 4, "bad"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":-}}", 4, "bad"},
      {"{\"a\":\"F32\"}", 0, "bad"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    int rc = parse_str(bad[i].json, bad[i].data, err, sizeof err);
    if (rc == 0 || !strstr(err, bad[i].want))
      fprintf(stderr, "case %zu: rc=%d err='%s' want '%s'\n", i, rc, err, bad[i].want);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, bad[i].want));
  }
  /* deep nesting is refused, not a stack overflow */
  char deep[4096];
  strcpy(deep, "{\"__metadata__\":");
  for (int i = 0; i < 2000; i++) strcat(deep, "[");
  assert_int_not_equal(parse_str(deep, 0, err, sizeof err), 0);
  /* header length larger than the file */
  unsigned char hdr[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}', ' ', ' '};
  DlrtTensorSet s;
  assert_int_not_equal(dlrt_st_parse(hdr, sizeof hdr, "h", &s, err, sizeof err), 0);
  assert_non_null(strstr(err, "truncated"));
  unsigned char hdr2[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_int_not_equal(dlrt_st_parse(hdr2, sizeof hdr2, "h", &s, err, sizeof err), 0);
  assert_int_not_equal(dlrt_st_parse(hdr2, 3, "h", &s, err, sizeof err), 0);
  assert_non_null(strstr(err, "truncated"));
}

static void test_truncated(void **state) {
  (void)state;
  char path[512], tpath[512], err[512];
  snprintf(path, sizeof path, "%s/full.safetensors", g_dir);
  snprintf(tpath, sizeof tpath, "%s/trunc.safetensors", g_dir);
  DlrtTensorSet s, r;
  make_set(&s);
  assert_int_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
  dlrt_st_free(&s);
  size_t len = 0;
  unsigned char *b = slurp(path, &len);
  assert_non_null(b);
  /* every proper prefix is an error */
  for (size_t cut = 0; cut < len; cut++) {
    assert_int_not_equal(dlrt_st_parse(b, cut, "cut", &r, err, sizeof err), 0);
    assert_int_equal(r.n, 0);
  }
  FILE *f = fopen(tpath, "wb");
  fwrite(b, 1, len - 3, f);
  fclose(f);
  assert_int_not_equal(dlrt_st_read(tpath, &r, err, sizeof err), 0);
  assert_non_null(strstr(err, tpath));
  assert_non_null(strstr(err, "truncated"));
  /* random byte corruption never crashes */
  srand(1);
  for (int it = 0; it < 2000; it++) {
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    for (int k = 0; k < 3; k++) c[(size_t)rand() % len] = (unsigned char)rand();
    if (dlrt_st_parse(c, len, "fuzz", &r, err, sizeof err) == 0) dlrt_st_free(&r);
    free(c);
  }
  free(b);
  assert_int_not_equal(dlrt_st_read("/nonexistent/x.safetensors", &r, err, sizeof err), 0);
  assert_non_null(strstr(err, "/nonexistent/x.safetensors"));
}

static void test_atomic_write(void **state) {
  (void)state;
  char path[512], err[512];
  DlrtTensorSet s, r;
  make_set(&s);
  /* a missing directory: error naming the path and the reason */
  assert_int_not_equal(dlrt_st_write("/nonexistent-dir-dlrt/x.safetensors", &s, err, sizeof err), 0);
  assert_non_null(strstr(err, "/nonexistent-dir-dlrt/x.safetensors"));
  assert_non_null(strstr(err, "No such file"));
  /* a read-only directory (not enforced for root) */
  char ro[300];
  snprintf(ro, sizeof ro, "%s/ro", g_dir);
  assert_int_equal(mkdir(ro, 0555), 0);
  snprintf(path, sizeof path, "%s/x.safetensors", ro);
  if (geteuid() != 0) {
    assert_int_not_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_int_equal(count_temps(ro), 0);
  }
  rmdir(ro);
  /* a failure in the middle of writing (file size limit): the existing
   * target is untouched and no temporary is left behind */
  snprintf(path, sizeof path, "%s/keep.safetensors", g_dir);
  assert_int_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
  size_t len0 = 0;
  unsigned char *before = slurp(path, &len0);
  DlrtTensorSet big = {0};
  int64_t n = 1 << 18;
  assert_non_null(dlrt_st_add(&big, "big", DLRT_F32, 1, &n, NULL));
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*oldh)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old;
  lim.rlim_cur = 64 * 1024;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  int rc = dlrt_st_write(path, &big, err, sizeof err);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, oldh);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(err, path));
  assert_int_equal(count_temps(g_dir), 0);
  size_t len1 = 0;
  unsigned char *after = slurp(path, &len1);
  assert_int_equal(len0, len1);
  assert_memory_equal(before, after, len0);
  free(before);
  free(after);
  assert_int_equal(dlrt_st_read(path, &r, err, sizeof err), 0);
  assert_int_equal(r.n, s.n);
  dlrt_st_free(&r);
  /* target is a directory: rename fails, temp removed */
  char sub[512];
  snprintf(sub, sizeof sub, "%s/adir", g_dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_int_not_equal(dlrt_st_write(sub, &s, err, sizeof err), 0);
  assert_int_equal(count_temps(g_dir), 0);
  rmdir(sub);
  /* invalid sets are refused before touching the disk */
  DlrtTensorSet dup = {0};
  float one = 1;
  assert_non_null(dlrt_st_add(&dup, "a", DLRT_F32, 0, NULL, &one));
  assert_non_null(dlrt_st_add(&dup, "a", DLRT_F32, 0, NULL, &one));
  assert_int_not_equal(dlrt_st_write(path, &dup, err, sizeof err), 0);
  assert_non_null(strstr(err, "duplicate"));
  assert_null(dlrt_st_add(&dup, "b", 7, 0, NULL, &one));
  assert_null(dlrt_st_add(&dup, "b", DLRT_F32, DLRT_MAX_RANK + 1, &n, &one));
  dlrt_st_free(&dup);
  dlrt_st_free(&big);
  dlrt_st_free(&s);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads `bytes` through a pipe, as from a stream whose size is unknown. */
static int read_piped(const unsigned char *bytes, size_t len, DlrtTensorSet *r, char *err,
                      size_t errlen) {
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  assert_true(len <= 4096); /* fits the pipe's buffer: no writer needed */
  assert_int_equal(write(fd[1], bytes, len), (ssize_t)len);
  close(fd[1]);
  char path[64];
  snprintf(path, sizeof path, "/dev/fd/%d", fd[0]);
  int rc = dlrt_st_read(path, r, err, errlen);
  close(fd[0]);
  return rc;
}

/* A stream is read only as far as its header says: the length first (so
 * /dev/zero and /dev/urandom fail at once instead of being read forever),
 * then the header, then the data its offsets need. */
static void test_streams(void **state) {
  (void)state;
  char err[512], path[512];
  DlrtTensorSet s, r;
  double t0 = now_s();
  assert_int_not_equal(dlrt_st_read("/dev/zero", &r, err, sizeof err), 0);
  assert_non_null(strstr(err, "/dev/zero: bad safetensors header: the header length is 0"));
  assert_int_equal(r.n, 0);
  assert_int_not_equal(dlrt_st_read("/dev/urandom", &r, err, sizeof err), 0);
  assert_non_null(strstr(err, "/dev/urandom"));
  assert_true(now_s() - t0 < 2.0);
  /* a huge header length: in a regular file, and in a stream of unknown size */
  unsigned char huge[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
  snprintf(path, sizeof path, "%s/huge.safetensors", g_dir);
  FILE *f = fopen(path, "wb");
  fwrite(huge, 1, sizeof huge, f);
  fclose(f);
  assert_int_not_equal(dlrt_st_read(path, &r, err, sizeof err), 0);
  assert_non_null(strstr(err, "header length 9223372036854775807 but only 2 bytes follow"));
  assert_int_not_equal(read_piped(huge, sizeof huge, &r, err, sizeof err), 0);
  assert_non_null(strstr(err, "header length 9223372036854775807 exceeds the limit"));
  /* a whole file through a pipe loads; cut anywhere, it is an error */
  make_set(&s);
  snprintf(path, sizeof path, "%s/s.safetensors", g_dir);
  assert_int_equal(dlrt_st_write(path, &s, err, sizeof err), 0);
  size_t len = 0;
  unsigned char *b = slurp(path, &len);
  assert_non_null(b);
  assert_int_equal(read_piped(b, len, &r, err, sizeof err), 0);
  assert_int_equal(r.n, s.n);
  for (int i = 0; i < s.n; i++)
    if (s.t[i].nbytes) assert_memory_equal(r.t[i].data, s.t[i].data, s.t[i].nbytes);
  dlrt_st_free(&r);
  for (size_t cut = 0; cut < len; cut += 7) {
    assert_int_not_equal(read_piped(b, cut, &r, err, sizeof err), 0);
    assert_int_equal(r.n, 0);
  }
  /* the file followed by an endless stream of zeros: the data the header
   * needs is read, the rest never */
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    static const unsigned char zeros[4096];
    close(fd[0]);
    signal(SIGPIPE, SIG_IGN);
    if (write(fd[1], b, len) == (ssize_t)len)
      while (write(fd[1], zeros, sizeof zeros) > 0) {}
    _exit(0);
  }
  close(fd[1]);
  snprintf(path, sizeof path, "/dev/fd/%d", fd[0]);
  int rc = dlrt_st_read(path, &r, err, sizeof err);
  close(fd[0]);
  waitpid(pid, NULL, 0);
  assert_int_equal(rc, 0);
  assert_int_equal(r.n, s.n);
  dlrt_st_free(&r);
  dlrt_st_free(&s);
  free(b);
}

/* A model with many parameters for the mismatch report: N params
 * "layerK.a_long_name_to_fill_the_report.W" of f32[2,2]. */
enum { N_MANY = 100 };
static char g_names[N_MANY][64];
static DlrtBufDesc g_bufs[N_MANY];
static const DlrtModelDesc g_many = {.model = "many", .n_bufs = N_MANY, .bufs = g_bufs, .rng_buf = -1};

static DlrtModel *many_model(void) {
  for (int i = 0; i < N_MANY; i++) {
    snprintf(g_names[i], sizeof g_names[i], "layer%d.a_long_name_to_fill_the_report.W", i);
    g_bufs[i] = (DlrtBufDesc){.name = g_names[i], .role = DLRT_ROLE_PARAM, .dtype = DLRT_F32,
                              .rank = 2, .shape = {2, 2}, .entry = -1, .alias = -1, .offset = -1};
  }
  char err[256];
  DlrtModel *m = dlrt_model_new(&g_many, 1, err, sizeof err);
  assert_non_null(m);
  return m;
}

static int count_lines(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p++) n++;
  return n;
}

/* Every one of the N mismatches is in the report (a line NAME + suffix
 * each; no name is part of another), however long the report is. */
static void assert_reports_all(const char *msg, const char *suffix) {
  assert_non_null(msg);
  char want[256];
  for (int i = 0; i < N_MANY; i++) {
    assert_true(snprintf(want, sizeof want, "%s%s", g_names[i], suffix) < (int)sizeof want);
    if (!strstr(msg, want)) fail_msg("no line '%s' in the report", want);
  }
}

static void test_many_mismatches(void **state) {
  (void)state;
  char path[512], err[4096];
  DlrtModel *m = many_model();
  DlrtTensorSet wrong = {0}, none = {0};
  int64_t shape[2] = {3, 3};
  for (int i = 0; i < N_MANY; i++) assert_non_null(dlrt_st_add(&wrong, g_names[i], DLRT_F32, 2, shape, NULL));
  char *msg = NULL;
  assert_int_equal(dlrt_model_load_set_msg(m, &wrong, 1, 0, &msg), 1);
  assert_reports_all(msg, ": the file has f32[3,3], the model expects f32[2,2]");
  assert_int_equal(count_lines(msg, "\n"), N_MANY - 1);
  free(msg);
  assert_int_equal(dlrt_model_load_set_msg(m, &none, 1, 0, &msg), 1);
  assert_reports_all(msg, ": missing");
  free(msg);
  /* from a file */
  snprintf(path, sizeof path, "%s/wrong.safetensors", g_dir);
  assert_int_equal(dlrt_st_write(path, &wrong, err, sizeof err), 0);
  assert_int_equal(dlrt_model_load_msg(m, path, 1, &msg), 1);
  assert_non_null(strstr(msg, "checkpoint does not match the model:\n"));
  assert_reports_all(msg, ": the file has f32[3,3], the model expects f32[2,2]");
  free(msg);
  /* a fixed buffer too small for the report says how much it left out */
  assert_int_equal(dlrt_model_load(m, path, 1, err, sizeof err), 1);
  int shown = count_lines(err, "the file has"), more = 0;
  const char *note = strstr(err, "\n... and ");
  assert_non_null(note);
  assert_int_equal(sscanf(note, "\n... and %d more lines", &more), 1);
  assert_true(shown > 10);
  assert_int_equal(shown + more, N_MANY);
  /* the C API of a .so model holds the whole report until the next error */
  DlcModel *h = NULL;
  assert_int_equal(dlc_api_create(&g_many, 1, &h), DLC_OK);
  assert_int_equal(dlc_api_load(h, path), DLC_ERR_MISMATCH);
  assert_non_null(strstr(dlc_api_error(h), "checkpoint does not match model many:\n"));
  assert_reports_all(dlc_api_error(h), ": the file has f32[3,3], the model expects f32[2,2]");
  assert_int_equal(dlc_api_load(h, "/nonexistent/x.safetensors"), DLC_ERR_IO);
  assert_non_null(strstr(dlc_api_error(h), "/nonexistent/x.safetensors"));
  assert_null(strstr(dlc_api_error(h), "the file has"));
  assert_int_equal(dlc_api_load(h, path), DLC_ERR_MISMATCH);
  dlc_api_destroy(h); /* frees the report (the ASan build checks) */
  /* a matching set loads */
  DlrtTensorSet good = {0};
  float v[4] = {1, 2, 3, 4};
  for (int i = 0; i < N_MANY; i++) assert_non_null(dlrt_st_add(&good, g_names[i], DLRT_F32, 2, g_bufs[i].shape, v));
  assert_int_equal(dlrt_model_load_set(m, &good, 1, 0, err, sizeof err), 0);
  assert_memory_equal(dlrt_model_data(m, N_MANY - 1), v, sizeof v);
  dlrt_st_free(&good);
  dlrt_st_free(&wrong);
  dlrt_model_free(m);
}

int run_st_tests(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_header_variants),
      cmocka_unit_test(test_malformed),  cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_atomic_write), cmocka_unit_test(test_streams),
      cmocka_unit_test(test_many_mismatches),
  };
  return cmocka_run_group_tests_name("runtime_safetensors", tests, setup_dir, teardown_dir);
}
