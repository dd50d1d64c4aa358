/* elf_local.h — makes symbols of a relocatable ELF object local, like
 * `objcopy --keep-global-symbols` (which is not on every machine): used by
 * `dlc -o model.o` so the runtime linked into the object (dlrt_*,
 * dlc_api_*) cannot clash with another model's object or the program. */
#ifndef TOOLS_ELF_LOCAL_H
#define TOOLS_ELF_LOCAL_H

#include <stddef.h>

/* buf holds a whole ELF64 relocatable object (ET_REL) in the host's byte
 * order. Every defined global or weak symbol whose name is not in keep
 * (NULL-terminated) becomes local; the symbol table is reordered (locals
 * first, as ELF requires) and the relocation, group and section-index
 * tables renumbered. Returns the number of symbols made local, or -1 with
 * a message in err (buf may then be partly rewritten). */
int elf_localize(unsigned char *buf, size_t size, const char *const *keep, char *err, size_t errlen);

#endif
