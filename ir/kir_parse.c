/* kir_parse.c — the parser of the kernel program printed by kir_print
 * (--emit=opt): buffers (role, entry, offset, alias, init), the arena size,
 * and per entry its kernels with their iteration space, reduction, phase,
 * flops, members, location, body and epilogue. Buffer references are
 * NAME#INDEX; expressions are rebuilt node for node (no folding), so the
 * program prints back byte for byte. Relies on the cursor of ir_parse.c. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir_parse.h"

#define MAX_DEPTH 200

typedef struct {
  IrpCur *c;
  Program *p;
  int64_t *fidx; /* the printed index of each buffer */
  int n_vars;    /* loop vars in scope */
  bool allow_acc;
} KParse;

static int find_buf(KParse *kp, int64_t idx) {
  if (idx >= 0 && idx < kp->p->n_bufs && kp->fidx[idx] == idx) return (int)idx;
  for (int i = 0; i < kp->p->n_bufs; i++)
    if (kp->fidx[i] == idx) return i;
  return -1;
}

/* NAME#INDEX of an existing buffer (declared before, or any when `late`). */
static bool parse_bufref(KParse *kp, const char **name, int64_t *idx) {
  IrpCur *c = kp->c;
  if (!irp_word(c, name)) return false;
  if (*c->p != '#') return irp_error(c, irp_loc(c), "expected '#INDEX' after the buffer name '%s'", *name);
  c->p++;
  return irp_int(c, idx);
}

static int resolve_buf(KParse *kp, SrcLoc at, const char *name, int64_t idx) {
  int b = find_buf(kp, idx);
  if (b < 0) {
    irp_error(kp->c, at, "no buffer #%lld", (long long)idx);
    return -1;
  }
  if (strcmp(kp->p->bufs[b].name, name)) {
    irp_error(kp->c, at, "buffer #%lld is '%s', not '%s'", (long long)idx, kp->p->bufs[b].name, name);
    return -1;
  }
  return b;
}

/* ---- index expressions: INT | iN | (a OP b) ---- */
static IExpr *parse_ix(KParse *kp) {
  IrpCur *c = kp->c;
  irp_ws(c);
  SrcLoc at = irp_loc(c);
  if (++c->depth > MAX_DEPTH) {
    irp_error(c, at, "expression nested too deeply");
    return NULL;
  }
  IExpr *e = ARENA_NEW(c->a, IExpr);
  if (*c->p == 'i' && c->p[1] >= '0' && c->p[1] <= '9') {
    c->p++;
    int64_t v;
    if (!irp_int(c, &v)) return NULL;
    if (v < 0 || v >= kp->n_vars) {
      irp_error(c, at, "loop variable i%lld is not in scope here (i0..i%d)", (long long)v, kp->n_vars - 1);
      return NULL;
    }
    e->op = IX_VAR;
    e->var = (int)v;
  } else if (*c->p == '(') {
    c->p++;
    static const char *const sym[] = {">=", "==", "&&", "+", "-", "*", "/", "%", "<"};
    static const IxOp ops[] = {IX_GE, IX_EQ, IX_AND, IX_ADD, IX_SUB, IX_MUL, IX_DIV, IX_MOD, IX_LT};
    if (!(e->a = parse_ix(kp))) return NULL;
    irp_ws(c);
    SrcLoc oat = irp_loc(c);
    int k = 0;
    while (k < 9 && !irp_accept(c, sym[k])) k++;
    if (k == 9) {
      irp_error(c, oat, "expected an index operator (+ - * / %% < >= == &&)");
      return NULL;
    }
    e->op = ops[k];
    if (!(e->b = parse_ix(kp)) || !irp_expect(c, ")")) return NULL;
  } else {
    e->op = IX_CONST;
    if (!irp_int(c, &e->v)) return NULL;
  }
  c->depth--;
  return e;
}

/* ---- value expressions ---- */
static VExpr *parse_vx(KParse *kp);

