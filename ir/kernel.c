/* kernel.c — constructors, substitution and printing of the kernel IR, and
 * the program's buffer table. */
#include "ir/kernel.h"

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
  e->i = (int32_t)v;
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

static const char *vx_name(VxOp op) {
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

static void print_vx(const Program *p, const VExpr *e, FILE *out) {
  switch (e->op) {
    case VX_CONST:
      if (e->dtype == DT_I32) fprintf(out, "%d", e->i);
      else fprintf(out, "%.9g", e->f);
      return;
    case VX_LOAD:
      fprintf(out, "%s[", p->bufs[e->buf].name);
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
      return;
    case VX_INDEX: case VX_RAND:
      fprintf(out, "%s(", vx_name(e->op));
      print_ix(e->ix, out);
      if (e->op == VX_RAND) fprintf(out, ", salt=%" PRIu64, e->salt);
      fputc(')', out);
      return;
    case VX_ACC: fputs("acc", out); return;
    default: break;
  }
  fprintf(out, "%s(", vx_name(e->op));
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
}

void kir_print(const Program *p, FILE *out) {
  static const char *const entry_names[] = {"train", "eval", "infer"};
  static const char *const red_names[] = {"none", "sum", "max", "argmax"};
  char b[160];
  fprintf(out, "program %s {\n", p->model);
  for (int i = 0; i < p->n_bufs; i++) {
    const Buffer *bf = &p->bufs[i];
    fprintf(out, "  buffer %d %s : %s %s", i, bf->name, shape_str(bf->dtype, &bf->shape, b, sizeof b),
            kir_role_name(bf->role));
    if (bf->entry >= 0) fprintf(out, " entry=%s", entry_names[bf->entry]);
    if (bf->offset >= 0) fprintf(out, " offset=%lld", (long long)bf->offset);
    fputc('\n', out);
  }
  if (p->arena_bytes) fprintf(out, "  arena %lld bytes\n", (long long)p->arena_bytes);
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present) continue;
    fprintf(out, "  entry %s {\n", entry_names[e]);
    for (int k = 0; k < en->n_kernels; k++) {
      const Kernel *kn = en->kernels[k];
      fprintf(out, "    kernel %s [%s] -> %s : %s", kn->name, kn->ops ? kn->ops : "", p->bufs[kn->out_buf].name,
              shape_str(kn->dtype, &kn->shape, b, sizeof b));
      if (kn->red != RED_NONE) {
        fprintf(out, " %s over [", red_names[kn->red]);
        for (int r = 0; r < kn->n_red; r++) fprintf(out, r ? ",%lld" : "%lld", (long long)kn->red_ext[r]);
        fputc(']', out);
      }
      if (kn->accumulate) fputs(" accumulate", out);
      if (kn->loc.file) fprintf(out, "  # %s:%d:%d", kn->loc.file, kn->loc.line, kn->loc.col);
      fputs("\n      body = ", out);
      print_vx(p, kn->body, out);
      if (kn->epilogue) {
        fputs("\n      epilogue = ", out);
        print_vx(p, kn->epilogue, out);
      }
      fputc('\n', out);
    }
    fputs("  }\n", out);
  }
  fputs("}\n", out);
}
