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
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int g_reorder_mode = 0; /* 0 auto, 1 never, 2 whenever legal */

void cg_debug_set_reorder(int mode) { g_reorder_mode = mode; }

/* ================= analysis of a kernel's expressions ================= */

/* The constant coefficient of loop var v in e, if e is affine in v with a
 * constant coefficient; false otherwise. */
static bool ix_coef(const IExpr *e, int v, int64_t *c) {
  int64_t ca, cb;
  if (!ix_uses_var(e, v)) {
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
  bool guard_ok; /* a guard that depends on v is fine (a masked load) */
  bool all_ok, has_unit;
} StrideScan;

static void stride_cb(const VExpr *l, void *ctx) {
  StrideScan *s = ctx;
  const Shape *sh = &s->p->bufs[l->buf].shape;
  if (l->guard && !s->guard_ok && ix_uses_var(l->guard, s->v)) {
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

static StrideScan scan_strides(const Program *p, const VExpr *e, int v, bool guard_ok) {
  StrideScan s = {p, v, guard_ok, true, false};
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

/* Whether buffer i is the output's own memory under another name (an
 * in-place kernel: same start address, shape and type). Its loads then go
 * through the output's pointer, which keeps the parameters noalias. */
static bool same_as_out(const Program *p, const Kernel *k, int i) {
  const Buffer *a = &p->bufs[i], *o = &p->bufs[k->out_buf];
  if (i == k->out_buf || a->dtype != o->dtype || !shape_eq(&a->shape, &o->shape)) return false;
  int ra = buf_root(p, i), ro = buf_root(p, k->out_buf);
  if (ra == ro) return true;
  return p->bufs[ra].offset >= 0 && p->bufs[ra].offset == p->bufs[ro].offset;
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

enum { UNROLL_MAX_BODY = 32, SMALL_KERNEL_WORK = 4096, ROW_UNROLL_MAX = 32 };

static int64_t red_iterations(const Kernel *k) {
  int64_t n = 1;
  for (int r = 0; r < k->n_red; r++) n *= k->red_ext[r];
  return n;
}

typedef struct {
  int v;
  bool found;
} GuardUse;

static void guard_use_cb(const VExpr *l, void *ctx) {
  GuardUse *g = ctx;
  if (l->guard && ix_uses_var(l->guard, g->v)) g->found = true;
}

/* Whether some load of e is guarded by a condition on loop var v. */
static bool guarded_along(const VExpr *e, int v) {
  GuardUse g = {v, false};
  visit_loads(e, guard_use_cb, &g);
  return g.found;
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
  /* a guarded load (a window that runs over padding, col2im) whose address
   * is contiguous along j becomes a masked vector load in the j loop */
  StrideScan j = scan_strides(p, k->body, k->shape.rank - 1, true);
  StrideScan r = scan_strides(p, k->body, k->shape.rank + k->n_red - 1, false);
  return j.all_ok && j.has_unit && !r.all_ok;
}

/* The reordered nest's row may be the last two output dims (a plane) when
 * every load of the body is, over those two dims, either invariant or one
 * contiguous block (the plane's rows follow each other in memory, e.g.
 * col2im with stride 1 and "same" padding), and the plane is small enough
 * to stay in L1 while the reduction loops sweep over it. Each term of the
 * sum then streams through a whole plane of its operand instead of one row
 * of it, and the output plane is re-read from L1. */
enum { PLANE_MAX_BYTES = 16384 };

typedef struct {
  const Program *p;
  int vi, vj; /* the plane's two loop vars (outer, inner) */
  int64_t nj; /* extent of the inner one */
  bool ok, has_unit;
} PlaneScan;

/* Element stride of load l along loop var v; false if not affine. */
static bool load_stride(const Program *p, const VExpr *l, int v, int64_t *stride) {
  const Shape *sh = &p->bufs[l->buf].shape;
  int64_t st = 0, row = 1;
  for (int d = l->rank - 1; d >= 0; d--) {
    int64_t c;
    if (!ix_coef(l->idx[d], v, &c)) return false;
    st += c * row;
    if (d < sh->rank) row *= sh->d[d];
  }
  *stride = st;
  return true;
}

static void plane_cb(const VExpr *l, void *ctx) {
  PlaneScan *s = ctx;
  int64_t si, sj;
  if (!load_stride(s->p, l, s->vi, &si) || !load_stride(s->p, l, s->vj, &sj)) {
    s->ok = false;
    return;
  }
  if (si == 0 && sj == 0) return;
  if (sj == 1 && si == s->nj) s->has_unit = true;
  else s->ok = false;
}

static bool reorder_plane(const Program *p, const Kernel *k) {
  int r = k->shape.rank;
  if (r < 3 || k->shape.d[r - 2] * k->shape.d[r - 1] * 4 > PLANE_MAX_BYTES) return false;
  PlaneScan s = {p, r - 2, r - 1, k->shape.d[r - 1], true, false};
  visit_loads(k->body, plane_cb, &s);
  return s.ok && s.has_unit;
}

bool cg_sum_in_output_legal(const Program *p, const Kernel *k) { return reorder_legal(p, k); }

/* A float sum whose last two reduction dims form one contiguous run in
 * every load that moves along them (a bias gradient over an image's rows):
 * those two loops run as one, which vectorizes. */
static bool red_plane(const Program *p, const Kernel *k) {
  if (k->red != RED_SUM || k->dtype != DT_F32 || k->body->dtype != DT_F32 || k->n_red < 2) return false;
  int v = k->shape.rank + k->n_red - 2;
  if (k->red_ext[k->n_red - 2] * k->red_ext[k->n_red - 1] < 16) return false;
  PlaneScan s = {p, v, v + 1, k->red_ext[k->n_red - 1], true, false};
  visit_loads(k->body, plane_cb, &s);
  return s.ok && s.has_unit;
}

bool cg_unit_stride_along(const Program *p, const VExpr *e, int v) {
  StrideScan s = scan_strides(p, e, v, false);
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
  int64_t trip; /* constant trip count, or -1 */
  int hint;     /* LoopHint for the back edge, or -1 for none (LLVM decides) */
} Loop;

/* Unrolling policy for a perfect chain of n loops (outermost first): the
 * innermost loop is LLVM's to unroll (or vectorize); an outer loop only when
 * it and everything inside it is at most UNROLL_MAX_BODY iterations (e.g. a
 * 2x2 pooling window). Otherwise full unrolling of constant-trip outer
 * loops turned e.g. a 64x10x10 sum into a 10k-line function. */
/* Hints for loops L[0..n) (outermost first) around a body that runs
 * `inner` iterations of further loops (1 and innermost=true: none). */
static void set_unroll_hints(Loop *L, int n, int64_t inner, bool innermost) {
  int64_t prod = inner;
  for (int i = n - 1; i >= 0; i--) {
    if (L[i].trip < 0 || prod < 0) prod = -1;
    else prod *= L[i].trip;
    bool in = innermost && i == n - 1;
    L[i].hint = in || (prod >= 0 && prod <= UNROLL_MAX_BODY) ? -1 : LOOP_NO_UNROLL;
  }
}

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
  L->hint = -1;
  L->trip = LLVMIsAConstantInt(lo) && LLVMIsAConstantInt(hi)
                ? LLVMConstIntGetSExtValue(hi) - LLVMConstIntGetSExtValue(lo)
                : -1;
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, L->iv, hi, ""), body, L->exit);
  LLVMPositionBuilderAtEnd(b, body);
  return L->iv;
}

static void loop_end(KernelCg *kc, Loop *L) {
  LLVMBuilderRef b = kc->b;
  LLVMValueRef next = LLVMBuildNSWAdd(b, L->iv, cg_i64(kc->m, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMValueRef br = LLVMBuildBr(b, L->header);
  if (L->hint >= 0) cg_loop_hint(kc->m, br, (LoopHint)L->hint);
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

static void close_loops(KernelCg *kc, Loop *L, int n) {
  for (int d = n - 1; d >= 0; d--) loop_end(kc, &L[d]);
}

/* ================= col2im as plane scatter ================= */

/* A pure col2im with stride 1 and dilation 1:
 *   out[n, c, h, w] = sum_{kh, kw} d[n, (c*KH + kh)*KW + kw, h - kh + ph, w - kw + pw]
 * (0 outside d's plane), checked numerically over the whole index space.
 * It runs as, per plane (n, c): zero it, then for kh, kw add the d plane
 * shifted into it, one contiguous row range at a time; every output element
 * adds its terms in the same (kh, kw) order as the sum. */
typedef struct {
  int d;                 /* the read buffer */
  int64_t C, H, W, KH, KW, OH, OW, ph, pw;
  LLVMValueRef dlocal;   /* set: d's plane of the current image lives here (fused) */
} Scatter;

static bool scatter_plan(const Program *p, const Kernel *k, Scatter *s) {
  const VExpr *l = k->body;
  if (k->red != RED_SUM || k->accumulate || (k->epilogue && k->epilogue->dtype != DT_F32) ||
      k->dtype != DT_F32 || k->shape.rank != 4 ||
      k->n_red != 2 || !l || l->op != VX_LOAD || l->rank != 4 || l->dtype != DT_F32)
    return false;
  const Buffer *D = &p->bufs[l->buf], *O = &p->bufs[k->out_buf];
  if (D->shape.rank != 4 || O->dtype != DT_F32 || !shape_eq(&O->shape, &k->shape) || l->buf == k->out_buf ||
      bufs_overlap(p, l->buf, k->out_buf))
    return false;
  s->d = l->buf;
  s->dlocal = NULL;
  s->C = k->shape.d[1], s->H = k->shape.d[2], s->W = k->shape.d[3];
  s->KH = k->red_ext[0], s->KW = k->red_ext[1];
  s->OH = D->shape.d[2], s->OW = D->shape.d[3];
  if (D->shape.d[0] != k->shape.d[0] || D->shape.d[1] != s->C * s->KH * s->KW) return false;
  if (s->C * s->H * s->W * s->KH * s->KW > (1 << 22)) return false;
  /* the pads from the first valid term of the first plane, then every point checked */
  bool found = false;
  for (int64_t ph = 0; ph < s->KH && !found; ph++)
    for (int64_t pw = 0; pw < s->KW && !found; pw++) {
      s->ph = ph, s->pw = pw;
      bool ok = true, bad = false;
      int64_t v[8] = {0};
      for (int64_t n = 0; n < (k->shape.d[0] > 1 ? 2 : 1) && ok; n++)
        for (int64_t c = 0; c < s->C && ok; c++)
          for (int64_t h = 0; h < s->H && ok; h++)
            for (int64_t w = 0; w < s->W && ok; w++)
              for (int64_t kh = 0; kh < s->KH && ok; kh++)
                for (int64_t kw = 0; kw < s->KW && ok; kw++) {
                  v[0] = n, v[1] = c, v[2] = h, v[3] = w, v[4] = kh, v[5] = kw;
                  int64_t oh = h - kh + ph, ow = w - kw + pw;
                  bool valid = oh >= 0 && oh < s->OH && ow >= 0 && ow < s->OW;
                  bool g = l->guard ? cg_ix_eval(l->guard, v, &bad) != 0 : true;
                  if (g != valid) ok = false;
                  else if (valid)
                    ok = cg_ix_eval(l->idx[0], v, &bad) == n &&
                         cg_ix_eval(l->idx[1], v, &bad) == (c * s->KH + kh) * s->KW + kw &&
                         cg_ix_eval(l->idx[2], v, &bad) == oh && cg_ix_eval(l->idx[3], v, &bad) == ow;
                  if (bad) ok = false;
                }
      found = ok;
    }
  return found;
}

/* The planes (n, c) of images [begin, end) of a scatter kernel's output,
 * each zeroed first: opens the loops and returns the plane's offset. */
typedef struct {
  Loop Ln, Lc;
  LLVMValueRef n, c, plane;
  int64_t H, W;
} PlaneLoop;

static void plane_open(KernelCg *kc, PlaneLoop *P, LLVMValueRef begin, LLVMValueRef end, int64_t C, int64_t H,
                       int64_t W) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  P->H = H, P->W = W;
  P->n = loop_begin(kc, &P->Ln, begin, end, "sn");
  P->Ln.hint = LOOP_NO_UNROLL;
  P->c = loop_begin(kc, &P->Lc, cg_i64(m, 0), cg_i64(m, C), "sc");
  P->Lc.hint = LOOP_NO_UNROLL;
  P->plane = LLVMBuildNSWMul(b, LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, P->n, cg_i64(m, C), ""), P->c, ""),
                             cg_i64(m, H * W), "");
  Loop Lz;
  LLVMValueRef z = loop_begin(kc, &Lz, cg_i64(m, 0), cg_i64(m, H * W), "sz");
  LLVMValueRef off = LLVMBuildNSWAdd(b, P->plane, z, "");
  LLVMBuildStore(b, cg_f32(m, 0.0), LLVMBuildInBoundsGEP2(b, m->t_f32, kc->buf[kc->k->out_buf], &off, 1, ""));
  loop_end(kc, &Lz);
}

/* The finished plane through the kernel's epilogue, then the loops closed. */
/* *p += v (a scatter's accumulation into its zeroed plane) */
static void add_into(KernelCg *kc, LLVMValueRef p, LLVMValueRef v) {
  LLVMBuilderRef b = kc->b;
  LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, kc->m->t_f32, p, ""), v, ""), p);
}

/* Whether e reads (h, w) = vars 2, 3 only as the last two indices of
 * unguarded loads of buffers whose last two dims are H x W: then
 * (h, w) = (0, i) addresses element i of the plane, and the epilogue can
 * run as one contiguous loop over the plane. */
static bool plane_flat(const Program *p, const VExpr *e, int64_t H, int64_t W) {
  if (!e) return true;
  if (e->op == VX_RAND) return false;
  if (e->op == VX_INDEX && (ix_uses_var(e->ix, 2) || ix_uses_var(e->ix, 3))) return false;
  if (e->op == VX_LOAD) {
    const Shape *bs = &p->bufs[e->buf].shape;
    bool uses = false;
    for (int d = 0; d < e->rank; d++) uses = uses || ix_uses_var(e->idx[d], 2) || ix_uses_var(e->idx[d], 3);
    if (uses) {
      int r = e->rank;
      if (e->guard || r < 2 || bs->rank != r || bs->d[r - 2] != H || bs->d[r - 1] != W) return false;
      const IExpr *ih = e->idx[r - 2], *iw = e->idx[r - 1];
      if (ih->op != IX_VAR || ih->var != 2 || iw->op != IX_VAR || iw->var != 3) return false;
      for (int d = 0; d < r - 2; d++)
        if (ix_uses_var(e->idx[d], 2) || ix_uses_var(e->idx[d], 3)) return false;
    }
  }
  return plane_flat(p, e->a, H, W) && plane_flat(p, e->b, H, W) && plane_flat(p, e->c, H, W);
}