static bool parse_dtype(IrpCur *c, DType *dt) {
  irp_ws(c);
  if (irp_keyword(c, "f32")) *dt = DT_F32;
  else if (irp_keyword(c, "i32")) *dt = DT_I32;
  else return irp_error(c, irp_loc(c), "expected f32 or i32");
  return true;
}

static int vx_arity(VxOp op) {
  switch (op) {
    case VX_CONST: case VX_LOAD: case VX_INDEX: case VX_ACC: case VX_RAND: return 0;
    case VX_NEG: case VX_EXP: case VX_LOG: case VX_SQRT: case VX_ABS: case VX_RELU: case VX_SIGMOID: case VX_TANH:
    case VX_ELU: case VX_LEAKY: case VX_POWS: case VX_SIGN: case VX_STEP: case VX_CAST: return 1;
    case VX_ADD: case VX_SUB: case VX_MUL: case VX_DIV: case VX_POW: case VX_MAX: case VX_MIN: case VX_GT:
    case VX_GE: case VX_LT: case VX_EQ: return 2;
    case VX_SELECT: return 3;
  }
  return 0;
}

static bool parse_call(KParse *kp, VExpr *e, const char *name, SrcLoc at) {
  IrpCur *c = kp->c;
  int op = -1;
  for (int k = VX_INDEX; k <= VX_SELECT; k++)
    if (k != VX_ACC && !strcmp(kir_vx_name((VxOp)k), name)) op = k;
  if (op < 0) return irp_error(c, at, "unknown kernel operation '%s'", name);
  e->op = (VxOp)op;
  c->p++; /* ( */
  if (op == VX_INDEX || op == VX_RAND) {
    if (!(e->ix = parse_ix(kp)) || !irp_expect(c, ",")) return false;
    if (op == VX_INDEX) {
      if (!parse_dtype(c, &e->dtype)) return false;
    } else {
      if (kp->p->rng_buf < 0) return irp_error(c, at, "rand needs an rng buffer");
      e->buf = kp->p->rng_buf;
      e->dtype = DT_F32;
      if (!irp_keyword(c, "salt") || !irp_expect(c, "=") || !irp_u64(c, &e->salt)) {
        if (!c->failed) irp_error(c, irp_loc(c), "expected salt=N");
        return false;
      }
    }
    return irp_expect(c, ")");
  }
  VExpr **args[3] = {&e->a, &e->b, &e->c};
  for (int i = 0; i < vx_arity(e->op); i++) {
    if (i && !irp_expect(c, ",")) return false;
    if (!(*args[i] = parse_vx(kp))) return false;
  }
  if (op == VX_ELU || op == VX_LEAKY || op == VX_POWS) {
    if (!irp_expect(c, ",") || !irp_float(c, &e->f)) return false;
  }
  if (op == VX_CAST && (!irp_expect(c, ",") || !parse_dtype(c, &e->dtype))) return false;
  if (!irp_expect(c, ")")) return false;
  if (e->b && e->c ? e->b->dtype != e->c->dtype : e->b && e->a->dtype != e->b->dtype)
    return irp_error(c, at, "%s: the operands have different dtypes", name);
  return true;
}

static bool parse_load(KParse *kp, VExpr *e, const char *name, SrcLoc at) {
  IrpCur *c = kp->c;
  int64_t idx;
  c->p++; /* # */
  if (!irp_int(c, &idx)) return false;
  e->op = VX_LOAD;
  if ((e->buf = resolve_buf(kp, at, name, idx)) < 0) return false;
  const Buffer *b = &kp->p->bufs[e->buf];
  e->rank = b->shape.rank;
  e->idx = ARENA_ARRAY(c->a, IExpr *, e->rank > 0 ? e->rank : 1);
  if (*c->p != '[') return irp_error(c, irp_loc(c), "expected '[' after the buffer");
  c->p++;
  for (int i = 0; i < e->rank; i++) {
    if (i && !irp_expect(c, ",")) return false;
    if (!(e->idx[i] = parse_ix(kp))) return false;
  }
  if (!irp_accept(c, "]")) return irp_error(c, irp_loc(c), "expected ']': %s has rank %d", name, e->rank);
  if (irp_keyword(c, "if")) {
    if (!(e->guard = parse_ix(kp))) return false;
    if (!irp_keyword(c, "else")) return irp_error(c, irp_loc(c), "expected 'else FILL' after the guard");
    if (!irp_float(c, &e->f)) return false;
  }
  return true;
}

