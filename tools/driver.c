/* driver.c — the compilation pipeline (see driver.h). */
#include "tools/driver.h"
#include "tools/jit_cache.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "ir/ir_parse.h"
#include "passes/lower.h"
#include "passes/passes.h"
#include "passes/pipeline.h"

double drv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

char *drv_read_file(Arena *a, const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return NULL;
  }
  for (;;) {
    if (n + 4096 > cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
      cap *= 2;
    }
    size_t k = fread(buf + n, 1, cap - n - 1, f);
    n += k;
    if (k == 0) break;
  }
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return NULL;
  }
  char *out = arena_strndup(a, buf, n);
  free(buf);
  if (len) *len = n;
  return out;
}

bool drv_parse_define(const char *arg, ConstDef *out) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) return false;
  static char names[64][64];
  static int next;
  char *name = names[next++ % 64];
  snprintf(name, 64, "%.*s", (int)(eq - arg), arg);
  out->name = name;
  out->value = eq + 1;
  return true;
}

/* -D's VALUE: a decimal integer, as sema reads it (strtoll, nothing left
 * over, in range, no leading space) */
static bool is_integer(const char *v) {
  if (!*v || isspace((unsigned char)*v)) return false;
  errno = 0;
  char *end = NULL;
  (void)strtoll(v, &end, 10);
  return *end == 0 && errno != ERANGE;
}

int drv_parse_common_option(DrvOptions *o, int max_defs, int argc, char **argv, int *i, char *err, size_t errlen) {
  const char *a = argv[*i];
  if (!strncmp(a, "-D", 2)) {
    const char *def = a[2] ? a + 2 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!def) {
      snprintf(err, errlen, "-D needs NAME=VALUE");
      return -1;
    }
    if (o->ndefs >= max_defs) {
      snprintf(err, errlen, "-D %s: more than %d definitions", def, max_defs);
      return -1;
    }
    if (!drv_parse_define(def, (ConstDef *)&o->defs[o->ndefs])) {
      snprintf(err, errlen, "-D %s: expected NAME=VALUE", def);
      return -1;
    }
    if (!is_integer(o->defs[o->ndefs].value)) {
      snprintf(err, errlen, "-D %s: the value is not an integer", def);
      return -1;
    }
    o->ndefs++;
  } else if (!strcmp(a, "-O0") || !strcmp(a, "-O1") || !strcmp(a, "-O2")) {
    o->opt_level = a[2] - '0';
  } else if (!strncmp(a, "--cpu=", 6)) {
    if (!a[6]) {
      snprintf(err, errlen, "--cpu= needs a CPU name (native, or an LLVM CPU name such as x86-64-v3)");
      return -1;
    }
    o->cpu = a + 6;
  } else if (!strcmp(a, "--time-passes")) {
    o->time_passes = true;
  } else if (!strcmp(a, "--verify-each")) {
    o->verify_each = true;
  } else if (!strncmp(a, "--print-after=", 14)) {
    if (!pipeline_is_pass_name(a + 14)) {
      snprintf(err, errlen, "--print-after: unknown pass '%s'", a + 14);
      return -1;
    }
    o->print_after = a + 14;
  } else {
    return 0;
  }
  return 1;
}

static void add_error(Diag *d, const char *first, int n) {
  if (n <= 0) return;
  if (d->n_errors == 0) snprintf(d->first, sizeof d->first, "%s", first);
  d->n_errors += n;
}

void drv_error(Diag *d, const char *tool, const char *fmt, ...) {
  char msg[440];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!tool) {
    diag_error(d, (SrcLoc){0}, "%s", msg);
    return;
  }
  char first[512];
  snprintf(first, sizeof first, "error: %s", msg);
  add_error(d, first, 1);
  if (d->out) fprintf(d->out, "%s: error: %s\n", tool, msg);
}

/* An error line collected elsewhere (Diag.first): `error: MESSAGE` again
 * as `TOOL: error: MESSAGE`, one with a location as it is. */