bool cg_plane_flat(const Program *p, const VExpr *e, int64_t H, int64_t W) { return plane_flat(p, e, H, W); }

/* The epilogue over a finished plane: one loop over its H*W elements when
 * the epilogue reads (h, w) only at the plane's own positions (LLVM
 * vectorizes it; rows of 14 did not: LeNet-5's col2im with a ReLU mask
 * 0.1 ms more per step), else rows and columns. */
static void plane_close(KernelCg *kc, PlaneLoop *P) {
  if (kc->k->epilogue) {
    CgModule *m = kc->m;
    LLVMBuilderRef b = kc->b;
    Loop Lh, Lw;
    bool flat = plane_flat(kc->p, kc->k->epilogue, P->H, P->W);
    LLVMValueRef h = flat ? cg_i64(m, 0) : loop_begin(kc, &Lh, cg_i64(m, 0), cg_i64(m, P->H), "peh");
    if (!flat) Lh.hint = LOOP_NO_UNROLL;
    LLVMValueRef w = loop_begin(kc, &Lw, cg_i64(m, 0), cg_i64(m, flat ? P->H * P->W : P->W), "pew");
    LLVMValueRef off =
        LLVMBuildNSWAdd(b, P->plane, LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, h, cg_i64(m, P->W), ""), w, ""), "");
    LLVMValueRef pe = LLVMBuildInBoundsGEP2(b, m->t_f32, kc->buf[kc->k->out_buf], &off, 1, "");
    kc->var[0] = P->n, kc->var[1] = P->c, kc->var[2] = h, kc->var[3] = w;
    kc->acc = LLVMBuildLoad2(b, m->t_f32, pe, "");
    LLVMBuildStore(b, cg_vx(kc, kc->k->epilogue), pe);
    kc->acc = NULL;
    loop_end(kc, &Lw);
    if (!flat) loop_end(kc, &Lh);
  }
  loop_end(kc, &P->Lc);
  loop_end(kc, &P->Ln);
}

static void emit_scatter(KernelCg *kc, const Scatter *s, LLVMValueRef begin, LLVMValueRef end) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef out = kc->buf[kc->k->out_buf], d = s->dlocal ? s->dlocal : kc->buf[s->d];
#define I(x) cg_i64(m, (x))
#define ADDI(x, y) LLVMBuildNSWAdd(b, (x), (y), "")
#define MULI(x, y) LLVMBuildNSWMul(b, (x), (y), "")
#define SUBI(x, y) LLVMBuildNSWSub(b, (x), (y), "")
  Loop Lkh, Lkw, Loh, Low;
  PlaneLoop P;
  plane_open(kc, &P, begin, end, s->C, s->H, s->W);
  LLVMValueRef n = P.n, c = P.c, plane = P.plane;
  LLVMValueRef kh = loop_begin(kc, &Lkh, I(0), I(s->KH), "skh");
  Lkh.hint = LOOP_NO_UNROLL;
  LLVMValueRef kw = loop_begin(kc, &Lkw, I(0), I(s->KW), "skw");
  Lkw.hint = LOOP_NO_UNROLL;
  LLVMValueRef r = ADDI(MULI(ADDI(MULI(c, I(s->KH)), kh), I(s->KW)), kw);
  LLVMValueRef dimg = s->dlocal ? I(0) : MULI(n, I(s->C * s->KH * s->KW));
  LLVMValueRef dplane = MULI(ADDI(dimg, r), I(s->OH * s->OW));
  /* d's row oh holds h = oh + dh (dh = kh - ph): oh in [max(0, -dh), min(OH, H - dh)); likewise ow */
  LLVMValueRef dh = SUBI(kh, I(s->ph)), dw = SUBI(kw, I(s->pw));
  LLVMValueRef ndh = SUBI(I(s->ph), kh), ndw = SUBI(I(s->pw), kw);
#define MAXI(x, y) LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, (x), (y), ""), (x), (y), "")
#define MINI(x, y) LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, (x), (y), ""), (x), (y), "")
  LLVMValueRef oh_lo = MAXI(I(0), ndh), oh_hi = MINI(I(s->OH), ADDI(I(s->H), ndh));
  LLVMValueRef ow_lo = MAXI(I(0), ndw), ow_hi = MINI(I(s->OW), ADDI(I(s->W), ndw));
  LLVMValueRef oh = loop_begin(kc, &Loh, oh_lo, oh_hi, "soh");
  Loh.hint = LOOP_NO_UNROLL;
  LLVMValueRef orow = ADDI(plane, MULI(ADDI(oh, dh), I(s->W)));
  LLVMValueRef drow = ADDI(dplane, MULI(oh, I(s->OW)));
  LLVMValueRef ow = loop_begin(kc, &Low, ow_lo, ow_hi, "sow");
  LLVMValueRef po = LLVMBuildInBoundsGEP2(b, m->t_f32, out, (LLVMValueRef[]){ADDI(orow, ADDI(ow, dw))}, 1, "");
  LLVMValueRef pd = LLVMBuildInBoundsGEP2(b, m->t_f32, d, (LLVMValueRef[]){ADDI(drow, ow)}, 1, "");
  add_into(kc, po, LLVMBuildLoad2(b, m->t_f32, pd, ""));
  loop_end(kc, &Low);
  loop_end(kc, &Loh);
  loop_end(kc, &Lkw);
  loop_end(kc, &Lkh);
  plane_close(kc, &P);
#undef I
#undef ADDI
#undef MULI
#undef SUBI
#undef MAXI
#undef MINI
}

/* ================= max pooling's adjoint as plane scatter ================= */

/* The adjoint of max pooling with overlapping windows, as lowered:
 *   dx[n, c, h, w] = sum_{kh, kw} (am[n, c, oh, ow] == kh*KW + kw ? dy[n, c, oh, ow] : 0)
 * over the windows (oh, ow) = ((h + p0 - kh) / s0, (w + p1 - kw) / s1) that
 * exist (divisible, in range), every index checked numerically (the loads'
 * flat offsets, so reshaped dy or am too). It runs per plane (n, c): zero
 * it, then walk the windows backwards and add each dy to the position its
 * am names. Backwards, so every dx element receives its terms in the sum's
 * (kh, kw) order (the gather's fast-math sum may reassociate them: a test
 * compares both within rounding, DLC_POOL_SCATTER=0). One pass over dy instead of
 * KH*KW guarded taps per dx element: 2.5-4.5x faster for strided windows
 * (AlexNet's 3x3/2 pooling 1.28 -> 0.28 ms), as fast for stride 1, where
 * neighbouring windows share their maximum and the adds form a chain
 * (per-tap passes without that chain measured slower on 7x7 planes). */
typedef struct {
  int dy, am;                 /* the loads' buffers */
  int64_t C, H, W, OH, OW, KH, KW, s0, s1, p0, p1;
} PoolScatter;

/* The parts of select(hit, dy, 0): hit = f32(am == pos) [* f32(cond)]. */
static bool pool_scatter_parts(const VExpr *e, const VExpr **dy, const VExpr **am, const IExpr **pos,
                               const IExpr **cond) {
  if (!e || e->op != VX_SELECT || !e->c || e->c->op != VX_CONST || e->c->f != 0.0f || !e->b || e->b->op != VX_LOAD ||
      e->b->dtype != DT_F32)
    return false;
  *dy = e->b;
  const VExpr *h = e->a;
  *cond = NULL;
  if (h && h->op == VX_MUL) {
    const VExpr *x = h->a, *y = h->b;
    if (x && x->op == VX_INDEX) {
      const VExpr *t = x;
      x = y, y = t;
    }
    if (!y || y->op != VX_INDEX) return false;
    *cond = y->ix;
    h = x;
  }
  if (!h || h->op != VX_CAST || !h->a || h->a->op != VX_EQ) return false;
  const VExpr *q = h->a;
  const VExpr *l = q->a, *i = q->b;
  if (l && l->op == VX_INDEX) {
    const VExpr *t = l;
    l = i, i = t;
  }
  if (!l || l->op != VX_LOAD || l->dtype != DT_I32 || !i || i->op != VX_INDEX) return false;
  *am = l;
  *pos = i->ix;
  return true;
}

static bool pool_scatter_check(const Program *p, const Kernel *k, const PoolScatter *s, const VExpr *dy,
                               const VExpr *am, const IExpr *pos, const IExpr *cond) {
  int64_t N = k->shape.d[0];
  int64_t ns[2] = {0, N - 1}, cs[2] = {0, s->C - 1};
  bool bad = false;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++)
      for (int64_t h = 0; h < s->H; h++)
        for (int64_t w = 0; w < s->W; w++)
          for (int64_t kh = 0; kh < s->KH; kh++)
            for (int64_t kw = 0; kw < s->KW; kw++) {
              int64_t v[8] = {ns[a], cs[b], h, w, kh, kw, 0, 0};
              int64_t th = h + s->p0 - kh, tw = w + s->p1 - kw;
              int64_t oh = th / s->s0, ow = tw / s->s1;
              bool valid = th >= 0 && tw >= 0 && th % s->s0 == 0 && tw % s->s1 == 0 && oh < s->OH && ow < s->OW;
              bool g = (!dy->guard || cg_ix_eval(dy->guard, v, &bad)) && (!am->guard || cg_ix_eval(am->guard, v, &bad)) &&
                       (!cond || cg_ix_eval(cond, v, &bad));
              if (bad || g != valid) return false;
              if (!valid) continue;
              int64_t want = ((ns[a] * s->C + cs[b]) * s->OH + oh) * s->OW + ow;
              if (cg_load_offset(p, dy, v, &bad) != want || cg_load_offset(p, am, v, &bad) != want ||
                  cg_ix_eval(pos, v, &bad) != kh * s->KW + kw || bad)
                return false;
            }
  return true;
}

static bool pool_scatter_plan(const Program *p, const Kernel *k, PoolScatter *s) {
  const VExpr *dy, *am;
  const IExpr *pos, *cond;
  if (k->red != RED_SUM || k->accumulate || k->dtype != DT_F32 || k->shape.rank != 4 || k->n_red != 2 ||
      (k->epilogue && k->epilogue->dtype != DT_F32) || !pool_scatter_parts(k->body, &dy, &am, &pos, &cond))
    return false;
  const Buffer *O = &p->bufs[k->out_buf], *D = &p->bufs[dy->buf], *A = &p->bufs[am->buf];
  if (O->dtype != DT_F32 || !shape_eq(&O->shape, &k->shape) || D->dtype != DT_F32 || A->dtype != DT_I32 ||
      bufs_overlap(p, dy->buf, k->out_buf) || bufs_overlap(p, am->buf, k->out_buf) ||
      shape_numel(&D->shape) != shape_numel(&A->shape))
    return false;
  s->dy = dy->buf, s->am = am->buf;
  s->C = k->shape.d[1], s->H = k->shape.d[2], s->W = k->shape.d[3];
  s->KH = k->red_ext[0], s->KW = k->red_ext[1];
  if (s->KH * s->KW > 64 || s->H * s->W * s->KH * s->KW > (1 << 20)) return false;
  int64_t plane = shape_numel(&D->shape) / (k->shape.d[0] * s->C);
  if (plane * k->shape.d[0] * s->C != shape_numel(&D->shape)) return false;
  /* the window geometry: strides and pads within the window (then OH, OW from the plane) */
  for (int64_t s0 = 1; s0 <= s->KH; s0++)
    for (int64_t s1 = 1; s1 <= s->KW; s1++)
      for (int64_t p0 = 0; p0 < s->KH; p0++)
        for (int64_t p1 = 0; p1 < s->KW; p1++) {
          int64_t OH = (s->H + 2 * p0 - s->KH) / s0 + 1, OW = (s->W + 2 * p1 - s->KW) / s1 + 1;
          if (OH < 1 || OW < 1 || OH * OW != plane) continue;
          s->s0 = s0, s->s1 = s1, s->p0 = p0, s->p1 = p1, s->OH = OH, s->OW = OW;
          /* stride 1 both ways: the gather is as fast (see above) */
          if (pool_scatter_check(p, k, s, dy, am, pos, cond)) return s0 > 1 || s1 > 1;
        }
  return false;
}

/* DLC_POOL_SCATTER=0: the gather instead (a test compares the two bit for bit). */
static bool pool_scatter_on(void) {
  const char *e = getenv("DLC_POOL_SCATTER");
  return !(e && e[0] == '0');
}

static void emit_pool_scatter(KernelCg *kc, const PoolScatter *s, LLVMValueRef begin, LLVMValueRef end) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef out = kc->buf[kc->k->out_buf], dy = kc->buf[s->dy], am = kc->buf[s->am];
#define I(x) cg_i64(m, (x))
#define ADDI(x, y) LLVMBuildNSWAdd(b, (x), (y), "")
#define MULI(x, y) LLVMBuildNSWMul(b, (x), (y), "")
#define SUBI(x, y) LLVMBuildNSWSub(b, (x), (y), "")
#define ICMP(p, x, y) LLVMBuildICmp(b, (p), (x), (y), "")
  Loop Lo;
  PlaneLoop P;
  plane_open(kc, &P, begin, end, s->C, s->H, s->W);
  LLVMValueRef plane = P.plane, yplane = MULI(ADDI(MULI(P.n, I(s->C)), P.c), I(s->OH * s->OW));
  /* windows t = OH*OW-1 .. 0: row-major descending, so the windows that
   * share a dx element reach it in ascending (kh, kw) */
  LLVMValueRef r = loop_begin(kc, &Lo, I(0), I(s->OH * s->OW), "pw");
  Lo.hint = LOOP_NO_UNROLL;
  LLVMValueRef t = SUBI(I(s->OH * s->OW - 1), r), yo = ADDI(yplane, t);
  LLVMValueRef oh = LLVMBuildSDiv(b, t, I(s->OW), ""), ow = LLVMBuildSRem(b, t, I(s->OW), "");
  LLVMValueRef a = LLVMBuildLoad2(b, m->t_i32, LLVMBuildInBoundsGEP2(b, m->t_i32, am, &yo, 1, ""), "");
  a = LLVMBuildSExt(b, a, m->t_i64, "");
  /* am outside [0, KH*KW) names no tap: nothing to add (as in the sum) */
  LLVMValueRef ok = LLVMBuildAnd(b, ICMP(LLVMIntSGE, a, I(0)), ICMP(LLVMIntSLT, a, I(s->KH * s->KW)), "");
  LLVMValueRef ac = LLVMBuildSelect(b, ok, a, I(0), "");
  LLVMValueRef kh = LLVMBuildUDiv(b, ac, I(s->KW), ""), kw = LLVMBuildURem(b, ac, I(s->KW), "");
  LLVMValueRef h = ADDI(SUBI(MULI(oh, I(s->s0)), I(s->p0)), kh), w = ADDI(SUBI(MULI(ow, I(s->s1)), I(s->p1)), kw);
  ok = LLVMBuildAnd(b, ok, LLVMBuildAnd(b, ICMP(LLVMIntSGE, h, I(0)), ICMP(LLVMIntSLT, h, I(s->H)), ""), "");
  ok = LLVMBuildAnd(b, ok, LLVMBuildAnd(b, ICMP(LLVMIntSGE, w, I(0)), ICMP(LLVMIntSLT, w, I(s->W)), ""), "");
  LLVMBasicBlockRef bb_add = LLVMAppendBasicBlockInContext(m->ctx, kc->fn, "pool.add");
  LLVMBasicBlockRef bb_next = LLVMAppendBasicBlockInContext(m->ctx, kc->fn, "pool.next");
  LLVMBuildCondBr(b, ok, bb_add, bb_next);
  LLVMPositionBuilderAtEnd(b, bb_add);
  LLVMValueRef xo = ADDI(plane, ADDI(MULI(h, I(s->W)), w));
  LLVMValueRef po = LLVMBuildInBoundsGEP2(b, m->t_f32, out, &xo, 1, "");
  add_into(kc, po, LLVMBuildLoad2(b, m->t_f32, LLVMBuildInBoundsGEP2(b, m->t_f32, dy, &yo, 1, ""), ""));
  LLVMBuildBr(b, bb_next);
  LLVMPositionBuilderAtEnd(b, bb_next);
  loop_end(kc, &Lo);
  plane_close(kc, &P);
