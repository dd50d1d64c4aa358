/* dlrun.c — the runner's command line (SPEC §6): argument parsing only;
 * compilation is driver.c, the work is runner.c. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        "MODEL is a .dl file (compiled here) or a .so made by dlc\n"
        "every subcommand also takes -D NAME=VALUE, -O0|-O1|-O2, --cpu=NAME, --verify-each,\n"
        "  --print-after=PASS|all (the IR after a pass or phase, on stderr) and --time-passes:\n"
        "  options of compilation, for a .dl MODEL only (give them to dlc when making a .so)\n"
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

/* ---- a .so model is checked before dlopen: glibc maps its segments
 * trusting the headers, and a truncated file faults (SIGBUS) on the pages
 * past its end ---- */
#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
typedef Elf64_Shdr Shdr;
enum { ELF_CLASS = ELFCLASS64 };
#else
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
typedef Elf32_Shdr Shdr;
enum { ELF_CLASS = ELFCLASS32 };
#endif
#if defined(__x86_64__)
#define ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define ELF_MACHINE EM_AARCH64
#elif defined(__riscv)
#define ELF_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define ELF_MACHINE EM_PPC64
#elif defined(__s390x__)
#define ELF_MACHINE EM_S390
#else
#define ELF_MACHINE EM_NONE /* not checked */
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELF_DATA ELFDATA2LSB
#else
#define ELF_DATA ELFDATA2MSB
#endif

/* [off, off + n) lies in a file of `size` bytes */
static bool in_file(uint64_t off, uint64_t n, uint64_t size) { return off <= size && n <= size - off; }

/* 0 when path is a regular file holding an ELF shared library for this
 * machine whose headers and segments all lie inside the file; otherwise 1
 * with a message in err. */
static int check_library(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: no wait for a writer */
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  int rc = 1;
  uint64_t size = (uint64_t)st.st_size;
  Ehdr eh;
  Phdr *ph = NULL;
  const char *what = "a shared library made by dlc";
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "cannot load %s: not a regular file", path);
  } else if (size < sizeof eh || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh) {
    snprintf(err, errlen, "cannot load %s: not %s (%llu bytes, too short for an ELF header)", path, what,
             (unsigned long long)size);
  } else if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    snprintf(err, errlen, "cannot load %s: not %s (no ELF header)", path, what);
  } else if (eh.e_ident[EI_CLASS] != ELF_CLASS || eh.e_ident[EI_DATA] != ELF_DATA ||
             (ELF_MACHINE != EM_NONE && eh.e_machine != ELF_MACHINE)) {
    snprintf(err, errlen, "cannot load %s: an ELF file for another machine (%d-bit, %s-endian, machine %u)", path,
             eh.e_ident[EI_CLASS] == ELFCLASS64 ? 64 : 32, eh.e_ident[EI_DATA] == ELFDATA2MSB ? "big" : "little",
             (unsigned)eh.e_machine);
  } else if (eh.e_type != ET_DYN) {
    snprintf(err, errlen, "cannot load %s: not a shared library (ELF type %u)", path, (unsigned)eh.e_type);
  } else if (eh.e_phnum == 0 || eh.e_phentsize != sizeof(Phdr)) {
    snprintf(err, errlen, "cannot load %s: damaged library (%u program headers of %u bytes)", path,
             (unsigned)eh.e_phnum, (unsigned)eh.e_phentsize);
  } else if (!in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Phdr), size)) {
    snprintf(err, errlen, "cannot load %s: truncated or damaged library (its program headers end past the end of "
             "the file, %llu bytes)", path, (unsigned long long)size);
  } else if (eh.e_shoff != 0 && (eh.e_shentsize != sizeof(Shdr) ||
                                 !in_file(eh.e_shoff, (uint64_t)(eh.e_shnum ? eh.e_shnum : 1) * sizeof(Shdr), size))) {
    snprintf(err, errlen, "cannot load %s: truncated or damaged library (its section header table ends past the "
             "end of the file, %llu bytes)", path, (unsigned long long)size);
  } else if (!(ph = malloc((size_t)eh.e_phnum * sizeof *ph)) ||
             pread(fd, ph, (size_t)eh.e_phnum * sizeof *ph, (off_t)eh.e_phoff) != (ssize_t)(eh.e_phnum * sizeof *ph)) {
    snprintf(err, errlen, "cannot read %s: %s", path, ph ? strerror(errno ? errno : EIO) : "out of memory");
  } else {
    rc = 0;
    for (int i = 0; i < eh.e_phnum && !rc; i++)
      if (ph[i].p_filesz && !in_file(ph[i].p_offset, ph[i].p_filesz, size)) {
        snprintf(err, errlen, "cannot load %s: truncated or damaged library (segment %d, bytes %llu..%llu, ends "
                 "past the end of the file, %llu bytes)", path, i, (unsigned long long)ph[i].p_offset,
                 (unsigned long long)ph[i].p_offset + ph[i].p_filesz, (unsigned long long)size);
        rc = 1;
      }
  }
  free(ph);
  close(fd);
  return rc;
}

