/* codegen.c — the CgModule: target machine selection, module set-up,
 * entry functions (`<model>_<train|eval|infer>(void **bufs)`, which call the
 * kernels in order, large ones through dlrt_parallel_for), the LLVM pass
 * pipeline, and small helpers the other backend files share. Kernels
 * themselves are lowered in codegen_kernel.c. */
#include "backend/cg_internal.h"

#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

/* A kernel doing more work than this (flops or elements) is split over
 * threads by dlrt_parallel_for; a chunk gets at least PAR_GRAIN_WORK. */
enum { PAR_MIN_WORK = 32768, PAR_GRAIN_WORK = 16384 };
/* GEMM kernels: a chunk gets at least this many flops. */
enum { GEMM_GRAIN_FLOPS = 150000 };

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *r = malloc(n);
  if (r) memcpy(r, s, n);
  return r;
}

/* ---- shared helpers ---- */

LLVMValueRef cg_f32(CgModule *m, double v) { return LLVMConstReal(m->t_f32, v); }
LLVMValueRef cg_i32(CgModule *m, int64_t v) {
  return LLVMConstInt(m->t_i32, (unsigned long long)v, 1);
}
LLVMValueRef cg_i64(CgModule *m, int64_t v) {
  return LLVMConstInt(m->t_i64, (unsigned long long)v, 1);
}

static LLVMMetadataRef md_prop(CgModule *m, const char *key, LLVMTypeRef t, int64_t value) {
  LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(m->ctx, key, strlen(key)),
                            LLVMValueAsMetadata(LLVMConstInt(t, (unsigned long long)value, 0))};
  return LLVMMDNodeInContext2(m->ctx, ops, 2);
}

void cg_loop_hint(CgModule *m, LLVMValueRef latch_br, LoopHint h) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(m->ctx, NULL, 0);
  LLVMMetadataRef ops[5] = {tmp, NULL, NULL, NULL, NULL};
  int n = 2;
  if (h == LOOP_NO_VECTORIZE) {
    ops[1] = md_prop(m, "llvm.loop.vectorize.enable", m->t_i1, 0);
  } else if (h == LOOP_VECTORIZE_ROW) {
    const char *key = "llvm.loop.unroll.disable";
    ops[1] = md_prop(m, "llvm.loop.vectorize.enable", m->t_i1, 1);
    ops[2] = LLVMMDNodeInContext2(m->ctx, (LLVMMetadataRef[]){LLVMMDStringInContext2(m->ctx, key, strlen(key))}, 1);
    n = 3;
  } else if (h == LOOP_VECTORIZE || h == LOOP_VECTORIZE_X4 || h == LOOP_VECTORIZE_4 || h == LOOP_VECTORIZE_16) {
    /* (not fully unrolled first) */
    const char *key = "llvm.loop.unroll.disable";
    ops[1] = md_prop(m, "llvm.loop.vectorize.enable", m->t_i1, 1);
    ops[2] = md_prop(m, "llvm.loop.vectorize.width", m->t_i32, h == LOOP_VECTORIZE_4 ? 4 : h == LOOP_VECTORIZE_16 ? 16 : 8);
    ops[3] = LLVMMDNodeInContext2(m->ctx, (LLVMMetadataRef[]){LLVMMDStringInContext2(m->ctx, key, strlen(key))}, 1);
    n = 4;
    if (h == LOOP_VECTORIZE_X4) ops[n++] = md_prop(m, "llvm.loop.interleave.count", m->t_i32, 4);
  } else {
    const char *key = h == LOOP_NO_UNROLL ? "llvm.loop.unroll.disable" : "llvm.loop.unroll.full";
    LLVMMetadataRef prop_ops[1] = {LLVMMDStringInContext2(m->ctx, key, strlen(key))};
    ops[1] = LLVMMDNodeInContext2(m->ctx, prop_ops, 1);
  }
  LLVMMetadataRef id = LLVMMDNodeInContext2(m->ctx, ops, (size_t)n);
  LLVMMetadataReplaceAllUsesWith(tmp, id); /* the loop ID refers to itself */
  unsigned kind = LLVMGetMDKindIDInContext(m->ctx, "llvm.loop", 9);
  LLVMSetMetadata(latch_br, kind, LLVMMetadataAsValue(m->ctx, id));
}

