/* jit_cache.h — the on-disk cache of JIT-compiled object code. A module's
 * optimised object is kept as DIR/KEY-EXE.o, KEY hashing its LLVM IR,
 * target and options (cg_module_key) and EXE the identity of the file that
 * holds this code, the executable or a shared library linking the driver
 * (device, inode, size, modification time), so a rebuilt dlc never reuses
 * code an older build made. Files carry a length and checksum;
 * a damaged or foreign file is a miss. Errors only turn caching off.
 *   DLC_CACHE=0          off
 *   DLC_CACHE_DIR=DIR    the directory (default $XDG_CACHE_HOME/dlc, else
 *                        $HOME/.cache/dlc); at most JC_MAX_FILES files, the
 *                        least recently used removed first */
#ifndef TOOLS_JIT_CACHE_H
#define TOOLS_JIT_CACHE_H
#include <stdbool.h>
#include <stddef.h>

enum { JC_MAX_FILES = 256 };

/* The cache directory (created if missing), or NULL when caching is off or
 * no directory is usable. Computed once per process. */
const char *jc_dir(void);
/* DIR/KEY-EXE.o for a module key (malloc'ed; NULL on error). */
char *jc_path(const char *dir, const char *module_key);
/* The object stored at path (*data malloc'ed) when it is intact; marks it
 * used. */
bool jc_load(const char *path, void **data, size_t *size);
/* Stores an object at path (atomically: a temporary file renamed into
 * place), then keeps the directory within JC_MAX_FILES. */
void jc_store(const char *dir, const char *path, const void *data, size_t size);
#endif
