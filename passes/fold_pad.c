/* fold_pad.c — a zero pad computes its producer. A stride-1 convolution
 * computes its output at the padded width and a crop kernel (with the
 * fused bias and activation) trims it into y; the next convolution then
 * copies y into a zero-padded buffer yp. Two passes over every activation
 * (and over every data gradient on the way back). Here the pad kernel P
 * (yp[j] = y[j - c] inside, 0 outside) takes over the kernel C that wrote
 * y: at C's place it computes C's value at j - c for the inside positions
 * (its loads guarded by the inside test, so border positions read
 * nothing) and 0 outside; every other reader of y reads yp[j + c] instead,
 * and C and y are gone. (The small VGG's crop + pad pairs: 8 MB read and
 * 9 MB written per pair, four per training step.)
 *
 * Done when: P is a pad as lowering makes it (ops "pad", a load of y at
 * var - c per dim, guarded by exactly the in-range tests of the shifted
 * dims, fill 0); C is the only kernel writing y, before P in the same
 * entry, without a reduction or accumulation, its shifted indices divided
 * only as a loop variable by a constant (elementwise, a crop, or a pooling
 * adjoint without overlap); y is a temporary without
 * views; nothing between C and P writes what C reads (C's value is then
 * the same at P's place, and P moves to C's). Needs: lowered, fused
 * program (C's epilogue, if any, is folded in); runs before scheduling
 * and memory planning. */
#include <string.h>

#include "passes/pipeline.h"

/* var d - c (c >= 0): *c; false for other forms */
static bool shift_of(const IExpr *e, int d, int64_t *c) {
  if (e->op == IX_VAR && e->var == d) return *c = 0, true;
  if (e->op == IX_SUB && e->a->op == IX_VAR && e->a->var == d && e->b->op == IX_CONST && e->b->v > 0)
    return *c = e->b->v, true;
  if (e->op == IX_ADD && e->a->op == IX_VAR && e->a->var == d && e->b->op == IX_CONST && e->b->v < 0)
    return *c = -e->b->v, true;
  return false;
}

static bool ix_equal(const IExpr *x, const IExpr *y) {
  if (x == y) return true;
  if (!x || !y || x->op != y->op) return false;
  if (x->op == IX_CONST) return x->v == y->v;
  if (x->op == IX_VAR) return x->var == y->var;
  return ix_equal(x->a, y->a) && ix_equal(x->b, y->b);
}

/* The guard's terms (a conjunction) are x >= 0 or x < n for x one of the
 * load's shifted indices; *lo / *hi mark the dims tested. */
static bool guard_terms(const IExpr *g, const VExpr *ld, const Shape *ys, bool *lo, bool *hi) {
  if (g->op == IX_AND) return guard_terms(g->a, ld, ys, lo, hi) && guard_terms(g->b, ld, ys, lo, hi);
  if ((g->op != IX_GE && g->op != IX_LT) || g->b->op != IX_CONST) return false;
  for (int d = 0; d < ld->rank; d++) {
    if (!ix_equal(g->a, ld->idx[d])) continue;
    if (g->op == IX_GE && g->b->v == 0) return lo[d] = true, true;
    if (g->op == IX_LT && g->b->v == ys->d[d]) return hi[d] = true, true;
  }
  return false;
}

static bool ix_uses_shifted(const IExpr *e, const int64_t *c, int rank);

/* Whether e divides only a loop variable by a constant where P shifts it
 * (inside, where x >= c, with k = (s - c % s) % s: (x - c) / s =
 * (x + k) / s - (c + k) / s and (x - c) % s = (x + k) % s), or divides
 * expressions of unshifted dims. */
static bool divs_shift(const IExpr *e, const int64_t *c, int rank) {
  if (!e) return true;
  if (e->op == IX_DIV || e->op == IX_MOD) {
    if (!ix_uses_shifted(e, c, rank)) return true;
    return e->a->op == IX_VAR && e->a->var < rank && e->b->op == IX_CONST && e->b->v > 0;
  }
  return divs_shift(e->a, c, rank) && divs_shift(e->b, c, rank);
}