LLVMValueRef cg_fast(LLVMValueRef v) {
  if (LLVMIsAInstruction(v) && LLVMCanValueUseFastMathFlags(v))
    LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
  return v;
}

LLVMValueRef cg_intrinsic(CgModule *m, LLVMBuilderRef b, const char *name, LLVMTypeRef *ovl,
                          unsigned novl, LLVMValueRef *args, unsigned nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  DL_ASSERT(id != 0);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(m->mod, id, ovl, novl);
  LLVMTypeRef ty = LLVMIntrinsicGetType(m->ctx, id, ovl, novl);
  return LLVMBuildCall2(b, ty, fn, args, nargs, "");
}

void cg_kernel_error(KernelCg *kc, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(kc->d, kc->k->loc, "internal error: backend: kernel %s: %s", kc->k->name, msg);
  kc->failed = true;
}

/* ---- target machine ---- */

static void init_llvm_targets_once(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
}

static void init_llvm_targets(void) {
  /* once per process (modules may be built on several threads) */
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_llvm_targets_once);
}

static LLVMCodeGenOptLevel codegen_level(int opt) {
  return opt <= 0 ? LLVMCodeGenLevelNone
         : opt == 1 ? LLVMCodeGenLevelLess
         : opt == 2 ? LLVMCodeGenLevelDefault
                    : LLVMCodeGenLevelAggressive;
}

LLVMTargetMachineRef cg_make_target_machine(const char *triple, const char *cpu,
                                            const char *features, int opt_level) {
  LLVMTargetRef target = NULL;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    LLVMDisposeMessage(err);
    return NULL;
  }
  return LLVMCreateTargetMachine(target, triple, cpu, features, codegen_level(opt_level),
                                 LLVMRelocPIC, LLVMCodeModelDefault);
}

/* Whether LLVM knows the CPU name. LLVM only warns on stderr about an
 * unknown processor (and later aborts generating 64-bit code for it), so
 * probe it by creating a target machine with stderr captured. */
static bool probe_cpu(const char *triple, const char *cpu) {
  FILE *tmp = tmpfile();
  if (!tmp) return true;
  fflush(stderr);
  int saved = dup(2);
  if (saved < 0) {
    fclose(tmp);
    return true;
  }
  dup2(fileno(tmp), 2);
  LLVMTargetMachineRef tm = cg_make_target_machine(triple, cpu, "", 0);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char text[512] = {0};
  rewind(tmp);
  size_t n = fread(text, 1, sizeof text - 1, tmp);
  text[n] = 0;
  fclose(tmp);
  if (tm) LLVMDisposeTargetMachine(tm);
  return strstr(text, "not a recognized processor") == NULL;
}

/* The probe redirects the process's stderr: one thread at a time (the JIT
 * builds its parts on two threads, and two probes at once each lost the
 * other's warning, took the CPU for known and aborted in LLVM), and the
 * answer is kept for the next asker of the same name. */
static bool cpu_is_known(const char *triple, const char *cpu) {
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  static char last_cpu[128], last_triple[128];
  static bool last_ok;
  pthread_mutex_lock(&mu);
  bool ok;
  if (last_cpu[0] && !strcmp(last_cpu, cpu) && !strcmp(last_triple, triple)) {
    ok = last_ok;
  } else {
    ok = probe_cpu(triple, cpu);
    if (strlen(cpu) < sizeof last_cpu && strlen(triple) < sizeof last_triple) {
      strcpy(last_cpu, cpu);
      strcpy(last_triple, triple);
      last_ok = ok;
    }
  }
  pthread_mutex_unlock(&mu);
  return ok;
}

bool cg_cpu_known(const char *cpu) {
  if (!cpu || !*cpu || !strcmp(cpu, "native")) return true;
  init_llvm_targets();
  char *t = LLVMGetDefaultTargetTriple();
  char *nt = LLVMNormalizeTargetTriple(t);
  bool ok = cpu_is_known(nt, cpu);
  LLVMDisposeMessage(nt);
  LLVMDisposeMessage(t);
  return ok;
}

