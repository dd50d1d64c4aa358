/* dlc.c — the compiler's command line (SPEC §5): argument parsing only; the
 * pipeline lives in driver.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_parse.h"
#include "tools/aot.h"
#include "passes/pipeline.h"
#include "tools/driver.h"
#include "tools/stats.h"

static void usage(FILE *out) {
  fputs("usage: dlc MODEL.dl [-o OUT] [-D NAME=VALUE]... [--emit=ast|ir|grad|opt|llvm|asm|stats|dot]\n"
        "           [-O0|-O1|-O2] [--time-passes] [--verify-each] [--print-after=PASS|all]\n"
        "           [--cpu=native|NAME]\n"
        "  -O0 runs no optimisation pass; -O1 and -O2 run simplify, cse, dce, fuse_epilogue, fold_pad,\n"
        "  schedule, memplan\n"
        "  --print-after=PASS  the IR after PASS (simplify, cse, dce, fuse_epilogue, fold_pad, schedule,\n"
        "                      memplan, or the phases autodiff, optimizer, lower; all: after each)\n"
        "                      on stderr\n"
        "  MODEL.dlir          textual IR (--emit=ir|grad|opt output): graphs or a kernel program\n"
        "  --time-passes       a table of the time of every phase and pass on stderr\n"
        "  --verify-each       verify the graph after every pass\n"
        "  DLC_DEBUG=1|2|3     pass names and timings | and IR after every pass that changed it | and LLVM IR\n",
        out);
}

static int bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "dlc: error: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  usage(stderr);
  return DRV_USAGE;
}

int main(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *emit = NULL;
  ConstDef defs[64];
  DrvOptions o = {.defs = defs, .opt_level = 2, .cpu = "native", .tool = "dlc"};
  char err[256];
  int crc;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-o")) {
      if (++i >= argc) return bad_usage("%s needs an argument", a);
      out = argv[i];
    } else if (!strncmp(a, "--emit=", 7)) {
      emit = a + 7;
    } else if ((crc = drv_parse_common_option(&o, 64, argc, argv, &i, err, sizeof err)) != 0) {
      if (crc < 0) return bad_usage("%s", err);
    } else if (a[0] == '-' && a[1]) {
      return bad_usage("unknown option %s", a);
    } else if (model) {
      return bad_usage("more than one model given (%s)", a);
    } else {
      model = a;
    }
  }
  if (!model) return bad_usage("%s", "no model given");
  /* checked here too: --emit=ir and the other kinds before code generation
   * would never ask LLVM about it */
  if (!cg_cpu_known(o.cpu)) {
    fprintf(stderr, "dlc: error: unknown CPU '%s' (use native or an LLVM CPU name such as x86-64-v3)\n", o.cpu);
    return DRV_USAGE;
  }
  static const char *const kinds[] = {"ast", "ir", "grad", "opt", "llvm", "asm", "stats", "dot"};
  DrvStage stage = DRV_STAGE_LLVM;
  int kind = -1;
  if (emit) {
    for (int k = 0; k < 8; k++)
      if (!strcmp(emit, kinds[k])) kind = k;
    if (kind < 0) return bad_usage("unknown --emit kind '%s'", emit);
    static const DrvStage stages[] = {DRV_STAGE_AST, DRV_STAGE_IR, DRV_STAGE_GRAD, DRV_STAGE_KERNELS,
                                      DRV_STAGE_LLVM, DRV_STAGE_LLVM, DRV_STAGE_KERNELS, DRV_STAGE_KERNELS};
    stage = stages[kind];
  } else if (!out) {
    return bad_usage("%s", "nothing to do: give -o OUT or --emit=KIND");
  } else {
    size_t n = strlen(out);
    if (!(n > 3 && !strcmp(out + n - 3, ".so")) && !(n > 2 && !strcmp(out + n - 2, ".o")))
      return bad_usage("-o %s: the output must end in .so (shared library) or .o (object), or give --emit=KIND", out);
  }
  Diag d;
  diag_init(&d, stderr);
  DrvModel m;
  int rc = drv_compile(&m, model, &o, stage, &d);
  if (rc == DRV_OK) {
    FILE *f = stdout;
    if (out && kind >= 0) {
      f = fopen(out, "w");
      if (!f) {
        fprintf(stderr, "dlc: error: cannot write %s\n", out);
        rc = DRV_USER_ERROR;
      }
    }
    if (f) {
      switch (kind) {
        case 0: fe_print_ast(m.ast, f); break;
        case 1: case 2:
          for (int e = 0; e < ENTRY__COUNT; e++)
            if (m.graph[e] && (kind == 2 ? e == ENTRY_TRAIN || !m.graph[ENTRY_TRAIN] : true)) {
              ir_print(m.graph[e], f);
              if (kind == 2) break;
            }
          break;
        case 3: kir_print(m.prog, f); break;
        case 4: cg_emit_llvm(m.mod, f); break;
        case 5: {
          double t0 = drv_now();
          DrvRelay r;
          if (cg_emit_asm(m.mod, f, drv_relay_begin(&r, &d))) rc = DRV_INTERNAL;
          drv_relay_end(&r, &d, o.tool);
          pipeline_time_phase("asm emission", drv_now() - t0);
          break;
        }
        case 6: stats_print(&m, f); break;
        case 7: { /* the training graph (or the first present) with its kernels */
          const Graph *g = NULL;
          int ge = 0;
          for (int e = ENTRY__COUNT - 1; e >= 0; e--)
            if (m.graph[e]) g = m.graph[ge = e];
          if (g) ir_dot(g, m.prog, (EntryKind)ge, f);
          else rc = (fprintf(stderr, "dlc: error: %s holds no graph to draw\n", model), DRV_USER_ERROR);
          break;
        }
        default: {
          double t0 = drv_now();
          DrvRelay r;
          rc = aot_write(&m, out, drv_relay_begin(&r, &d));
          drv_relay_end(&r, &d, o.tool);
          pipeline_time_phase("object emission", drv_now() - t0);
          break;
        }
      }
      if (f != stdout) fclose(f);
    }
    if (o.time_passes) pipeline_print_times(stderr);
  }
  drv_free(&m);
  diag_free(&d);
  return rc;
}
