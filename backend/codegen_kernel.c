/* codegen_kernel.c — lowering of one Kernel (ir/kernel.h) to LLVM IR loop
 * nests. Each kernel K becomes two functions:
 *
 *   internal void K(void *ctx, i64 begin, i64 end)        — the ABI that
 *       dlrt_parallel_for calls: loads bufs[i] for every buffer it uses (a
 *       view, Buffer.alias >= 0, uses its root's slot) and calls the body;
 *   internal alwaysinline void K.body(ptr noalias b_i..., i64 begin, i64 end)
 *       — the loop nest, with one pointer parameter per buffer so the
 *       buffers can be marked noalias (after inlining LLVM keeps this as
 *       scoped alias metadata, which lets the loop vectorizer drop runtime
 *       overlap checks).
 *
 * Two loop-nest strategies:
 *   - the standard nest: output dims outside (dim 0 over [begin, end)),
 *     reduction dims inside with the accumulator in a register;
 *   - the reordered nest (RED_SUM, the matmul case): the innermost output
 *     dim moves inside the reduction loops and accumulates into the output
 *     row in memory, so that the innermost loop walks contiguous memory.
 *     See reorder_profitable() for when it is chosen. */
#include "backend/cg_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int g_reorder_mode = 0; /* 0 auto, 1 never, 2 whenever legal */

void cg_debug_set_reorder(int mode) { g_reorder_mode = mode; }

/* ================= analysis of a kernel's expressions ================= */

static bool ix_uses(const IExpr *e, int v) {
  if (!e) return false;
  switch (e->op) {
  case IX_CONST: return false;
  case IX_VAR: return e->var == v;
  case IX_ADD:
  case IX_SUB:
  case IX_MUL:
  case IX_DIV:
  case IX_MOD:
  case IX_LT:
  case IX_GE:
  case IX_EQ:
  case IX_AND: return ix_uses(e->a, v) || ix_uses(e->b, v);
  }
  return true;
}

/* The constant coefficient of loop var v in e, if e is affine in v with a
 * constant coefficient; false otherwise. */
static bool ix_coef(const IExpr *e, int v, int64_t *c) {
  int64_t ca, cb;
  if (!ix_uses(e, v)) {
    *c = 0;
    return true;
  }
  switch (e->op) {
  case IX_CONST: *c = 0; return true;
  case IX_VAR: *c = 1; return true;
  case IX_ADD:
  case IX_SUB:
    if (!ix_coef(e->a, v, &ca) || !ix_coef(e->b, v, &cb)) return false;
    *c = e->op == IX_ADD ? ca + cb : ca - cb;
    return true;
  case IX_MUL:
    if (e->a->op == IX_CONST && ix_coef(e->b, v, &cb)) {
      *c = e->a->v * cb;
      return true;
    }
    if (e->b->op == IX_CONST && ix_coef(e->a, v, &ca)) {
      *c = e->b->v * ca;
      return true;
    }
    return false;
  case IX_DIV:
  case IX_MOD:
  case IX_LT:
  case IX_GE:
  case IX_EQ:
  case IX_AND: return false;
  }
  return false;
}

typedef void (*LoadVisitor)(const VExpr *load, void *ctx);

static void visit_loads(const VExpr *e, LoadVisitor f, void *ctx) {
  if (!e) return;
  if (e->op == VX_LOAD) f(e, ctx);
  visit_loads(e->a, f, ctx);
  visit_loads(e->b, f, ctx);
  visit_loads(e->c, f, ctx);
}

typedef struct {
  const Program *p;
  bool *used;
  int n_bufs;
  bool bad;
} BufUse;

static void mark_used(const VExpr *e, BufUse *u) {
  if (!e) return;
  if (e->op == VX_LOAD || e->op == VX_RAND) {
    int b = e->op == VX_RAND && u->p->rng_buf >= 0 ? u->p->rng_buf : e->buf;
    if (b < 0 || b >= u->n_bufs) u->bad = true;
    else u->used[b] = true;
  }
  mark_used(e->a, u);
  mark_used(e->b, u);
  mark_used(e->c, u);
}