static void relay_first(Diag *d, const char *tool, const char *first) {
  if (!strncmp(first, "error: ", 7)) {
    drv_error(d, tool, "%s", first + 7);
  } else {
    add_error(d, first, 1);
    if (d->out) fprintf(d->out, "%s\n", first);
  }
}

Diag *drv_relay_begin(DrvRelay *r, Diag *d) {
  memset(r, 0, sizeof *r);
  r->ms = d->out ? open_memstream(&r->buf, &r->len) : NULL;
  diag_init(&r->d, r->ms ? r->ms : d->out);
  r->d.max_errors = d->max_errors;
  r->d.sources = d->sources; /* borrowed: the excerpts of located errors */
  return &r->d;
}

void drv_relay_end(DrvRelay *r, Diag *d, const char *tool) {
  if (r->ms) {
    fclose(r->ms);
    for (char *line = r->buf; line && *line;) {
      char *nl = strchr(line, '\n');
      size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
      if (tool && !strncmp(line, "error: ", 7)) fprintf(d->out, "%s: ", tool);
      fwrite(line, 1, n, d->out);
      line += n;
    }
    free(r->buf);
  }
  add_error(d, r->d.first, r->d.n_errors);
  r->d.sources = NULL;
  diag_free(&r->d);
  memset(r, 0, sizeof *r);
}

static bool verify(Graph *g, const char *after, Diag *d) {
  if (ir_verify(g, d)) return true;
  diag_error(d, (SrcLoc){0}, "internal error: the graph is invalid after %s", after);
  return false;
}

DlrtBufDesc *drv_program_desc(Arena *a, const Program *p, DlrtModelDesc *d) {
  DlrtBufDesc *bufs = ARENA_ARRAY(a, DlrtBufDesc, p->n_bufs + 1);
  for (int i = 0; i < p->n_bufs; i++) {
    const Buffer *b = &p->bufs[i];
    DlrtBufDesc *o = &bufs[i];
    o->name = b->name;
    o->role = (int32_t)b->role;
    o->dtype = (int32_t)b->dtype;
    o->rank = b->shape.rank;
    for (int k = 0; k < b->shape.rank; k++) o->shape[k] = b->shape.d[k];
    o->init = b->init;
    o->entry = b->entry;
    o->alias = b->alias;
    o->offset = b->offset;
    o->classes = b->classes;
  }
  memset(d, 0, sizeof *d);
  d->model = p->model;
  d->n_bufs = p->n_bufs;
  d->bufs = bufs;
  d->arena_bytes = p->arena_bytes;
  d->rng_buf = p->rng_buf;
  for (int e = 0; e < ENTRY__COUNT; e++) {
    int64_t f = 0;
    for (int k = 0; k < p->entries[e].n_kernels; k++) f += p->entries[e].kernels[k]->flops;
    d->flops[e] = f;
  }
  return bufs;
}

static void fill_desc(DrvModel *m) {
  m->bufs = drv_program_desc(m->arena, m->prog, &m->desc);
  DlrtModelDesc *d = &m->desc;
  const Graph *g = m->graph[ENTRY_TRAIN];
  if (g) {
    const Optimizer *o = &g->opt;
    switch (o->kind) {
      case OPT_SGD:
        d->optimizer = arena_printf(m->arena, "sgd(lr=%g, momentum=%g, weight_decay=%g%s)", o->lr, o->momentum,
                                    o->weight_decay, o->nesterov ? ", nesterov=true" : "");
        break;
      case OPT_ADAM: case OPT_ADAMW:
        d->optimizer = arena_printf(m->arena, "%s(lr=%g, beta1=%g, beta2=%g, eps=%g, weight_decay=%g)",
                                    o->kind == OPT_ADAM ? "adam" : "adamw", o->lr, o->beta1, o->beta2, o->eps,
                                    o->weight_decay);
        break;
      case OPT_NONE: d->optimizer = "none"; break;
    }
  }
}