/* Whether C's body divides its indices only as divs_shift allows (an
 * elementwise or crop body, or a pooling adjoint without overlap: LeNet-5's
 * first, padded by 2 for the filter gradient's wide rows, the small VGG's,
 * padded by 1 for the next data gradient; not an overlapping adjoint's
 * window search, which the backend runs as a scatter). After the
 * substitution the division is one of the loop variable plus 0 <= k < s,
 * so the backend's split of a row into windows (w = s*q + t) still
 * vectorizes it (with (x - c) / s instead, the kernel ran scalar: 0.12 ->
 * 0.31 ms). */
static bool loads_shift(const VExpr *e, const int64_t *c, int rank) {
  if (!e) return true;
  if (e->op == VX_LOAD) {
    if (!divs_shift(e->guard, c, rank)) return false;
    for (int d = 0; d < e->rank; d++)
      if (!divs_shift(e->idx[d], c, rank)) return false;
  }
  if (e->op == VX_INDEX && !divs_shift(e->ix, c, rank)) return false;
  return loads_shift(e->a, c, rank) && loads_shift(e->b, c, rank) && loads_shift(e->c, c, rank);
}

/* e at P's index: its vars replaced by sub (var - c), divisions of a
 * shifted var as divs_shift says (valid inside). */
static IExpr *pad_subst(Arena *a, const IExpr *e, IExpr *const *sub, const int64_t *c, int rank) {
  if (!e) return NULL;
  switch (e->op) {
  case IX_CONST: return (IExpr *)e;
  case IX_VAR: return e->var < rank && sub[e->var] ? sub[e->var] : (IExpr *)e;
  case IX_DIV:
  case IX_MOD:
    if (e->a->op == IX_VAR && e->a->var < rank && c[e->a->var] && e->b->op == IX_CONST && e->b->v > 0) {
      int64_t cv = c[e->a->var], sv = e->b->v, kv = (sv - cv % sv) % sv;
      IExpr *x = kv ? ix_bin(a, IX_ADD, e->a, ix_const(a, kv)) : e->a;
      IExpr *q = ix_bin(a, e->op, x, e->b);
      return e->op == IX_MOD ? q : ix_bin(a, IX_SUB, q, ix_const(a, (cv + kv) / sv));
    }
    break;
  case IX_ADD:
  case IX_SUB:
  case IX_MUL:
  case IX_LT:
  case IX_GE:
  case IX_EQ:
  case IX_AND: break;
  }
  return ix_bin(a, e->op, pad_subst(a, e->a, sub, c, rank), pad_subst(a, e->b, sub, c, rank));
}

/* Whether kernel k writes (the root of) something e reads. */
static bool writes_read(const Program *p, const Kernel *k, const VExpr *e) {
  return kir_reads_root(p, e, kir_root(p, k->out_buf));
}

static bool ix_uses_shifted(const IExpr *e, const int64_t *c, int rank) {
  if (!e) return false;
  if (e->op == IX_VAR) return e->var < rank && c[e->var] != 0;
  return ix_uses_shifted(e->a, c, rank) || ix_uses_shifted(e->b, c, rank);
}

/* C's value at P's index: e with its vars replaced by sub, VX_ACC by acc
 * (C's body, for its epilogue), and every load whose index moves with a
 * shifted dim guarded by g too (the others read where C did). */
static VExpr *at_pad(Arena *a, const VExpr *e, const VExpr *acc, IExpr *const *sub, const int64_t *c, int rank,
                     IExpr *g) {
  if (!e) return NULL;
  if (e->op == VX_ACC) return at_pad(a, acc, NULL, sub, c, rank, g);
  VExpr *r = ARENA_NEW(a, VExpr);
  *r = *e;
  r->ix = pad_subst(a, e->ix, sub, c, rank);
  if (e->op == VX_LOAD) {
    r->idx = ARENA_ARRAY(a, IExpr *, e->rank > 0 ? e->rank : 1);
    for (int d = 0; d < e->rank; d++) r->idx[d] = pad_subst(a, e->idx[d], sub, c, rank);
    r->guard = pad_subst(a, e->guard, sub, c, rank);
    bool moves = ix_uses_shifted(e->guard, c, rank);
    for (int d = 0; d < e->rank; d++) moves = moves || ix_uses_shifted(e->idx[d], c, rank);
    if (moves) r->guard = r->guard ? ix_bin(a, IX_AND, r->guard, g) : g;
  }
  r->a = at_pad(a, e->a, acc, sub, c, rank, g);
  r->b = at_pad(a, e->b, acc, sub, c, rank, g);
  r->c = at_pad(a, e->c, acc, sub, c, rank, g);
  return r;
}