/* Fills m->triple/cpu/features and m->tm from the options. */
static bool setup_target(CgModule *m, const CgOptions *o, Diag *d) {
  init_llvm_targets();
  char *t = LLVMGetDefaultTargetTriple();
  char *nt = LLVMNormalizeTargetTriple(t);
  m->triple = xstrdup(nt);
  LLVMDisposeMessage(nt);
  LLVMDisposeMessage(t);
  const char *cpu = o && o->cpu && *o->cpu ? o->cpu : "native";
  if (strcmp(cpu, "native") == 0) {
    char *hc = LLVMGetHostCPUName(), *hf = LLVMGetHostCPUFeatures();
    m->cpu = xstrdup(hc);
    m->features = xstrdup(hf);
    LLVMDisposeMessage(hc);
    LLVMDisposeMessage(hf);
  } else {
    if (!cpu_is_known(m->triple, cpu)) {
      diag_error(d, (SrcLoc){0}, "unknown CPU '%s' (use native or an LLVM CPU name such as x86-64-v3)",
                 cpu);
      return false;
    }
    m->cpu = xstrdup(cpu);
    m->features = xstrdup("");
  }
  m->tm = cg_make_target_machine(m->triple, m->cpu, m->features, m->opt_level);
  if (!m->tm) {
    diag_error(d, (SrcLoc){0}, "backend: no LLVM target for triple '%s' (cpu '%s')", m->triple,
               m->cpu);
    return false;
  }
  return true;
}

/* ---- entries ---- */

static LLVMValueRef par_for_decl(CgModule *m) {
  if (!m->fn_par_for) {
    m->fn_par_for = LLVMAddFunction(m->mod, "dlrt_parallel_for", m->t_par_for);
    LLVMSetLinkage(m->fn_par_for, LLVMExternalLinkage);
  }
  return m->fn_par_for;
}

static int64_t kernel_work(const Kernel *k) {
  int64_t n = 1;
  for (int i = 0; i < k->shape.rank; i++) n *= k->shape.d[i];
  for (int i = 0; i < k->n_red; i++) n *= k->red_ext[i];
  return k->flops > n ? k->flops : n;
}

static void emit_kernel_call(CgModule *m, const Program *p, LLVMBuilderRef b, LLVMValueRef kfn,
                             LLVMValueRef bufs, const Kernel *k) {
  GemmPlan g;
  if (cg_gemm_plan(m, p, k, &g)) {
    /* [begin, end) ranges over the plan's units; a chunk gets at least
     * GEMM_GRAIN_FLOPS of work, and small products run serially */
    int64_t flops = 2 * g.batch * g.M * g.N * g.K;
    int64_t per_unit = flops / g.units > 0 ? flops / g.units : 1;
    int64_t grain = (GEMM_GRAIN_FLOPS + per_unit - 1) / per_unit;
    if (flops > 2 * GEMM_GRAIN_FLOPS && g.units > 1) {
      LLVMValueRef args[4] = {kfn, bufs, cg_i64(m, g.units), cg_i64(m, grain)};
      LLVMBuildCall2(b, m->t_par_for, par_for_decl(m), args, 4, "");
    } else {
      LLVMValueRef args[3] = {bufs, cg_i64(m, 0), cg_i64(m, g.units)};
      LLVMBuildCall2(b, m->t_kernel, kfn, args, 3, "");
    }
    return;
  }
  int64_t n0 = k->shape.rank >= 1 ? k->shape.d[0] : 1;
  const Kernel *chain[CG_CHAIN_MAX];
  int nchain = cg_chain(m, p, k, chain);
  int64_t work = 0;
  for (int j = 0; j < nchain; j++) work += kernel_work(chain[j]); /* a chain runs in k's call */
  if (k->shape.rank >= 1 && work > PAR_MIN_WORK && n0 > 1) {
    int64_t per_row = work / n0 > 0 ? work / n0 : 1;
    int64_t grain = PAR_GRAIN_WORK / per_row;
    if (grain < 1) grain = 1;
    LLVMValueRef args[4] = {kfn, bufs, cg_i64(m, n0), cg_i64(m, grain)};
    LLVMBuildCall2(b, m->t_par_for, par_for_decl(m), args, 4, "");
  } else {
    LLVMValueRef args[3] = {bufs, cg_i64(m, 0), cg_i64(m, n0)};
    LLVMBuildCall2(b, m->t_kernel, kfn, args, 3, "");
  }
}

