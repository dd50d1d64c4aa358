/* emit.c — textual LLVM IR, target assembly and object files from a
 * CgModule, through the module's target machine (PIC relocations, so the
 * object can be linked into a shared library). */
#include "backend/cg_internal.h"

#include <string.h>

int cg_emit_llvm(CgModule *m, FILE *out) {
  char *s = LLVMPrintModuleToString(m->mod);
  size_t n = strlen(s);
  int rc = fwrite(s, 1, n, out) == n ? 0 : 1;
  LLVMDisposeMessage(s);
  return rc;
}

int cg_emit_asm(CgModule *m, FILE *out, Diag *d) {
  char *err = NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, LLVMAssemblyFile, &err, &buf)) {
    diag_error(d, (SrcLoc){0}, "internal error: LLVM could not emit assembly: %s",
               err ? err : "(no message)");
    LLVMDisposeMessage(err);
    return 1;
  }
  size_t n = LLVMGetBufferSize(buf);
  int rc = fwrite(LLVMGetBufferStart(buf), 1, n, out) == n ? 0 : 1;
  LLVMDisposeMemoryBuffer(buf);
  if (rc) diag_error(d, (SrcLoc){0}, "cannot write assembly output");
  return rc;
}

int cg_emit_object(CgModule *m, const char *path, Diag *d) {
  char *err = NULL;
  if (LLVMTargetMachineEmitToFile(m->tm, m->mod, (char *)path, LLVMObjectFile, &err)) {
    diag_error(d, (SrcLoc){0}, "cannot write object file '%s': %s", path,
               err ? err : "(no message)");
    LLVMDisposeMessage(err);
    return 1;
  }
  return 0;
}
