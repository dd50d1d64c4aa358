/* kernel.c — constructors, substitution and printing of the kernel IR, and
 * the program's buffer table. */
#include "ir/kernel.h"

#include "ir/ir_parse.h"

#include <inttypes.h>
#include <string.h>

Program *kir_program_new(Arena *a, const char *model) {
  Program *p = ARENA_NEW(a, Program);
  p->arena = a;
  p->model = arena_strdup(a, model);
  p->rng_buf = -1;
  return p;
}

int kir_find_buffer(const Program *p, const char *name, BufRole role, int entry) {
  for (int i = 0; i < p->n_bufs; i++) {
    const Buffer *b = &p->bufs[i];
    if (b->role == role && b->entry == entry && strcmp(b->name, name) == 0) return i;
  }
  return -1;
}

int kir_buffer(Program *p, const char *name, BufRole role, DType dt, Shape shape, int entry) {
  int i = kir_find_buffer(p, name, role, entry);
  if (i >= 0) return i;
  if (p->n_bufs == p->cap_bufs) {
    int cap = p->cap_bufs ? p->cap_bufs * 2 : 64;
    p->bufs = arena_grow(p->arena, p->bufs, sizeof(Buffer), (size_t)p->n_bufs, (size_t)cap);
    p->cap_bufs = cap;
  }
  Buffer *b = &p->bufs[p->n_bufs];
  memset(b, 0, sizeof *b);
  b->name = arena_strdup(p->arena, name);
  b->role = role;
  b->dtype = dt;
  b->shape = shape;
  b->entry = entry;
  b->offset = -1;
  b->alias = -1;
  return p->n_bufs++;
}

void kir_add_kernel(Program *p, EntryKind e, Kernel *k) {
  Entry *en = &p->entries[e];
  en->present = true;
  if (en->n_kernels == en->cap_kernels) {
    int cap = en->cap_kernels ? en->cap_kernels * 2 : 32;
    en->kernels = arena_grow(p->arena, en->kernels, sizeof(Kernel *), (size_t)en->n_kernels, (size_t)cap);
    en->cap_kernels = cap;
  }
  en->kernels[en->n_kernels++] = k;
}

/* ---- index expressions ---- */
IExpr *ix_const(Arena *a, int64_t v) {
  IExpr *e = ARENA_NEW(a, IExpr);
  e->op = IX_CONST;
  e->v = v;
  return e;
}

IExpr *ix_var(Arena *a, int var) {
  IExpr *e = ARENA_NEW(a, IExpr);
  e->op = IX_VAR;
  e->var = var;
  return e;
}

IExpr *ix_bin(Arena *a, IxOp op, IExpr *x, IExpr *y) {
  bool cx = x->op == IX_CONST, cy = y->op == IX_CONST;
  if (cx && cy) {
    int64_t u = x->v, v = y->v, r = 0;
    switch (op) {
      case IX_ADD: r = u + v; break;
      case IX_SUB: r = u - v; break;
      case IX_MUL: r = u * v; break;
      case IX_DIV: r = v ? u / v : 0; break;
      case IX_MOD: r = v ? u % v : 0; break;
      case IX_LT: r = u < v; break;
      case IX_GE: r = u >= v; break;
      case IX_EQ: r = u == v; break;
      case IX_AND: r = u && v; break;
      case IX_CONST: case IX_VAR: DL_ASSERT(!"not a binary index op");
    }
    return ix_const(a, r);
  }
  switch (op) {
    case IX_ADD:
      if (cx && x->v == 0) return y;
      if (cy && y->v == 0) return x;
      break;
    case IX_SUB:
      if (cy && y->v == 0) return x;
      break;
    case IX_MUL:
      if ((cx && x->v == 0) || (cy && y->v == 0)) return ix_const(a, 0);
      if (cx && x->v == 1) return y;
      if (cy && y->v == 1) return x;
      break;
    case IX_DIV:
      if (cy && y->v == 1) return x;
      break;
    case IX_MOD:
      if (cy && y->v == 1) return ix_const(a, 0);
      break;
    case IX_AND:
      if (cx) return x->v ? y : ix_const(a, 0);
      if (cy) return y->v ? x : ix_const(a, 0);
      break;
    case IX_LT: case IX_GE: case IX_EQ: break;
    case IX_CONST: case IX_VAR: DL_ASSERT(!"not a binary index op");
  }
  IExpr *e = ARENA_NEW(a, IExpr);
  e->op = op;
  e->a = x;
  e->b = y;
  return e;
}

