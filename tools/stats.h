/* stats.h — the `--emit=stats` report (see stats.c). */
#ifndef TOOLS_STATS_H
#define TOOLS_STATS_H

#include <stdio.h>

#include "tools/driver.h"

void stats_print(const DrvModel *m, FILE *out);
/* Bytes a kernel reads and writes (each buffer it touches counted once). */
int64_t stats_kernel_bytes(const Program *p, const Kernel *k, Arena *a);

#endif