/* ---- per-kernel profile (DLC_PROFILE=1, JIT only) ----
 * Every kernel call in an entry is bracketed by calls of prof_clock (the
 * calling thread's CPU time in ns, so the figures hold on a loaded machine;
 * with threads > 1 it counts the calling thread only); the difference is
 * added to a counter in a process-lifetime C table whose address is baked
 * into the code. At exit the table is printed to stderr, sorted by time:
 * name, entry, calls, total and per-call milliseconds, source line. */
typedef struct {
  char name[96];
  char loc[96];
  const char *entry;
  int64_t flops;
  uint64_t ticks, calls;
} ProfRow;

static ProfRow *g_prof;
static int g_prof_n, g_prof_cap;
static int g_prof_t0;

static uint64_t prof_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int prof_cmp(const void *a, const void *b) {
  const ProfRow *x = a, *y = b;
  return (x->ticks < y->ticks) - (x->ticks > y->ticks);
}

static int g_prof_force, g_prof_printed;

void cg_profile_enable(int on) { g_prof_force = on; }

void cg_profile_reset(void) {
  for (int i = 0; i < g_prof_n; i++) g_prof[i].ticks = g_prof[i].calls = 0;
}

static void prof_report(void) {
  if (!g_prof_printed) cg_profile_print(stderr);
}

void cg_profile_print(FILE *out) {
  g_prof_printed = 1;
  if (!g_prof_n) return;
  double hz = 1e9;
  ProfRow *rows = malloc(sizeof *rows * (size_t)g_prof_n);
  memcpy(rows, g_prof, sizeof *rows * (size_t)g_prof_n);
  qsort(rows, (size_t)g_prof_n, sizeof *rows, prof_cmp);
  double total = 0;
  for (int i = 0; i < g_prof_n; i++) total += (double)rows[i].ticks / hz;
  fprintf(out, "\n== per-kernel profile (DLC_PROFILE): %.3f s in kernels ==\n", total);
  fprintf(out, "%-34s %-6s %8s %10s %10s %6s %8s  %s\n", "kernel", "entry", "calls", "total ms", "ms/call", "%",
          "GFLOP/s", "source");
  for (int i = 0; i < g_prof_n; i++) {
    const ProfRow *r = &rows[i];
    if (!r->calls) continue;
    double t = (double)r->ticks / hz;
    fprintf(out, "%-34s %-6s %8llu %10.3f %10.4f %6.1f %8.2f  %s\n", r->name, r->entry,
            (unsigned long long)r->calls, t * 1e3, t * 1e3 / (double)r->calls, 100 * t / (total > 0 ? total : 1),
            t > 0 ? (double)r->flops * (double)r->calls / t * 1e-9 : 0.0, r->loc);
  }
  free(rows);
}

/* A new row (its address stays valid: rows are allocated in fixed blocks). */
static pthread_mutex_t g_prof_lock = PTHREAD_MUTEX_INITIALIZER;

static ProfRow *prof_row_locked(const Kernel *k, const char *entry);

/* A new row; modules may be built on several threads at once. A chain's
 * row (cg_chain) names the ops of every kernel it runs. */
static ProfRow *prof_row(CgModule *m, const Program *p, const Kernel *k, const char *entry) {
  const Kernel *chain[CG_CHAIN_MAX];
  int n = cg_chain(m, p, k, chain);
  pthread_mutex_lock(&g_prof_lock);
  ProfRow *r = prof_row_locked(k, entry);
  for (int j = 1; r && j < n; j++) {
    size_t len = strlen(r->loc);
    snprintf(r->loc + len, sizeof r->loc - len, " | %s", chain[j]->ops ? chain[j]->ops : "");
    r->flops += chain[j]->flops;
  }
  pthread_mutex_unlock(&g_prof_lock);
  return r;
}