static VExpr *parse_vx(KParse *kp) {
  IrpCur *c = kp->c;
  irp_ws(c);
  SrcLoc at = irp_loc(c);
  if (++c->depth > MAX_DEPTH) {
    irp_error(c, at, "expression nested too deeply");
    return NULL;
  }
  VExpr *e = ARENA_NEW(c->a, VExpr);
  const char *s = c->p;
  bool num = (*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.' ||
             ((!strncmp(s, "inf", 3) || !strncmp(s, "nan", 3)) && s[3] != '#' && s[3] != '(');
  const char *numtext = NULL;
  if (num) {
    float f;
    numtext = c->p;
    if (!irp_float(c, &f)) return NULL;
    e->op = VX_CONST;
    e->f = f;
  } else {
    const char *w;
    if (!irp_word(c, &w)) return NULL;
    if (*c->p == '#') {
      if (!parse_load(kp, e, w, at)) return NULL;
    } else if (*c->p == '(') {
      if (!parse_call(kp, e, w, at)) return NULL;
    } else if (!strcmp(w, "acc")) {
      if (!kp->allow_acc) {
        irp_error(c, at, "acc is only defined in a kernel's epilogue");
        return NULL;
      }
      e->op = VX_ACC;
    } else {
      irp_error(c, at, "expected an expression, found '%s'", w);
      return NULL;
    }
  }
  e->dtype = kir_vx_natural_dtype(kp->p, e);
  if (*c->p == ':') {
    c->p++;
    if (!parse_dtype(c, &e->dtype)) return NULL;
  }
  if (numtext) { /* as vx_const: both views of the value */
    if (e->dtype == DT_I32) {
      e->i = (int32_t)strtoll(numtext, NULL, 10);
      e->f = (float)e->i;
    } else {
      e->i = e->f > -2147483648.0f && e->f < 2147483648.0f ? (int32_t)e->f : 0;
    }
  }
  c->depth--;
  return e;
}

/* ---- buffers, kernels, entries ---- */
static bool parse_buffer(KParse *kp, int64_t *alias_idx, const char **alias_name, SrcLoc *alias_at) {
  IrpCur *c = kp->c;
  Program *p = kp->p;
  const char *name;
  int64_t idx;
  SrcLoc at = irp_loc(c);
  if (!parse_bufref(kp, &name, &idx)) return false;
  if (find_buf(kp, idx) >= 0) return irp_error(c, at, "buffer #%lld is declared twice", (long long)idx);
  if (p->n_bufs == p->cap_bufs) {
    int cap = p->cap_bufs ? p->cap_bufs * 2 : 64;
    p->bufs = arena_grow(c->a, p->bufs, sizeof(Buffer), (size_t)p->n_bufs, (size_t)cap);
    kp->fidx = arena_grow(c->a, kp->fidx, sizeof(int64_t), (size_t)p->n_bufs, (size_t)cap);
    p->cap_bufs = cap;
  }
  Buffer *b = &p->bufs[p->n_bufs];
  memset(b, 0, sizeof *b);
  b->name = name;
  b->entry = -1;
  b->offset = -1;
  b->alias = -1;
  *alias_idx = -1;
  if (!irp_expect(c, ":") || !irp_type(c, &b->dtype, &b->shape)) return false;
  irp_ws(c);
  SrcLoc rat = irp_loc(c);
  const char *role;
  if (!irp_word(c, &role)) return false;
  int r = -1;
  for (int k = 0; k <= BUF_RNG; k++)
    if (!strcmp(role, kir_role_name((BufRole)k))) r = k;
  if (r < 0) return irp_error(c, rat, "unknown buffer role '%s'", role);
  b->role = (BufRole)r;
  while (!irp_at_eol(c)) {
    SrcLoc kat = irp_loc(c);
    if (irp_keyword(c, "entry")) {
      const char *en;
      if (!irp_expect(c, "=") || !irp_word(c, &en)) return false;
      for (int e = 0; e < ENTRY__COUNT; e++)
        if (!strcmp(en, kir_entry_name(e))) b->entry = e;
      if (b->entry < 0) return irp_error(c, kat, "unknown entry '%s'", en);
    } else if (irp_keyword(c, "offset")) {
      if (!irp_expect(c, "=") || !irp_int(c, &b->offset)) return false;
      if (b->offset < 0) return irp_error(c, kat, "negative offset");
    } else if (irp_keyword(c, "alias")) {
      if (!irp_expect(c, "=")) return false;
      irp_ws(c);
      *alias_at = irp_loc(c);
      if (!parse_bufref(kp, alias_name, alias_idx)) return false;
    } else if (irp_keyword(c, "init")) {
      if (!irp_expect(c, "=") || !irp_init(c, &b->init)) return false;
    } else {
      return irp_error(c, kat, "unexpected text in the buffer declaration");
    }
  }
  kp->fidx[p->n_bufs++] = idx;
  return irp_eol(c);
}

static bool parse_ints_list(IrpCur *c, int64_t *v, int max, int *n) {
  *n = 0;
  if (!irp_expect(c, "[")) return false;
  if (irp_accept(c, "]")) return true;
  for (;;) {
    if (*n == max) return irp_error(c, irp_loc(c), "more than %d values", max);
    if (!irp_int(c, &v[(*n)++])) return false;
    if (irp_accept(c, "]")) return true;
    if (!irp_expect(c, ",")) return false;
  }
}

static Kernel *parse_kernel(KParse *kp, int count) {
  IrpCur *c = kp->c;
  Kernel *k = ARENA_NEW(c->a, Kernel);
  SrcLoc at = irp_loc(c);
  if (!irp_word(c, &k->name) || !irp_expect(c, "[")) return NULL;
  if (irp_peek(c, '"')) {
    if (!irp_word(c, &k->ops) || !irp_expect(c, "]")) return NULL;
  } else {
    const char *s = c->p;
    while (*c->p && *c->p != ']' && *c->p != '\n') c->p++;
    if (*c->p != ']') {
      irp_error(c, irp_loc(c), "expected ']' after the kernel's ops");
      return NULL;
    }
    k->ops = arena_strndup(c->a, s, (size_t)(c->p - s));
    c->p++;
  }
  const char *oname;
  int64_t oidx;
  if (!irp_expect(c, "->")) return NULL;
  irp_ws(c);
  SrcLoc oat = irp_loc(c);
  if (!parse_bufref(kp, &oname, &oidx) || (k->out_buf = resolve_buf(kp, oat, oname, oidx)) < 0) return NULL;
  irp_ws(c);
  if (!irp_expect(c, ":")) return NULL;
  irp_ws(c);
  SrcLoc tat = irp_loc(c);
  if (!irp_type(c, &k->dtype, &k->shape)) return NULL;
  const Buffer *ob = &kp->p->bufs[k->out_buf];
  if (ob->dtype != k->dtype || shape_numel(&ob->shape) != shape_numel(&k->shape)) {
    char b0[160], b1[160];
    irp_error(c, tat, "the kernel computes %s but its output buffer is %s", shape_str(k->dtype, &k->shape, b0, sizeof b0),
              shape_str(ob->dtype, &ob->shape, b1, sizeof b1));
    return NULL;
  }
  bool have_id = false;
  while (!irp_at_eol(c) && *c->p != '#') {
    SrcLoc kat = irp_loc(c);
    int red = -1;
    for (int r = RED_NONE; r <= RED_ARGMAX; r++)
      if (irp_keyword(c, kir_red_name((RedKind)r))) red = r;
    if (red >= 0) {
      int n;
      k->red = (RedKind)red;
      if (!irp_keyword(c, "over")) {
        irp_error(c, irp_loc(c), "expected 'over [EXTENTS]'");
        return NULL;
      }
      if (!parse_ints_list(c, k->red_ext, IR_MAX_RANK, &n)) return NULL;
      k->n_red = n;
      for (int i = 0; i < n; i++)
        if (k->red_ext[i] < 1) {
          irp_error(c, kat, "reduction extent %lld is not positive", (long long)k->red_ext[i]);
          return NULL;
        }
    } else if (irp_keyword(c, "accumulate")) {
      k->accumulate = true;
    } else if (irp_keyword(c, "phase")) {
      const char *ph;
      if (!irp_expect(c, "=") || !irp_word(c, &ph)) return NULL;
      if (!strcmp(ph, "backward")) k->phase = PHASE_BACKWARD;
      else if (!strcmp(ph, "update")) k->phase = PHASE_UPDATE;
      else if (strcmp(ph, "forward")) {
        irp_error(c, kat, "unknown phase '%s'", ph);
        return NULL;
      }
    } else if (irp_keyword(c, "flops")) {
      if (!irp_expect(c, "=") || !irp_int(c, &k->flops)) return NULL;
    } else if (irp_keyword(c, "id")) {
      int64_t v;
      if (!irp_expect(c, "=") || !irp_int(c, &v)) return NULL;
      k->id = (int)v;
      have_id = true;
    } else if (irp_keyword(c, "members")) {
      int64_t v[256];
      int n;
      if (!irp_expect(c, "=") || !parse_ints_list(c, v, 256, &n)) return NULL;
      k->members = ARENA_ARRAY(c->a, int, n + 1);
      for (int i = 0; i < n; i++) k->members[i] = (int)v[i];
      k->n_members = n;
    } else {
      irp_error(c, kat, "unexpected text in the kernel header");
      return NULL;
    }
  }
  if (!have_id) {
    k->id = count;
    if (k->name[0] == 'k' && k->name[1] >= '0' && k->name[1] <= '9') {
      char *end;
      long v = strtol(k->name + 1, &end, 10);
      if (*end == '_') k->id = (int)v;
    }
  }
  const char *nm;
  if (!irp_loc_comment(c, &nm, &k->loc) || !irp_eol(c)) return NULL;
  if (nm && !k->loc.file) {
    irp_error(c, at, "expected FILE:LINE:COL in the kernel's comment");
    return NULL;
  }
  irp_skip_blank(c);
  if (!irp_keyword(c, "body") || !irp_expect(c, "=")) {
    if (!c->failed) irp_error(c, irp_loc(c), "expected 'body = EXPR'");
    return NULL;
  }
  kp->n_vars = k->shape.rank + k->n_red;
  kp->allow_acc = false;
  if (!(k->body = parse_vx(kp)) || !irp_eol(c)) return NULL;
  irp_skip_blank(c);
  if (irp_keyword(c, "epilogue")) {
    kp->n_vars = k->shape.rank;
    kp->allow_acc = true; /* the reduced value, or the body's without a reduction */
    if (!irp_expect(c, "=") || !(k->epilogue = parse_vx(kp)) || !irp_eol(c)) return NULL;
  }
  return k;
}

Program *kir_parse_program(IrpCur *c) {
  SrcLoc at = irp_loc(c);
  const char *name;
  if (!irp_word(c, &name) || !irp_expect(c, "{") || !irp_eol(c)) return NULL;
  KParse kps = {.c = c, .p = kir_program_new(c->a, name)}, *kp = &kps;
  Program *p = kp->p;
  int n_kernels = 0;
  int64_t *alias_idx = NULL;
  const char **alias_name = NULL;
  SrcLoc *alias_at = NULL;
  int cap_alias = 0;
  bool bufs_done = false;
  for (;;) {
    irp_skip_blank(c);
    SrcLoc lat = irp_loc(c);
    if (*c->p == 0) {
      irp_error(c, at, "unterminated program: expected '}'");
      return NULL;
    }
    if (irp_accept(c, "}")) {
      if (!irp_eol(c)) return NULL;
      break;
    }
    if (irp_keyword(c, "buffer")) {
      if (bufs_done) {
        irp_error(c, lat, "buffers must come before the entries");
        return NULL;
      }
      if (p->n_bufs == cap_alias) {
        int cap = cap_alias ? cap_alias * 2 : 64;
        alias_idx = arena_grow(c->a, alias_idx, sizeof(int64_t), (size_t)cap_alias, (size_t)cap);
        alias_name = arena_grow(c->a, alias_name, sizeof(char *), (size_t)cap_alias, (size_t)cap);
        alias_at = arena_grow(c->a, alias_at, sizeof(SrcLoc), (size_t)cap_alias, (size_t)cap);
        cap_alias = cap;
      }
      int i = p->n_bufs;
      if (!parse_buffer(kp, &alias_idx[i], &alias_name[i], &alias_at[i])) return NULL;
      continue;
    }
    if (!bufs_done) { /* the buffer table is complete: aliases and the rng buffer */
      bufs_done = true;
      for (int i = 0; i < p->n_bufs; i++) {
        if (alias_idx[i] >= 0 && (p->bufs[i].alias = resolve_buf(kp, alias_at[i], alias_name[i], alias_idx[i])) < 0)
          return NULL;
        if (p->bufs[i].role == BUF_RNG && p->rng_buf < 0) p->rng_buf = i;
      }
    }
    if (irp_keyword(c, "arena")) {
      if (!irp_int(c, &p->arena_bytes) || !irp_keyword(c, "bytes") || !irp_eol(c)) {
        if (!c->failed) irp_error(c, lat, "expected 'arena N bytes'");
        return NULL;
      }
      continue;
    }
    if (!irp_keyword(c, "entry")) {
      irp_error(c, lat, "expected 'buffer', 'arena', 'entry' or '}'");
      return NULL;
    }
    irp_ws(c);
    SrcLoc eat = irp_loc(c);
    const char *en;
    int e = -1;
    if (!irp_word(c, &en)) return NULL;
    for (int k = 0; k < ENTRY__COUNT; k++)
      if (!strcmp(en, kir_entry_name(k))) e = k;
    if (e < 0 || p->entries[e].present) {
      irp_error(c, eat, e < 0 ? "unknown entry '%s'" : "entry '%s' given twice", en);
      return NULL;
    }
    if (!irp_expect(c, "{") || !irp_eol(c)) return NULL;
    p->entries[e].present = true;
    for (;;) {
      irp_skip_blank(c);
      if (irp_accept(c, "}")) {
        if (!irp_eol(c)) return NULL;
        break;
      }
      if (!irp_keyword(c, "kernel")) {
        irp_error(c, irp_loc(c), "expected 'kernel' or '}'");
        return NULL;
      }
      Kernel *k = parse_kernel(kp, n_kernels++);
      if (!k) return NULL;
      kir_add_kernel(p, (EntryKind)e, k);
    }
  }
  if (!bufs_done)
    for (int i = 0; i < p->n_bufs; i++) {
      if (alias_idx[i] >= 0 && (p->bufs[i].alias = resolve_buf(kp, alias_at[i], alias_name[i], alias_idx[i])) < 0)
        return NULL;
      if (p->bufs[i].role == BUF_RNG && p->rng_buf < 0) p->rng_buf = i;
    }
  return p;
}
