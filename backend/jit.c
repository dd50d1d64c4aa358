/* jit.c — ORC LLJIT for a CgModule: the module (built in a ThreadSafeContext
 * from the start) is added to an LLJIT whose target machine matches the
 * module's CPU and features. Runtime symbols resolve from the host process
 * (LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess); the dlrt entry
 * points generated code calls are also defined as absolute symbols, so the
 * JIT works even when the executable does not export them (-rdynamic). */
#include "backend/cg_internal.h"

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

  CgJit *j = calloc(1, sizeof *j);
  LLVMTargetMachineRef tm = cg_make_target_machine(m->triple, m->cpu, m->features, m->opt_level);
  if (!j || !tm) {
    diag_error(d, (SrcLoc){0}, "internal error: JIT: no target machine for '%s'", m->triple);
    if (tm) LLVMDisposeTargetMachine(tm);
    free(j);
    cg_free(m);
    return NULL;
  }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm)); /* consumes tm */
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&j->jit, builder);             /* consumes builder */
  if (err) {
    report(d, "cannot create LLJIT", err);
    free(j);
    cg_free(m);
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
    cg_free(m);
    return NULL;
  }
  /* Hand the module and its context to ORC. */
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m->mod, m->tsc);
  m->mod = NULL;
  err = LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, tsm);
  if (err) {
    report(d, "cannot add module", err);
    cg_jit_free(j);
    cg_free(m);
    return NULL;
  }
  cg_free(m); /* drops our reference to the context; ORC keeps its own */
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