static ProfRow *prof_row_locked(const Kernel *k, const char *entry) {
  if (!g_prof_t0) {
    g_prof_t0 = 1;
    atexit(prof_report);
  }
  if (g_prof_n == g_prof_cap) {
    /* never realloc: generated code holds row addresses; leak the old block
     * contents by copying into a bigger block is not allowed, so allocate
     * one large table up front */
    if (g_prof_cap) return NULL;
    g_prof_cap = 1 << 14;
    g_prof = calloc((size_t)g_prof_cap, sizeof *g_prof);
    if (!g_prof) return NULL;
  }
  ProfRow *r = &g_prof[g_prof_n++];
  snprintf(r->name, sizeof r->name, "%s", k->name);
  snprintf(r->loc, sizeof r->loc, "%s:%d %s", k->loc.file ? k->loc.file : "?", k->loc.line, k->ops ? k->ops : "");
  r->entry = entry;
  r->flops = k->flops;
  return r;
}

static bool profiling(void) {
  if (g_prof_force) return true;
  const char *s = getenv("DLC_PROFILE");
  return s && *s && strcmp(s, "0") != 0;
}

static const char *const entry_suffix[ENTRY__COUNT] = {"train", "eval", "infer"};

const char *cg_entry_symbol(Arena *a, const Program *p, EntryKind e) {
  return arena_printf(a, "%s_%s", p->model, entry_suffix[e]);
}

void cg_add_fn_attrs(CgModule *m, LLVMValueRef fn) {
  LLVMAttributeRef nounwind =
      LLVMCreateEnumAttribute(m->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, nounwind);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(m->ctx, "target-cpu", 10, m->cpu,
                                                    (unsigned)strlen(m->cpu)));
  if (*m->features)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(m->ctx, "target-features", 15, m->features,
                                                      (unsigned)strlen(m->features)));
  /* Use full 512-bit registers where the CPU has them (LLVM prefers 256). */
  if (strstr(m->features, "+avx512f"))
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(m->ctx, "prefer-vector-width", 19, "512", 3));
}