#undef I
#undef ADDI
#undef MULI
#undef SUBI
#undef ICMP
}

/* ================= stores and reductions ================= */

static LLVMValueRef out_ptr(KernelCg *kc, LLVMValueRef lin) {
  LLVMTypeRef et = cg_dtype(kc->m, kc->k->dtype);
  if (kc->out_tmp) {
    lin = LLVMBuildNSWSub(kc->b, lin, kc->out_tmp_base, "");
    return LLVMBuildInBoundsGEP2(kc->b, et, kc->out_tmp, &lin, 1, "");
  }
  if (kc->out_slice) /* one slice along dim 0 (a fused leader's scratch) */
    lin = LLVMBuildNSWSub(kc->b, lin, LLVMBuildNSWMul(kc->b, kc->var[0], cg_i64(kc->m, kc->out_slice), ""), "");
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

/* Float sums add in levels: every loop of a sum sums into its own partial
 * (from 0), added to the enclosing loop's partial when the loop ends, and a
 * loop longer than SUM_BLOCK terms runs as blocks (two levels of blocks past
 * SUM_BLOCK^2), so no partial takes more than SUM_BLOCK terms. A float
 * added to a partial far larger than itself loses its low bits: one running
 * sum over 2^25 terms of ~0.3 lost 4 digits (and stopped growing at 2^26 at
 * -O0), blocked its error stays within a few units of float rounding. */
enum { SUM_BLOCK = 1024, SUM_LOOPS = 3 * IR_MAX_RANK };

typedef struct {
  LLVMValueRef acc, idx; /* allocas (promoted to registers by SROA) */
  LLVMValueRef part[SUM_LOOPS]; /* sums: the partial of loop i >= 1 (the loops of sum_level) */
} RedSlots;

/* How many loops sum_level opens for T terms. */
static int sum_level_loops(int64_t T, bool blocked) {
  if (!blocked || T <= SUM_BLOCK) return 1;
  return (T + SUM_BLOCK - 1) / SUM_BLOCK > SUM_BLOCK ? 3 : 2;
}

static LLVMValueRef min_i64(LLVMBuilderRef b, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, x, y, ""), x, y, "");
}

/* Opens the loops of one reduction level over terms [0, T): blocks of
 * blocks, blocks (when `blocked` and T is long: sum_level_loops) and the
 * terms, as P[*np], P[*np + 1], ...; with partials on, the partial of each
 * loop i >= 1 is zeroed just before it opens. Returns the term index. */
static LLVMValueRef sum_level(KernelCg *kc, RedSlots *s, LLVMValueRef zero, Loop *P, int *np, int64_t T, bool blocked,
                              const char *name) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int n = sum_level_loops(T, blocked);
  int64_t nb = (T + SUM_BLOCK - 1) / SUM_BLOCK;
  LLVMValueRef lo = cg_i64(m, 0), hi = cg_i64(m, T), blk = NULL;
  LLVMValueRef SB = cg_i64(m, SUM_BLOCK);
  char nm[24];
  for (int i = 0; i < n; i++) {
    if (zero && *np > 0) LLVMBuildStore(b, zero, s->part[*np]);
    snprintf(nm, sizeof nm, "%s%s", name, i == n - 1 ? "" : i == n - 2 ? "b" : "bb");
    if (i == n - 1 && blk) { /* the block's terms */
      lo = LLVMBuildNSWMul(b, blk, SB, "");
      hi = min_i64(b, LLVMBuildNSWAdd(b, lo, SB, ""), cg_i64(m, T));
    } else if (i == n - 2) { /* blocks (of the block of blocks) */
      lo = blk ? LLVMBuildNSWMul(b, blk, SB, "") : cg_i64(m, 0);
      hi = blk ? min_i64(b, LLVMBuildNSWAdd(b, lo, SB, ""), cg_i64(m, nb)) : cg_i64(m, nb);
    } else if (i == n - 3) { /* blocks of blocks */
      lo = cg_i64(m, 0);
      hi = cg_i64(m, (nb + SUM_BLOCK - 1) / SUM_BLOCK);
    }
    blk = loop_begin(kc, &P[(*np)++], lo, hi, nm);
  }
  return blk;
}

/* Closes loops P[from..np) of sum_level(s) in reverse, adding each loop's
 * partial to the enclosing loop's (loop 1's to `outer` when from is 0;
 * with from = 1 the caller takes loop 1's partial). */
static void sum_close(KernelCg *kc, LLVMTypeRef at, DType dt, Loop *P, int from, int np, RedSlots *s, bool partials,
                      LLVMValueRef outer) {
  LLVMBuilderRef b = kc->b;
  for (int i = np - 1; i >= from; i--) {
    loop_end(kc, &P[i]);
    LLVMValueRef to = i - 1 >= from && i - 1 > 0 ? s->part[i - 1] : outer;
    if (!partials || i == 0 || !to) continue;
    LLVMValueRef pv = LLVMBuildLoad2(b, at, s->part[i], "");
    LLVMBuildStore(b, add_of(kc, dt, LLVMBuildLoad2(b, at, to, ""), pv), to);
  }
}

/* The hint of a float sum's vectorized innermost run of `trip` terms:
 * 8 wide, and 4 vectors interleaved from 128 terms. */
static int sum_run_hint(int64_t trip) { return trip >= 128 ? LOOP_VECTORIZE_X4 : LOOP_VECTORIZE; }

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
  /* Sums add level by level (sum_level): one partial per loop, long loops
   * in blocks. A contiguous last pair of dims is one level (its vector
   * lanes keep separate partials). */
  bool plane = red_plane(kc->p, k);
  int nl = plane ? k->n_red - 1 : k->n_red; /* levels */
  int64_t T[IR_MAX_RANK];
  Loop R[IR_MAX_RANK]; /* the levels' trips and hints (unroll policy) */
  Loop P[SUM_LOOPS];   /* the loops */
  int last[IR_MAX_RANK], np = 0, nloops = 0;
  bool blocked = k->red == RED_SUM && f;
  for (int r = 0; r < nl; r++) {
    T[r] = plane && r == nl - 1 ? k->red_ext[r] * k->red_ext[r + 1] : k->red_ext[r];
    nloops += sum_level_loops(T[r], blocked);
  }
  bool levels = k->red == RED_SUM && nloops > 1;
  for (int r = 0; r < nl; r++) {
    char nm[16];
    snprintf(nm, sizeof nm, "r%d", r);
    int v = k->shape.rank + r;
    LLVMValueRef t = sum_level(kc, s, levels ? init : NULL, P, &np, T[r], blocked, nm);
    last[r] = np - 1;
    if (plane && r == nl - 1) {
      int64_t ej = k->red_ext[r + 1];
      kc->var[v] = LLVMBuildUDiv(b, t, cg_i64(m, ej), "");
      kc->var[v + 1] = LLVMBuildURem(b, t, cg_i64(m, ej), "");
    } else {
      kc->var[v] = t;
    }
    R[r].trip = T[r];
  }
  LLVMValueRef x = cg_vx(kc, k->body);
  LLVMValueRef slot = levels ? s->part[np - 1] : s->acc;
  LLVMValueRef a = LLVMBuildLoad2(b, at, slot, "acc");
  switch (k->red) {
  case RED_SUM: LLVMBuildStore(b, add_of(kc, bdt, a, x), slot); break;
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
      /* with a a number: x > a or x NaN, i.e. !(x <= a); a NaN stays */
      LLVMValueRef ugt = LLVMBuildFCmp(b, LLVMRealUGT, x, a, "");
      LLVMValueRef anum = LLVMBuildFCmp(b, LLVMRealORD, a, a, "");
      take = LLVMBuildAnd(b, ugt, anum, "");
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
  set_unroll_hints(R, nl, 1, true);
  /* a float sum along a contiguous innermost run of 16 or more (a bias
   * gradient's image planes), or of 8 or more inside a plane (a batch
   * norm's rows of 14): vector partial sums, which LLVM's cost model may
   * decline (a single short row, a softmax's 10 classes, stays as it was:
   * cheap either way); a shorter run unrolls, and
   * the loop around it must not be vectorized across rows with gathers
   * (ResNet-small's batch-norm gradients over 14 x 14 and 7 x 7 planes with
   * a padded mask: 0.23 -> 0.08 and 0.20 -> 0.06 ms on AVX-512) */
  if (k->red == RED_SUM && f && nl > 0 && R[nl - 1].trip >= (nl > 1 ? 8 : 16) &&
      (plane || cg_unit_stride_along(kc->p, k->body, k->shape.rank + nl - 1)))
    R[nl - 1].hint = sum_run_hint(R[nl - 1].trip);
  else if (nl > 1 && R[nl - 1].trip >= 2 && R[nl - 1].trip < 8 && R[nl - 2].hint != LOOP_FULL_UNROLL)
    R[nl - 2].hint = LOOP_NO_VECTORIZE;
  /* each level's hint on its terms' loop; its block loops stay rolled */
  for (int i = 0; i < np; i++) P[i].hint = LOOP_NO_UNROLL;
  for (int r = 0; r < nl; r++) P[last[r]].hint = R[r].hint;
  sum_close(kc, at, bdt, P, 0, np, s, levels, s->acc);
  if (k->red == RED_ARGMAX) {
    v = LLVMBuildLoad2(b, m->t_i32, s->idx, "");
    vdt = DT_I32;
  } else {
    v = LLVMBuildLoad2(b, at, s->acc, "");
  }
  v = apply_epilogue(kc, v, &vdt);
  store_out(kc, lin, v, vdt);
}

/* ================= per-channel sums over images, image-major ================= */

/* out[c] = epi(sum_n sum_{h,w} y[n, c, h, w]) over contiguous planes (a
 * bias gradient): the nest walks c outermost, n, then the plane, so
 * consecutive planes are N * C apart (the small VGG's: 148 KB) and every
 * plane starts a new stream. Image-major instead, for n: for c: out[c] +=
 * the plane's partial, reads each image's channels as one run. Each
 * out[c] still receives the same plane partials (the same loop, hints and
 * vector lanes) in the same order, so the result is the nest's bit for
 * bit (DLC_CHANNEL_SUMS=0 runs the nest; a test compares). */
static bool channel_sums_on(void) {
  const char *e = getenv("DLC_CHANNEL_SUMS");
  return !(e && e[0] == '0');
}

static bool channel_sums_plan(const Program *p, const Kernel *k) {
  const VExpr *l = k->body;
  if (k->red != RED_SUM || k->accumulate || k->dtype != DT_F32 || k->shape.rank != 1 || k->n_red != 3 || !l ||
      l->op != VX_LOAD || l->dtype != DT_F32 || l->guard || l->rank != 4 || !red_plane(p, k) || !reorder_legal(p, k) ||
      !channel_sums_on())
    return false;
  static const int want[4] = {1, 0, 2, 3}; /* y[r0, c, r1, r2] */
  for (int d = 0; d < 4; d++)
    if (l->idx[d]->op != IX_VAR || l->idx[d]->var != want[d]) return false;
  return true;
}

static void emit_channel_sums(KernelCg *kc, RedSlots *s, LLVMValueRef begin, LLVMValueRef end) {
  const Kernel *k = kc->k;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef zero = cg_f32(m, 0.0);
  Loop Lz, Ln, Lc, Le;
  kc->var[0] = loop_begin(kc, &Lz, begin, end, "cz");
  LLVMBuildStore(b, zero, out_ptr(kc, kc->var[0]));
  Lz.hint = LOOP_NO_UNROLL;
  loop_end(kc, &Lz);
  int64_t ej = k->red_ext[2], plane = k->red_ext[1] * ej;
  kc->var[1] = loop_begin(kc, &Ln, cg_i64(m, 0), cg_i64(m, k->red_ext[0]), "cn");
  kc->var[0] = loop_begin(kc, &Lc, begin, end, "cc");
  /* the plane's partial: part[1], as emit_point's plane level (the same
   * loops and lanes, so the same partials) */
  Loop P[SUM_LOOPS];
  int np = 1;
  LLVMValueRef t = sum_level(kc, s, zero, P, &np, plane, true, "ct");
  kc->var[2] = LLVMBuildUDiv(b, t, cg_i64(m, ej), "");
  kc->var[3] = LLVMBuildURem(b, t, cg_i64(m, ej), "");
  LLVMValueRef x = cg_vx(kc, k->body);
  LLVMBuildStore(b, add_of(kc, DT_F32, LLVMBuildLoad2(b, m->t_f32, s->part[np - 1], "part"), x), s->part[np - 1]);
  for (int i = 1; i < np; i++) P[i].hint = LOOP_NO_UNROLL;
  P[np - 1].hint = plane >= 8 ? sum_run_hint(plane) : -1;
  sum_close(kc, m->t_f32, DT_F32, P, 1, np, s, true, NULL);
  LLVMValueRef po = out_ptr(kc, kc->var[0]);
  LLVMValueRef pv = LLVMBuildLoad2(b, m->t_f32, s->part[1], "");
  LLVMBuildStore(b, add_of(kc, DT_F32, LLVMBuildLoad2(b, m->t_f32, po, ""), pv), po);
  Lc.hint = LOOP_NO_UNROLL;
  loop_end(kc, &Lc);
  Ln.hint = LOOP_NO_UNROLL;
  loop_end(kc, &Ln);
  if (k->epilogue) {
    kc->var[0] = loop_begin(kc, &Le, begin, end, "ce");
    LLVMValueRef pe = out_ptr(kc, kc->var[0]);
    DType vdt = DT_F32;
    LLVMValueRef v = apply_epilogue(kc, LLVMBuildLoad2(b, m->t_f32, pe, ""), &vdt);
    LLVMBuildStore(b, cg_convert(kc, v, vdt, DT_F32), pe);
    Le.hint = LOOP_NO_UNROLL;
    loop_end(kc, &Le);
  }
}