typedef struct {
  int buf;
  bool found;
} FindLoad;

static void find_load_cb(const VExpr *l, void *ctx) {
  FindLoad *f = ctx;
  if (l->buf == f->buf) f->found = true;
}

static bool loads_buf(const VExpr *e, int buf) {
  FindLoad f = {buf, false};
  visit_loads(e, find_load_cb, &f);
  return f.found;
}

/* Stride of every load along loop var v. all_ok: every load's linear
 * index moves by 0 or 1 element per step of v (unguarded by v);
 * has_unit: at least one load moves by exactly 1. */
typedef struct {
  const Program *p;
  int v;
  bool all_ok, has_unit;
} StrideScan;

static void stride_cb(const VExpr *l, void *ctx) {
  StrideScan *s = ctx;
  const Shape *sh = &s->p->bufs[l->buf].shape;
  if (l->guard && ix_uses(l->guard, s->v)) {
    s->all_ok = false;
    return;
  }
  int64_t stride = 0, row = 1;
  for (int d = l->rank - 1; d >= 0; d--) {
    int64_t c;
    if (!ix_coef(l->idx[d], s->v, &c)) {
      s->all_ok = false;
      return;
    }
    stride += c * row;
    if (d < sh->rank) row *= sh->d[d];
  }
  if (stride == 1) s->has_unit = true;
  else if (stride != 0) s->all_ok = false;
}

static StrideScan scan_strides(const Program *p, const VExpr *e, int v) {
  StrideScan s = {p, v, true, false};
  visit_loads(e, stride_cb, &s);
  return s;
}

/* Memory regions: a view (Buffer.alias) shares its root's memory; temps
 * placed in the arena (offset >= 0) occupy [offset, offset + bytes). */
static int64_t buf_bytes(const Buffer *b) {
  int64_t n = 4;
  for (int i = 0; i < b->shape.rank; i++) n *= b->shape.d[i];
  return n;
}

static int buf_root(const Program *p, int i) {
  for (int hops = 0; hops <= p->n_bufs && p->bufs[i].alias >= 0 && p->bufs[i].alias < p->n_bufs; hops++)
    i = p->bufs[i].alias;
  return i;
}

static bool bufs_overlap(const Program *p, int x, int y) {
  int rx = buf_root(p, x), ry = buf_root(p, y);
  if (rx == ry) return true;
  const Buffer *a = &p->bufs[rx], *b = &p->bufs[ry];
  if (a->offset < 0 || b->offset < 0) return false;
  return b->offset < a->offset + buf_bytes(a) && a->offset < b->offset + buf_bytes(b);
}

/* Whether a buffer the kernel reads, other than the output buffer itself,
 * may share memory with the output. Reads and writes of the output buffer
 * go through one pointer, which noalias allows; a different buffer in the
 * same memory does not. */
static bool output_shared(const Program *p, const Kernel *k, const bool *used) {
  for (int i = 0; i < p->n_bufs; i++)
    if (used[i] && i != k->out_buf && bufs_overlap(p, i, k->out_buf)) return true;
  return false;
}

/* The buffers a kernel touches (used[n_bufs], calloc'ed); NULL if a buffer
 * index is out of range. */
static bool *kernel_buffers(const Program *p, const Kernel *k) {
  bool *used = calloc((size_t)p->n_bufs + 1, sizeof *used);
  BufUse u = {p, used, p->n_bufs, false};
  mark_used(k->body, &u);
  mark_used(k->epilogue, &u);
  if (u.bad || k->out_buf < 0 || k->out_buf >= p->n_bufs) {
    free(used);
    return NULL;
  }
  used[k->out_buf] = true;
  return used;
}

/* Legal: a plain sum whose output memory can serve as the accumulator —
 * the kernel neither reads its own output (directly or through shared
 * memory) nor adds into it, and the sum's type is the output's. */