static bool emit_entry(CgModule *m, const Program *p, EntryKind e, LLVMValueRef *kfns,
                       Diag *d) {
  char name[256];
  snprintf(name, sizeof name, "%s_%s", p->model, entry_suffix[e]);
  if (LLVMGetNamedFunction(m->mod, name)) {
    diag_error(d, (SrcLoc){0}, "internal error: backend: duplicate symbol '%s'", name);
    return false;
  }
  LLVMValueRef fn = LLVMAddFunction(m->mod, name, m->t_entry);
  LLVMSetLinkage(fn, LLVMExternalLinkage);
  cg_add_fn_attrs(m, fn);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(m->ctx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
  const Entry *en = &p->entries[e];
  bool prof = profiling();
  if (prof) m->process_addresses = true;
  for (int i = 0; i < en->n_kernels; i++) {
    /* a kernel fused into the one before it runs inside that one's call */
    if (cg_fused_away(m, p, en, i)) continue;
    ProfRow *row = prof ? prof_row(m, p, en->kernels[i], entry_suffix[e]) : NULL;
    LLVMValueRef t0 = NULL;
    LLVMTypeRef clk_t = LLVMFunctionType(m->t_i64, NULL, 0, 0);
    LLVMValueRef clk = LLVMConstIntToPtr(LLVMConstInt(m->t_i64, (unsigned long long)(uintptr_t)prof_clock, 0), m->t_ptr);
    if (row) t0 = LLVMBuildCall2(b, clk_t, clk, NULL, 0, "");
    LLVMValueRef kfn = kfns[i];
    if (m->ktab) { /* partitioned: the kernel's address from the table */
      int ix = 0;
      while (ix < m->nkt && m->kt[ix] != en->kernels[i]) ix++;
      LLVMValueRef idx[2] = {cg_i64(m, 0), cg_i64(m, ix)};
      LLVMValueRef slot = LLVMBuildInBoundsGEP2(b, LLVMGlobalGetValueType(m->ktab), m->ktab, idx, 2, "");
      kfn = LLVMBuildLoad2(b, m->t_ptr, slot, en->kernels[i]->name);
    }
    emit_kernel_call(m, p, b, kfn, LLVMGetParam(fn, 0), en->kernels[i]);
    if (row) {
      LLVMValueRef t1 = LLVMBuildCall2(b, clk_t, clk, NULL, 0, "");
      LLVMValueRef pt = LLVMConstIntToPtr(LLVMConstInt(m->t_i64, (unsigned long long)(uintptr_t)&row->ticks, 0), m->t_ptr);
      LLVMValueRef pc = LLVMConstIntToPtr(LLVMConstInt(m->t_i64, (unsigned long long)(uintptr_t)&row->calls, 0), m->t_ptr);
      LLVMValueRef ot = LLVMBuildLoad2(b, m->t_i64, pt, "");
      LLVMBuildStore(b, LLVMBuildAdd(b, ot, LLVMBuildSub(b, t1, t0, ""), ""), pt);
      LLVMValueRef oc = LLVMBuildLoad2(b, m->t_i64, pc, "");
      LLVMBuildStore(b, LLVMBuildAdd(b, oc, cg_i64(m, 1), ""), pc);
    }
  }
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  return true;
}

/* ---- the module ---- */

int cg_kernel_table(const Program *p, unsigned entries, int parts, const Kernel **kt, int *part_of, int cap) {
  int n = 0;
  double load[64] = {0};
  if (parts < 1) parts = 1;
  if (parts > 64) parts = 64;
  load[0] = 2; /* the entries */
  CgModule memo = {0}; /* no target: fusion does not depend on it (cg_fused_away) */
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present || (entries && !(entries & (1u << e)))) continue;
    for (int i = 0; i < en->n_kernels; i++) {
      const Kernel *k = en->kernels[i];
      if (cg_fused_away(&memo, p, en, i)) continue; /* compiled into its neighbour */
      bool seen = false;
      for (int j = 0; j < n && !seen; j++) seen = kt[j] == k || !strcmp(kt[j]->name, k->name);
      if (seen || n == cap) continue;
      if (part_of) {
        /* compile cost estimate: a GEMM is a packed nest of several loops */
        GemmPlan g;
        double cost = cg_gemm_plan(NULL, p, k, &g) ? 8 : 1;
        int best = 0;
        for (int q = 1; q < parts; q++)
          if (load[q] < load[best]) best = q;
        load[best] += cost;
        part_of[n] = best;
      }
      kt[n++] = k;
    }
  }
  free(memo.fusions);
  cg_chain_free(&memo);
  return n;
}

/* One part of a partitioned program: its kernels (external, named as the
 * kernel), and in part 0 the kernel table and the entries. */
static bool build_part(CgModule *m, const Program *p, const CgOptions *o, Diag *d) {
  int cap = 0;
  for (int e = 0; e < ENTRY__COUNT; e++) cap += p->entries[e].n_kernels;
  m->kt = calloc((size_t)cap + 1, sizeof *m->kt);
  int *own = o->part_of ? NULL : calloc((size_t)cap + 1, sizeof *own);
  m->nkt = cg_kernel_table(p, o->entries, o->parts, m->kt, own, cap);
  const int *part_of = o->part_of ? o->part_of : own;
  bool ok = true;
  for (int i = 0; i < m->nkt && ok; i++) {
    if (part_of[i] != o->part) continue;
    LLVMValueRef fn = cg_kernel(m, p, m->kt[i], d);
    if (!fn) ok = false;
    else LLVMSetLinkage(fn, LLVMExternalLinkage);
  }
  free(own);
  if (!ok || o->part != 0) return ok;
  LLVMTypeRef tt = LLVMArrayType2(m->t_ptr, (uint64_t)(m->nkt > 0 ? m->nkt : 1));
  m->ktab = LLVMAddGlobal(m->mod, tt, CG_KTAB_SYMBOL);
  LLVMSetInitializer(m->ktab, LLVMConstNull(tt));
  LLVMSetLinkage(m->ktab, LLVMExternalLinkage);
  for (int e = 0; e < ENTRY__COUNT && ok; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present || (o->entries && !(o->entries & (1u << e)))) continue;
    LLVMValueRef *kfns = calloc((size_t)en->n_kernels + 1, sizeof *kfns);
    ok = emit_entry(m, p, (EntryKind)e, kfns, d);
    free(kfns);
  }
  return ok;
}