/* Copy of e with loads of y read from yp at the index shifted by c. */
static VExpr *to_padded(Arena *a, const VExpr *e, int y, int yp, const int64_t *c) {
  if (!e) return NULL;
  VExpr *r = ARENA_NEW(a, VExpr);
  *r = *e;
  if (e->op == VX_LOAD && e->buf == y) {
    r->buf = yp;
    r->idx = ARENA_ARRAY(a, IExpr *, e->rank);
    for (int d = 0; d < e->rank; d++) {
      const IExpr *x = e->idx[d];
      if (c[d] && x->op == IX_SUB && x->b->op == IX_CONST && x->b->v == c[d]) r->idx[d] = x->a; /* (v - c) + c */
      else r->idx[d] = c[d] ? ix_bin(a, IX_ADD, e->idx[d], ix_const(a, c[d])) : e->idx[d];
    }
  }
  r->a = to_padded(a, e->a, y, yp, c);
  r->b = to_padded(a, e->b, y, yp, c);
  r->c = to_padded(a, e->c, y, yp, c);
  return r;
}

/* A sum R of y alone (body = y[...]) whose reduction vars run over the
 * shifted dims of y whole (a bias gradient over the planes) sums yp over
 * the padded extents instead: the border's zeros add nothing, and its
 * planes stay contiguous (rows of 28 in a pitch of 32, summed row by row,
 * ran at half the speed: LeNet-5's first bias gradient 0.017 -> 0.034
 * ms). True when it did. */
static bool sum_padded(Arena *a, Kernel *R, int y, const Kernel *P, const int64_t *c) {
  const VExpr *ld = R->body;
  int rank = R->shape.rank;
  if (R->red != RED_SUM || R->accumulate || R->dtype != DT_F32 || !ld || ld->op != VX_LOAD || ld->buf != y ||
      ld->guard || ld->rank != P->shape.rank)
    return false;
  int64_t ext[IR_MAX_RANK];
  memcpy(ext, R->red_ext, sizeof ext);
  for (int d = 0; d < ld->rank; d++) {
    if (!c[d]) continue;
    const IExpr *x = ld->idx[d];
    if (x->op != IX_VAR || x->var < rank || x->var - rank >= R->n_red ||
        R->red_ext[x->var - rank] != P->shape.d[d] - 2 * c[d])
      return false;
    for (int e = 0; e < ld->rank; e++)
      if (e != d && ix_uses_var(ld->idx[e], x->var)) return false;
    ext[x->var - rank] = P->shape.d[d];
  }
  VExpr *n = ARENA_NEW(a, VExpr);
  *n = *ld;
  n->buf = P->out_buf;
  int64_t before = 1, after = 1;
  for (int r = 0; r < R->n_red; r++) before *= R->red_ext[r], after *= ext[r];
  memcpy(R->red_ext, ext, sizeof ext);
  R->flops = R->flops / before * after;
  R->body = n;
  return true;
}