static bool updates_a_param(const Graph *g) {
  for (int i = 0; i < g->n_updates; i++)
    if (g->nodes[g->updates[i].target]->op == OP_PARAM) return true;
  return false;
}

/* A .dlir file (ir_parse.h): its graphs become the graphs of the entries of
 * their modes; a kernel program becomes m->prog (compiled as it is). */
static int load_dlir(DrvModel *m, const char *text, DrvStage stage, Diag *d) {
  IrModule mod;
  if (!ir_parse_module(m->arena, m->path, text, &mod, d)) return DRV_USER_ERROR;
  SrcLoc top = {m->path, 1, 1};
  if (stage == DRV_STAGE_AST) {
    diag_error(d, top, "a .dlir file has no syntax tree (--emit=ast needs a .dl model)");
    return DRV_USER_ERROR;
  }
  for (int i = 0; i < mod.n_graphs; i++) {
    Graph *g = mod.graphs[i];
    int e = g->mode == MODE_TRAIN ? ENTRY_TRAIN : g->mode == MODE_EVAL ? ENTRY_EVAL : ENTRY_INFER;
    if (m->graph[e]) {
      diag_error(d, top, "two graphs of mode %s", ir_mode_name(g->mode));
      return DRV_USER_ERROR;
    }
    if (e == ENTRY_TRAIN && (g->loss < 0 || g->opt.kind == OPT_NONE)) {
      diag_error(d, top, "the mode=train graph needs a loss and an optimizer");
      return DRV_USER_ERROR;
    }
    m->graph[e] = g;
    if (!m->model) m->model = g->name;
  }
  m->prog = mod.prog;
  if (m->prog) m->model = m->prog->model;
  if (!mod.n_graphs && (stage == DRV_STAGE_IR || stage == DRV_STAGE_GRAD)) {
    diag_error(d, top, "the file holds a kernel program, not graphs");
    return DRV_USER_ERROR;
  }
  return DRV_OK;
}

/* ---- JIT: the program's kernels split into two modules (balanced by an
 * estimate of compile cost), each built, optimised and compiled to machine
 * code on its own thread with its own LLVM context and JIT; part 0 also
 * holds the entries, which call the kernels through a table filled here ---- */

enum { JIT_PARTS = 2 };

typedef struct {
  const Program *prog;
  CgOptions co;
  Diag d;             /* this job's errors (collected, copied to the caller's) */
  CgJit *jit;
  const char *sym[ENTRY__COUNT]; /* part 0: entry symbols to look up */
  void *fn[ENTRY__COUNT];
  const Kernel **kt; /* the kernel table (shared, read-only) */
  const int *part_of;
  int nkt;
  void **kaddr;      /* kaddr[i] for this part's kernels */
  void *ktab;        /* part 0: the table's address */
  const char *cache; /* the object-code cache directory (jit_cache.h), or NULL */
  bool cached;       /* the code came from the cache */
  double t_build, t_opt, t_jit;
  int status;
} JitJob;

/* Optimises and JIT-compiles mod (consumed), through the object-code cache
 * when there is one: a hit skips LLVM's optimisation and code generation. */
static CgJit *jit_module(JitJob *j, CgModule *mod, double *t_opt) {
  char *key = j->cache ? cg_module_key(mod) : NULL;
  char *path = key ? jc_path(j->cache, key) : NULL;
  free(key);
  void *obj = NULL;
  size_t n = 0;
  CgJit *jit = NULL;
  double t0 = drv_now();
  if (path && jc_load(path, &obj, &n)) {
    j->cached = true;
    jit = cg_jit_object(mod, obj, n, &j->d);
  } else {
    int bad = cg_optimize(mod, &j->d);
    *t_opt = drv_now() - t0;
    if (bad) {
      cg_free(mod);
    } else if (path && cg_emit_object_mem(mod, &obj, &n, &j->d) == 0) { /* compiled once, then kept */
      jc_store(j->cache, path, obj, n);
      jit = cg_jit_object(mod, obj, n, &j->d);
    } else {
      jit = cg_jit(mod, &j->d);
    }
  }
  free(obj);
  free(path);
  return jit;
}