/* LLVM's diagnostics during optimization: remarks and warnings (a loop our
 * vectorize hint marks that LLVM then declines, -Wpass-failed) are not the
 * user's business; shown with DLC_DEBUG >= 3. Errors surface through the
 * failing call itself. */
static void llvm_diag(LLVMDiagnosticInfoRef di, void *ctx) {
  (void)ctx;
  const char *dbg = getenv("DLC_DEBUG");
  if (!dbg || atoi(dbg) < 3) return;
  char *msg = LLVMGetDiagInfoDescription(di);
  fprintf(stderr, "dlc-debug: llvm: %s\n", msg ? msg : "");
  LLVMDisposeMessage(msg);
}

CgModule *cg_build(const Program *p, const CgOptions *o, Diag *d) {
  CgModule *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->opt_level = o ? o->opt_level : 2;
  if (m->opt_level < 0) m->opt_level = 0;
  if (m->opt_level > 3) m->opt_level = 3;
  m->tsc = LLVMOrcCreateNewThreadSafeContext();
  m->ctx = LLVMOrcThreadSafeContextGetContext(m->tsc);
  LLVMContextSetDiagnosticHandler(m->ctx, llvm_diag, NULL);
  m->mod = LLVMModuleCreateWithNameInContext(p->model ? p->model : "dlc", m->ctx);
  if (!setup_target(m, o, d)) {
    cg_free(m);
    return NULL;
  }
  LLVMSetTarget(m->mod, m->triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(m->tm);
  LLVMSetModuleDataLayout(m->mod, dl);
  LLVMDisposeTargetData(dl);

  m->t_void = LLVMVoidTypeInContext(m->ctx);
  m->t_i1 = LLVMInt1TypeInContext(m->ctx);
  m->t_i32 = LLVMInt32TypeInContext(m->ctx);
  m->t_i64 = LLVMInt64TypeInContext(m->ctx);
  m->t_f32 = LLVMFloatTypeInContext(m->ctx);
  m->t_ptr = LLVMPointerTypeInContext(m->ctx, 0);
  LLVMTypeRef kp[3] = {m->t_ptr, m->t_i64, m->t_i64};
  m->t_kernel = LLVMFunctionType(m->t_void, kp, 3, 0);
  m->t_entry = LLVMFunctionType(m->t_void, &m->t_ptr, 1, 0);
  LLVMTypeRef pp[4] = {m->t_ptr, m->t_ptr, m->t_i64, m->t_i64};
  m->t_par_for = LLVMFunctionType(m->t_void, pp, 4, 0);

  bool ok = true;
  if (o && o->parts > 1) {
    ok = build_part(m, p, o, d);
    if (!ok) {
      cg_free(m);
      return NULL;
    }
    return m;
  }
  for (int e = 0; e < ENTRY__COUNT && ok; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present || (o && o->entries && !(o->entries & (1u << e)))) continue;
    LLVMValueRef *kfns = calloc((size_t)en->n_kernels + 1, sizeof *kfns);
    for (int i = 0; i < en->n_kernels && ok; i++) {
      const Kernel *k = en->kernels[i];
      if (cg_fused_away(m, p, en, i)) continue; /* compiled into its neighbour */
      kfns[i] = LLVMGetNamedFunction(m->mod, k->name);
      if (!kfns[i]) kfns[i] = cg_kernel(m, p, k, d); /* a kernel shared by entries is built once */
      if (!kfns[i]) ok = false;
    }
    if (ok) ok = emit_entry(m, p, (EntryKind)e, kfns, d);
    free(kfns);
  }
  if (!ok) {
    cg_free(m);
    return NULL;
  }
  if (getenv("DLC_DEBUG") && atoi(getenv("DLC_DEBUG")) >= 3) {
    fprintf(stderr, "; ---- LLVM IR (before optimisation) ----\n");
    cg_emit_llvm(m, stderr);
  }
  return m;
}