/* ================= window max / argmax rows in vector registers ================= */

/* A max or argmax over a small window whose body is one load, affine in
 * every loop var, with stride s (1-4) along the innermost output dim and
 * contiguous along the last window dim (max pooling without padding, as
 * lowered, and its argmax): per output row, VW outputs at a time, each
 * window tap is one masked vector load of s*VW contiguous floats and a
 * shuffle keeping every s-th lane; the running max (argmax: value and tap,
 * the scalar nest's comparisons lane by lane, taps in the same order) stays
 * in registers and the row's chunk is stored at once, masked at its end.
 * Results are the scalar nest's bit for bit (DLC_POOL_ROWS=0 runs that).
 * LLVM's vectorizer left a scalar remainder of rows whose length is not a
 * multiple of its width (LeNet-5's 14 and 5), each NaN-propagating max
 * emulated per element (LeNet-5's first pooling 0.134 -> 0.029 ms, its
 * argmax 0.095 -> 0.027 ms on AVX-512, `dlrun bench --per-kernel`). */
typedef struct {
  int64_t s, ow;
  int vw;
} PoolRows;

static bool pool_rows_on(void) {
  const char *e = getenv("DLC_POOL_ROWS");
  return !(e && e[0] == '0');
}

static bool pool_rows_plan(const Program *p, const Kernel *k, int vw, PoolRows *pr) {
  int rank = k->shape.rank;
  const VExpr *l = k->body;
  if ((k->red != RED_MAX && k->red != RED_ARGMAX) || k->n_red != 2 || rank < 2 || k->accumulate || k->epilogue ||
      !l || l->op != VX_LOAD || l->guard || l->dtype != DT_F32 || p->bufs[l->buf].dtype != DT_F32 ||
      l->rank != p->bufs[l->buf].shape.rank || red_iterations(k) > UNROLL_MAX_BODY ||
      (k->red == RED_MAX && k->dtype != DT_F32) || (k->red == RED_ARGMAX && k->dtype != DT_I32))
    return false;
  int64_t st[2 * IR_MAX_RANK];
  for (int v = 0; v < rank + 2; v++)
    if (!load_stride(p, l, v, &st[v])) return false;
  int64_t s = st[rank - 1];
  /* (AVX2: rows of at least 8; its masked store made LeNet-5's rows of 5 slower than the scalar nest) */
  if (s < 1 || s > 4 || st[rank + 1] != 1 || k->shape.d[rank - 1] < (vw == 16 ? 2 : 8)) return false;
  pr->s = s;
  pr->ow = k->shape.d[rank - 1];
  pr->vw = vw;
  return true;
}

/* <n x i1>: lanes below `valid` */
static LLVMValueRef lane_mask(CgModule *m, int n, int64_t valid) {
  LLVMValueRef t = LLVMConstInt(LLVMInt1TypeInContext(m->ctx), 1, 0), f = LLVMConstInt(LLVMInt1TypeInContext(m->ctx), 0, 0);
  LLVMValueRef lanes[256];
  for (int i = 0; i < n; i++) lanes[i] = i < valid ? t : f;
  return LLVMConstVector(lanes, (unsigned)n);
}

static void emit_pool_rows(KernelCg *kc, const PoolRows *pr, LLVMValueRef begin, LLVMValueRef end) {
  const Kernel *k = kc->k;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  const VExpr *l = k->body;
  const Buffer *B = &kc->p->bufs[l->buf];
  int rank = k->shape.rank, vw = pr->vw, wn = (int)pr->s * vw;
  bool argmax = k->red == RED_ARGMAX;
  LLVMTypeRef vt = LLVMVectorType(m->t_f32, (unsigned)vw), wt = LLVMVectorType(m->t_f32, (unsigned)wn);
  LLVMTypeRef it = LLVMVectorType(m->t_i32, (unsigned)vw);
  LLVMValueRef sel[64];
  for (int i = 0; i < vw; i++) sel[i] = cg_i32(m, (int64_t)i * pr->s);
  LLVMValueRef pick = LLVMConstVector(sel, (unsigned)vw);
  LLVMValueRef ninf[64], zi[64];
  for (int i = 0; i < vw; i++) ninf[i] = cg_f32(m, -INFINITY), zi[i] = cg_i32(m, 0);
  Loop L[IR_MAX_RANK];
  open_out_loops(kc, L, rank - 1, begin, end);
  for (int d = 0; d < rank - 1; d++) L[d].hint = LOOP_NO_UNROLL;
  for (int64_t j0 = 0; j0 < pr->ow; j0 += vw) {
    int64_t nl = pr->ow - j0 < vw ? pr->ow - j0 : vw;
    LLVMValueRef acc = LLVMConstVector(ninf, (unsigned)vw);
    LLVMValueRef idx = LLVMConstVector(zi, (unsigned)vw);
    LLVMValueRef wmask = lane_mask(m, wn, pr->s * (nl - 1) + 1);
    kc->var[rank - 1] = cg_i64(m, j0);
    for (int64_t t0 = 0; t0 < k->red_ext[0]; t0++)
      for (int64_t t1 = 0; t1 < k->red_ext[1]; t1++) {
        kc->var[rank] = cg_i64(m, t0);
        kc->var[rank + 1] = cg_i64(m, t1);
        LLVMValueRef ix[IR_MAX_RANK];
        for (int d = 0; d < l->rank; d++) ix[d] = cg_ix(kc, l->idx[d]);
        LLVMValueRef lin = cg_linear(kc, ix, B->shape.d, l->rank);
        LLVMValueRef ptr = LLVMBuildInBoundsGEP2(b, m->t_f32, kc->buf[l->buf], &lin, 1, "");
        LLVMTypeRef ov[2] = {wt, m->t_ptr};
        LLVMValueRef args[4] = {ptr, cg_i32(m, 4), wmask, LLVMConstNull(wt)};
        LLVMValueRef w = cg_intrinsic(m, b, "llvm.masked.load", ov, 2, args, 4);
        LLVMValueRef v = pr->s == 1 ? w : LLVMBuildShuffleVector(b, w, LLVMGetUndef(wt), pick, "");
        if (!argmax) {
          LLVMValueRef a2[2] = {acc, v};
          acc = cg_intrinsic(m, b, "llvm.maximum", &vt, 1, a2, 2);
        } else { /* first maximum; a NaN counts as the maximum (the first NaN wins) */
          LLVMValueRef take = LLVMBuildAnd(b, LLVMBuildFCmp(b, LLVMRealUGT, v, acc, ""),
                                           LLVMBuildFCmp(b, LLVMRealORD, acc, acc, ""), "");
          LLVMValueRef tv[64];
          for (int i = 0; i < vw; i++) tv[i] = cg_i32(m, t0 * k->red_ext[1] + t1);
          acc = LLVMBuildSelect(b, take, v, acc, "");
          idx = LLVMBuildSelect(b, take, LLVMConstVector(tv, (unsigned)vw), idx, "");
        }
      }
    LLVMValueRef olin = cg_linear(kc, kc->var, k->shape.d, rank);
    LLVMValueRef optr = out_ptr(kc, olin);
    LLVMValueRef val = argmax ? idx : acc;
    LLVMTypeRef ovt = argmax ? it : vt;
    LLVMTypeRef ov[2] = {ovt, m->t_ptr};
    LLVMValueRef args[4] = {val, optr, cg_i32(m, 4), lane_mask(m, vw, nl)};
    cg_intrinsic(m, b, "llvm.masked.store", ov, 2, args, 4);
  }
  close_loops(kc, L, rank - 1);
}

/* ================= the two nests ================= */

/* The constant divisor s >= 2 by which every division or remainder of an
 * index in e takes loop var v (0: none; -1: several or not constant). */
static int64_t ix_divisor(const IExpr *e, int v, int64_t s) {
  if (!e || s < 0) return s;
  if ((e->op == IX_DIV || e->op == IX_MOD) && ix_uses_var(e->a, v)) {
    if (!e->b || e->b->op != IX_CONST || e->b->v < 2 || (s && s != e->b->v)) return -1;
    s = e->b->v;
  }
  return ix_divisor(e->b, v, ix_divisor(e->a, v, s));
}

typedef struct {
  int v;
  int64_t s;
} DivScan;

static void div_cb(const VExpr *l, void *ctx) {
  DivScan *d = ctx;
  for (int i = 0; i < l->rank; i++) d->s = ix_divisor(l->idx[i], d->v, d->s);
  d->s = ix_divisor(l->guard, d->v, d->s);
}

static void div_vx(const VExpr *e, DivScan *d) {
  if (!e) return;
  if (e->op == VX_INDEX) d->s = ix_divisor(e->ix, d->v, d->s);
  div_vx(e->a, d), div_vx(e->b, d), div_vx(e->c, d);
}

/* An elementwise kernel whose innermost output dim j (extent a multiple of
 * s) is read only through j / s, j % s and unit-stride terms (a pooling
 * adjoint without overlap, dx[.., h, w] from am[.., h/2, w/2]): the row
 * runs as j = s*q + t, t unrolled inside the q loop, so every load is
 * contiguous or an s-strided group along q, vectorized 4, 8 or 16 wide
 * (the row as is went to gathers: LeNet-5's first pooling adjoint 0.25 ->
 * 0.12 ms on AVX-512). Rows of at least 8 q steps, s at most 4 (t unrolls). */
static int64_t row_split(const Kernel *k) {
  int rank = k->shape.rank;
  if (k->red != RED_NONE || rank < 2) return 0;
  DivScan d = {rank - 1, 0};
  visit_loads(k->body, div_cb, &d);
  visit_loads(k->epilogue, div_cb, &d);
  div_vx(k->body, &d);
  div_vx(k->epilogue, &d);
  return d.s > 0 && d.s <= 4 && k->shape.d[rank - 1] % d.s == 0 && k->shape.d[rank - 1] / d.s >= 8 ? d.s : 0;
}

/* Standard nest: for o (outputs) { acc = init; for r (reductions) acc ⊕= body; out[o] = epi(acc) } */
static void emit_standard_nest(KernelCg *kc, RedSlots *s, LLVMValueRef begin, LLVMValueRef end) {
  Loop L[IR_MAX_RANK];
  int rank = kc->k->shape.rank;
  int64_t sp = row_split(kc->k);
  if (sp) {
    open_out_loops(kc, L, rank - 1, begin, end);
    for (int d = 0; d < rank - 1; d++) L[d].hint = LOOP_NO_UNROLL;
    Loop Lq, Lt;
    LLVMValueRef q = loop_begin(kc, &Lq, cg_i64(kc->m, 0), cg_i64(kc->m, kc->k->shape.d[rank - 1] / sp), "oq");
    LLVMValueRef t = loop_begin(kc, &Lt, cg_i64(kc->m, 0), cg_i64(kc->m, sp), "ot");
    kc->var[rank - 1] = LLVMBuildNUWAdd(kc->b, LLVMBuildNUWMul(kc->b, q, cg_i64(kc->m, sp), ""), t, "");
    emit_point(kc, s);
    Lt.hint = LOOP_FULL_UNROLL;
    /* (LLVM's cost model alone: 0.25 -> 0.34 ms; forced 8 wide: 0.12); 4
     * wide when that leaves less to the scalar remainder (LeNet-5's rows of
     * 14 windows: 1 vector + 6 scalar iterations at 8, 3 + 2 at 4: 0.083 ->
     * 0.056 ms), 16 wide on AVX-512 for rows of whole 16s (its padded rows
     * of 16 windows, the adjoint folded into conv1's pad: 0.064-0.067 ->
     * 0.039-0.047 ms; the small VGG's rows of 17 measured slower at 16) */
    int64_t tq = kc->k->shape.d[rank - 1] / sp;
    Lq.hint = tq / 4 + tq % 4 < tq / 8 + tq % 8 ? LOOP_VECTORIZE_4 : LOOP_VECTORIZE;
    if (cg_vector_width(kc->m) == 16 && tq % 16 == 0) Lq.hint = LOOP_VECTORIZE_16;
    loop_end(kc, &Lt);
    loop_end(kc, &Lq);
    close_loops(kc, L, rank - 1);
    return;
  }
  open_out_loops(kc, L, rank, begin, end);
  emit_point(kc, s);
  bool red = kc->k->red != RED_NONE && kc->k->n_red > 0;
  /* a small window (2x2 pooling) unrolls away: the innermost output loop
   * is then LLVM's to vectorize and unroll */
  set_unroll_hints(L, rank, red ? red_iterations(kc->k) : 1, !red || red_iterations(kc->k) <= UNROLL_MAX_BODY);
  /* a max or argmax over an unrolled window (pooling): vectorize the row */
  RedKind rk = kc->k->red;
  if (red && (rk == RED_MAX || rk == RED_ARGMAX) && red_iterations(kc->k) <= UNROLL_MAX_BODY && rank > 0 &&
      L[rank - 1].trip >= 8)
    L[rank - 1].hint = LOOP_VECTORIZE;
  /* an elementwise row of at least 16 along which the body reads
   * contiguously (a crop of a convolution's padded-width result), on
   * AVX-512 (where LLVM otherwise vectorizes the loop around the unrolled
   * row with gathers; on AVX2 the unrolled row measured faster) */
  if (!red && rank > 1 && cg_vector_width(kc->m) == 16 && L[rank - 1].trip >= 16 && L[rank - 1].trip <= UNROLL_MAX_BODY &&
      cg_unit_stride_along(kc->p, kc->k->body, rank - 1))
    L[rank - 1].hint = LOOP_VECTORIZE_ROW;
  close_loops(kc, L, rank);
}

/* ================= streaming stores ================= */