static bool reorder_legal(const Program *p, const Kernel *k) {
  bool *used = kernel_buffers(p, k);
  bool shared = !used || output_shared(p, k, used);
  free(used);
  return !shared && k->red == RED_SUM && !k->accumulate && k->shape.rank >= 1 && k->n_red >= 1 && k->body &&
         k->body->dtype == k->dtype && !loads_buf(k->body, k->out_buf) &&
         !loads_buf(k->epilogue, k->out_buf);
}

/* Profitable: along the innermost output dim every load is contiguous or
 * invariant (and one is contiguous), while along the innermost reduction
 * dim some load is strided or irregular. For out[i,j] = sum_k a[i,k] b[k,j]
 * the k-inner loop would read b with stride N; the reordered j-inner loop
 * reads b[k, j..] contiguously, a[i,k] is invariant and out[i, j..] is
 * contiguous: a clean vector loop of FMAs. (sum_k a[i,k] b[j,k] keeps the
 * standard order: its k loop is already contiguous in both operands.) */
static bool reorder_profitable(const Program *p, const Kernel *k) {
  StrideScan j = scan_strides(p, k->body, k->shape.rank - 1);
  StrideScan r = scan_strides(p, k->body, k->shape.rank + k->n_red - 1);
  return j.all_ok && j.has_unit && !r.all_ok;
}

bool cg_sum_in_output_legal(const Program *p, const Kernel *k) { return reorder_legal(p, k); }

bool cg_unit_stride_along(const Program *p, const VExpr *e, int v) {
  StrideScan s = scan_strides(p, e, v);
  return s.all_ok && s.has_unit;
}

bool cg_kernel_uses_reorder(const Program *p, const Kernel *k) {
  if (g_reorder_mode == 1 || !reorder_legal(p, k)) return false;
  return g_reorder_mode == 2 || reorder_profitable(p, k);
}

/* ================= loops ================= */

typedef struct {
  LLVMBasicBlockRef header, exit;
  LLVMValueRef iv;
} Loop;

/* for (iv = lo; iv < hi; iv++): leaves the builder in the body. */
static LLVMValueRef loop_begin(KernelCg *kc, Loop *L, LLVMValueRef lo, LLVMValueRef hi,
                               const char *name) {
  LLVMContextRef c = kc->m->ctx;
  LLVMBuilderRef b = kc->b;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  char nm[64];
  snprintf(nm, sizeof nm, "%s.head", name);
  L->header = LLVMAppendBasicBlockInContext(c, kc->fn, nm);
  snprintf(nm, sizeof nm, "%s.body", name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c, kc->fn, nm);
  snprintf(nm, sizeof nm, "%s.exit", name);
  L->exit = LLVMAppendBasicBlockInContext(c, kc->fn, nm);
  LLVMBuildBr(b, L->header);
  LLVMPositionBuilderAtEnd(b, L->header);
  L->iv = LLVMBuildPhi(b, kc->m->t_i64, name);
  LLVMAddIncoming(L->iv, &lo, &pre, 1);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, L->iv, hi, ""), body, L->exit);
  LLVMPositionBuilderAtEnd(b, body);
  return L->iv;
}