bool ix_uses_var(const IExpr *e, int v) {
  if (!e) return false;
  switch (e->op) {
    case IX_CONST: return false;
    case IX_VAR: return e->var == v;
    case IX_ADD: case IX_SUB: case IX_MUL: case IX_DIV: case IX_MOD: case IX_LT: case IX_GE: case IX_EQ:
    case IX_AND:
      return ix_uses_var(e->a, v) || ix_uses_var(e->b, v);
  }
  return true;
}

IExpr *ix_subst(Arena *a, const IExpr *e, IExpr *const *sub, int nsub) {
  if (!e) return NULL;
  switch (e->op) {
    case IX_CONST: return (IExpr *)e;
    case IX_VAR:
      if (e->var < nsub && sub[e->var]) return sub[e->var];
      return (IExpr *)e;
    case IX_ADD: case IX_SUB: case IX_MUL: case IX_DIV: case IX_MOD: case IX_LT: case IX_GE: case IX_EQ:
    case IX_AND:
      return ix_bin(a, e->op, ix_subst(a, e->a, sub, nsub), ix_subst(a, e->b, sub, nsub));
  }
  return NULL;
}

/* ---- value expressions ---- */
VExpr *vx_const(Arena *a, DType dt, double v) {
  VExpr *e = ARENA_NEW(a, VExpr);
  e->op = VX_CONST;
  e->dtype = dt;
  e->f = (float)v;
  e->i = v > -2147483649.0 && v < 2147483648.0 ? (int32_t)v : 0; /* -inf fills are f32 only */
  return e;
}

VExpr *vx_load(Arena *a, DType dt, int buf, int rank, IExpr **idx, IExpr *guard, float fill) {
  VExpr *e = ARENA_NEW(a, VExpr);
  e->op = VX_LOAD;
  e->dtype = dt;
  e->buf = buf;
  e->rank = rank;
  e->idx = ARENA_ARRAY(a, IExpr *, rank > 0 ? rank : 1);
  for (int i = 0; i < rank; i++) e->idx[i] = idx[i];
  if (guard && guard->op == IX_CONST && guard->v != 0) guard = NULL;
  e->guard = guard;
  e->f = fill;
  return e;
}

VExpr *vx_un(Arena *a, VxOp op, VExpr *x) {
  VExpr *e = ARENA_NEW(a, VExpr);
  e->op = op;
  e->dtype = x->dtype;
  e->a = x;
  return e;
}

VExpr *vx_bin(Arena *a, VxOp op, VExpr *x, VExpr *y) {
  VExpr *e = ARENA_NEW(a, VExpr);
  e->op = op;
  e->dtype = x->dtype;
  e->a = x;
  e->b = y;
  return e;
}

VExpr *vx_select(Arena *a, VExpr *c, VExpr *x, VExpr *y) {
  VExpr *e = ARENA_NEW(a, VExpr);
  e->op = VX_SELECT;
  e->dtype = x->dtype;
  e->a = c;
  e->b = x;
  e->c = y;
  return e;
}

VExpr *vx_subst(Arena *a, const VExpr *e, IExpr *const *sub, int nsub) {
  if (!e) return NULL;
  VExpr *r = ARENA_NEW(a, VExpr);
  *r = *e;
  if (e->op == VX_LOAD) {
    r->idx = ARENA_ARRAY(a, IExpr *, e->rank > 0 ? e->rank : 1);
    for (int i = 0; i < e->rank; i++) r->idx[i] = ix_subst(a, e->idx[i], sub, nsub);
    r->guard = ix_subst(a, e->guard, sub, nsub);
  }
  r->ix = ix_subst(a, e->ix, sub, nsub);
  r->a = vx_subst(a, e->a, sub, nsub);
  r->b = vx_subst(a, e->b, sub, nsub);
  r->c = vx_subst(a, e->c, sub, nsub);
  return r;
}

int kir_root(const Program *p, int b) { return p->bufs[b].alias >= 0 ? p->bufs[b].alias : b; }

bool kir_reads_root(const Program *p, const VExpr *e, int r) {
  if (!e) return false;
  if (e->op == VX_LOAD && kir_root(p, e->buf) == r) return true;
  return kir_reads_root(p, e->a, r) || kir_reads_root(p, e->b, r) || kir_reads_root(p, e->c, r);
}

/* ---- printing ---- */
const char *kir_role_name(BufRole r) {
  static const char *const names[] = {"input", "label", "param", "state", "optstate", "grad",
                                      "output", "metric", "loss", "temp", "rng"};
  return (unsigned)r <= BUF_RNG ? names[r] : "?";
}

