/* jit.c — ORC LLJIT for a CgModule: the module (built in a ThreadSafeContext
 * from the start) is added to an LLJIT whose target machine matches the
 * module's CPU and features. Runtime symbols resolve from the host process
 * (LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess); the dlrt entry
 * points generated code calls are also defined as absolute symbols, so the
 * JIT works even when the executable does not export them (-rdynamic). */
#include "backend/cg_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/LLJIT.h>

struct CgJit {
  LLVMOrcLLJITRef jit;
};

static void report(Diag *d, const char *what, LLVMErrorRef err) {
  char *msg = LLVMGetErrorMessage(err);
  diag_error(d, (SrcLoc){0}, "internal error: JIT: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
}

/* dlrt functions generated code may call, resolved to this process's copies. */
static LLVMErrorRef define_runtime_symbols(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd) {
  struct {
    const char *name;
    void (*addr)(void);
  } syms[] = {
      {"dlrt_parallel_for", (void (*)(void))dlrt_parallel_for},
      {"dlrt_scratch", (void (*)(void))dlrt_scratch},
  };
  enum { N = sizeof syms / sizeof syms[0] };
  LLVMOrcCSymbolMapPair pairs[N];
  for (int i = 0; i < N; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit, syms[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].addr;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
  return LLVMOrcJITDylibDefine(jd, mu);
}

/* An LLJIT for m's target with the runtime's symbols; NULL on error. */
static CgJit *jit_create(CgModule *m, Diag *d) {
  CgJit *j = calloc(1, sizeof *j);
  LLVMTargetMachineRef tm = cg_make_target_machine(m->triple, m->cpu, m->features, m->opt_level);
  if (!j || !tm) {
    diag_error(d, (SrcLoc){0}, "internal error: JIT: no target machine for '%s'", m->triple);
    if (tm) LLVMDisposeTargetMachine(tm);
    free(j);
    return NULL;
  }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm)); /* consumes tm */
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&j->jit, builder);             /* consumes builder */
  if (err) {
    report(d, "cannot create LLJIT", err);
    free(j);
    return NULL;
  }
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
  err = define_runtime_symbols(j->jit, jd);
  if (!err) {
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
    if (!err) LLVMOrcJITDylibAddGenerator(jd, gen);
  }
  if (err) {
    report(d, "cannot set up symbol resolution", err);
    cg_jit_free(j);
    return NULL;
  }
  return j;
}

CgJit *cg_jit(CgModule *m, Diag *d) {
  char *vmsg = NULL;
  if (LLVMVerifyModule(m->mod, LLVMReturnStatusAction, &vmsg)) {
    diag_error(d, (SrcLoc){0}, "internal error: backend produced an invalid LLVM module: %s",
               vmsg ? vmsg : "(no message)");
    LLVMDisposeMessage(vmsg);
    cg_free(m);
    return NULL;
  }
  LLVMDisposeMessage(vmsg);
  CgJit *j = jit_create(m, d);
  if (!j) {
    cg_free(m);
    return NULL;
  }
  /* Hand the module and its context to ORC. */
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m->mod, m->tsc);
  m->mod = NULL;
  LLVMErrorRef err = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
  if (err) {
    report(d, "cannot add module", err);
    cg_jit_free(j);
    cg_free(m);
    return NULL;
  }
  cg_free(m); /* drops our reference to the context; ORC keeps its own */
  return j;
}

/* ---- object code for the caller's cache ---- */

char *cg_module_key(CgModule *m) {
  const char *dbg = getenv("DLC_DEBUG");
  if (m->process_addresses || !m->mod || (dbg && atoi(dbg) >= 3)) return NULL; /* (>= 3 prints the optimised IR) */
  char *ir = LLVMPrintModuleToString(m->mod);
  unsigned ver[3] = {0, 0, 0};
  LLVMGetVersion(&ver[0], &ver[1], &ver[2]);
  /* with the settings cg_optimize reads from the environment */
  const char *un = getenv("DLC_LLVM_UNROLL"), *pl = getenv("DLC_LLVM_PIPELINE");
  const char *parts[6] = {ir, m->triple, m->cpu ? m->cpu : "", m->features ? m->features : "", un ? un : "",
                          pl ? pl : ""};
  /* two independent 64-bit hashes (different offset bases; the second
   * also over the lengths): 128 bits against accidental collisions */
  uint64_t h1 = DLRT_FNV1A_BASIS, h2 = 0x84222325cbf29ce4ULL;
  for (int i = 0; i < 6; i++) {
    size_t len = strlen(parts[i]);
    h1 = dlrt_fnv1a_bytes(dlrt_fnv1a_bytes(h1, parts[i], len), "|", 1);
    h2 = dlrt_fnv1a_bytes(dlrt_fnv1a_bytes(h2, &len, sizeof len), parts[i], len);
  }
  int opt = m->opt_level;
  h1 = dlrt_fnv1a_bytes(dlrt_fnv1a_bytes(h1, &opt, sizeof opt), ver, sizeof ver);
  h2 = dlrt_fnv1a_bytes(dlrt_fnv1a_bytes(h2, ver, sizeof ver), &opt, sizeof opt);
  LLVMDisposeMessage(ir);
  char *key = malloc(33);
  if (key) snprintf(key, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
  return key;
}

int cg_emit_object_mem(CgModule *m, void **data, size_t *size, Diag *d) {
  char *err = NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, LLVMObjectFile, &err, &buf)) {
    diag_error(d, (SrcLoc){0}, "internal error: cannot emit object code: %s", err ? err : "(no message)");
    LLVMDisposeMessage(err);
    return 1;
  }
  *size = LLVMGetBufferSize(buf);
  *data = malloc(*size ? *size : 1);
  if (*data) memcpy(*data, LLVMGetBufferStart(buf), *size);
  LLVMDisposeMemoryBuffer(buf);
  if (!*data) {
    diag_error(d, (SrcLoc){0}, "out of memory");
    return 1;
  }
  return 0;
}

CgJit *cg_jit_object(CgModule *m, const void *data, size_t size, Diag *d) {
  CgJit *j = jit_create(m, d);
  cg_free(m);
  if (!j) return NULL;
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, size, "dlc-object");
  LLVMErrorRef err = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), buf); /* consumes buf */
  if (err) {
    report(d, "cannot add object code", err);
    cg_jit_free(j);
    return NULL;
  }
  return j;
}

CgEntryFn cg_jit_entry(CgJit *j, const char *symbol) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef err = LLVMOrcLLJITLookup(j->jit, &addr, symbol);
  if (err) {
    LLVMConsumeError(err);
    return NULL;
  }
  CgEntryFn fn;
  uintptr_t a = (uintptr_t)addr;
  memcpy(&fn, &a, sizeof fn);
  return fn;
}

void cg_jit_free(CgJit *j) {
  if (!j) return;
  if (j->jit) {
    LLVMErrorRef err = LLVMOrcDisposeLLJIT(j->jit);
    if (err) LLVMConsumeError(err);
  }
  free(j);
}