/* Folds C into the pad at index i; true when it did. */
static bool fold_one(Program *p, Entry *en, int i) {
  Arena *a = p->arena;
  Kernel *P = en->kernels[i];
  const VExpr *ld = P->body;
  if (!P->ops || strcmp(P->ops, "pad") || P->red != RED_NONE || P->epilogue || P->accumulate || !ld ||
      ld->op != VX_LOAD || !ld->guard || ld->f != 0.0f || ld->dtype != DT_F32)
    return false;
  int y = ld->buf;
  const Buffer *Y = &p->bufs[y];
  if (Y->role != BUF_TEMP || Y->alias >= 0 || Y->dtype != DT_F32 || ld->rank != Y->shape.rank ||
      ld->rank != P->shape.rank)
    return false;
  for (int b = 0; b < p->n_bufs; b++)
    if (p->bufs[b].alias == y) return false; /* views of y */
  int64_t c[IR_MAX_RANK];
  bool lo[IR_MAX_RANK] = {0}, hi[IR_MAX_RANK] = {0};
  for (int d = 0; d < ld->rank; d++) {
    if (!shift_of(ld->idx[d], d, &c[d]) || P->shape.d[d] != Y->shape.d[d] + 2 * c[d]) return false;
  }
  if (!guard_terms(ld->guard, ld, &Y->shape, lo, hi)) return false;
  for (int d = 0; d < ld->rank; d++)
    if (c[d] && !(lo[d] && hi[d])) return false;
  /* C: the only writer of y, before P */
  int ci = -1;
  for (int j = 0; j < en->n_kernels; j++)
    if (kir_root(p, en->kernels[j]->out_buf) == y) {
      if (ci >= 0 || j > i) return false;
      ci = j;
    }
  if (ci < 0) return false;
  Kernel *C = en->kernels[ci];
  if (C->red != RED_NONE || C->accumulate || C->dtype != DT_F32 || C->out_buf != y ||
      !loads_shift(C->body, c, ld->rank) || !loads_shift(C->epilogue, c, ld->rank))
    return false;
  for (int j = ci + 1; j < i; j++)
    if (writes_read(p, en->kernels[j], C->body) || writes_read(p, en->kernels[j], C->epilogue)) return false;
  /* P' = inside ? C's value at j - c (loads guarded) : 0, at C's place */
  IExpr *sub[IR_MAX_RANK];
  for (int d = 0; d < ld->rank; d++) sub[d] = ld->idx[d];
  VExpr *val = C->epilogue ? at_pad(a, C->epilogue, C->body, sub, c, ld->rank, ld->guard)
                           : at_pad(a, C->body, NULL, sub, c, ld->rank, ld->guard);
  VExpr *inside = ARENA_NEW(a, VExpr);
  inside->op = VX_INDEX;
  inside->dtype = DT_F32;
  inside->ix = ld->guard;
  P->body = vx_select(a, inside, val, vx_const(a, DT_F32, 0.0));
  P->ops = arena_printf(a, "%s+pad", C->ops ? C->ops : "");
  P->loc = C->loc;
  P->phase = C->phase;
  P->flops += C->flops;
  if (C->n_members) {
    int *m = ARENA_ARRAY(a, int, C->n_members + P->n_members);
    memcpy(m, C->members, sizeof(int) * (size_t)C->n_members);
    if (P->n_members) memcpy(m + C->n_members, P->members, sizeof(int) * (size_t)P->n_members);
    P->members = m;
    P->n_members += C->n_members;
  }
  /* the other readers of y read yp */
  for (int j = 0; j < en->n_kernels; j++) {
    Kernel *R = en->kernels[j];
    if (R == P || R == C) continue;
    if (!sum_padded(a, R, y, P, c)) R->body = to_padded(a, R->body, y, P->out_buf, c);
    R->epilogue = to_padded(a, R->epilogue, y, P->out_buf, c);
  }
  en->kernels[ci] = P;
  memmove(&en->kernels[i], &en->kernels[i + 1], sizeof(Kernel *) * (size_t)(en->n_kernels - i - 1));
  en->n_kernels--;
  return true;
}

bool pass_fold_pad(Program *p, Diag *d) {
  (void)d;
  bool changed = false;
  for (int e = 0; e < ENTRY__COUNT; e++) {
    Entry *en = &p->entries[e];
    if (!en->present) continue;
    for (int i = 0; i < en->n_kernels; i++)
      if (fold_one(p, en, i)) changed = true, i--; /* a new kernel at i */
  }
  return changed;
}
