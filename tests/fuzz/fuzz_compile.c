/* fuzz_compile.c — the compiler's front half on arbitrary input: any bytes
 * as a model file, compiled through parsing, checking, autodiff, the graph
 * passes, lowering and memory planning (DRV_STAGE_KERNELS, no LLVM). User
 * errors are the expected outcome for most inputs; a crash, a sanitizer
 * report, a hang or an internal error (status DRV_INTERNAL) is a finding.
 *
 *   fuzz_replay FILE|DIR...   every build (ctest fuzz.replay): compiles each
 *                             file, fails on an internal error
 *   fuzz_dlc [libFuzzer args] with -DDLC_FUZZ=ON and clang (libFuzzer):
 *                             e.g. fuzz_dlc -max_total_time=600 CORPUS_DIR
 *
 * DLC_FUZZ_EXT=dlir feeds the input as a kernel program (.dlir) instead of
 * a model (.dl); DLC_FUZZ_STAGE=llvm continues through LLVM code generation
 * and its verifier (at -O1: fused kernels, a short LLVM pipeline). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/driver.h"

/* The input goes to a file of this process (the driver reads paths, and
 * the extension picks the format). */
static const char *input_path(void) {
  static char path[128];
  if (!path[0]) {
    const char *ext = getenv("DLC_FUZZ_EXT");
    bool dlir = ext && strcmp(ext, "dlir") == 0;
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dlc-fuzz-%ld.%s", dir && *dir ? dir : "/tmp", (long)getpid(),
             dlir ? "dlir" : "dl");
  }
  return path;
}

static void remove_input(void) { remove(input_path()); }

/* Compiles one input; returns the driver's status. */
static int compile_one(const uint8_t *data, size_t size) {
  static bool registered;
  if (!registered) {
    registered = true;
    atexit(remove_input);
  }
  FILE *f = fopen(input_path(), "wb");
  if (!f) return DRV_OK; /* nothing to say about the input */
  size_t n = size ? fwrite(data, 1, size, f) : 0;
  fclose(f);
  if (n != size) return DRV_OK;
  static int llvm = -1;
  if (llvm < 0) {
    const char *st = getenv("DLC_FUZZ_STAGE");
    llvm = st && strcmp(st, "llvm") == 0;
  }
  DrvOptions o;
  memset(&o, 0, sizeof o);
  o.opt_level = llvm ? 1 : 2;
  Diag d;
  diag_init(&d, NULL);
  DrvModel m;
  int rc = drv_compile(&m, input_path(), &o, llvm ? DRV_STAGE_LLVM : DRV_STAGE_KERNELS, &d);
  if (rc == DRV_INTERNAL) fprintf(stderr, "fuzz: internal error: %s\n", d.first);
  drv_free(&m);
  diag_free(&d);
  return rc;
}

#ifdef DLC_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (compile_one(data, size) == DRV_INTERNAL) abort(); /* a finding */
  return 0;
}
#else
static int replay_file(const char *path, int *files) {
  Arena *a = arena_new();
  size_t n = 0;
  char *text = a ? drv_read_file(a, path, &n) : NULL;
  if (!text) {
    fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
    arena_free(a);
    return 1;
  }
  int rc = compile_one((const uint8_t *)text, n);
  arena_free(a);
  ++*files;
  if (rc == DRV_INTERNAL) {
    fprintf(stderr, "fuzz_replay: %s: internal error\n", path);
    return 1;
  }
  return 0;
}

static int replay(const char *path, int *files) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "fuzz_replay: no such file or directory: %s\n", path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) return replay_file(path, files);
  DIR *dir = opendir(path);
  if (!dir) return 1;
  int bad = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (e->d_name[0] == '.') continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) bad += replay_file(sub, files);
  }
  closedir(dir);
  return bad;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fuzz_replay FILE|DIR...\n");
    return 2;
  }
  int bad = 0, files = 0;
  for (int i = 1; i < argc; i++) bad += replay(argv[i], &files);
  printf("fuzz_replay: %d files, %d internal errors\n", files, bad);
  return bad ? 1 : 0;
}
#endif