int cg_optimize(CgModule *m, Diag *d) {
  char *msg = NULL;
  if (LLVMVerifyModule(m->mod, LLVMReturnStatusAction, &msg)) {
    diag_error(d, (SrcLoc){0}, "internal error: backend produced an invalid LLVM module: %s",
               msg ? msg : "(no message)");
    LLVMDisposeMessage(msg);
    return 1;
  }
  LLVMDisposeMessage(msg);
  char pipeline[32];
  snprintf(pipeline, sizeof pipeline, "default<O%d>", m->opt_level >= 2 ? 3 : m->opt_level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  if (m->opt_level >= 2) {
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    /* LLVM's unroller stays on: loops that must not be unrolled (GEMM
     * packing, edge tiles, epilogues, large constant-trip outer loops) carry
     * llvm.loop.unroll.disable metadata (cg_loop_hint), while small
     * constant-trip loops such as im2col windows gain from being fully
     * unrolled before vectorization. DLC_LLVM_UNROLL=0 turns it off (only
     * forced unrolling remains; the LeNet-5 step then runs about 2x slower). */
    const char *un = getenv("DLC_LLVM_UNROLL");
    LLVMPassBuilderOptionsSetLoopUnrolling(po, !(un && *un == '0'));
    LLVMPassBuilderOptionsSetLoopInterleaving(po, 1);
  }
  /* DLC_LLVM_PIPELINE=<new-pass-manager pipeline text> replaces the
   * pipeline, for compile-time experiments (hand-written lean pipelines so
   * far lost run-time speed: default<O3> fully unrolls with the O3
   * threshold and infers function attributes the kernels' callers use). */
  const char *pl = getenv("DLC_LLVM_PIPELINE");
  LLVMErrorRef err = LLVMRunPasses(m->mod, pl && *pl ? pl : pipeline, m->tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (err) {
    char *em = LLVMGetErrorMessage(err);
    diag_error(d, (SrcLoc){0}, "internal error: LLVM pass pipeline failed: %s", em);
    LLVMDisposeErrorMessage(em);
    return 1;
  }
  m->optimized = true;
  if (getenv("DLC_DEBUG") && atoi(getenv("DLC_DEBUG")) >= 3) {
    fprintf(stderr, "; ---- LLVM IR (optimised) ----\n");
    cg_emit_llvm(m, stderr);
  }
  return 0;
}

void cg_warm_up(void) {
  static bool done;
  if (done) return;
  done = true;
  Arena *a = arena_new();
  if (!a) return;
  Program *p = kir_program_new(a, "dlc_warm_up");
  Diag d;
  diag_init(&d, NULL);
  CgOptions o = {.cpu = NULL, .opt_level = 3};
  CgModule *m = cg_build(p, &o, &d);
  if (m) {
    /* one function, so the pipeline and the code generator run for real */
    LLVMValueRef fn = LLVMAddFunction(m->mod, "dlc_warm_up", m->t_entry);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(m->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
    if (!cg_optimize(m, &d)) {
      LLVMMemoryBufferRef buf = NULL;
      char *err = NULL;
      if (!LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, LLVMObjectFile, &err, &buf)) LLVMDisposeMemoryBuffer(buf);
      LLVMDisposeMessage(err);
    }
    cg_free(m);
  }
  diag_free(&d);
  arena_free(a);
}

void cg_free(CgModule *m) {
  if (!m) return;
  if (m->mod) LLVMDisposeModule(m->mod);
  if (m->tm) LLVMDisposeTargetMachine(m->tm);
  if (m->tsc) LLVMOrcDisposeThreadSafeContext(m->tsc);
  free(m->triple);
  free(m->cpu);
  free(m->features);
  for (int i = 0; i < m->n_bodies; i++) free(m->bodies[i].key);
  free(m->bodies);
  free(m->fusions);
  cg_chain_free(m);
  free(m->kt);
  free(m);
}