/* An elementwise kernel whose output is far larger than the last-level
 * cache (the L3 cannot keep it for the next kernel anyway) writes it with
 * non-temporal stores, which skip reading each output line into the cache
 * before overwriting it (a third less memory traffic for y = a + s * b).
 * LLVM's vectorizer will not widen a non-temporal store it cannot align,
 * so the kernel computes chunks of STREAM_CHUNK elements into a buffer on
 * the stack (vectorized as usual, hot in L1) and copies each chunk out
 * with aligned vector stores marked non-temporal; the unaligned head and
 * tail of a chunk are plain stores. An sfence at the end orders the
 * stores before the join that publishes them to the other threads. */
enum {
  STREAM_CHUNK = 64, /* elements: 4 AVX-512 vectors (larger chunks measured slower: 2048 elements 8.0-9.0 ms, 64 6.3-6.6 for the triad) */
  STREAM_MIN_BYTES = 16 * 1024 * 1024,    /* output size from which stores stream */
};

static void overlap_cb(const VExpr *l, void *ctx) {
  void **c = ctx;
  const Program *p = c[0];
  const Kernel *k = c[1];
  if (bufs_overlap(p, l->buf, k->out_buf)) *(bool *)c[2] = true;
}

/* DLC_STREAM=0: plain stores (measurements). */
static bool streaming_on(void) {
  const char *e = getenv("DLC_STREAM");
  return !(e && e[0] == '0');
}

/* Whether e reads every buffer at the kernel's own position (same shape,
 * indices i0, i1, ... unguarded) or whole (rank 0), and uses the loop
 * variables nowhere else: it is then a function of the flat index alone. */
static bool flat_body(const Program *p, const Kernel *k, const VExpr *e) {
  if (!e) return true;
  if (e->ix) return false;
  if (e->op == VX_LOAD && e->rank > 0) {
    const Buffer *B = &p->bufs[e->buf];
    if (e->guard || !shape_eq(&B->shape, &k->shape)) return false;
    for (int d = 0; d < e->rank; d++)
      if (e->idx[d]->op != IX_VAR || e->idx[d]->var != d) return false;
  }
  return flat_body(p, k, e->a) && flat_body(p, k, e->b) && flat_body(p, k, e->c);
}

static bool streaming_plan(const CgModule *m, const Program *p, const Kernel *k) {
  if (k->red != RED_NONE || k->accumulate || k->dtype != DT_F32 || k->shape.rank < 1 || !m->triple ||
      strncmp(m->triple, "x86_64", 6) != 0 || shape_numel(&k->shape) * 4 < STREAM_MIN_BYTES || !streaming_on())
    return false;
  bool reads_out = false;
  void *ctx[3] = {(void *)p, (void *)k, &reads_out};
  visit_loads(k->body, overlap_cb, ctx);
  visit_loads(k->epilogue, overlap_cb, ctx);
  return !reads_out && (k->shape.rank == 1 || (flat_body(p, k, k->body) && flat_body(p, k, k->epilogue)));
}

static void emit_streaming(KernelCg *kc, RedSlots *s, LLVMValueRef begin, LLVMValueRef end) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int vw = cg_vector_width(m);
  LLVMTypeRef vt = LLVMVectorType(m->t_f32, (unsigned)vw);
  LLVMValueRef tmp = LLVMBuildAlloca(b, LLVMArrayType2(m->t_f32, STREAM_CHUNK), "stream.chunk");
  LLVMSetAlignment(tmp, 64);
  LLVMValueRef out = kc->buf[kc->k->out_buf];
  LLVMValueRef CH = cg_i64(m, STREAM_CHUNK), V = cg_i64(m, vw);
  /* more dims: a flat body (streaming_plan) over the flat index, which is
   * the last loop variable with the others 0 */
  int rank = kc->k->shape.rank;
  int64_t inner = shape_numel(&kc->k->shape) / kc->k->shape.d[0];
  begin = LLVMBuildNSWMul(b, begin, cg_i64(m, inner), "");
  end = LLVMBuildNSWMul(b, end, cg_i64(m, inner), "");
  for (int d = 0; d < rank - 1; d++) kc->var[d] = cg_i64(m, 0);
#define MINI(x, y) LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, (x), (y), ""), (x), (y), "")
#define MAXI(x, y) LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, (x), (y), ""), (x), (y), "")
  /* chunks q * CH .. (q + 1) * CH, clipped to [begin, end) */
  Loop Lq, Lj, Lh, Lv, Lt;
  LLVMValueRef q = loop_begin(kc, &Lq, LLVMBuildSDiv(b, begin, CH, ""),
                              LLVMBuildSDiv(b, LLVMBuildNSWAdd(b, end, cg_i64(m, STREAM_CHUNK - 1), ""), CH, ""), "sq");
  LLVMValueRef qs = LLVMBuildNSWMul(b, q, CH, "");
  LLVMValueRef c0 = MAXI(begin, qs), c1 = MINI(end, LLVMBuildNSWAdd(b, qs, CH, ""));
  kc->out_tmp = tmp;
  kc->out_tmp_base = c0;
  kc->var[rank - 1] = loop_begin(kc, &Lj, c0, c1, "sj");
  emit_point(kc, s);
  loop_end(kc, &Lj);
  kc->out_tmp = NULL;
  /* a0: the first element of the chunk on a vector boundary of memory */
  LLVMValueRef addr = LLVMBuildPtrToInt(b, LLVMBuildInBoundsGEP2(b, m->t_f32, out, &c0, 1, ""), m->t_i64, "");
  LLVMValueRef mis = LLVMBuildAnd(b, LLVMBuildLShr(b, addr, cg_i64(m, 2), ""), cg_i64(m, vw - 1), "");
  LLVMValueRef head = LLVMBuildAnd(b, LLVMBuildSub(b, V, mis, ""), cg_i64(m, vw - 1), "");
  LLVMValueRef a0 = MINI(LLVMBuildNSWAdd(b, c0, head, ""), c1);
  LLVMValueRef nv = LLVMBuildSDiv(b, LLVMBuildNSWSub(b, c1, a0, ""), V, "");
  LLVMValueRef a1 = LLVMBuildNSWAdd(b, a0, LLVMBuildNSWMul(b, nv, V, ""), "");
  /* plain stores of [c0, a0) and [a1, c1) */
  LLVMValueRef i = loop_begin(kc, &Lh, c0, a0, "sh");
  LLVMValueRef ti = LLVMBuildNSWSub(b, i, c0, "");
  LLVMBuildStore(b, LLVMBuildLoad2(b, m->t_f32, LLVMBuildInBoundsGEP2(b, m->t_f32, tmp, &ti, 1, ""), ""),
                 LLVMBuildInBoundsGEP2(b, m->t_f32, out, &i, 1, ""));
  Lh.hint = LOOP_NO_VECTORIZE;
  loop_end(kc, &Lh);
  LLVMValueRef t = loop_begin(kc, &Lv, cg_i64(m, 0), nv, "sv");
  LLVMValueRef o = LLVMBuildNSWAdd(b, a0, LLVMBuildNSWMul(b, t, V, ""), "");
  LLVMValueRef to = LLVMBuildNSWSub(b, o, c0, "");
  LLVMValueRef x = LLVMBuildLoad2(b, vt, LLVMBuildInBoundsGEP2(b, m->t_f32, tmp, &to, 1, ""), "");
  LLVMSetAlignment(x, 4);
  LLVMValueRef st = LLVMBuildStore(b, x, LLVMBuildInBoundsGEP2(b, m->t_f32, out, &o, 1, ""));
  LLVMSetAlignment(st, (unsigned)(vw * 4));
  LLVMMetadataRef one = LLVMValueAsMetadata(cg_i32(m, 1));
  LLVMSetMetadata(st, LLVMGetMDKindIDInContext(m->ctx, "nontemporal", 11),
                  LLVMMetadataAsValue(m->ctx, LLVMMDNodeInContext2(m->ctx, &one, 1)));
  Lv.hint = LOOP_NO_VECTORIZE;
  loop_end(kc, &Lv);
  i = loop_begin(kc, &Lt, a1, c1, "st");
  ti = LLVMBuildNSWSub(b, i, c0, "");
  LLVMBuildStore(b, LLVMBuildLoad2(b, m->t_f32, LLVMBuildInBoundsGEP2(b, m->t_f32, tmp, &ti, 1, ""), ""),
                 LLVMBuildInBoundsGEP2(b, m->t_f32, out, &i, 1, ""));
  Lt.hint = LOOP_NO_VECTORIZE;
  loop_end(kc, &Lt);
  Lq.hint = LOOP_NO_UNROLL;
  loop_end(kc, &Lq);
  cg_intrinsic(m, b, "llvm.x86.sse.sfence", NULL, 0, NULL, 0);
#undef MINI
#undef MAXI
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
 * When J = 0 the row is [begin, end) itself. With a plane (reorder_plane)
 * the row is the last two dims: `for j in row` is two nested loops. Each
 * element still sums its terms in reduction order, so the result does not
 * depend on threading. */
static void open_row(KernelCg *kc, Loop *L, int nrow, LLVMValueRef jlo, LLVMValueRef jhi, const char *name) {
  const Kernel *k = kc->k;
  int J0 = k->shape.rank - nrow;
  for (int d = J0; d < k->shape.rank; d++) {
    char nm[32];
    snprintf(nm, sizeof nm, "%s%d", name, d - J0);
    LLVMValueRef lo = d == J0 ? jlo : cg_i64(kc->m, 0);
    LLVMValueRef hi = d == J0 ? jhi : cg_i64(kc->m, k->shape.d[d]);
    kc->var[d] = loop_begin(kc, &L[d - J0], lo, hi, nm);
  }
}

/* out[o, row]: the linear offset from the row's base */
static LLVMValueRef row_offset(KernelCg *kc, int nrow) {
  const Kernel *k = kc->k;
  int J0 = k->shape.rank - nrow;
  return cg_linear(kc, &kc->var[J0], &k->shape.d[J0], nrow);
}

/* The row of partials' element for the row position of kc->var (rel0:
 * the row's first position, relative to out[o, 0]). */
static LLVMValueRef partial_ptr(KernelCg *kc, LLVMValueRef tmp, int nrow, LLVMValueRef rel0) {
  LLVMValueRef i = LLVMBuildNSWSub(kc->b, row_offset(kc, nrow), rel0, "");
  return LLVMBuildInBoundsGEP2(kc->b, kc->m->t_f32, tmp, &i, 1, "");
}

/* A long float sum in the reordered nest (more than SUM_BLOCK terms per
 * element) adds its terms block by block into a row of partials on the
 * stack, each block's row then into the output (see SUM_BLOCK); rows of at
 * most ROW_PARTIALS elements. */
enum { ROW_PARTIALS = 4096 };

static void emit_reordered_nest(KernelCg *kc, LLVMValueRef begin, LLVMValueRef end) {
  const Kernel *k = kc->k;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int nrow = reorder_plane(kc->p, k) ? 2 : 1;
  int J0 = k->shape.rank - nrow; /* first row dim */
  LLVMTypeRef et = cg_dtype(m, k->dtype);
  LLVMValueRef zero = k->dtype == DT_F32 ? cg_f32(m, 0.0) : cg_i32(m, 0);
  Loop L[IR_MAX_RANK], R[IR_MAX_RANK], Z[2], A[2], E[2], Q[2], BL;
  /* blocks: reduction levels [0, c) outside a block, [c, n_red) inside;
   * the last level in blocks of its own when it alone is too long */
  int64_t rowmax = 1, inner = 1;
  for (int d = J0; d < k->shape.rank; d++) rowmax *= k->shape.d[d];
  int c = k->n_red;
  while (c > 0 && inner * k->red_ext[c - 1] <= SUM_BLOCK) inner *= k->red_ext[--c];
  bool blocked = k->red == RED_SUM && k->dtype == DT_F32 && red_iterations(k) > SUM_BLOCK && rowmax <= ROW_PARTIALS;
  bool split_last = blocked && c == k->n_red;
  if (split_last) c = k->n_red - 1;
  LLVMValueRef tmp = blocked ? LLVMBuildAlloca(b, LLVMArrayType2(m->t_f32, (uint64_t)rowmax), "row.partials") : NULL;
  open_out_loops(kc, L, J0, begin, end);
  LLVMValueRef jlo = J0 == 0 ? begin : cg_i64(m, 0);
  LLVMValueRef jhi = J0 == 0 ? end : cg_i64(m, k->shape.d[J0]);
  for (int d = J0; d < k->shape.rank; d++) kc->var[d] = cg_i64(m, 0);
  LLVMValueRef base = cg_linear(kc, kc->var, k->shape.d, k->shape.rank); /* out[o, 0] */
  LLVMValueRef rel0 = NULL; /* the row's first element, relative to out[o, 0] */
  if (blocked) {
    kc->var[J0] = jlo;
    rel0 = row_offset(kc, nrow);
  }

  open_row(kc, Z, nrow, jlo, jhi, "zero");
  LLVMBuildStore(b, zero, out_ptr(kc, LLVMBuildNSWAdd(b, base, row_offset(kc, nrow), "")));
  close_loops(kc, Z, nrow);

  /* the reduction levels outside a block, or all of them */
  for (int r = 0; r < (blocked ? c : k->n_red); r++) {
    char nm[16];
    snprintf(nm, sizeof nm, "r%d", r);
    kc->var[k->shape.rank + r] = loop_begin(kc, &R[r], cg_i64(m, 0), cg_i64(m, k->red_ext[r]), nm);
  }
  LLVMValueRef acc_base = base; /* where the terms add: out, or the block's partials */
  if (blocked) {
    LLVMValueRef lo = NULL, hi = NULL;
    if (split_last) {
      int64_t T = k->red_ext[c];
      LLVMValueRef blk = loop_begin(kc, &BL, cg_i64(m, 0), cg_i64(m, (T + SUM_BLOCK - 1) / SUM_BLOCK), "rblk");
      lo = LLVMBuildNSWMul(b, blk, cg_i64(m, SUM_BLOCK), "");
      hi = min_i64(b, LLVMBuildNSWAdd(b, lo, cg_i64(m, SUM_BLOCK), ""), cg_i64(m, T));
    }
    open_row(kc, Q, nrow, jlo, jhi, "pzero");
    LLVMBuildStore(b, zero, partial_ptr(kc, tmp, nrow, rel0));
    close_loops(kc, Q, nrow);
    for (int r = c; r < k->n_red; r++) {
      char nm[16];
      snprintf(nm, sizeof nm, "r%d", r);
      LLVMValueRef rlo = split_last ? lo : cg_i64(m, 0), rhi = split_last ? hi : cg_i64(m, k->red_ext[r]);
      kc->var[k->shape.rank + r] = loop_begin(kc, &R[r], rlo, rhi, nm);
      R[r].trip = k->red_ext[r]; /* (a block of it: the unroll policy sees the level) */
    }
    acc_base = NULL;
  }
  open_row(kc, A, nrow, jlo, jhi, "row");
  LLVMValueRef x = cg_vx(kc, k->body);
  LLVMValueRef ptr = acc_base ? out_ptr(kc, LLVMBuildNSWAdd(b, base, row_offset(kc, nrow), ""))
                              : partial_ptr(kc, tmp, nrow, rel0);
  LLVMValueRef old = LLVMBuildLoad2(b, et, ptr, "");
  LLVMBuildStore(b, add_of(kc, k->dtype, old, x), ptr);
  {
    Loop all[IR_MAX_RANK + 2];
    memcpy(all, R, sizeof(Loop) * (size_t)k->n_red);
    for (int i = 0; i < nrow; i++) all[k->n_red + i] = A[i];
    set_unroll_hints(all, k->n_red + nrow, 1, true);
    for (int r = 0; r < k->n_red; r++) R[r].hint = all[r].hint;
    for (int i = 0; i < nrow; i++) A[i].hint = all[k->n_red + i].hint;
    /* a short row with a guard along it (padding): unrolled, the guard
     * folds to a constant at every position but the edges. Vectorized
     * instead, the masks cost more than the loads, and the output row
     * stored per term stalls the masked loads (4K aliasing of the planes). */
    if (guarded_along(k->body, k->shape.rank - 1) && A[nrow - 1].trip > 0 && A[nrow - 1].trip <= ROW_UNROLL_MAX)
      A[nrow - 1].hint = LOOP_FULL_UNROLL;
  }
  close_loops(kc, A, nrow);
  if (blocked) {
    close_loops(kc, R + c, k->n_red - c);
    /* out[o, row] += the block's partials */
    open_row(kc, Q, nrow, jlo, jhi, "padd");
    LLVMValueRef po = out_ptr(kc, LLVMBuildNSWAdd(b, base, row_offset(kc, nrow), ""));
    LLVMValueRef pp = partial_ptr(kc, tmp, nrow, rel0);
    LLVMBuildStore(b, add_of(kc, DT_F32, LLVMBuildLoad2(b, et, po, ""), LLVMBuildLoad2(b, et, pp, "")), po);
    close_loops(kc, Q, nrow);
    if (split_last) {
      BL.hint = LOOP_NO_UNROLL;
      loop_end(kc, &BL);
    }
    for (int r = 0; r < c; r++) R[r].hint = LOOP_NO_UNROLL;
    close_loops(kc, R, c);
  } else {
    close_loops(kc, R, k->n_red);
  }

  if (k->epilogue) {
    open_row(kc, E, nrow, jlo, jhi, "epi");
    ptr = out_ptr(kc, LLVMBuildNSWAdd(b, base, row_offset(kc, nrow), ""));
    DType vdt = k->dtype;
    LLVMValueRef v = apply_epilogue(kc, LLVMBuildLoad2(b, et, ptr, ""), &vdt);
    LLVMBuildStore(b, cg_convert(kc, v, vdt, k->dtype), ptr);
    close_loops(kc, E, nrow);
  }
  int64_t rowlen = A[0].trip;
  for (int i = 1; i < nrow && rowlen >= 0; i++) rowlen = A[i].trip < 0 ? -1 : rowlen * A[i].trip;
  set_unroll_hints(L, J0, rowlen < 0 ? -1 : rowlen * red_iterations(k), false);
  close_loops(kc, L, J0);
}