static void loop_end(KernelCg *kc, Loop *L) {
  LLVMBuilderRef b = kc->b;
  LLVMValueRef next = LLVMBuildNSWAdd(b, L->iv, cg_i64(kc->m, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMBuildBr(b, L->header);
  LLVMAddIncoming(L->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(b, L->exit);
}

/* Opens the loops of output dims [0, n) (dim 0 over [begin, end)). */
static void open_out_loops(KernelCg *kc, Loop *L, int n, LLVMValueRef begin, LLVMValueRef end) {
  for (int d = 0; d < n; d++) {
    char nm[16];
    snprintf(nm, sizeof nm, "o%d", d);
    LLVMValueRef lo = d == 0 ? begin : cg_i64(kc->m, 0);
    LLVMValueRef hi = d == 0 ? end : cg_i64(kc->m, kc->k->shape.d[d]);
    kc->var[d] = loop_begin(kc, &L[d], lo, hi, nm);
  }
}

static void open_red_loops(KernelCg *kc, Loop *L) {
  const Kernel *k = kc->k;
  for (int r = 0; r < k->n_red; r++) {
    char nm[16];
    snprintf(nm, sizeof nm, "r%d", r);
    kc->var[k->shape.rank + r] =
        loop_begin(kc, &L[r], cg_i64(kc->m, 0), cg_i64(kc->m, k->red_ext[r]), nm);
  }
}

static void close_loops(KernelCg *kc, Loop *L, int n) {
  for (int d = n - 1; d >= 0; d--) loop_end(kc, &L[d]);
}

/* ================= stores and reductions ================= */

static LLVMValueRef out_ptr(KernelCg *kc, LLVMValueRef lin) {
  LLVMTypeRef et = cg_dtype(kc->m, kc->k->dtype);
  return LLVMBuildInBoundsGEP2(kc->b, et, kc->buf[kc->k->out_buf], &lin, 1, "");
}

static LLVMValueRef add_of(KernelCg *kc, DType dt, LLVMValueRef x, LLVMValueRef y) {
  return dt == DT_F32 ? cg_fast(LLVMBuildFAdd(kc->b, x, y, "")) : LLVMBuildAdd(kc->b, x, y, "");
}

/* out[lin] = v (or += v when the kernel accumulates). */
static void store_out(KernelCg *kc, LLVMValueRef lin, LLVMValueRef v, DType vdt) {
  const Kernel *k = kc->k;
  v = cg_convert(kc, v, vdt, k->dtype);
  LLVMValueRef ptr = out_ptr(kc, lin);
  if (k->accumulate) {
    LLVMValueRef old = LLVMBuildLoad2(kc->b, cg_dtype(kc->m, k->dtype), ptr, "");
    v = add_of(kc, k->dtype, old, v);
  }
  LLVMBuildStore(kc->b, v, ptr);
}

static LLVMValueRef apply_epilogue(KernelCg *kc, LLVMValueRef acc, DType *dt) {
  if (!kc->k->epilogue) return acc;
  kc->acc = acc;
  LLVMValueRef v = cg_vx(kc, kc->k->epilogue);
  kc->acc = NULL;
  *dt = kc->k->epilogue->dtype;
  return v;
}

typedef struct {
  LLVMValueRef acc, idx; /* allocas (promoted to registers by SROA) */
} RedSlots;

/* The value of one output point, at the innermost output loop. */
static void emit_point(KernelCg *kc, RedSlots *s) {
  const Kernel *k = kc->k;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef lin = cg_linear(kc, kc->var, k->shape.d, k->shape.rank);
  DType bdt = k->body->dtype, vdt = bdt;
  LLVMValueRef v;
  if (k->red == RED_NONE) {
    v = apply_epilogue(kc, cg_vx(kc, k->body), &vdt);
    store_out(kc, lin, v, vdt);
    return;
  }
  bool f = bdt == DT_F32;
  LLVMTypeRef at = cg_dtype(m, bdt);
  LLVMValueRef init = NULL;
  switch (k->red) {
  case RED_SUM: init = f ? cg_f32(m, 0.0) : cg_i32(m, 0); break;
  case RED_MAX:
  case RED_ARGMAX: init = f ? cg_f32(m, -INFINITY) : cg_i32(m, INT32_MIN); break;
  case RED_NONE: break;
  }
  LLVMBuildStore(b, init, s->acc);
  if (k->red == RED_ARGMAX) LLVMBuildStore(b, cg_i32(m, 0), s->idx);
  Loop R[IR_MAX_RANK];
  open_red_loops(kc, R);
  LLVMValueRef x = cg_vx(kc, k->body);
  LLVMValueRef a = LLVMBuildLoad2(b, at, s->acc, "acc");
  switch (k->red) {
  case RED_SUM: LLVMBuildStore(b, add_of(kc, bdt, a, x), s->acc); break;
  case RED_MAX: {
    LLVMTypeRef t = at;
    LLVMValueRef args[2] = {a, x};
    LLVMBuildStore(b, cg_intrinsic(m, b, f ? "llvm.maximum" : "llvm.smax", &t, 1, args, 2),
                   s->acc);
    break;
  }
  case RED_ARGMAX: {
    /* first maximum; a NaN counts as the maximum (the first NaN wins) */
    LLVMValueRef take;
    if (f) {
      LLVMValueRef gt = LLVMBuildFCmp(b, LLVMRealOGT, x, a, "");
      LLVMValueRef xnan = LLVMBuildFCmp(b, LLVMRealUNO, x, x, "");
      LLVMValueRef anum = LLVMBuildFCmp(b, LLVMRealORD, a, a, "");
      take = LLVMBuildOr(b, gt, LLVMBuildAnd(b, xnan, anum, ""), "");
    } else {
      take = LLVMBuildICmp(b, LLVMIntSGT, x, a, "");
    }
    LLVMValueRef rlin = cg_linear(kc, kc->var + k->shape.rank, k->red_ext, k->n_red);
    rlin = LLVMBuildTrunc(b, rlin, m->t_i32, "");
    LLVMValueRef oi = LLVMBuildLoad2(b, m->t_i32, s->idx, "");
    LLVMBuildStore(b, LLVMBuildSelect(b, take, x, a, ""), s->acc);
    LLVMBuildStore(b, LLVMBuildSelect(b, take, rlin, oi, ""), s->idx);
    break;
  }
  case RED_NONE: break;
  }
  close_loops(kc, R, k->n_red);
  if (k->red == RED_ARGMAX) {
    v = LLVMBuildLoad2(b, m->t_i32, s->idx, "");
    vdt = DT_I32;
  } else {
    v = LLVMBuildLoad2(b, at, s->acc, "");
  }
  v = apply_epilogue(kc, v, &vdt);
  store_out(kc, lin, v, vdt);
}

/* ================= the two nests ================= */

/* Standard nest: for o (outputs) { acc = init; for r (reductions) acc ⊕= body; out[o] = epi(acc) } */
static void emit_standard_nest(KernelCg *kc, RedSlots *s, LLVMValueRef begin, LLVMValueRef end) {
  Loop L[IR_MAX_RANK];
  int rank = kc->k->shape.rank;
  open_out_loops(kc, L, rank, begin, end);
  emit_point(kc, s);
  close_loops(kc, L, rank);
}

/* Reordered nest for sums (the matmul strategy). With J the innermost output
 * dim and `row` the output elements along J for fixed outer indices:
 *
 *   for o[0..J-1]:                     (dim 0 over [begin, end) when J > 0)
 *     for j in row: out[o, j] = 0
 *     for r (reduction dims):
 *       for j in row: out[o, j] += body(o, j, r)     <- contiguous, vectorizes
 *     for j in row: out[o, j] = epilogue(out[o, j])   (if any)
 *
 * When J = 0 the row is [begin, end) itself. Each element still sums its
 * terms in reduction order, so the result does not depend on threading. */
static void emit_reordered_nest(KernelCg *kc, LLVMValueRef begin, LLVMValueRef end) {
  const Kernel *k = kc->k;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int J = k->shape.rank - 1;
  LLVMTypeRef et = cg_dtype(m, k->dtype);
  LLVMValueRef zero = k->dtype == DT_F32 ? cg_f32(m, 0.0) : cg_i32(m, 0);
  Loop L[IR_MAX_RANK], R[IR_MAX_RANK], Z, A, E;
  open_out_loops(kc, L, J, begin, end);
  LLVMValueRef jlo = J == 0 ? begin : cg_i64(m, 0);
  LLVMValueRef jhi = J == 0 ? end : cg_i64(m, k->shape.d[J]);
  kc->var[J] = cg_i64(m, 0);
  LLVMValueRef base = cg_linear(kc, kc->var, k->shape.d, k->shape.rank); /* out[o, 0] */

  LLVMValueRef j = loop_begin(kc, &Z, jlo, jhi, "zero");
  LLVMBuildStore(b, zero, out_ptr(kc, LLVMBuildNSWAdd(b, base, j, "")));
  loop_end(kc, &Z);

  open_red_loops(kc, R);
  j = loop_begin(kc, &A, jlo, jhi, "row");
  kc->var[J] = j;
  LLVMValueRef x = cg_vx(kc, k->body);
  LLVMValueRef ptr = out_ptr(kc, LLVMBuildNSWAdd(b, base, j, ""));
  LLVMValueRef old = LLVMBuildLoad2(b, et, ptr, "");
  LLVMBuildStore(b, add_of(kc, k->dtype, old, x), ptr);
  loop_end(kc, &A);
  close_loops(kc, R, k->n_red);

  if (k->epilogue) {
    j = loop_begin(kc, &E, jlo, jhi, "epi");
    kc->var[J] = j;
    ptr = out_ptr(kc, LLVMBuildNSWAdd(b, base, j, ""));
    DType vdt = k->dtype;
    LLVMValueRef v = apply_epilogue(kc, LLVMBuildLoad2(b, et, ptr, ""), &vdt);
    LLVMBuildStore(b, cg_convert(kc, v, vdt, k->dtype), ptr);
    loop_end(kc, &E);
  }
  close_loops(kc, L, J);
}

/* ================= functions ================= */

static void add_param_attr(CgModule *m, LLVMValueRef fn, unsigned idx, const char *name,
                           uint64_t val) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(m->ctx, kind, val));
}

static bool check_kernel(const Program *p, const Kernel *k, Diag *d) {
  const char *why = NULL;
  if (!k->name || !*k->name) why = "has no name";
  else if (!k->body) why = "has no body";
  else if (k->out_buf < 0 || k->out_buf >= p->n_bufs) why = "has no valid output buffer";
  else if (k->shape.rank < 0 || k->shape.rank > IR_MAX_RANK) why = "has a bad rank";
  else if (k->n_red < 0 || k->n_red > IR_MAX_RANK) why = "has a bad number of reduction dims";
  else if (k->red == RED_NONE && k->n_red != 0) why = "has reduction dims but no reduction";
  else if (k->red != RED_NONE && k->n_red == 0) why = "has a reduction but no reduction dims";
  else if (p->bufs[k->out_buf].shape.rank != k->shape.rank ||
           !shape_eq(&p->bufs[k->out_buf].shape, &k->shape))
    why = "has an iteration space unlike its output buffer's shape";
  else if (p->bufs[k->out_buf].dtype != k->dtype) why = "has a dtype unlike its output buffer's";
  if (why) {
    diag_error(d, k->loc, "internal error: backend: kernel %s %s", k->name ? k->name : "?", why);
    return false;
  }
  return true;
}

LLVMValueRef cg_kernel(CgModule *m, const Program *p, const Kernel *k, Diag *d) {
  if (!check_kernel(p, k, d)) return NULL;
  bool *used = kernel_buffers(p, k);
  if (!used) {
    diag_error(d, k->loc, "internal error: backend: kernel %s reads a buffer out of range", k->name);
    return NULL;
  }
  bool noalias = !output_shared(p, k, used);

  /* K.body(ptr b..., i64 begin, i64 end) */
  int nparams = 0;
  int *pbuf = calloc((size_t)p->n_bufs + 1, sizeof *pbuf);
  for (int i = 0; i < p->n_bufs; i++)
    if (used[i]) pbuf[nparams++] = i;
  LLVMTypeRef *pt = calloc((size_t)nparams + 2, sizeof *pt);
  for (int i = 0; i < nparams; i++) pt[i] = m->t_ptr;
  pt[nparams] = pt[nparams + 1] = m->t_i64;
  char name[300];
  snprintf(name, sizeof name, "%s.body", k->name);
  LLVMValueRef body = LLVMAddFunction(m->mod, name, LLVMFunctionType(m->t_void, pt, (unsigned)nparams + 2, 0));
  LLVMSetLinkage(body, LLVMInternalLinkage);
  cg_add_fn_attrs(m, body);
  add_param_attr(m, body, LLVMAttributeFunctionIndex, "alwaysinline", 0);
  LLVMValueRef *bufv = calloc((size_t)p->n_bufs + 1, sizeof *bufv);
  for (int i = 0; i < nparams; i++) {
    const Buffer *B = &p->bufs[pbuf[i]];
    LLVMValueRef prm = LLVMGetParam(body, (unsigned)i);
    LLVMSetValueName2(prm, B->name ? B->name : "buf", B->name ? strlen(B->name) : 3);
    bufv[pbuf[i]] = prm;
    unsigned ai = (unsigned)i + 1;
    if (noalias) add_param_attr(m, body, ai, "noalias", 0);
    add_param_attr(m, body, ai, "nocapture", 0);
    int64_t bytes = buf_bytes(B);
    if (bytes > 0) add_param_attr(m, body, ai, "dereferenceable", (uint64_t)bytes);
    if (pbuf[i] != k->out_buf) add_param_attr(m, body, ai, "readonly", 0);
  }

  KernelCg kc = {0};
  kc.m = m;
  kc.p = p;
  kc.k = k;
  kc.d = d;
  kc.fn = body;
  kc.buf = bufv;
  kc.b = LLVMCreateBuilderInContext(m->ctx);
  LLVMPositionBuilderAtEnd(kc.b, LLVMAppendBasicBlockInContext(m->ctx, body, "entry"));
  RedSlots slots;
  slots.acc = LLVMBuildAlloca(kc.b, cg_dtype(m, k->body->dtype), "acc.slot");
  slots.idx = LLVMBuildAlloca(kc.b, m->t_i32, "idx.slot");
  LLVMValueRef begin = LLVMGetParam(body, (unsigned)nparams);
  LLVMValueRef end = LLVMGetParam(body, (unsigned)nparams + 1);
  GemmPlan gp;
  if (k->shape.rank == 0) emit_point(&kc, &slots);
  else if (cg_gemm_plan(m, p, k, &gp)) cg_emit_gemm(&kc, &gp, begin, end);
  else if (cg_kernel_uses_reorder(p, k)) emit_reordered_nest(&kc, begin, end);
  else emit_standard_nest(&kc, &slots, begin, end);
  LLVMBuildRetVoid(kc.b);

  /* K(void *ctx, i64 begin, i64 end): bind bufs[i] and call the body */
  LLVMValueRef fn = NULL;
  if (!kc.failed) {
    fn = LLVMAddFunction(m->mod, k->name, m->t_kernel);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_add_fn_attrs(m, fn);
    LLVMPositionBuilderAtEnd(kc.b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
    LLVMValueRef *args = calloc((size_t)nparams + 2, sizeof *args);
    LLVMValueRef ctx = LLVMGetParam(fn, 0);
    for (int i = 0; i < nparams; i++) {
      /* a view (Buffer.alias) reads its root's slot: same memory */
      LLVMValueRef ix = cg_i64(m, buf_root(p, pbuf[i]));
      LLVMValueRef slot = LLVMBuildInBoundsGEP2(kc.b, m->t_ptr, ctx, &ix, 1, "");
      args[i] = LLVMBuildLoad2(kc.b, m->t_ptr, slot, p->bufs[pbuf[i]].name ? p->bufs[pbuf[i]].name : "");
    }
    args[nparams] = LLVMGetParam(fn, 1);
    args[nparams + 1] = LLVMGetParam(fn, 2);
    LLVMBuildCall2(kc.b, LLVMGlobalGetValueType(body), body, args, (unsigned)nparams + 2, "");
    LLVMBuildRetVoid(kc.b);
    free(args);
  }
  LLVMDisposeBuilder(kc.b);
  free(bufv);
  free(pt);
  free(pbuf);
  free(used);
  return fn;
}
