/* dlrun.c — the runner's command line (SPEC §6): argument parsing only;
 * compilation is driver.c, the work is runner.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

#include "passes/pipeline.h"
#include "tools/aot.h"
#include "tools/driver.h"
#include "tools/runner.h"

static void usage(FILE *out) {
  fputs("usage: dlrun train   MODEL --data DATASET [--epochs N] [--seed S] [--threads N]\n"
        "                     [--save CKPT] [--load CKPT] [--log metrics.csv] [--data-dir DIR]\n"
        "                     [--max-steps N]  (at most N steps per epoch)\n"
        "       dlrun eval    MODEL --data DATASET --load CKPT\n"
        "       dlrun predict MODEL --load CKPT --feed FEED.safetensors --out OUT.safetensors\n"
        "       dlrun step    MODEL --params P.safetensors --feed F.safetensors\n"
        "                     [--grads G.safetensors] [--out-params P2.safetensors] [--out O.safetensors]\n"
        "       dlrun bench   MODEL [--steps N] [--threads N] [--per-kernel]\n"
        "every subcommand also takes -D NAME=VALUE, -O0|-O1|-O2, --cpu=NAME, --verify-each,\n"
        "  --print-after=PASS|all (the IR after a pass or phase, on stderr) and --time-passes\n"
        "datasets: fashion-mnist, mnist (--data-dir), xor, spiral, linreg\n",
        out);
}

static int bad_usage(const char *fmt, const char *arg) {
  fputs("dlrun: error: ", stderr);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  usage(stderr);
  return DRV_USAGE;
}

static bool parse_int(const char *s, long long lo, long long *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || v < lo) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  if (argc < 2) return bad_usage("%s", "no subcommand given");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
    usage(stdout);
    return 0;
  }
  static const char *const cmds[] = {"train", "eval", "predict", "step", "bench"};
  int which = -1;
  for (int i = 0; i < 5; i++)
    if (!strcmp(cmd, cmds[i])) which = i;
  if (which < 0) return bad_usage("unknown subcommand '%s'", cmd);
  RunOptions ro = {.epochs = 1, .seed = 0};
  ConstDef defs[64];
  DrvOptions o = {.defs = defs, .opt_level = 2, .cpu = "native"};
  const char *model = NULL;
  int threads = 0;
  char err[256];
  int crc;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **sval = NULL;
    if (!strcmp(a, "--data")) sval = &ro.data;
    else if (!strcmp(a, "--data-dir")) sval = &ro.data_dir;
    else if (!strcmp(a, "--save")) sval = &ro.save;
    else if (!strcmp(a, "--load")) sval = &ro.load;
    else if (!strcmp(a, "--log")) sval = &ro.log;
    else if (!strcmp(a, "--params")) sval = &ro.params;
    else if (!strcmp(a, "--feed")) sval = &ro.feed;
    else if (!strcmp(a, "--grads")) sval = &ro.grads_out;
    else if (!strcmp(a, "--out-params")) sval = &ro.params_out;
    else if (!strcmp(a, "--out")) sval = &ro.out;
    if (sval) {
      if (++i >= argc) return bad_usage("%s needs an argument", a);
      *sval = argv[i];
      continue;
    }
    if (!strcmp(a, "--epochs") || !strcmp(a, "--seed") || !strcmp(a, "--threads") || !strcmp(a, "--steps") ||
        !strcmp(a, "--max-steps")) {
      long long v;
      if (++i >= argc) return bad_usage("%s needs an argument", a);
      if (!parse_int(argv[i], !strcmp(a, "--seed") ? 0 : 1, &v)) return bad_usage("bad number '%s'", argv[i]);
      if (!strcmp(a, "--epochs")) ro.epochs = (int)v;
      else if (!strcmp(a, "--seed")) ro.seed = (uint64_t)v;
      else if (!strcmp(a, "--threads")) threads = (int)v;
      else if (!strcmp(a, "--steps")) ro.steps = (int)v;
      else ro.max_steps = (int)v;
    } else if ((crc = drv_parse_common_option(&o, 64, argc, argv, &i, err, sizeof err)) != 0) {
      if (crc < 0) return bad_usage("%s", err);
    } else if (!strcmp(a, "--per-kernel")) {
      cg_profile_enable(1); /* before compiling: the entries get timing calls */
      ro.profile_reset = cg_profile_reset;
      ro.profile_print = cg_profile_print;
    } else if (!strcmp(a, "--quiet")) {
      ro.quiet = true;
    } else if (a[0] == '-' && a[1]) {
      return bad_usage("unknown option %s", a);
    } else if (model) {
      return bad_usage("more than one model given (%s)", a);
    } else {
      model = a;
    }
  }
  if (!model) return bad_usage("%s", "no model given");
  /* compile only the entries the command runs */
  static const unsigned needs[5] = {
      1u << ENTRY_TRAIN | 1u << ENTRY_EVAL, /* train: steps, then the test set */
      1u << ENTRY_EVAL,                     /* eval */
      1u << ENTRY_INFER,                    /* predict */
      1u << ENTRY_TRAIN,                    /* step */
      1u << ENTRY_TRAIN | 1u << ENTRY_INFER /* bench: the training step and inference */
  };
  o.jit_entries = needs[which];
  dlrt_set_threads(threads);
  Diag d;
  diag_init(&d, stderr);
  DrvModel dm;
  memset(&dm, 0, sizeof dm);
  const DlrtModelDesc *desc = NULL;
  void *lib = NULL;
  int rc = DRV_OK;
  size_t len = strlen(model);
  if (len > 3 && !strcmp(model + len - 3, ".so")) {
    char err[1024];
    desc = aot_load(model, &lib, err, sizeof err);
    if (!desc) {
      fprintf(stderr, "dlrun: error: %s\n", err);
      rc = DRV_USER_ERROR;
    } else if (desc->set_threads) {
      desc->set_threads(threads);
    }
  } else {
    rc = drv_compile(&dm, model, &o, DRV_STAGE_JIT, &d);
    desc = &dm.desc;
    if (o.time_passes) pipeline_print_times(stderr);
  }
  if (rc == DRV_OK) {
    char err[512];
    DlrtModel *m = dlrt_model_new(desc, ro.seed, err, sizeof err);
    if (!m) {
      fprintf(stderr, "dlrun: error: %s\n", err);
      rc = DRV_USER_ERROR;
    } else {
      switch (which) {
        case 0: rc = run_train(m, &ro); break;
        case 1: rc = run_eval(m, &ro); break;
        case 2: rc = run_predict(m, &ro); break;
        case 3: rc = run_step(m, &ro); break;
        default: rc = run_bench(m, &ro); break;
      }
      dlrt_model_free(m);
    }
  }
  if (dm.arena) drv_free(&dm);
  if (lib) dlclose(lib);
  diag_free(&d);
  return rc;
}