/* ================= structural keys (sharing of bodies) ================= */

typedef struct {
  char *s;
  size_t n, cap;
  const int *ord; /* buffer -> parameter ordinal */
  int n_bufs;
} KeyBuf;

static void kb_put(KeyBuf *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kb_put(KeyBuf *k, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (len < 0) return;
  if ((size_t)len >= sizeof tmp) len = (int)sizeof tmp - 1;
  if (k->n + (size_t)len + 1 > k->cap) {
    size_t nc = k->cap ? k->cap * 2 : 1024;
    while (nc < k->n + (size_t)len + 1) nc *= 2;
    char *ns = realloc(k->s, nc);
    if (!ns) return;
    k->s = ns;
    k->cap = nc;
  }
  memcpy(k->s + k->n, tmp, (size_t)len);
  k->n += (size_t)len;
  k->s[k->n] = 0;
}

static int kb_ord(const KeyBuf *k, int buf) { return buf >= 0 && buf < k->n_bufs ? k->ord[buf] : -2; }

static void key_ix(KeyBuf *k, const IExpr *e) {
  if (!e) {
    kb_put(k, "_");
    return;
  }
  switch (e->op) {
  case IX_CONST: kb_put(k, "c%lld", (long long)e->v); return;
  case IX_VAR: kb_put(k, "v%d", e->var); return;
  default:
    kb_put(k, "(%d ", (int)e->op);
    key_ix(k, e->a);
    kb_put(k, " ");
    key_ix(k, e->b);
    kb_put(k, ")");
  }
}

static void key_vx(KeyBuf *k, const VExpr *e) {
  if (!e) {
    kb_put(k, "_");
    return;
  }
  uint32_t fb;
  memcpy(&fb, &e->f, sizeof fb);
  kb_put(k, "[%d %d %x %d", (int)e->op, (int)e->dtype, fb, (int)e->i);
  switch (e->op) {
  case VX_LOAD:
    kb_put(k, " b%d r%d", kb_ord(k, e->buf), e->rank);
    for (int d = 0; d < e->rank; d++) {
      kb_put(k, " ");
      key_ix(k, e->idx[d]);
    }
    kb_put(k, " g");
    key_ix(k, e->guard);
    break;
  case VX_INDEX: key_ix(k, e->ix); break;
  case VX_RAND:
    kb_put(k, " b%d s%llx ", kb_ord(k, e->buf), (unsigned long long)e->salt);
    key_ix(k, e->ix);
    break;
  default: break;
  }
  if (e->a) key_vx(k, e->a);
  if (e->b) key_vx(k, e->b);
  if (e->c) key_vx(k, e->c);
  kb_put(k, "]");
}

/* Everything K.body's code depends on, with buffers as parameter ordinals. */
static char *kernel_key(const Program *p, const Kernel *k, const int *pbuf, int nparams, bool noalias,
                        const bool *same) {
  int *ord = malloc(sizeof(int) * ((size_t)p->n_bufs + 1));
  for (int i = 0; i < p->n_bufs; i++) ord[i] = -1;
  for (int i = 0; i < nparams; i++) ord[pbuf[i]] = i;
  for (int i = 0; i < p->n_bufs; i++)
    if (same[i]) ord[i] = ord[k->out_buf];
  KeyBuf kb = {NULL, 0, 0, ord, p->n_bufs};
  kb_put(&kb, "dt%d red%d acc%d out%d na%d rng%d |", (int)k->dtype, (int)k->red, (int)k->accumulate,
         kb_ord(&kb, k->out_buf), (int)noalias, kb_ord(&kb, p->rng_buf));
  for (int d = 0; d < k->shape.rank; d++) kb_put(&kb, " %lld", (long long)k->shape.d[d]);
  kb_put(&kb, " |");
  for (int r = 0; r < k->n_red; r++) kb_put(&kb, " %lld", (long long)k->red_ext[r]);
  for (int i = 0; i < nparams; i++) {
    const Buffer *B = &p->bufs[pbuf[i]];
    kb_put(&kb, " |p%d", (int)B->dtype);
    for (int d = 0; d < B->shape.rank; d++) kb_put(&kb, " %lld", (long long)B->shape.d[d]);
  }
  kb_put(&kb, " |body ");
  key_vx(&kb, k->body);
  kb_put(&kb, " |epi ");
  key_vx(&kb, k->epilogue);
  free(ord);
  return kb.s;
}

static CgBodyKey *find_body(CgModule *m, const char *key) {
  for (int i = 0; i < m->n_bodies; i++)
    if (strcmp(m->bodies[i].key, key) == 0) return &m->bodies[i];
  return NULL;
}

static void remember_body(CgModule *m, char *key, LLVMValueRef fn) {
  if (m->n_bodies == m->cap_bodies) {
    int nc = m->cap_bodies ? 2 * m->cap_bodies : 64;
    CgBodyKey *nb = realloc(m->bodies, sizeof *nb * (size_t)nc);
    if (!nb) {
      free(key);
      return;
    }
    m->bodies = nb;
    m->cap_bodies = nc;
  }
  m->bodies[m->n_bodies++] = (CgBodyKey){key, fn, 1};
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

/* K(void *ctx, i64 begin, i64 end): loads bufs[i] of every parameter and
 * calls the body. Never inlined into the entries (they stay a list of
 * calls: inlining made them huge and slow to compile). */
static LLVMValueRef emit_wrapper(CgModule *m, const Program *p, const Kernel *k, LLVMValueRef body,
                                 const int *pbuf, int nparams) {
  LLVMValueRef fn = LLVMAddFunction(m->mod, k->name, m->t_kernel);
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  cg_add_fn_attrs(m, fn);
  add_param_attr(m, fn, LLVMAttributeFunctionIndex, "noinline", 0);
  if (LLVMGetEnumAttributeAtIndex(body, LLVMAttributeFunctionIndex, LLVMGetEnumAttributeKindForName("optsize", 7)))
    add_param_attr(m, fn, LLVMAttributeFunctionIndex, "optsize", 0);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(m->ctx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
  LLVMValueRef *args = calloc((size_t)nparams + 2, sizeof *args);
  LLVMValueRef ctx = LLVMGetParam(fn, 0);
  for (int i = 0; i < nparams; i++) {
    /* a view (Buffer.alias) reads its root's slot: same memory */
    LLVMValueRef ix = cg_i64(m, buf_root(p, pbuf[i]));
    LLVMValueRef slot = LLVMBuildInBoundsGEP2(b, m->t_ptr, ctx, &ix, 1, "");
    args[i] = LLVMBuildLoad2(b, m->t_ptr, slot, p->bufs[pbuf[i]].name ? p->bufs[pbuf[i]].name : "");
  }
  args[nparams] = LLVMGetParam(fn, 1);
  args[nparams + 1] = LLVMGetParam(fn, 2);
  LLVMBuildCall2(b, LLVMGlobalGetValueType(body), body, args, (unsigned)nparams + 2, "");
  LLVMBuildRetVoid(b);
  free(args);
  LLVMDisposeBuilder(b);
  return fn;
}

/* ================= per-image fusion ================= */

/* Whether kernel K reads buffer t or a view of it. */
static bool reads_buf(const Program *p, const Kernel *K, int t) {
  bool *u = kernel_buffers(p, K);
  if (!u) return true;
  u[K->out_buf] = false;
  bool r = false;
  for (int i = 0; i < p->n_bufs && !r; i++) r = u[i] && buf_root(p, i) == t;
  free(u);
  return r;
}

/* u |= the buffers kernel K touches; false on a bad buffer index. */
static bool add_buffers(const Program *p, bool *u, const Kernel *K) {
  bool *v = kernel_buffers(p, K);
  if (!v) return false;
  for (int i = 0; i < p->n_bufs; i++) u[i] |= v[i];
  free(v);
  return true;
}

/* The buffers the fused pair (a, b) touches: both kernels' minus a's
 * result, which lives in scratch (calloc'ed; NULL on a bad index). */
static bool *pair_buffers(const Program *p, const Kernel *a, const Kernel *b) {
  bool *u = kernel_buffers(p, a);
  if (u && !add_buffers(p, u, b)) {
    free(u);
    return NULL;
  }
  if (u) u[a->out_buf] = false;
  return u;
}

/* Per-image fusion pays while one image's slice of the fused result stays
 * in L2 next to the GEMM's packed block (LeNet-5: 60-80 KB; the 0.3-1.2 MB
 * slices of the small VGG ran as fast or slower fused). */
enum { FUSE_MAX_SLICE_BYTES = KIR_IMAGE_SLICE_BYTES };

/* Only kernel w writes buffer t (or a view of it) and only r reads it, in
 * every entry. */
static bool private_to(const Program *p, int t, const Kernel *w, const Kernel *r) {
  for (int i = 0; i < p->n_bufs; i++)
    if (p->bufs[i].alias == t) return false;
  for (int e = 0; e < ENTRY__COUNT; e++)
    for (int i = 0; i < p->entries[e].n_kernels; i++) {
      const Kernel *K = p->entries[e].kernels[i];
      if (K == w || K == r) continue;
      if (buf_root(p, K->out_buf) == t || reads_buf(p, K, t)) return false;
    }
  return true;
}

/* Whether nothing the fused pair (a, b) reads shares memory with b's output
 * (a's inputs are read for later images after b wrote earlier ones), but,
 * with in_place, what b alone reads at its own index (memplan's in-place
 * slots, bound to b's output pointer as for b alone; not for a scatter,
 * which zeroes its plane before its epilogue reads). */
static bool follower_output_ok(const Program *p, const Kernel *a, const Kernel *b, bool in_place) {
  bool *u = pair_buffers(p, a, b), *ua = kernel_buffers(p, a);
  bool ok = u && ua && !ua[b->out_buf];
  for (int i = 0; ok && i < p->n_bufs; i++)
    if (u[i] && i != b->out_buf && bufs_overlap(p, i, b->out_buf) && (!in_place || ua[i] || !same_as_out(p, b, i)))
      ok = false;
  free(u);
  free(ua);
  return ok;
}

/* Whether every load of buffer t in e indexes its dim 0 with var 0. */
static bool loads_own_image(const VExpr *e, int t) {
  if (!e) return true;
  if (e->op == VX_LOAD && e->buf == t && (e->rank < 1 || e->idx[0]->op != IX_VAR || e->idx[0]->var != 0)) return false;
  return loads_own_image(e->a, t) && loads_own_image(e->b, t) && loads_own_image(e->c, t);
}

/* An elementwise kernel b after a batched product a, reading a's result
 * only at its own image (the crop of a convolution's padded-width result,
 * with its bias, activation and the next layer's zero pad; a data
 * gradient's crop with the ReLU mask): b runs image by image right after
 * a's GEMM of that image, reading the image's result from scratch while it
 * is in L2, and a's result never goes to memory. */
static bool then_plain_fusable(const CgModule *m, const Program *p, const Kernel *a, const Kernel *b) {
  GemmPlan g;
  int t = a->out_buf;
  const Buffer *T = &p->bufs[t];
  if (a->red != RED_SUM || b->red != RED_NONE || b->accumulate || b->shape.rank < 2 || !b->body ||
      !kir_reads_root(p, b->body, t) || T->role != BUF_TEMP || T->alias >= 0 || T->shape.rank < 2 ||
      !loads_own_image(b->body, t) || !loads_own_image(b->epilogue, t))
    return false;
  if (!cg_gemm_plan(m, p, a, &g) || g.dot || g.tc || g.ct || !g.by_batch || g.nb != 1 || b->shape.d[0] != g.batch ||
      T->shape.d[0] != g.batch || g.M * g.N * g.batch != shape_numel(&T->shape) || 4 * g.M * g.N > FUSE_MAX_SLICE_BYTES ||
      !private_to(p, t, a, b))
    return false;
  return follower_output_ok(p, a, b, true);
}

static bool then_fusable(const CgModule *m, const Program *p, const Kernel *a, const Kernel *b) {
  GemmPlan g;
  Scatter sc;
  if (then_plain_fusable(m, p, a, b)) return true;
  /* cheap tests first: b a 2-D sum over a load of a's result */
  if (a->red != RED_SUM || b->red != RED_SUM || b->n_red != 2 || b->shape.rank != 4 || !b->body ||
      b->body->op != VX_LOAD || b->body->buf != a->out_buf)
    return false;
  if (!cg_gemm_plan(m, p, a, &g) || g.dot || g.tc || !g.by_batch || g.nb != 1 || !scatter_plan(p, b, &sc))
    return false;
  int t = a->out_buf;
  const Buffer *T = &p->bufs[t];
  if (sc.d != t || T->role != BUF_TEMP || T->alias >= 0 || b->shape.d[0] != g.batch ||
      g.M * g.N != sc.C * sc.KH * sc.KW * sc.OH * sc.OW || 4 * g.M * g.N > FUSE_MAX_SLICE_BYTES ||
      !private_to(p, t, a, b))
    return false;
  return follower_output_ok(p, a, b, false);
}

/* Every load of buffer t in e reads slice i0 of dim 0 at the kernel's own
 * var 0 (no other index of it uses var 0); *n counts them. */
typedef struct {
  const Program *p;
  int t, n;
  bool ok;
} SliceScan;

static void slice_cb(const VExpr *l, void *ctx) {
  SliceScan *s = ctx;
  if (buf_root(s->p, l->buf) != s->t) return;
  s->n++;
  if (l->buf != s->t || l->rank < 1 || l->idx[0]->op != IX_VAR || l->idx[0]->var != 0) s->ok = false;
  for (int d = 1; d < l->rank && s->ok; d++)
    if (ix_uses_var(l->idx[d], 0)) s->ok = false;
  if (l->guard && ix_uses_var(l->guard, 0)) s->ok = false;
}

/* lead (no reduction, dim 0 = a's batch) right before GEMM a, which reads
 * lead's result image by image through a fast operand; *local: only a
 * reads it (it can live in scratch). */
static bool lead_fusable(const CgModule *m, const Program *p, const Kernel *lead, const Kernel *a, bool *local) {
  GemmPlan g;
  if (a->red != RED_SUM || lead->red != RED_NONE || lead->n_red || !a->body || a->body->op != VX_MUL ||
      !((a->body->a->op == VX_LOAD && a->body->a->buf == lead->out_buf) ||
        (a->body->b->op == VX_LOAD && a->body->b->buf == lead->out_buf)))
    return false;
  if (lead->accumulate || lead->epilogue || lead->shape.rank < 2 || !cg_gemm_plan(m, p, a, &g) || g.dot ||
      g.tc || !g.by_batch || g.nb != 1 || lead->shape.d[0] != g.batch)
    return false;
  int t = lead->out_buf;
  const Buffer *T = &p->bufs[t];
  if (T->role != BUF_TEMP || T->alias >= 0 || 4 * shape_numel(&T->shape) / g.batch > FUSE_MAX_SLICE_BYTES)
    return false;
  bool fast = false;
  for (int w = 0; w < 2; w++)
    if ((w == 0 ? g.P : g.Q)->buf == t) fast = g.op[w].fast;
  SliceScan sa = {p, t, 0, true}, sl = {p, t, 0, true};
  visit_loads(a->body, slice_cb, &sa);
  int body_reads = sa.n;
  visit_loads(a->epilogue, slice_cb, &sa);
  visit_loads(lead->body, slice_cb, &sl);
  if (!fast || !sa.ok || sa.n == 0 || sl.n) return false;
  /* a's output shares no memory with what lead reads or writes (lead runs
   * for later images after a wrote earlier ones), lead's result none with
   * what a reads */
  bool *ul = kernel_buffers(p, lead), *ua = kernel_buffers(p, a);
  bool ok = ul && ua;
  if (ok) ul[t] = false; /* (its own output, checked below) */
  for (int i = 0; i < p->n_bufs && ok; i++) {
    if (ul[i] && bufs_overlap(p, i, a->out_buf)) ok = false;
    if (ua[i] && i != t && i != a->out_buf && bufs_overlap(p, i, t)) ok = false;
  }
  if (ok && bufs_overlap(p, t, a->out_buf)) ok = false;
  free(ul);
  free(ua);
  if (!ok) return false;
  /* in scratch, the result holds one image, read by the GEMM's operand at
   * its slice base; an epilogue reading it (a residual of the product's own
   * input) indexes whole images, so the result stays in memory then */
  *local = sa.n == body_reads && private_to(p, t, lead, a);
  return true;
}

/* With both a leader and a follower: nothing the three read shares memory
 * with what the follower or the leader writes (images of one kernel are
 * read after images of another were written). */
static bool group_safe(const Program *p, const Kernel *lead, const Kernel *a, const Kernel *then) {
  bool *r = pair_buffers(p, a, then), *rl = kernel_buffers(p, lead);
  bool ok = r && rl;
  for (int i = 0; ok && i < p->n_bufs; i++) {
    bool rd = (r[i] || rl[i]) && i != lead->out_buf && i != a->out_buf;
    if (rd && i != then->out_buf && bufs_overlap(p, i, then->out_buf)) ok = false;
    if (rd && i != then->out_buf && bufs_overlap(p, i, lead->out_buf)) ok = false;
  }
  if (ok && bufs_overlap(p, lead->out_buf, then->out_buf)) ok = false;
  free(r);
  free(rl);
  return ok;
}

struct CgFusionMemo {
  const Kernel *k;
  CgFusion f;
};

static bool fusion_of(const CgModule *m, const Program *p, const Kernel *a, CgFusion *f);

/* Memoised per module (the checks evaluate index maps over whole images). */
bool cg_fusion(CgModule *m, const Program *p, const Kernel *a, CgFusion *f) {
  for (int i = 0; i < m->n_fusions; i++)
    if (m->fusions[i].k == a) {
      *f = m->fusions[i].f;
      return f->lead || f->then;
    }
  bool r = fusion_of(m, p, a, f);
  if (m->n_fusions == m->cap_fusions) {
    int nc = m->cap_fusions ? 2 * m->cap_fusions : 64;
    struct CgFusionMemo *nf = realloc(m->fusions, sizeof *nf * (size_t)nc);
    if (!nf) return r;
    m->fusions = nf;
    m->cap_fusions = nc;
  }
  m->fusions[m->n_fusions++] = (struct CgFusionMemo){a, *f};
  return r;
}

static bool fusion_of(const CgModule *m, const Program *p, const Kernel *a, CgFusion *f) {
  memset(f, 0, sizeof *f);
  const char *env = getenv("DLC_IMAGE_FUSION"); /* =0: off (measurements) */
  if (env && *env == '0') return false;
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    for (int i = 0; i < en->n_kernels; i++) {
      if (en->kernels[i] != a) continue;
      /* a follower that could lead the product after it (column-shifted
       * copies of a convolution's result) is left to that one: a kernel is
       * fused into one group at most */
      bool loc;
      if (i + 1 < en->n_kernels && then_fusable(m, p, a, en->kernels[i + 1]) &&
          !(i + 2 < en->n_kernels && lead_fusable(m, p, en->kernels[i + 1], en->kernels[i + 2], &loc)))
        f->then = en->kernels[i + 1];
      if (i > 0 && lead_fusable(m, p, en->kernels[i - 1], a, &f->lead_local)) f->lead = en->kernels[i - 1];
      if (f->lead && f->then && !group_safe(p, f->lead, a, f->then)) f->lead = NULL;
      return f->lead || f->then;
    }
  }
  return false;
}

/* Whether kernel i of en runs inside a neighbouring product's call. */
static bool image_fused_away(CgModule *m, const Program *p, const Entry *en, int i) {
  CgFusion f;
  if (i > 0 && cg_fusion(m, p, en->kernels[i - 1], &f) && f.then == en->kernels[i]) return true;
  if (i + 1 < en->n_kernels && cg_fusion(m, p, en->kernels[i + 1], &f) && f.lead == en->kernels[i]) return true;
  return false;
}

/* ================= elementwise chains ================= */

/* Consecutive elementwise kernels over one iteration space, each reading
 * what the others write only at its own position and sharing a stream
 * with them (an optimizer's updates of one parameter: the momentum, then
 * the parameter from it; Adam's two moments, then the parameter), run as
 * one call: one loop over blocks of CHAIN_BLOCK elements along dim 0 that
 * runs the kernels' nests one after the other on each block. A result the
 * next kernel reads comes back from L1 instead of memory (SGD with
 * momentum: 6 streams of the parameter's size -> 5; Adam 10 -> 7), and the
 * results are those of the kernels run one by one. DLC_CHAIN=0: off. */
enum { CHAIN_MAX = CG_CHAIN_MAX, CHAIN_BLOCK = 4096 };

static bool chain_on(void) {
  const char *e = getenv("DLC_CHAIN");
  return !(e && e[0] == '0');
}

/* Loads (and random draws, which read the rng buffer) of memory shared
 * with buffer t: hit when there is one, ok while each reads t itself at
 * the kernel's own position (a dim of extent 1 may be indexed by 0). */
typedef struct {
  const Program *p;
  const Kernel *k;
  int t;
  bool hit, ok;
} OwnScan;

static void own_scan(const VExpr *e, OwnScan *s) {
  if (!e) return;
  if (e->op == VX_RAND && s->p->rng_buf >= 0 && bufs_overlap(s->p, s->p->rng_buf, s->t)) s->hit = true, s->ok = false;
  if (e->op == VX_LOAD && e->buf >= 0 && e->buf < s->p->n_bufs && bufs_overlap(s->p, e->buf, s->t)) {
    s->hit = true;
    if (e->buf != s->t || e->guard || e->rank != s->k->shape.rank) s->ok = false;
    for (int d = 0; d < e->rank && s->ok; d++) {
      const IExpr *x = e->idx[d];
      if (!((x->op == IX_VAR && x->var == d) || (x->op == IX_CONST && x->v == 0 && s->k->shape.d[d] == 1)))
        s->ok = false;
    }
  }
  own_scan(e->a, s);
  own_scan(e->b, s);
  own_scan(e->c, s);
}

/* Whether k reads t's memory only as t at its own position (*hit: at all). */
static bool reads_own_only(const Program *p, const Kernel *k, int t, bool *hit) {
  OwnScan s = {p, k, t, false, true};
  own_scan(k->body, &s);
  own_scan(k->epilogue, &s);
  *hit = s.hit;
  return s.ok;
}

/* An elementwise kernel that runs as the standard nest. */
static bool chainable(const Program *p, const Kernel *k) {
  return k->red == RED_NONE && k->n_red == 0 && !k->accumulate && k->body && k->shape.rank >= 1 &&
         k->shape.rank <= IR_MAX_RANK && k->out_buf >= 0 && k->out_buf < p->n_bufs;
}

/* Whether b can join the chain c[0..n): same iteration space, no output
 * shared, each reads the other's output only at its own position, and b
 * reads an output of the chain or an input of the chain's size. */
static bool chain_link(const Program *p, const Kernel *const *c, int n, const Kernel *b) {
  if (!shape_eq(&b->shape, &c[0]->shape)) return false;
  bool shares = false, hit;
  for (int j = 0; j < n; j++) {
    const Kernel *a = c[j];
    if (bufs_overlap(p, a->out_buf, b->out_buf)) return false;
    if (!reads_own_only(p, b, a->out_buf, &hit)) return false;
    shares |= hit;
    if (!reads_own_only(p, a, b->out_buf, &hit)) return false;
  }
  if (shares) return true;
  bool *ub = kernel_buffers(p, b);
  for (int j = 0; j < n && ub && !shares; j++) {
    bool *ua = kernel_buffers(p, c[j]);
    for (int i = 0; ua && i < p->n_bufs && !shares; i++)
      shares = ua[i] && ub[i] && i != b->out_buf && i != c[j]->out_buf &&
               shape_numel(&p->bufs[i].shape) == shape_numel(&b->shape);
    free(ua);
  }
  free(ub);
  return shares;
}

struct CgChainMemo {
  const Entry *en;
  int *len; /* [n_kernels]: > 1 at a chain's first kernel, 0 at the others it holds, else 1 */
};

/* The chains of entry en (memoised in m). */
static const int *entry_chains(CgModule *m, const Program *p, const Entry *en) {
  for (int i = 0; i < m->n_chains; i++)
    if (m->chains[i].en == en) return m->chains[i].len;
  int n = en->n_kernels;
  int *len = calloc((size_t)n + 1, sizeof *len);
  if (!len) return NULL;
  bool on = chain_on();
  for (int i = 0; i < n;) {
    const Kernel *c[CHAIN_MAX];
    int k = 0;
    if (on && chainable(p, en->kernels[i]) && !image_fused_away(m, p, en, i)) {
      c[k++] = en->kernels[i];
      while (i + k < n && k < CHAIN_MAX && chainable(p, en->kernels[i + k]) && !image_fused_away(m, p, en, i + k) &&
             chain_link(p, c, k, en->kernels[i + k]))
        c[k] = en->kernels[i + k], k++;
    }
    if (k < 2) k = 1;
    len[i] = k;
    i += k;
  }
  if (m->n_chains == m->cap_chains) {
    int nc = m->cap_chains ? 2 * m->cap_chains : 4;
    struct CgChainMemo *nm = realloc(m->chains, sizeof *nm * (size_t)nc);
    if (!nm) {
      free(len);
      return NULL;
    }
    m->chains = nm;
    m->cap_chains = nc;
  }
  m->chains[m->n_chains++] = (struct CgChainMemo){en, len};
  return len;
}

int cg_chain(CgModule *m, const Program *p, const Kernel *k, const Kernel **members) {
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    for (int i = 0; i < en->n_kernels; i++) {
      if (en->kernels[i] != k) continue;
      const int *len = entry_chains(m, p, en);
      int n = len && len[i] > 1 ? len[i] : 1;
      for (int j = 0; members && j < n; j++) members[j] = en->kernels[i + j];
      return n;
    }
  }
  if (members) members[0] = k;
  return 1;
}

void cg_chain_free(CgModule *m) {
  for (int i = 0; i < m->n_chains; i++) free(m->chains[i].len);
  free(m->chains);
  m->chains = NULL;
  m->n_chains = m->cap_chains = 0;
}

bool cg_fused_away(CgModule *m, const Program *p, const Entry *en, int i) {
  if (image_fused_away(m, p, en, i)) return true;
  const int *len = entry_chains(m, p, en);
  return len && len[i] == 0;
}

typedef struct {
  KernelCg lead, then; /* the fused kernels' states (share the builder and function) */
  RedSlots *slots;
  Scatter sc;
  int64_t lead_slice;  /* elements of one image of the leader's result */
  bool then_plain;     /* the follower is elementwise (then_plain_fusable), not a scatter */
  int then_src;        /* ... reading this buffer, the GEMM's result, from scratch */
} Fused;

static void emit_then(void *ctx, LLVMValueRef n, LLVMValueRef c) {
  Fused *t = ctx;
  if (t->then_plain) {
    KernelCg *kc = &t->then;
    kc->buf[t->then_src] = c;
    kc->has_slice_buf = true;
    kc->slice_buf = t->then_src;
    emit_standard_nest(kc, t->slots, n, LLVMBuildNSWAdd(kc->b, n, cg_i64(kc->m, 1), ""));
    return;
  }
  t->sc.dlocal = c;
  emit_scatter(&t->then, &t->sc, n, LLVMBuildNSWAdd(t->then.b, n, cg_i64(t->then.m, 1), ""));
}

static void emit_standard_nest(KernelCg *kc, RedSlots *s, LLVMValueRef begin, LLVMValueRef end);

static void emit_lead(void *ctx, LLVMValueRef n, LLVMValueRef scratch) {
  Fused *t = ctx;
  KernelCg *kc = &t->lead;
  if (scratch) {
    kc->buf[kc->k->out_buf] = scratch;
    kc->out_slice = t->lead_slice;
  }
  emit_standard_nest(kc, t->slots, n, LLVMBuildNSWAdd(kc->b, n, cg_i64(kc->m, 1), ""));
}

/* The code generator's state for a kernel's body function `fn`, its
 * builder at the start of a new entry block. */
static KernelCg kernel_cg(CgModule *m, const Program *p, const Kernel *k, Diag *d, LLVMValueRef fn,
                          LLVMValueRef *bufv) {
  KernelCg kc = {0};
  kc.m = m;
  kc.p = p;
  kc.k = k;
  kc.d = d;
  kc.fn = fn;
  kc.buf = bufv;
  kc.b = LLVMCreateBuilderInContext(m->ctx);
  LLVMPositionBuilderAtEnd(kc.b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
  return kc;
}

/* K.body(ptr b..., i64 begin, i64 end) of kernel k over the buffers pbuf[0..nparams):
 * internal, always inlined into its wrapper, optsize when `small`; each
 * pointer nocapture, dereferenceable, noalias with `noalias`, readonly
 * unless writes[] marks it; bufv[buffer] = its parameter. */
static LLVMValueRef new_body(CgModule *m, const Program *p, const Kernel *k, const int *pbuf, int nparams,
                             bool noalias, const bool *writes, bool small, LLVMValueRef *bufv) {
  LLVMTypeRef *pt = calloc((size_t)nparams + 2, sizeof *pt);
  for (int i = 0; i < nparams; i++) pt[i] = m->t_ptr;
  pt[nparams] = pt[nparams + 1] = m->t_i64;
  char name[300];
  snprintf(name, sizeof name, "%s.body", k->name);
  LLVMValueRef body = LLVMAddFunction(m->mod, name, LLVMFunctionType(m->t_void, pt, (unsigned)nparams + 2, 0));
  free(pt);
  LLVMSetLinkage(body, LLVMInternalLinkage);
  cg_add_fn_attrs(m, body);
  add_param_attr(m, body, LLVMAttributeFunctionIndex, "alwaysinline", 0);
  if (small) add_param_attr(m, body, LLVMAttributeFunctionIndex, "optsize", 0);
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
    if (!writes[pbuf[i]]) add_param_attr(m, body, ai, "readonly", 0);
  }
  return body;
}

/* A chain (cg_chain) as one kernel named after its first: the kernels'
 * standard nests one after the other on each block of rows along dim 0
 * (about CHAIN_BLOCK elements), over the call's [begin, end). */
static LLVMValueRef chain_kernel(CgModule *m, const Program *p, const Kernel *const *c, int n, Diag *d) {
  const Kernel *k = c[0];
  bool *used = kernel_buffers(p, k);
  for (int j = 1; j < n && used; j++)
    if (!add_buffers(p, used, c[j])) {
      free(used);
      used = NULL;
    }
  if (!used) {
    diag_error(d, k->loc, "internal error: backend: kernel %s reads a buffer out of range", k->name);
    return NULL;
  }
  bool noalias = true, *out = calloc((size_t)p->n_bufs + 1, sizeof *out);
  for (int j = 0; j < n; j++) {
    if (output_shared(p, c[j], used)) noalias = false;
    out[c[j]->out_buf] = true;
  }
  int nparams = 0;
  int *pbuf = calloc((size_t)p->n_bufs + 1, sizeof *pbuf);
  for (int i = 0; i < p->n_bufs; i++)
    if (used[i]) pbuf[nparams++] = i;
  LLVMValueRef *bufv = calloc((size_t)p->n_bufs + 1, sizeof *bufv);
  LLVMValueRef body = new_body(m, p, k, pbuf, nparams, noalias, out, shape_numel(&k->shape) < SMALL_KERNEL_WORK, bufv);
  KernelCg kc = kernel_cg(m, p, k, d, body, bufv);
  kc.branch_guards = true;
  LLVMBuilderRef b = kc.b;
  RedSlots slots[CHAIN_MAX];
  for (int j = 0; j < n; j++) {
    memset(&slots[j], 0, sizeof slots[j]);
    slots[j].acc = LLVMBuildAlloca(b, cg_dtype(m, c[j]->body->dtype), "acc.slot");
    slots[j].idx = LLVMBuildAlloca(b, m->t_i32, "idx.slot");
  }
  LLVMValueRef begin = LLVMGetParam(body, (unsigned)nparams);
  LLVMValueRef end = LLVMGetParam(body, (unsigned)nparams + 1);
  int64_t row = shape_numel(&k->shape) / k->shape.d[0], S = CHAIN_BLOCK / (row > 0 ? row : 1);
  if (S < 1) S = 1;
  /* for q in [0, ceil((end - begin) / S)): rows [begin + q S, min(.. + S, end)) */
  LLVMValueRef nblk = LLVMBuildSDiv(b, LLVMBuildNSWAdd(b, LLVMBuildNSWSub(b, end, begin, ""), cg_i64(m, S - 1), ""),
                                    cg_i64(m, S), "");
  Loop Lb;
  LLVMValueRef q = loop_begin(&kc, &Lb, cg_i64(m, 0), nblk, "blk");
  LLVMValueRef b0 = LLVMBuildNSWAdd(b, begin, LLVMBuildNSWMul(b, q, cg_i64(m, S), ""), "");
  LLVMValueRef b1 = LLVMBuildNSWAdd(b, b0, cg_i64(m, S), "");
  b1 = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, b1, end, ""), b1, end, "");
  for (int j = 0; j < n && !kc.failed; j++) {
    KernelCg kj = kc;
    kj.k = c[j];
    emit_standard_nest(&kj, &slots[j], b0, b1);
    kc.failed |= kj.failed;
  }
  Lb.hint = LOOP_NO_UNROLL;
  loop_end(&kc, &Lb);
  LLVMBuildRetVoid(b);
  LLVMValueRef fn = kc.failed ? NULL : emit_wrapper(m, p, k, body, pbuf, nparams);
  LLVMDisposeBuilder(b);
  free(bufv);
  free(pbuf);
  free(used);
  free(out);
  return fn;
}