static void *jit_job(void *arg) {
  JitJob *j = arg;
  double t0 = drv_now();
  CgModule *mod = cg_build(j->prog, &j->co, &j->d);
  if (!mod) {
    j->status = strstr(j->d.first, "unknown CPU") ? DRV_USAGE : DRV_INTERNAL;
    return NULL;
  }
  double t1 = drv_now(), t_opt = 0;
  j->jit = jit_module(j, mod, &t_opt); /* consumes mod */
  double t2 = t1 + t_opt;
  j->status = j->jit ? DRV_OK : DRV_INTERNAL;
  /* the lookups compile the module's code, on this thread */
  for (int i = 0; i < j->nkt && j->jit && j->status == DRV_OK; i++) {
    if (j->part_of[i] != j->co.part) continue;
    j->kaddr[i] = (void *)cg_jit_entry(j->jit, j->kt[i]->name);
    if (!j->kaddr[i]) {
      diag_error(&j->d, (SrcLoc){0}, "internal error: JIT kernel %s not found", j->kt[i]->name);
      j->status = DRV_INTERNAL;
    }
  }
  for (int e = 0; e < ENTRY__COUNT && j->jit && j->status == DRV_OK; e++) {
    if (!j->sym[e]) continue;
    j->fn[e] = (void *)cg_jit_entry(j->jit, j->sym[e]);
    if (!j->fn[e]) {
      diag_error(&j->d, (SrcLoc){0}, "internal error: JIT entry %s not found", j->sym[e]);
      j->status = DRV_INTERNAL;
    }
  }
  if (j->co.part == 0 && j->jit && j->status == DRV_OK) {
    j->ktab = (void *)cg_jit_entry(j->jit, CG_KTAB_SYMBOL);
    if (!j->ktab) {
      diag_error(&j->d, (SrcLoc){0}, "internal error: JIT kernel table not found");
      j->status = DRV_INTERNAL;
    }
  }
  j->t_build = t1 - t0, j->t_opt = t2 - t1, j->t_jit = drv_now() - t2;
  return NULL;
}