static bool is_library(const char *path) {
  size_t n = strlen(path);
  return n > 3 && !strcmp(path + n - 3, ".so");
}

/* The subcommands (bit i: train, eval, predict, step, bench) whose runs an
 * option changes; 0 for an option every subcommand takes (the options of
 * compilation, --threads, --seed) or none knows. */
static unsigned option_cmds(const char *a) {
  enum { TRAIN = 1, EVAL = 2, PREDICT = 4, STEP = 8, BENCH = 16 };
  static const struct {
    const char *name;
    unsigned cmds;
  } opts[] = {
      {"--data", TRAIN | EVAL},   {"--data-dir", TRAIN | EVAL},          {"--epochs", TRAIN},
      {"--save", TRAIN},          {"--log", TRAIN},                      {"--max-steps", TRAIN},
      {"--quiet", TRAIN},         {"--load", TRAIN | EVAL | PREDICT},    {"--feed", PREDICT | STEP},
      {"--out", PREDICT | STEP},  {"--params", STEP},                    {"--grads", STEP},
      {"--out-params", STEP},     {"--steps", BENCH},                    {"--per-kernel", BENCH},
  };
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
    if (!strcmp(a, opts[i].name)) return opts[i].cmds;
  return 0;
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
  DrvOptions o = {.defs = defs, .opt_level = 2, .cpu = "native", .tool = "dlrun"};
  const char *model = NULL;
  char compile_opts[256] = ""; /* the options of compilation given, for a .so model's error */
  int threads = 0;
  char err[256];
  int crc, first;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **sval = NULL;
    unsigned in = option_cmds(a);
    if (in && !(in & 1u << which)) { /* an option of another subcommand would be ignored */
      char msg[128];
      snprintf(msg, sizeof msg, "%s is not an option of dlrun %s", a, cmd);
      return bad_usage("%s", msg);
    }
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
    } else if (first = i, (crc = drv_parse_common_option(&o, 64, argc, argv, &i, err, sizeof err)) != 0) {
      if (crc < 0) return bad_usage("%s", err);
      for (int w = first; w <= i; w++) { /* the option and its argument (-D NAME=VALUE) */
        size_t n = strlen(compile_opts);
        snprintf(compile_opts + n, sizeof compile_opts - n, "%s%s", n ? " " : "", argv[w]);
      }
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
  /* the options the SPEC's synopsis requires of each subcommand */
  static const char *const required[5][3] = {
      {"--data DATASET"},
      {"--data DATASET", "--load CKPT"},
      {"--load CKPT", "--feed FEED.safetensors", "--out OUT.safetensors"},
      {"--params P.safetensors", "--feed F.safetensors"},
      {NULL},
  };
  char missing[256] = "";
  int nmissing = 0;
  for (int k = 0; k < 3 && required[which][k]; k++) {
    const char *opt = required[which][k];
    const char *given = !strncmp(opt, "--data ", 7)     ? ro.data
                        : !strncmp(opt, "--load ", 7)   ? ro.load
                        : !strncmp(opt, "--feed ", 7)   ? ro.feed
                        : !strncmp(opt, "--out ", 6)    ? ro.out
                                                        : ro.params;
    if (given) continue;
    size_t n = strlen(missing);
    snprintf(missing + n, sizeof missing - n, "%s%s", nmissing ? ", " : "", opt);
    nmissing++;
  }
  if (nmissing) {
    fprintf(stderr, "dlrun: error: %s needs %s\n", cmd, missing);
    usage(stderr);
    return DRV_USAGE;
  }
  /* a library was compiled by dlc: the options of compilation belong there */
  if (is_library(model) && compile_opts[0]) {
    fprintf(stderr,
            "dlrun: error: %s: the options of compilation (-D, -O0|-O1|-O2, --cpu, ...) apply when compiling a "
            ".dl model; %s was already compiled by dlc (pass them to dlc)\n",
            compile_opts, model);
    return DRV_USAGE;
  }
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
  if (is_library(model)) {
    char err[1024];
    desc = check_library(model, err, sizeof err) ? NULL : aot_load(model, &lib, err, sizeof err);
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