LLVMValueRef cg_kernel(CgModule *m, const Program *p, const Kernel *k, Diag *d) {
  if (!check_kernel(p, k, d)) return NULL;
  const Kernel *chain[CHAIN_MAX];
  int nchain = cg_chain(m, p, k, chain);
  for (int j = 1; j < nchain; j++)
    if (!check_kernel(p, chain[j], d)) return NULL;
  if (nchain > 1) return chain_kernel(m, p, chain, nchain, d);
  /* kernels fused per image: the body takes their buffers too, but not the
   * results that live in scratch (the follower's input, a private leader's
   * output); it writes the follower's output (else k's) and a shared
   * leader's result */
  CgFusion fu;
  bool fused = cg_fusion(m, p, k, &fu);
  const Kernel *then = fu.then, *lead = fu.lead;
  bool *used = then ? pair_buffers(p, k, then) : kernel_buffers(p, k);
  if (used && lead) {
    if (!add_buffers(p, used, lead)) {
      free(used);
      used = NULL;
    } else if (fu.lead_local) {
      used[lead->out_buf] = false;
    }
  }
  if (!used) {
    diag_error(d, k->loc, "internal error: backend: kernel %s reads a buffer out of range", k->name);
    return NULL;
  }
  int out = (then ? then : k)->out_buf, lead_out = lead && !fu.lead_local ? lead->out_buf : -1;
  /* in-place inputs read through the output's parameter */
  bool *same = calloc((size_t)p->n_bufs + 1, sizeof *same);
  for (int i = 0; i < p->n_bufs && (!fused || (then && !lead)); i++)
    if (used[i] && same_as_out(p, then ? then : k, i)) same[i] = true, used[i] = false;
  bool noalias = !output_shared(p, then ? then : k, used) && !(lead_out >= 0 && output_shared(p, lead, used));

  /* K.body(ptr b..., i64 begin, i64 end) */
  int nparams = 0;
  int *pbuf = calloc((size_t)p->n_bufs + 1, sizeof *pbuf);
  for (int i = 0; i < p->n_bufs; i++)
    if (used[i]) pbuf[nparams++] = i;
  char *key = fused ? NULL : kernel_key(p, k, pbuf, nparams, noalias, same);
  const char *share_env = getenv("DLC_SHARE_BODIES");
  CgBodyKey *shared = key && !(share_env && *share_env == '0') ? find_body(m, key) : NULL;
  if (shared) {
    /* the same code as an earlier kernel: call its body (no longer inlined
     * into one wrapper, but shared by all) */
    free(key);
    if (shared->uses++ == 1) {
      LLVMRemoveEnumAttributeAtIndex(shared->fn, LLVMAttributeFunctionIndex,
                                     LLVMGetEnumAttributeKindForName("alwaysinline", 12));
      add_param_attr(m, shared->fn, LLVMAttributeFunctionIndex, "noinline", 0);
    }
    LLVMValueRef fn = emit_wrapper(m, p, k, shared->fn, pbuf, nparams);
    free(pbuf);
    free(used);
    free(same);
    return fn;
  }
  /* tiny kernels (loss, metrics, bias gradients of a few classes): their
   * run time is noise, their vectorized + interleaved loops with runtime
   * checks are not; optsize keeps them small and quick to compile */
  int64_t work = red_iterations(k);
  for (int d = 0; d < k->shape.rank; d++) work *= k->shape.d[d];
  bool *writes = calloc((size_t)p->n_bufs + 1, sizeof *writes);
  writes[out] = true;
  if (lead_out >= 0) writes[lead_out] = true;
  LLVMValueRef *bufv = calloc((size_t)p->n_bufs + 1, sizeof *bufv);
  LLVMValueRef body = new_body(m, p, k, pbuf, nparams, noalias, writes, work < SMALL_KERNEL_WORK, bufv);
  free(writes);
  for (int i = 0; i < p->n_bufs; i++)
    if (same[i]) bufv[i] = bufv[out];

  KernelCg kc = kernel_cg(m, p, k, d, body, bufv);
  RedSlots slots;
  slots.acc = LLVMBuildAlloca(kc.b, cg_dtype(m, k->body->dtype), "acc.slot");
  slots.idx = LLVMBuildAlloca(kc.b, m->t_i32, "idx.slot");
  for (int r = 0; r < SUM_LOOPS; r++)
    slots.part[r] = r > 0 && k->red == RED_SUM && r < 3 * k->n_red
                        ? LLVMBuildAlloca(kc.b, cg_dtype(m, k->body->dtype), "part.slot")
                        : NULL;
  LLVMValueRef begin = LLVMGetParam(body, (unsigned)nparams);
  LLVMValueRef end = LLVMGetParam(body, (unsigned)nparams + 1);
  GemmPlan gp;
  if (k->shape.rank == 0) emit_point(&kc, &slots);
  else if (cg_gemm_plan(m, p, k, &gp)) {
    Fused fz = {kc, kc, &slots, {0}, lead ? shape_numel(&lead->shape) / lead->shape.d[0] : 0, false, -1};
    fz.then.k = then;
    fz.lead.k = lead;
    fz.lead.branch_guards = true;
    GemmFuse gf = {lead ? emit_lead : NULL, then ? emit_then : NULL, lead ? lead->out_buf : -1,
                   fu.lead_local ? fz.lead_slice : 0, &fz};
    if (then && !scatter_plan(p, then, &fz.sc)) {
      fz.then_plain = true;
      fz.then_src = k->out_buf;
      fz.then.branch_guards = true; /* as the kernel alone (masked vector loads) */
    }
    cg_emit_gemm_fused(&kc, &gp, begin, end, fused ? &gf : NULL);
  }
  else {
    kc.branch_guards = true;
    Scatter sc;
    PoolScatter ps;
    PoolRows pr;
    if (noalias && scatter_plan(p, k, &sc)) emit_scatter(&kc, &sc, begin, end);
    else if (noalias && pool_scatter_on() && pool_scatter_plan(p, k, &ps)) emit_pool_scatter(&kc, &ps, begin, end);
    else if (channel_sums_plan(p, k)) emit_channel_sums(&kc, &slots, begin, end);
    else if (cg_kernel_uses_reorder(p, k)) emit_reordered_nest(&kc, begin, end);
    else if (pool_rows_on() && pool_rows_plan(p, k, cg_vector_width(m), &pr)) emit_pool_rows(&kc, &pr, begin, end);
    else if (streaming_plan(m, p, k)) emit_streaming(&kc, &slots, begin, end);
    else emit_standard_nest(&kc, &slots, begin, end);
  }
  LLVMBuildRetVoid(kc.b);

  /* K(void *ctx, i64 begin, i64 end): bind bufs[i] and call the body */
  LLVMValueRef fn = NULL;
  if (!kc.failed) {
    fn = emit_wrapper(m, p, k, body, pbuf, nparams);
    if (key) remember_body(m, key, body);
    key = NULL;
  }
  free(key);
  LLVMDisposeBuilder(kc.b);
  free(bufv);
  free(pbuf);
  free(used);
  free(same);
  return fn;
}
