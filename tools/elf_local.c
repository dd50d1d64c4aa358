/* elf_local.c — localizes the symbols of a relocatable ELF64 object (see
 * elf_local.h). All reads and writes go through memcpy: the object's
 * tables need not be aligned in the buffer. */
#include "tools/elf_local.h"

#include <elf.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHT_LLVM_ADDRSIG
#define SHT_LLVM_ADDRSIG 0x6fff4c03
#endif
#ifndef SHT_LLVM_CALL_GRAPH_PROFILE
#define SHT_LLVM_CALL_GRAPH_PROFILE 0x6fff4c09
#endif

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static bool in_range(size_t size, uint64_t off, uint64_t len) { return off <= size && len <= size - off; }

int elf_localize(unsigned char *buf, size_t size, const char *const *keep, char *err, size_t errlen) {
  Elf64_Ehdr eh;
  const uint16_t one = 1;
  const int host_data = *(const unsigned char *)&one ? ELFDATA2LSB : ELFDATA2MSB;
  if (size < sizeof eh || memcmp(buf, ELFMAG, SELFMAG)) return fail(err, errlen, "not an ELF file");
  memcpy(&eh, buf, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != host_data)
    return fail(err, errlen, "not a 64-bit ELF object in the host's byte order");
  if (eh.e_type != ET_REL) return fail(err, errlen, "not a relocatable object");
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || !in_range(size, eh.e_shoff, sizeof(Elf64_Shdr)))
    return fail(err, errlen, "bad section header table");
  Elf64_Shdr s0;
  memcpy(&s0, buf + eh.e_shoff, sizeof s0);
  uint64_t nsec = eh.e_shnum ? eh.e_shnum : s0.sh_size; /* 0: the count is in section 0 */
  if (nsec > size / sizeof(Elf64_Shdr) || !in_range(size, eh.e_shoff, nsec * sizeof(Elf64_Shdr)))
    return fail(err, errlen, "bad section header table");
  Elf64_Shdr *sh = malloc(nsec * sizeof *sh);
  if (!sh) return fail(err, errlen, "out of memory");
  memcpy(sh, buf + eh.e_shoff, nsec * sizeof *sh);

  int rc = -1;
  Elf64_Sym *sym = NULL;
  uint32_t *map = NULL;
  unsigned char *tmp = NULL;
  uint64_t symsec = 0;
  for (uint64_t i = 1; i < nsec; i++) {
    if (sh[i].sh_type != SHT_SYMTAB) continue;
    if (symsec) {
      fail(err, errlen, "more than one symbol table");
      goto out;
    }
    symsec = i;
  }
  if (!symsec) { /* nothing to localize */
    rc = 0;
    goto out;
  }
  const Elf64_Shdr *st = &sh[symsec];
  if (st->sh_entsize != sizeof(Elf64_Sym) || st->sh_size % sizeof(Elf64_Sym) ||
      !in_range(size, st->sh_offset, st->sh_size) || st->sh_link >= nsec ||
      !in_range(size, sh[st->sh_link].sh_offset, sh[st->sh_link].sh_size)) {
    fail(err, errlen, "bad symbol table");
    goto out;
  }
  uint64_t nsym = st->sh_size / sizeof(Elf64_Sym), first_global = st->sh_info;
  const char *strtab = (const char *)buf + sh[st->sh_link].sh_offset;
  uint64_t strsize = sh[st->sh_link].sh_size;
  if (first_global > nsym || nsym > UINT32_MAX) {
    fail(err, errlen, "bad symbol table");
    goto out;
  }
  sym = malloc(nsym * sizeof *sym);
  map = malloc(nsym * sizeof *map);
  tmp = malloc(nsym * sizeof(Elf64_Sym));
  if (!sym || !map || !tmp) {
    fail(err, errlen, "out of memory");
    goto out;
  }
  memcpy(sym, buf + st->sh_offset, nsym * sizeof *sym);

  /* which globals become local */
  bool *loc = (bool *)tmp; /* nsym bytes of tmp, used before tmp holds symbols */
  uint64_t n_loc = 0;
  for (uint64_t i = 0; i < nsym; i++) {
    loc[i] = false;
    if (i < first_global) continue;
    int bind = ELF64_ST_BIND(sym[i].st_info);
    if ((bind != STB_GLOBAL && bind != STB_WEAK) || sym[i].st_shndx == SHN_UNDEF || sym[i].st_shndx == SHN_COMMON)
      continue;
    if (sym[i].st_name >= strsize || !memchr(strtab + sym[i].st_name, 0, strsize - sym[i].st_name)) {
      fail(err, errlen, "bad symbol name");
      goto out;
    }
    const char *name = strtab + sym[i].st_name;
    bool kept = false;
    for (const char *const *k = keep; *k && !kept; k++) kept = !strcmp(*k, name);
    if (!kept) {
      loc[i] = true;
      n_loc++;
    }
  }
  /* new order: the old locals, the new locals, the remaining globals */
  uint64_t next_loc = first_global, next_glob = first_global + n_loc;
  for (uint64_t i = 0; i < nsym; i++) map[i] = (uint32_t)(i < first_global ? i : loc[i] ? next_loc++ : next_glob++);
  for (uint64_t i = 0; i < nsym; i++) {
    Elf64_Sym s = sym[i];
    if (i >= first_global && loc[i]) s.st_info = ELF64_ST_INFO(STB_LOCAL, ELF64_ST_TYPE(s.st_info));
    memcpy(buf + st->sh_offset + (uint64_t)map[i] * sizeof s, &s, sizeof s);
  }
  sh[symsec].sh_info = (Elf64_Word)(first_global + n_loc);

  /* everything that names symbols by index */
  for (uint64_t i = 1; i < nsec; i++) {
    Elf64_Shdr *s = &sh[i];
    if (s->sh_type == SHT_LLVM_ADDRSIG) {
      /* clang's symbol indices as ULEB128 (stale already when a linker
       * without support made the object, sh_link 0): turned into an unknown
       * section, dropped at link time, which linkers read as "every
       * symbol's address is significant" — always safe */
      s->sh_type = SHT_PROGBITS;
      s->sh_flags |= SHF_EXCLUDE;
      continue;
    }
    if (s->sh_link != symsec || i == symsec || (s->sh_flags & SHF_LINK_ORDER)) continue;
    if (s->sh_type == SHT_NOBITS || !in_range(size, s->sh_offset, s->sh_size)) {
      fail(err, errlen, "bad section %llu", (unsigned long long)i);
      goto out;
    }
    unsigned char *p = buf + s->sh_offset;
    if (s->sh_type == SHT_RELA || s->sh_type == SHT_REL) {
      size_t es = s->sh_type == SHT_RELA ? sizeof(Elf64_Rela) : sizeof(Elf64_Rel);
      if (s->sh_entsize != es) {
        fail(err, errlen, "bad relocation section %llu", (unsigned long long)i);
        goto out;
      }
      for (uint64_t off = 0; off + es <= s->sh_size; off += es) {
        Elf64_Xword info; /* r_info follows r_offset in both layouts */
        memcpy(&info, p + off + sizeof(Elf64_Addr), sizeof info);
        uint64_t k = ELF64_R_SYM(info);
        if (k >= nsym) {
          fail(err, errlen, "relocation against symbol %llu of %llu", (unsigned long long)k,
               (unsigned long long)nsym);
          goto out;
        }
        info = ELF64_R_INFO(map[k], ELF64_R_TYPE(info));
        memcpy(p + off + sizeof(Elf64_Addr), &info, sizeof info);
      }
    } else if (s->sh_type == SHT_GROUP) {
      if (s->sh_info >= nsym) {
        fail(err, errlen, "bad section group %llu", (unsigned long long)i);
        goto out;
      }
      s->sh_info = map[s->sh_info];
    } else if (s->sh_type == SHT_SYMTAB_SHNDX) {
      if (s->sh_size < nsym * sizeof(Elf64_Word)) {
        fail(err, errlen, "bad extended section index table");
        goto out;
      }
      for (uint64_t k = 0; k < nsym; k++) memcpy(tmp + (uint64_t)map[k] * 4, p + k * 4, 4);
      memcpy(p, tmp, nsym * 4);
    } else if (s->sh_type != SHT_LLVM_CALL_GRAPH_PROFILE) {
      fail(err, errlen, "section %llu of type %#x refers to the symbol table", (unsigned long long)i,
           (unsigned)s->sh_type);
      goto out;
    }
  }
  memcpy(buf + eh.e_shoff, sh, nsec * sizeof *sh);
  rc = (int)n_loc;
out:
  free(sh);
  free(sym);
  free(map);
  free(tmp);
  return rc;
}