static void print_ix(const IExpr *e, FILE *out) {
  static const char *const sym[] = {"", "", "+", "-", "*", "/", "%", "<", ">=", "==", "&&"};
  switch (e->op) {
    case IX_CONST: fprintf(out, "%lld", (long long)e->v); return;
    case IX_VAR: fprintf(out, "i%d", e->var); return;
    case IX_ADD: case IX_SUB: case IX_MUL: case IX_DIV: case IX_MOD: case IX_LT: case IX_GE: case IX_EQ:
    case IX_AND:
      fputc('(', out);
      print_ix(e->a, out);
      fprintf(out, " %s ", sym[e->op]);
      print_ix(e->b, out);
      fputc(')', out);
      return;
  }
}

const char *kir_vx_name(VxOp op) {
  switch (op) {
    case VX_CONST: return "const";
    case VX_LOAD: return "load";
    case VX_INDEX: return "index";
    case VX_ACC: return "acc";
    case VX_RAND: return "rand";
    case VX_NEG: return "neg";
    case VX_EXP: return "exp";
    case VX_LOG: return "log";
    case VX_SQRT: return "sqrt";
    case VX_ABS: return "abs";
    case VX_RELU: return "relu";
    case VX_SIGMOID: return "sigmoid";
    case VX_TANH: return "tanh";
    case VX_ELU: return "elu";
    case VX_LEAKY: return "leaky_relu";
    case VX_POWS: return "pows";
    case VX_SIGN: return "sign";
    case VX_STEP: return "step";
    case VX_CAST: return "cast";
    case VX_ADD: return "add";
    case VX_SUB: return "sub";
    case VX_MUL: return "mul";
    case VX_DIV: return "div";
    case VX_POW: return "pow";
    case VX_MAX: return "max";
    case VX_MIN: return "min";
    case VX_GT: return "gt";
    case VX_GE: return "ge";
    case VX_LT: return "lt";
    case VX_EQ: return "eq";
    case VX_SELECT: return "select";
  }
  return "?";
}

DType kir_vx_natural_dtype(const Program *p, const VExpr *e) {
  switch (e->op) {
    case VX_LOAD: return e->buf >= 0 && e->buf < p->n_bufs ? p->bufs[e->buf].dtype : e->dtype;
    case VX_INDEX: case VX_CAST: return e->dtype; /* printed explicitly */
    case VX_CONST: case VX_ACC: case VX_RAND: return DT_F32;
    case VX_SELECT: return e->b->dtype;
    case VX_NEG: case VX_EXP: case VX_LOG: case VX_SQRT: case VX_ABS: case VX_RELU: case VX_SIGMOID: case VX_TANH:
    case VX_ELU: case VX_LEAKY: case VX_POWS: case VX_SIGN: case VX_STEP: case VX_ADD: case VX_SUB: case VX_MUL:
    case VX_DIV: case VX_POW: case VX_MAX: case VX_MIN: case VX_GT: case VX_GE: case VX_LT: case VX_EQ:
      return e->a->dtype;
  }
  return e->dtype;
}

const char *kir_entry_name(int e) {
  static const char *const names[] = {"train", "eval", "infer"};
  return e >= 0 && e < ENTRY__COUNT ? names[e] : "?";
}

const char *kir_red_name(RedKind r) {
  switch (r) {
    case RED_NONE: return "none";
    case RED_SUM: return "sum";
    case RED_MAX: return "max";
    case RED_ARGMAX: return "argmax";
  }
  return "?";
}

/* A buffer reference: NAME#INDEX (names alone are ambiguous: a param and its
 * gradient share the name). */
static void print_bufref(const Program *p, int buf, FILE *out) {
  ir_print_word(out, p->bufs[buf].name);
  fprintf(out, "#%d", buf);
}

static void print_vx(const Program *p, const VExpr *e, FILE *out) {
  switch (e->op) {
    case VX_CONST:
      if (e->dtype == DT_I32) fprintf(out, "%d", e->i);
      else fprintf(out, "%.9g", e->f);
      break;
    case VX_LOAD:
      print_bufref(p, e->buf, out);
      fputc('[', out);
      for (int i = 0; i < e->rank; i++) {
        if (i) fputs(", ", out);
        print_ix(e->idx[i], out);
      }
      fputc(']', out);
      if (e->guard) {
        fputs(" if ", out);
        print_ix(e->guard, out);
        fprintf(out, " else %.9g", e->f);
      }
      break;
    case VX_INDEX: case VX_RAND:
      fprintf(out, "%s(", kir_vx_name(e->op));
      print_ix(e->ix, out);
      if (e->op == VX_RAND) fprintf(out, ", salt=%" PRIu64, e->salt);
      else fprintf(out, ", %s", dtype_name(e->dtype));
      fputc(')', out);
      break;
    case VX_ACC: fputs("acc", out); break;
    case VX_NEG: case VX_EXP: case VX_LOG: case VX_SQRT: case VX_ABS: case VX_RELU: case VX_SIGMOID: case VX_TANH:
    case VX_ELU: case VX_LEAKY: case VX_POWS: case VX_SIGN: case VX_STEP: case VX_CAST: case VX_ADD: case VX_SUB:
    case VX_MUL: case VX_DIV: case VX_POW: case VX_MAX: case VX_MIN: case VX_GT: case VX_GE: case VX_LT: case VX_EQ:
    case VX_SELECT:
      fprintf(out, "%s(", kir_vx_name(e->op));
      print_vx(p, e->a, out);
      if (e->b) {
        fputs(", ", out);
        print_vx(p, e->b, out);
      }
      if (e->c) {
        fputs(", ", out);
        print_vx(p, e->c, out);
      }
      if (e->op == VX_ELU || e->op == VX_LEAKY || e->op == VX_POWS) fprintf(out, ", %.9g", e->f);
      if (e->op == VX_CAST) fprintf(out, ", %s", dtype_name(e->dtype));
      fputc(')', out);
      break;
  }
  /* a type the printed form does not imply (an i32 constant, a load of another dtype) */
  if (e->dtype != kir_vx_natural_dtype(p, e)) fprintf(out, ":%s", dtype_name(e->dtype));
}

