/* backend.h — the backend's public interface: lowers a kernel Program
 * (ir/kernel.h) to LLVM IR through the LLVM C API, optimises it for a target
 * CPU, and either JIT-compiles it (ORC LLJIT) or emits LLVM IR, assembly or
 * an object file.
 *
 * Code shape (see backend/codegen*.c):
 *   - every Kernel K becomes `internal void K(void *ctx, int64 begin, int64 end)`
 *     where ctx is `void **bufs` (Program buffer i at bufs[i]) and [begin, end)
 *     is a range of output dim 0 (rank 0: begin = 0, end = 1);
 *   - every present entry E becomes `void <model>_<train|eval|infer>(void **bufs)`
 *     calling its kernels in order, large ones through dlrt_parallel_for.
 *
 * Ownership: cg_build returns a CgModule the caller frees with cg_free, or
 * hands to cg_jit (which consumes it). The CgJit is freed with cg_jit_free;
 * function pointers from cg_jit_entry are valid until then. */
#ifndef BACKEND_BACKEND_H
#define BACKEND_BACKEND_H

#include <stdio.h>

#include "ir/kernel.h"

typedef struct {
  const char *cpu; /* "native" (default when NULL) or an LLVM CPU name / "x86-64-v2|v3|v4" */
  int opt_level;   /* 0..3, LLVM pipeline "default<O3>" for 2 and 3 */
  unsigned entries; /* bit e: build entry e only (0: every entry of the program) */
  int part, parts;  /* parts > 1: this module holds the kernels of partition `part` (cg_kernel_table);
                       part 0 also the entries, which call every kernel through the table dlc.ktab */
  const int *part_of; /* parts > 1: cg_kernel_table's partition when the caller has it (else computed) */
} CgOptions;

/* The kernels of the entries in `entries` (0: all) in table order (each
 * kernel once) and, when part_of is not NULL, the part of `parts` each
 * belongs to (balanced by an estimate of compile cost; part 0 also compiles
 * the entries). Fills up to cap of kt/part_of; returns the count.
 * Deterministic. */
int cg_kernel_table(const Program *p, unsigned entries, int parts, const Kernel **kt, int *part_of, int cap);
/* The symbol of the kernel table in part 0 (an array of function pointers
 * the caller fills with the kernels' addresses before running an entry). */
#define CG_KTAB_SYMBOL "dlc.ktab"

typedef struct CgModule CgModule; /* owns an LLVMContext + LLVMModule + target machine */

/* Lowers every kernel and entry of p. NULL on error (reported to d). */
CgModule *cg_build(const Program *p, const CgOptions *o, Diag *d);
/* Verifies the module (a broken module is an internal error, reported to d),
 * then runs LLVM's pass pipeline for the target machine. 0 on success. */
int cg_optimize(CgModule *m, Diag *d);
/* Runs LLVM's pass and code-generation machinery once on a tiny module, so
 * its lazily created global state exists before modules are compiled on
 * several threads at once. Idempotent; call it from one thread. */
void cg_warm_up(void);
/* Whether LLVM knows the CPU name for this host's target ("native", NULL
 * and "" are this machine). */
bool cg_cpu_known(const char *cpu);
/* Textual LLVM IR to out. 0 on success. */
int cg_emit_llvm(CgModule *m, FILE *out);
/* Target assembly to out. 0 on success. */
int cg_emit_asm(CgModule *m, FILE *out, Diag *d);
/* A relocatable (PIC) object file at path. 0 on success. */
int cg_emit_object(CgModule *m, const char *path, Diag *d);
void cg_free(CgModule *m);

typedef void (*CgEntryFn)(void **bufs);
typedef struct CgJit CgJit;
/* JIT-compiles m (consumed, also on failure). NULL on error (reported). */
CgJit *cg_jit(CgModule *m, Diag *d);
/* Object-code caching (the caller keeps the files): a key for m's code, 32
 * hex digits hashing its LLVM IR text before optimisation, target triple,
 * CPU, features, optimisation level, LLVM's version and the pipeline
 * settings of the environment (DLC_LLVM_UNROLL, DLC_LLVM_PIPELINE)
 * (malloc'ed). NULL when the code must not be reused (it embeds this
 * process's addresses: the per-kernel profile) or compiled code is not
 * wanted (DLC_DEBUG >= 3 prints the optimised IR). */
char *cg_module_key(CgModule *m);
/* m's code (optimised by cg_optimize) as a relocatable object in memory
 * (*data malloc'ed). 0 on success. */
int cg_emit_object_mem(CgModule *m, void **data, size_t *size, Diag *d);
/* JIT from an object cg_emit_object_mem made of a module with m's key
 * (m is consumed, also on failure; its code is not compiled again). */
CgJit *cg_jit_object(CgModule *m, const void *data, size_t size, Diag *d);
/* The entry function `symbol` (e.g. "mlp_train"); NULL if absent. */
CgEntryFn cg_jit_entry(CgJit *j, const char *symbol);
void cg_jit_free(CgJit *j);

/* Per-kernel profile (JIT only): on when DLC_PROFILE=1 or after
 * cg_profile_enable(1); it applies to modules built afterwards. Every kernel
 * call is timed (CPU time of the calling thread); the table is printed to
 * stderr at exit unless cg_profile_print printed it. */
void cg_profile_enable(int on);
void cg_profile_reset(void);                /* zero all counters */
void cg_profile_print(FILE *out);           /* table sorted by time, with source lines */

/* "<model>_train" | "<model>_eval" | "<model>_infer", allocated from a. */
const char *cg_entry_symbol(Arena *a, const Program *p, EntryKind e);

#endif
