/* memplan.c — memory planning: every temporary gets an offset in one arena
 * by liveness. */
#include "passes/pipeline.h"

bool pass_memplan(Program *p, Diag *d) {
  (void)p;
  (void)d;
  return false;
}