static int jit_parallel(DrvModel *m, const CgOptions *co, const char *tool, Diag *d) {
  double t0 = drv_now();
  int cap = 0;
  for (int e = 0; e < ENTRY__COUNT; e++) cap += m->prog->entries[e].n_kernels;
  const Kernel **kt = calloc((size_t)cap + 1, sizeof *kt);
  int *part_of = calloc((size_t)cap + 1, sizeof *part_of);
  void **kaddr = calloc((size_t)cap + 1, sizeof *kaddr);
  int nkt = cg_kernel_table(m->prog, co->entries, JIT_PARTS, kt, part_of, cap);
  JitJob jobs[JIT_PARTS];
  for (int i = 0; i < JIT_PARTS; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].prog = m->prog;
    jobs[i].co = *co;
    jobs[i].co.part = i;
    jobs[i].co.parts = JIT_PARTS;
    jobs[i].co.part_of = part_of;
    jobs[i].kt = kt, jobs[i].part_of = part_of, jobs[i].nkt = nkt, jobs[i].kaddr = kaddr;
    if (i == 0)
      for (int e = 0; e < ENTRY__COUNT; e++)
        if (m->prog->entries[e].present && (!co->entries || (co->entries & (1u << e))))
          jobs[i].sym[e] = cg_entry_symbol(m->arena, m->prog, (EntryKind)e);
    jobs[i].cache = co->opt_level > 0 ? jc_dir() : NULL; /* -O0 compiles fast anyway */
    diag_init(&jobs[i].d, NULL);
  }
  pthread_t th;
  cg_warm_up(); /* LLVM's lazily built global state, before two threads use it */
  bool threaded = sysconf(_SC_NPROCESSORS_ONLN) > 1 && pthread_create(&th, NULL, jit_job, &jobs[1]) == 0;
  jit_job(&jobs[0]);
  if (threaded) pthread_join(th, NULL);
  else jit_job(&jobs[1]);
  int rc = DRV_OK;
  for (int i = 0; i < JIT_PARTS; i++)
    if (jobs[i].status != DRV_OK) {
      if (rc == DRV_OK) rc = jobs[i].status;
      const char *first = jobs[i].d.first[0] ? jobs[i].d.first : "error: internal error: JIT failed";
      bool again = false; /* both parts fail alike on a bad --cpu: said once */
      for (int k = 0; k < i; k++) again |= jobs[k].status != DRV_OK && !strcmp(jobs[k].d.first, first);
      if (!again) relay_first(d, tool, first);
    }
  /* phases of the part on the critical path (the longer one) */
  int c = jobs[1].t_build + jobs[1].t_opt + jobs[1].t_jit > jobs[0].t_build + jobs[0].t_opt + jobs[0].t_jit;
  pipeline_time_phase("llvm codegen", jobs[c].t_build);
  pipeline_time_phase("llvm optimisation", jobs[c].t_opt);
  pipeline_time_phase(jobs[c].cached ? "jit (cached object code)" : "jit", jobs[c].t_jit);
  m->jit = jobs[0].jit;
  m->jit2 = jobs[1].jit;
  for (int i = 0; i < JIT_PARTS; i++) diag_free(&jobs[i].d);
  if (rc == DRV_OK) {
    void **tab = jobs[0].ktab;
    for (int i = 0; i < nkt; i++) tab[i] = kaddr[i];
    m->desc.set_threads = dlrt_set_threads;
    for (int e = 0; e < ENTRY__COUNT; e++)
      if (jobs[0].sym[e]) m->desc.entries[e] = (DlrtEntryFn)jobs[0].fn[e];
  }
  free(kt);
  free(part_of);
  free(kaddr);
  m->t_llvm = 0;
  m->t_jit = drv_now() - t0;
  return rc;
}

