/* aot_embed.h — what `dlc -o` writes into its temporary directory to build
 * a model library, embedded in dlc at build time (aot_embed.c is generated
 * in the build tree by tools/aot_embed_gen.c), so that dlc never reads the
 * source or build tree at run time: the runtime headers the generated C
 * includes (runtime/dlrt_api.h and the headers it includes) and the static
 * runtime archive libdlrt.a. */
#ifndef TOOLS_AOT_EMBED_H
#define TOOLS_AOT_EMBED_H

#include <stddef.h>

typedef struct {
  const char *path; /* relative: "runtime/dlrt_api.h", "libdlrt.a" */
  const unsigned char *data;
  size_t size;
} AotEmbedFile;

/* The headers, ended by an entry with a NULL path. */
extern const AotEmbedFile aot_embed_headers[];
extern const AotEmbedFile aot_embed_runtime;

#endif