/* "k12_..." when the name starts with the kernel's id. */
static bool name_has_id(const Kernel *k) {
  char pre[32];
  int n = snprintf(pre, sizeof pre, "k%d_", k->id);
  return k->name && !strncmp(k->name, pre, (size_t)n);
}

static void print_kernel(const Program *p, const Kernel *kn, FILE *out) {
  char b[160];
  fputs("    kernel ", out);
  ir_print_word(out, kn->name ? kn->name : "?");
  const char *ops = kn->ops ? kn->ops : "";
  if (strpbrk(ops, "]\"\n\\") || ops[0] == '"') {
    fputs(" [", out);
    ir_print_word(out, ops);
    fputs("] -> ", out);
  } else {
    fprintf(out, " [%s] -> ", ops);
  }
  print_bufref(p, kn->out_buf, out);
  fprintf(out, " : %s", shape_str(kn->dtype, &kn->shape, b, sizeof b));
  if (kn->red != RED_NONE || kn->n_red) {
    fprintf(out, " %s over [", kir_red_name(kn->red));
    for (int r = 0; r < kn->n_red; r++) fprintf(out, r ? ",%lld" : "%lld", (long long)kn->red_ext[r]);
    fputc(']', out);
  }
  if (kn->accumulate) fputs(" accumulate", out);
  if (kn->phase != PHASE_FORWARD) fprintf(out, " phase=%s", ir_phase_name(kn->phase));
  fprintf(out, " flops=%lld", (long long)kn->flops);
  if (!name_has_id(kn)) fprintf(out, " id=%d", kn->id);
  if (kn->n_members) {
    fputs(" members=[", out);
    for (int i = 0; i < kn->n_members; i++) fprintf(out, i ? ",%d" : "%d", kn->members[i]);
    fputc(']', out);
  }
  ir_print_loc(out, kn->loc, NULL);
  fputs("\n      body = ", out);
  print_vx(p, kn->body, out);
  if (kn->epilogue) {
    fputs("\n      epilogue = ", out);
    print_vx(p, kn->epilogue, out);
  }
  fputc('\n', out);
}

void kir_print(const Program *p, FILE *out) {
  char b[160];
  fputs("program ", out);
  ir_print_word(out, p->model ? p->model : "model");
  fputs(" {\n", out);
  for (int i = 0; i < p->n_bufs; i++) {
    const Buffer *bf = &p->bufs[i];
    fputs("  buffer ", out);
    print_bufref(p, i, out);
    fprintf(out, " : %s %s", shape_str(bf->dtype, &bf->shape, b, sizeof b), kir_role_name(bf->role));
    if (bf->entry >= 0) fprintf(out, " entry=%s", kir_entry_name(bf->entry));
    if (bf->offset >= 0) fprintf(out, " offset=%lld", (long long)bf->offset);
    if (bf->alias >= 0) {
      fputs(" alias=", out);
      print_bufref(p, bf->alias, out);
    }
    if (bf->init.kind || bf->init.a != 0 || bf->init.b != 0) {
      fputs(" init=", out);
      ir_print_init(out, &bf->init);
    }
    fputc('\n', out);
  }
  if (p->arena_bytes) fprintf(out, "  arena %lld bytes\n", (long long)p->arena_bytes);
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present) continue;
    fprintf(out, "  entry %s {\n", kir_entry_name(e));
    for (int k = 0; k < en->n_kernels; k++) print_kernel(p, en->kernels[k], out);
    fputs("  }\n", out);
  }
  fputs("}\n", out);
}
