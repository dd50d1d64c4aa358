/* jit_cache.c — the on-disk cache of JIT-compiled object code (jit_cache.h). */
#define _GNU_SOURCE /* dladdr */
#include "tools/jit_cache.h"

#include <dlfcn.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/dlrt.h"

/* File layout: magic, payload length, payload checksum (little-endian
 * u64s), then the object. */
static const char MAGIC[8] = {'D', 'L', 'C', 'O', 'B', 'J', '1', 0};
enum { HEADER = 24 };

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* mkdir -p */
static bool make_dirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return false;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++)
    if (buf[i] == '/' || buf[i] == 0) {
      char c = buf[i];
      buf[i] = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
      buf[i] = c;
    }
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK | X_OK) == 0;
}

static char g_dir[4096];
static bool g_on;
static uint64_t g_exe;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_once(void) {
  const char *off = getenv("DLC_CACHE");
  if (off && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0)) return;
  /* the identity of the file holding this code (the executable, or a
   * shared library that links the driver) */
  struct stat st;
  Dl_info info;
  bool found = dladdr((void *)jc_dir, &info) && info.dli_fname && stat(info.dli_fname, &st) == 0;
  if (!found && stat("/proc/self/exe", &st) != 0) return; /* no identity: no reuse */
  uint64_t id[5] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                    (uint64_t)st.st_mtim.tv_nsec};
  g_exe = dlrt_fnv1a_bytes(DLRT_FNV1A_BASIS, id, sizeof id);
  const char *dir = getenv("DLC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (dir && *dir) n = snprintf(g_dir, sizeof g_dir, "%s", dir);
  else if (xdg && *xdg == '/') n = snprintf(g_dir, sizeof g_dir, "%s/dlc", xdg);
  else if (home && *home) n = snprintf(g_dir, sizeof g_dir, "%s/.cache/dlc", home);
  else return;
  g_on = n > 0 && (size_t)n < sizeof g_dir && make_dirs(g_dir);
}

const char *jc_dir(void) {
  pthread_once(&g_once, init_once);
  return g_on ? g_dir : NULL;
}

char *jc_path(const char *dir, const char *module_key) {
  size_t n = strlen(dir) + strlen(module_key) + 24;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s-%016llx.o", dir, module_key, (unsigned long long)g_exe);
  return p;
}

bool jc_load(const char *path, void **data, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  unsigned char h[HEADER];
  bool ok = fread(h, 1, HEADER, f) == HEADER && memcmp(h, MAGIC, sizeof MAGIC) == 0;
  uint64_t n = ok ? get64(h + 8) : 0, sum = ok ? get64(h + 16) : 0;
  ok = ok && n > 0 && n < ((uint64_t)1 << 31);
  void *buf = ok ? malloc((size_t)n) : NULL;
  ok = buf && fread(buf, 1, (size_t)n, f) == n && fgetc(f) == EOF && dlrt_fnv1a_bytes(DLRT_FNV1A_BASIS, buf, (size_t)n) == sum;
  fclose(f);
  if (!ok) {
    free(buf);
    return false;
  }
  utimensat(AT_FDCWD, path, NULL, 0); /* used now: pruned last */
  *data = buf;
  *size = (size_t)n;
  return true;
}

typedef struct {
  char *path;
  struct timespec t;
} Entry;

static int older(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  if (x->t.tv_sec != y->t.tv_sec) return x->t.tv_sec < y->t.tv_sec ? -1 : 1;
  return (x->t.tv_nsec > y->t.tv_nsec) - (x->t.tv_nsec < y->t.tv_nsec);
}

/* Removes the least recently used objects beyond JC_MAX_FILES. */
static void prune(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  Entry *es = NULL;
  size_t n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 3 || strcmp(e->d_name + len - 2, ".o") != 0) continue;
    if (n == cap) {
      Entry *ne = realloc(es, sizeof *es * (cap = cap ? 2 * cap : 64));
      if (!ne) break;
      es = ne;
    }
    size_t pl = strlen(dir) + len + 2;
    es[n].path = malloc(pl);
    if (!es[n].path) break;
    snprintf(es[n].path, pl, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(es[n].path, &st) != 0) {
      free(es[n].path);
      continue;
    }
    es[n++].t = st.st_mtim;
  }
  closedir(d);
  if (n > JC_MAX_FILES) {
    qsort(es, n, sizeof *es, older);
    for (size_t i = 0; i < n - JC_MAX_FILES; i++) remove(es[i].path);
  }
  for (size_t i = 0; i < n; i++) free(es[i].path);
  free(es);
}

void jc_store(const char *dir, const char *path, const void *data, size_t size) {
  size_t tl = strlen(dir) + 32;
  char *tmp = malloc(tl);
  if (!tmp) return;
  snprintf(tmp, tl, "%s/.tmp-XXXXXX", dir);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    free(tmp);
    return;
  }
  FILE *f = fdopen(fd, "wb");
  unsigned char h[HEADER];
  memcpy(h, MAGIC, sizeof MAGIC);
  put64(h + 8, (uint64_t)size);
  put64(h + 16, dlrt_fnv1a_bytes(DLRT_FNV1A_BASIS, data, size));
  bool ok = f && fwrite(h, 1, HEADER, f) == HEADER && fwrite(data, 1, size, f) == size;
  if (f) ok = fclose(f) == 0 && ok;
  else close(fd);
  if (!ok || rename(tmp, path) != 0) remove(tmp);
  free(tmp);
  prune(dir);
}