int drv_compile(DrvModel *m, const char *path, const DrvOptions *o, DrvStage stage, Diag *d) {
  memset(m, 0, sizeof *m);
  m->arena = arena_new();
  pipeline_reset_times();
  PipelineOptions po = {.opt_level = o->opt_level, .verify_each = o->verify_each, .print_after = o->print_after,
                        .time_passes = o->time_passes};
  m->path = path;
  double t0 = drv_now();
  size_t len = 0;
  char *text = drv_read_file(m->arena, path, &len);
  if (!text) {
    drv_error(d, o->tool, "cannot read %s: %s", path, strerror(errno ? errno : EIO));
    return DRV_USER_ERROR;
  }
  bool dlir = ir_is_dlir_path(path);
  if (dlir) {
    int rc = load_dlir(m, text, stage, d);
    if (rc != DRV_OK) return rc;
  } else {
    diag_add_source(d, path, text);
    m->ast = fe_parse(m->arena, path, text, d);
    if (!m->ast) return DRV_USER_ERROR;
    m->model = fe_model_name(m->ast);
  }
  if (stage == DRV_STAGE_AST) return DRV_OK;

  /* the three modes; the train graph exists when the model trains */
  static const GraphMode modes[ENTRY__COUNT] = {MODE_TRAIN, MODE_EVAL, MODE_INFER};
  for (int e = 0; e < ENTRY__COUNT && !dlir; e++) {
    Graph *g = fe_build_graph(m->arena, m->ast, modes[e], o->defs, o->ndefs, d);
    if (!g) return DRV_USER_ERROR;
    if (e == ENTRY_TRAIN && (g->loss < 0 || g->opt.kind == OPT_NONE)) continue;
    if (e == ENTRY_EVAL && g->loss < 0 && g->n_metrics == 0) continue;
    if (e == ENTRY_INFER && g->n_outputs == 0) continue;
    m->graph[e] = g;
    if (o->verify_each && !verify(g, "sema", d)) return DRV_INTERNAL;
  }
  if (!m->graph[ENTRY_TRAIN] && !m->graph[ENTRY_EVAL] && !m->graph[ENTRY_INFER] && !m->prog) {
    diag_error(d, (SrcLoc){path, 1, 1}, "the model has no `output`, `metric` or `train` statement: nothing to compute");
    return DRV_USER_ERROR;
  }
  m->t_frontend = drv_now() - t0;
  pipeline_time_phase("frontend", m->t_frontend);
  if (stage == DRV_STAGE_IR) return DRV_OK;

  t0 = drv_now();
  Graph *tg = m->graph[ENTRY_TRAIN];
  if (tg && !m->prog && tg->n_grads == 0) { /* a .dlir train graph may be differentiated already */
    double tp = drv_now();
    if (!pass_autodiff(tg, d)) return DRV_USER_ERROR;
    pipeline_after_graph_phase(&po, "autodiff", tg, drv_now() - tp);
    if (o->verify_each && !verify(tg, "autodiff", d)) return DRV_INTERNAL;
  }
  if (tg && !m->prog && !updates_a_param(tg)) {
    double tp = drv_now();
    if (!pass_optimizer(tg, d)) return DRV_USER_ERROR;
    pipeline_after_graph_phase(&po, "optimizer", tg, drv_now() - tp);
    if (o->verify_each && !verify(tg, "optimizer", d)) return DRV_INTERNAL;
  }
  if (stage == DRV_STAGE_GRAD) return DRV_OK;
  if (m->prog) { /* a .dlir kernel program: straight to code generation */
    fill_desc(m);
    if (stage == DRV_STAGE_KERNELS) return DRV_OK;
    goto codegen;
  }
  for (int e = 0; e < ENTRY__COUNT; e++)
    if (m->graph[e] && !pipeline_run_graph(m->graph[e], &po, d)) return DRV_INTERNAL;

  m->prog = kir_program_new(m->arena, m->model);
  LowerOptions lo = {.fuse = o->opt_level > 0};
  double tl = drv_now();
  for (int e = 0; e < ENTRY__COUNT; e++)
    if (m->graph[e] && !lower_graph(m->graph[e], m->prog, (EntryKind)e, &lo, d)) return DRV_INTERNAL;
  pipeline_after_kernel_phase(&po, "lower", m->prog, drv_now() - tl);
  if (!pipeline_run_kernels(m->prog, &po, d)) return DRV_INTERNAL;
  m->t_passes = drv_now() - t0;
  fill_desc(m);
  if (stage == DRV_STAGE_KERNELS) return DRV_OK;

codegen:
  t0 = drv_now();
  CgOptions co = {.cpu = o->cpu, .opt_level = o->opt_level >= 2 ? 3 : o->opt_level};
  if (stage >= DRV_STAGE_JIT) {
    co.entries = o->jit_entries;
    return jit_parallel(m, &co, o->tool, d);
  }
  DrvRelay r;
  m->mod = cg_build(m->prog, &co, drv_relay_begin(&r, d));
  bool bad_cpu = !m->mod && strstr(r.d.first, "unknown CPU");
  drv_relay_end(&r, d, o->tool);
  if (!m->mod) return bad_cpu ? DRV_USAGE : DRV_INTERNAL;
  double tc = drv_now();
  pipeline_time_phase("llvm codegen", tc - t0);
  if (cg_optimize(m->mod, d)) return DRV_INTERNAL;
  m->t_llvm = drv_now() - t0;
  pipeline_time_phase("llvm optimisation", drv_now() - tc);
  return DRV_OK;
}

void drv_free(DrvModel *m) {
  if (m->jit) cg_jit_free(m->jit);
  if (m->jit2) cg_jit_free(m->jit2);
  if (m->mod) cg_free(m->mod);
  arena_free(m->arena);
  memset(m, 0, sizeof *m);
}
