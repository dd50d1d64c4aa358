/* aot.h — ahead-of-time output: `dlc model.dl -o model.so` (a shared library
 * with the runtime linked in statically, plus model.h) and `-o model.o` (a
 * relocatable object with the kernels, the entries and the description). */
#ifndef TOOLS_AOT_H
#define TOOLS_AOT_H

#include "tools/driver.h"

/* m compiled to DRV_STAGE_LLVM. Returns a DRV_* status. */
int aot_write(DrvModel *m, const char *out, Diag *d);
/* Loads a library made by aot_write; NULL with a message in err. */
const DlrtModelDesc *aot_load(const char *path, void **handle, char *err, size_t errlen);

#endif
