/* codegen_gemm.c — GEMM lowering of matmul-like sums (matmul in every
 * transposition, batched matmul, and the convolutions with implicit im2col).
 *
 * A RED_SUM kernel whose body is mul(P, Q) is a GEMM when its output dims
 * split into [batch..., I..., J...] such that P never reads a J var and Q
 * never reads an I var (P and Q are arbitrary expressions: loads, guarded
 * window loads, fused index maps). With M = prod(I), N = prod(J), K =
 * prod(reduction extents):
 *
 *   C[b, i, j] = epilogue(sum_k P(b, i, k) * Q(b, k, j))
 *
 * Code shape (BLIS-style, all extents constant):
 *   for b in batch (or the unit range of M tiles / N panels):
 *     for jc in N step NC:
 *       for pc in K step KC:
 *         pack Q[pc.., jc..] into Bp: panels of NR columns, [panel][k][NR]
 *         for ic in M step MC:
 *           pack P[ic.., pc..] into Ap: panels of MR rows, [panel][k][MR]
 *           for each NR panel, for each MR panel: the micro-kernel:
 *             MR x (NR/VW) vector accumulators (<VW x float>, llvm.fma),
 *             one broadcast of A and NR/VW vector loads of B per k;
 *             accumulators start at 0 (first K block) or C (later blocks);
 *             edge tiles go through a small tile buffer;
 *     after the last K block the epilogue runs as a vectorized nest over
 *     the unit's part of C.
 * Packing copies rows of unit-stride operands as vectors and transposes
 * 8x8 blocks of operands contiguous along k; other operands are evaluated
 * with the generic expression code at clamped (in-bounds) indices, 0
 * outside [M, N). Operands are read in place instead where packing does
 * not pay: A's rows (or a transposed A) for small N, B's rows for small M.
 * A convolution's output rows of whole vectors read the padded image's rows
 * in place (GemmOperand.x_row: row t at t * Wp), each panel's vectors
 * within a row, so no extra columns are computed at the padded width.
 * The packed B block lives in the thread's heap scratch (dlrt_scratch).
 * The dot form (tiny M, N against a long reduction contiguous in both
 * operands: the first convolution's filter gradient) computes C as vector
 * dot products along k instead; so does a skinny product whose B runs
 * along N (a classifier's forward weights), over a copy of B transposed
 * once per call. A skinny C (N <= NR) whose A runs along M (a classifier's
 * weight gradient) is computed transposed, C^T = Q^T P^T, so the vector lanes
 * run along M and the micro-tile's rows fit N (5 x 2 tiles for N = 10):
 * the micro-kernel then loads and stores C through its tile buffer.
 *
 * Threads: the kernel's [begin, end) is a range of "units": batch entries
 * when there are batch dims, else MR-row tiles of M, or NR-column panels
 * of N when M fits one block (dot form: the RM x RN tiles of RN-column
 * blocks, or RM-row tiles over a transposed B). Every output
 * element is the same FMA chain over k in the same fixed K blocks whatever
 * the unit range, so results are identical for any thread count. */
#include "backend/cg_internal.h"

#include <stdlib.h>
#include <string.h>

static int g_gemm_mode = 0; /* 0 auto, 1 never */

/* Plan thresholds (measured with bench/gemm_bench.c on AVX2 and AVX-512):
 * A read in place up to this N (few B panels would reuse a packed A), B read
 * in place up to this M (one M block uses each B panel), the dot form up to
 * this M (DOT_RM x DOT_RN tiles over blocks of about DOT_BLOCK k); K blocks of at most KC_MAX (one block up to KC_ONE); the packed B
 * block up to NC_BYTES; M blocks of MC_PANELS micro-panels. */
enum {
  DIRECT_A_MAX_N = 64,
  DIRECT_B_MAX_M = 72,
  DIRECT_B_BLOCK_M = 256,     /* and with AVX-512 up to this M as one M block when B's rows are at most */
  DIRECT_B_ROW_BYTES = 2048,  /* this far apart (packing B cost more than its strided reads save) */
  DIRECT_BT_MIN_K = 64, /* an im2col B read in place from this K (the small VGG's first convolution, K = 27,
                           measured slower over the padded width: 45 -> 35-42 GFLOP/s; over whole output rows
                           on AVX-512, 1.44-1.51 -> 1.36-1.43 ms, at any K; on AVX2 slower there too), */
  DIRECT_BT_ONE_TILE_M = 6, /* or at any K up to this M: one row tile, a packed panel would serve one call
                               (LeNet-5's first convolution, 6 x 892 x 25: 0.25 -> 0.18 ms per call) */
  CT_MAX_M = 64, /* the transposed filter gradient up to this M (output channels), */
  CT_MIN_N = 64, /* from this N (the im2col's rows) */
  CT_MIN_K = 1024, /* and this K */
  DOT_MAX_M = 16,
  DOT_MAX_M_NARROW = 32, /* ... and up to this M when N is at most DOT_NARROW_N (the small VGG's */
  DOT_NARROW_N = 32,     /* first filter gradient, 32 x 27: 4.1 -> 2.5 ms, packed panels mostly idle) */
  DOT_BLOCK = 512,
  DOT_RM = 2,
  DOT_RN = 5,
  DOT_MAX_TILE = 15, /* accumulators of a dot-form tile with 32 vector registers */
  DOT_QT_LANES = 800, /* the packed-Q^T dot form when vectors along N use under 80 % of their lanes */
  DOT_QT_MIN_K = 128, /* (LeNet-5's 64 x 10 x 84 measured slower: 3.5 -> 4.2 us) */
  KC_MAX = 384,
  KC_ONE = 512,
  NC_BYTES = 2 << 20,
  A_ONCE_BYTES = 4 << 20, /* a batch-invariant P packed once per call up to this size */
  MC_PANELS = 16,
  SPLIT_N_RATIO = 2,      /* threads split N, not M, of a packed B at least this many times wider than A is tall */
  SPLIT_N_MIN_PANELS = 4, /* and of at least this many panels */
  SPLIT_N_MIN_K = 128     /* and this K (with K = 10 packing costs little and the rows of C per thread
                             measured faster: the large MLP's 256 x 1024 x 10 0.11-0.13 -> 0.13-0.18 ms) */
};

/* a_once: the number of P's packed blocks (K blocks x M blocks) */
#define A_BLOCKS(g) (((g)->K + (g)->KC - 1) / (g)->KC * (((g)->M + (g)->MC - 1) / (g)->MC))

/* The transposed form pays when its lanes are this much fuller (x100). */
enum { TC_GAIN_PCT = 115 };
void cg_debug_set_gemm(int mode) { g_gemm_mode = mode; }

/* ---------------- matching ---------------- */

/* Whether e reads loop var v anywhere; *bad on ops the GEMM cannot pack. */
static bool vx_uses_var(const VExpr *e, int v, bool *bad) {
  if (!e) return false;
  switch (e->op) {
  case VX_ACC:
  case VX_RAND: *bad = true; return false;
  case VX_LOAD: {
    bool u = ix_uses_var(e->guard, v);
    for (int d = 0; d < e->rank; d++) u = u || ix_uses_var(e->idx[d], v);
    return u;
  }
  case VX_INDEX: return ix_uses_var(e->ix, v);
  default: break;
  }
  bool a = vx_uses_var(e->a, v, bad), b = vx_uses_var(e->b, v, bad), c = vx_uses_var(e->c, v, bad);
  return a || b || c;
}

static bool has_avx512(const CgModule *m) {
  if (m && m->features && strstr(m->features, "+avx512f")) return true;
  static const char *const cpus[] = {"znver4", "znver5", "skylake-avx512", "cascadelake", "cooperlake",
                                     "icelake-client", "icelake-server", "tigerlake", "rocketlake",
                                     "sapphirerapids", "graniterapids", "emeraldrapids", "x86-64-v4",
                                     "cannonlake", "alderlake-avx512"};
  if (m && m->cpu)
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; i++)
      if (strcmp(m->cpu, cpus[i]) == 0) return !(m->features && strstr(m->features, "-avx512f"));
  return false;
}

int cg_vector_width(const CgModule *m) { return has_avx512(m) ? 16 : 8; }

static bool plan_split(const Kernel *k, const VExpr *P, const VExpr *Q, GemmPlan *g) {
  int rank = k->shape.rank;
  bool bad = false;
  bool uP[IR_MAX_RANK], uQ[IR_MAX_RANK];
  for (int d = 0; d < rank; d++) {
    uP[d] = vx_uses_var(P, d, &bad);
    uQ[d] = vx_uses_var(Q, d, &bad);
  }
  for (int r = 0; r < k->n_red; r++) {
    vx_uses_var(P, rank + r, &bad);
    vx_uses_var(Q, rank + r, &bad);
  }
  if (bad) return false;
  int j0 = rank;
  while (j0 > 0 && !uP[j0 - 1]) j0--;
  if (j0 == rank) return false; /* no J dims */
  int i0 = j0;
  while (i0 > 0 && !uQ[i0 - 1]) i0--;
  if (i0 == j0) return false; /* no I dims */
  /* a J dim Q never reads (broadcast) is fine; an I dim P never reads too */
  g->nb = i0;
  g->ni = j0 - i0;
  g->nj = rank - j0;
  g->P = P;
  g->Q = Q;
  return true;
}

/* ---------------- operand addressing analysis ---------------- */

static int64_t ix_eval(const IExpr *e, const int64_t *v, bool *bad);
int64_t cg_ix_eval(const IExpr *e, const int64_t *v, bool *bad) { return ix_eval(e, v, bad); }

static int64_t ix_eval(const IExpr *e, const int64_t *v, bool *bad) {
  if (!e) return 0;
  int64_t a, b;
  switch (e->op) {
  case IX_CONST: return e->v;
  case IX_VAR: return v[e->var];
  default: break;
  }
  a = ix_eval(e->a, v, bad);
  b = ix_eval(e->b, v, bad);
  switch (e->op) {
  case IX_ADD: return a + b;
  case IX_SUB: return a - b;
  case IX_MUL: return a * b;
  case IX_DIV:
  case IX_MOD:
    if (b == 0) {
      *bad = true;
      return 0;
    }
    return e->op == IX_DIV ? a / b : a % b;
  case IX_LT: return a < b;
  case IX_GE: return a >= b;
  case IX_EQ: return a == b;
  case IX_AND: return a && b;
  default: *bad = true; return 0;
  }
}

/* Linear element offset of load l at loop var values v. */
int64_t cg_load_offset(const Program *p, const VExpr *l, const int64_t *v, bool *bad) {
  const Shape *sh = &p->bufs[l->buf].shape;
  int64_t off = 0;
  for (int d = 0; d < l->rank; d++) off = off * sh->d[d] + ix_eval(l->idx[d], v, bad);
  return off;
}

/* The loop vars of each group: 0 batch, 1 the operand's own dims (I or J), 2 reduction. */
typedef struct {
  int first[3], n[3];
  const int64_t *ext[3];
  int64_t size[3];
} Groups;

static void group_point(const Groups *G, int grp, int64_t flat, int64_t *v) {
  for (int d = G->n[grp] - 1; d >= 0; d--) {
    v[G->first[grp] + d] = flat % G->ext[grp][d];
    flat /= G->ext[grp][d];
  }
}

/* The loop-var groups (bit g for group g) that index e reads; bit 3 for a
 * var of no group (the other operand's own dims). */
static unsigned ix_groups(const IExpr *e, const int *var_group, int nvars) {
  unsigned m = 0;
  for (int v = 0; v < nvars; v++)
    if (ix_uses_var(e, v)) m |= var_group[v] < 0 ? 8u : 1u << var_group[v];
  return m;
}

/* Whether index e is a sum of terms that each read one group at most (so
 * its value is f_batch + f_own + f_reduction): sums, differences and
 * constant multiples of such sums, e.g. the flat offset c*H*W + kh*W + kw + q
 * of an implicit im2col over a padded image. */
static bool ix_separable(const IExpr *e, const int *var_group, int nvars) {
  unsigned m = ix_groups(e, var_group, nvars);
  if (m & 8u) return false;
  if ((m & (m - 1)) == 0) return true;
  if (e->op == IX_ADD || e->op == IX_SUB)
    return ix_separable(e->a, var_group, nvars) && ix_separable(e->b, var_group, nvars);
  if (e->op == IX_MUL && e->b && e->b->op == IX_CONST) return ix_separable(e->a, var_group, nvars);
  if (e->op == IX_MUL && e->a && e->a->op == IX_CONST) return ix_separable(e->b, var_group, nvars);
  return false;
}

/* Fills o for operand e of kernel k (group 1 = I dims for P, J dims for Q). */
static void analyse_operand(const Program *p, const Kernel *k, const GemmPlan *g, const VExpr *e, bool isP,
                            GemmOperand *o) {
  memset(o, 0, sizeof *o);
  if (e->op != VX_LOAD || e->guard || e->rank != p->bufs[e->buf].shape.rank || p->bufs[e->buf].dtype != DT_F32)
    return;
  Groups G;
  G.first[0] = 0, G.n[0] = g->nb, G.ext[0] = k->shape.d;
  G.first[1] = isP ? g->nb : g->nb + g->ni, G.n[1] = isP ? g->ni : g->nj, G.ext[1] = k->shape.d + G.first[1];
  G.first[2] = k->shape.rank, G.n[2] = k->n_red, G.ext[2] = k->red_ext;
  for (int q = 0; q < 3; q++) {
    G.size[q] = 1;
    for (int d = 0; d < G.n[q]; d++) G.size[q] *= G.ext[q][d];
  }
  /* separable: every index (row-major term) reads vars of at most one group */
  int var_group[2 * IR_MAX_RANK];
  for (int i = 0; i < 2 * IR_MAX_RANK; i++) var_group[i] = -1;
  for (int q = 0; q < 3; q++)
    for (int d = 0; d < G.n[q]; d++) var_group[G.first[q] + d] = q;
  bool separable = true;
  for (int d = 0; d < e->rank && separable; d++)
    separable = ix_separable(e->idx[d], var_group, k->shape.rank + k->n_red);
  int64_t v[2 * IR_MAX_RANK] = {0};
  bool bad = false;
  int64_t f0 = cg_load_offset(p, e, v, &bad);
  if (!separable) {
    /* check numerically over the whole domain when it is small (e.g. a flatten's div/mod) */
    int64_t pts = G.size[0] * G.size[1] * G.size[2];
    if (pts > (1 << 21)) return;
    int64_t *fx = malloc(sizeof(int64_t) * (size_t)(G.size[1] + G.size[2] + G.size[0]));
    int64_t *fb = fx, *f1 = fx + G.size[0], *f2 = f1 + G.size[1];
    for (int q = 0; q < 3; q++)
      for (int64_t t = 0; t < G.size[q]; t++) {
        memset(v, 0, sizeof v);
        group_point(&G, q, t, v);
        (q == 0 ? fb : q == 1 ? f1 : f2)[t] = cg_load_offset(p, e, v, &bad) - f0;
      }
    for (int64_t b = 0; b < G.size[0] && !bad; b++)
      for (int64_t x = 0; x < G.size[1] && !bad; x++)
        for (int64_t kk = 0; kk < G.size[2]; kk++) {
          memset(v, 0, sizeof v);
          group_point(&G, 0, b, v);
          group_point(&G, 1, x, v);
          group_point(&G, 2, kk, v);
          if (cg_load_offset(p, e, v, &bad) - f0 != fb[b] + f1[x] + f2[kk]) {
            bad = true;
            break;
          }
        }
    free(fx);
    if (bad) return;
  }
  /* affine in the flat index of groups 1 and 2? */
  for (int q = 1; q <= 2; q++) {
    int64_t c = 0, prev = 0, units = 0;
    bool aff = true;
    for (int64_t t = 0; t < G.size[q]; t++) {
      memset(v, 0, sizeof v);
      group_point(&G, q, t, v);
      int64_t f = cg_load_offset(p, e, v, &bad) - f0;
      if (t == 1) c = f;
      if (f != t * c) aff = false;
      if (t > 0 && f - prev == 1) units++;
      prev = f;
    }
    bool unit = G.size[q] > 1 && 2 * units >= G.size[q] - 1;
    if (q == 1) o->x_affine = aff, o->x_coef = c, o->x_unit = unit;
    else o->k_affine = aff, o->k_coef = c, o->k_unit = unit;
  }
  /* Q in rows: x = (t, u) over the group's last dim u, at t * S + u */
  if (!isP && !o->x_affine && G.n[1] >= 2 && G.ext[1][G.n[1] - 1] > 1) {
    int64_t L = G.ext[1][G.n[1] - 1], S = 0;
    bool rows = true;
    for (int64_t t = 0; t < G.size[1] && rows; t++) {
      memset(v, 0, sizeof v);
      group_point(&G, 1, t, v);
      int64_t f = cg_load_offset(p, e, v, &bad) - f0;
      if (t == L) S = f;
      if (t >= L && f != t / L * S + t % L) rows = false;
      if (t < L && f != t) rows = false;
    }
    if (rows && S > L) o->x_row = L, o->x_row_stride = S;
  }
  if (bad) return;
  o->f0 = f0;
  o->fast = true;
}

/* Offset of load e at flat reduction index t (other vars 0). */
static int64_t k_offset(const Program *p, const Kernel *k, const VExpr *e, int64_t t, bool *bad) {
  int64_t v[2 * IR_MAX_RANK] = {0};
  for (int d = k->n_red - 1; d >= 0; d--) {
    v[k->shape.rank + d] = t % k->red_ext[d];
    t /= k->red_ext[d];
  }
  return cg_load_offset(p, e, v, bad);
}

/* The dot form's run: the longest product of trailing reduction extents over
 * which both operands (P alone: nops 1) step by one element (0: none of at
 * least 16). */
static int64_t dot_run(const Program *p, const Kernel *k, const GemmPlan *g, int nops) {
  if (g->K > (1 << 22)) return 0;
  int64_t best = 0, d = 1;
  for (int r = k->n_red - 1; r >= 0; r--) {
    d *= k->red_ext[r];
    bool ok = true, bad = false;
    for (int w = 0; w < nops && ok; w++) {
      const VExpr *e = w == 0 ? g->P : g->Q;
      int64_t prev = k_offset(p, k, e, 0, &bad);
      for (int64_t t = 1; t < g->K && ok; t++) {
        int64_t cur = k_offset(p, k, e, t, &bad);
        if (t % d && cur - prev != 1) ok = false;
        prev = cur;
      }
    }
    if (!ok || bad) break;
    best = d;
  }
  return best >= 16 ? best : 0;
}

/* Lane use of tiles of `w` over an extent n (the useful share, x1000). */
static int64_t lane_use(int64_t n, int64_t w) { return 1000 * n / ((n + w - 1) / w * w); }

/* C^T = Q^T P^T: P and Q, their analyses, M and N swapped. */
static void swap_operands(GemmPlan *g) {
  const VExpr *e = g->P;
  g->P = g->Q, g->Q = e;
  GemmOperand o = g->op[0];
  g->op[0] = g->op[1], g->op[1] = o;
  int64_t x = g->M;
  g->M = g->N, g->N = x;
}

/* A skinny C (N within one NR panel, M at least one) runs transposed when
 * that fills the lanes better: the micro-tile's rows take N (MR of 4-6,
 * the least padding, the most rows on a tie) and its vectors take M. P
 * must run along M in memory (a transposed A, the weight gradient's
 * h^T dy): a row-major A would need a transposing pack of the large
 * operand, which costs more than the lanes win (A's rows are read in
 * place otherwise). */
static void plan_transposed(GemmPlan *g) {
  /* (not for batched products: per-image fusion, decided before the target
   * is known, must not depend on the vector width) */
  if (g->N > g->NR || g->M < g->NR || !g->op[0].fast || !g->op[0].x_unit || g->op[0].k_unit || g->batch > 1) return;
  int64_t best = 0, use = 0;
  for (int64_t r = 6; r >= 4; r--)
    if (lane_use(g->N, r) > use) use = lane_use(g->N, r), best = r;
  int64_t now = lane_use(g->N, g->NR) * lane_use(g->M, g->MR), then = use * lane_use(g->M, g->NR);
  if (100 * then < TC_GAIN_PCT * now) return;
  g->tc = true;
  g->MR = best;
  swap_operands(g);
}

/* A filter gradient, dW[o, r] = sum_{n, q} dy[n, o, q] * cols[n, r, q]
 * (both operands contiguous along k, few rows o, the columns' rows r an
 * implicit im2col's window shifts at table offsets or an im2col buffer's
 * rows), runs as C^T = Q^T P^T: the rows r are read in place as A (row r at
 * its table offset, k through the K block's table, so K blocks may cross
 * images) and only dy^T is packed (O x K: a ninth of the im2col's elements
 * for a 3 x 3 window, whose transposing pack took a fifth of the product's
 * time); C^T (R x O) lives in the thread's scratch and is transposed into
 * C after the last K block. Measured against the packed 4 x 24 form and the
 * dot form (bench/gemm_bench.c, 1 thread): the small VGG's 32 x 288 x 69504
 * 56 -> 65-74 GFLOP/s in the model, LeNet-5's 16 x 150 x 6400 ratio to
 * OpenBLAS 1.34-1.44 -> 1.63-1.66. */
static void plan_ct(GemmPlan *g) {
  const GemmOperand *oa = &g->op[0], *ob = &g->op[1];
  if (g->tc || g->batch > 1 || !oa->fast || !ob->fast || !oa->k_unit || !ob->k_unit || !oa->x_affine ||
      g->M > CT_MAX_M || g->N < CT_MIN_N || g->K < CT_MIN_K)
    return;
  swap_operands(g);
  g->ct = true;
  g->direct_a_tab = true;
}

/* N block: the packed Q block (heap scratch) stays within ~2 MiB, so A is
 * repacked rarely; its NR-column panels stream through L1 */
static void set_nc(GemmPlan *g) {
  int64_t npad = (g->N + g->NR - 1) / g->NR * g->NR;
  int64_t ncmax = (NC_BYTES / 4) / g->KC / g->NR * g->NR;
  if (ncmax < g->NR) ncmax = g->NR;
  g->NC = npad < ncmax ? npad : ncmax;
}

/* Whether Q runs in rows (GemmOperand.x_row) of whole vectors. */
static bool rows_of_vectors(const GemmOperand *o, int64_t VW) { return o->x_row && o->x_row % VW == 0; }

/* ... and its rows hold whole vectors of every NR-column panel the same
 * way: panels of whole rows or rows of whole panels, no N tail. */
static bool b_rows_fit(const GemmOperand *o, int64_t N, int64_t NR, int64_t VW) {
  return rows_of_vectors(o, VW) && N % NR == 0 && (NR % o->x_row == 0 || o->x_row % NR == 0);
}

/* The dot form's tile with AVX-512's 32 registers (not over a packed Q^T,
 * whose 3-row tiles measured no faster on one thread and slower on two):
 * RM x RN accumulators of 8 to DOT_MAX_TILE (+ RN rows of Q + RM of P in
 * registers), the fewest idle rows and columns, then the most
 * accumulators, then the widest. Against the 2 x 5 of 16 registers: the
 * small VGG's first filter gradient, 32 x 27 over runs of 32, 2.14-2.17
 * -> 1.65-1.78 ms as 4 x 3 (`dlrun bench --per-kernel`, alternating);
 * LeNet-5's, 6 x 25, 0.21-0.22 -> 0.17-0.18 ms as 3 x 5 (gemm_bench's
 * 6 x 25 x 50176 83-91 -> 96-100 GFLOP/s, 108-110 -> 136-174 on two
 * threads); 4 x 4, 6 x 3 and 8 x 2 measured between the two. */
static void dot_tile_512(GemmPlan *g) {
  int64_t best = -1;
  for (int64_t rm = 1; rm <= 6; rm++)
    for (int64_t rn = 1; rn <= 6; rn++) {
      if (rm * rn < 8 || rm * rn > DOT_MAX_TILE) continue;
      int64_t use = lane_use(g->M, rm) * lane_use(g->N, rn);
      int64_t score = (use * 32 + rm * rn) * 8 + rn; /* use first, then the tile's size, then its width */
      if (score > best) best = score, g->RM = rm, g->RN = rn;
    }
}

static bool plan(const CgModule *m, const Program *p, const Kernel *k, GemmPlan *g) {
  memset(g, 0, sizeof *g);
  if (g_gemm_mode == 1) return false;
  if (k->red != RED_SUM || k->accumulate || k->dtype != DT_F32 || k->shape.rank < 2 || k->n_red < 1 ||
      !k->body || k->body->op != VX_MUL || k->body->dtype != DT_F32 || k->body->a->dtype != DT_F32 ||
      k->body->b->dtype != DT_F32)
    return false;
  if (k->epilogue && k->epilogue->dtype != DT_F32 && k->epilogue->dtype != DT_I32) return false;
  if (!cg_sum_in_output_legal(p, k)) return false;
  if (!plan_split(k, k->body->a, k->body->b, g) && !plan_split(k, k->body->b, k->body->a, g)) return false;
  g->batch = g->M = g->N = g->K = 1;
  for (int d = 0; d < g->nb; d++) g->batch *= k->shape.d[d];
  for (int d = g->nb; d < g->nb + g->ni; d++) g->M *= k->shape.d[d];
  for (int d = g->nb + g->ni; d < k->shape.rank; d++) g->N *= k->shape.d[d];
  for (int r = 0; r < k->n_red; r++) g->K *= k->red_ext[r];
  if (g->M <= 0 || g->N <= 0 || g->K <= 0 || g->batch <= 0) return false;
  /* tiny products: the plain nests do as well without packing */
  if (g->M * g->N * g->K < 2048 || g->N < 4 || g->M < 2) return false;

  g->VW = has_avx512(m) ? 16 : 8;
  g->MR = 6;
  g->NR = 2 * g->VW;
  g->ldc = g->N;
  analyse_operand(p, k, g, g->P, true, &g->op[0]);
  analyse_operand(p, k, g, g->Q, false, &g->op[1]);
  plan_transposed(g);
  plan_ct(g);

  /* K blocks: one block up to 512, else equal blocks of at most 384 */
  int64_t nk = g->K <= KC_ONE ? 1 : (g->K + KC_MAX - 1) / KC_MAX;
  g->KC = (g->K + nk - 1) / nk;
  /* M block: 96 rows (multiple of MR): the packed A block stays in L2 */
  g->MC = MC_PANELS * g->MR;
  set_nc(g);
  /* In-place operands skip packing where packing does not pay: P's rows
   * (unit-stride k) when few B panels reuse a packed A (small N); Q's rows
   * (unit-stride j) when one M block uses each B panel (small M). */
  const GemmOperand *oa = &g->op[0], *ob = &g->op[1];
  bool a_small = g->N <= DIRECT_A_MAX_N;
  g->direct_a = !g->direct_a_tab && oa->fast && oa->k_affine && oa->k_coef == 1 && oa->x_affine && a_small;
  g->direct_at = !g->direct_a && !g->direct_a_tab && oa->fast && oa->x_affine && oa->x_coef == 1 && oa->k_affine && a_small;
  g->direct_b = ob->fast && ob->x_affine && ob->x_coef == 1 && ob->k_affine && g->M <= DIRECT_B_MAX_M;
  /* an implicit im2col's rows (pixels, unit stride) at table offsets per k:
   * read in place too (each row of a convolution's B is a window shift of
   * the same few image rows, hot in L1) */
  g->direct_b_tab = !g->tc && !g->ct && ob->fast && ((ob->x_affine && ob->x_coef == 1) || ob->x_row) && !ob->k_affine &&
                    g->M <= DIRECT_B_MAX_M &&
                    (g->K >= DIRECT_BT_MIN_K || g->M <= DIRECT_BT_ONE_TILE_M || (ob->x_row && g->VW == 16));
  if (g->direct_b_tab) g->direct_b = true;
  /* Packed operands, M a multiple of 4 but not of 6 within one M block (a
   * convolution's 32 or 64 channels): 4 x 3-vector tiles, no idle rows in
   * the last tile and fewer broadcasts per FMA (VGG's convolutions 47-54 ->
   * 54-60 GFLOP/s; an affine B read in place keeps 6 x 2, the 4 x 3 tiles
   * measured slower there; an im2col B read in place takes 4 x 3: 32 x 1086
   * x 288 63 -> 66-71 GFLOP/s against 6 x 2's 61-65). */
  bool four_rows = !g->tc && !g->ct && !g->direct_a && !g->direct_at;
  if (four_rows && g->VW == 16) {
    /* AVX-512 (32 vector registers): 4 x 4-vector tiles where N fills two
     * 64-column panels, else 4 x 3, whenever 4-row tiles waste no more rows
     * than 6-row ones (within 3 %), B read in place or not (bench/gemm_bench.c,
     * 1 thread: the small VGG's 32 x 1024 x 288 86-96 -> 98-109 GFLOP/s with
     * 4 x 4, LeNet-5's 16 x 100 x 150 48-55 -> 69-79 with 4 x 3) */
    int64_t pad4 = (g->M + 3) / 4 * 4, pad6 = (g->M + 5) / 6 * 6;
    if (100 * pad4 <= 103 * pad6 && g->N >= 3 * g->VW) {
      g->MR = 4;
      g->NR = (g->N >= 8 * g->VW ? 4 : 3) * g->VW;
      /* a short K over B read in place: 2-vector panels (the small VGG's
       * first layer, K = 27 over rows of 32: 1.34-1.45 -> 1.19-1.29 ms
       * against 4 x 4, 4 x 3 slower still) */
      if (g->direct_b_tab && g->K < DIRECT_BT_MIN_K) g->NR = 2 * g->VW;
      g->MC = MC_PANELS * g->MR;
      set_nc(g);
    }
  } else if (four_rows && (!g->direct_b || g->direct_b_tab) && g->M <= MC_PANELS * 6 && g->M % 6 &&
             g->M % 4 == 0 && g->N >= 3 * g->VW && (!g->direct_b_tab || b_rows_fit(ob, g->N, 3 * g->VW, g->VW))) {
    g->MR = 4;
    g->NR = 3 * g->VW;
    g->MC = MC_PANELS * g->MR;
    set_nc(g);
  }
  /* AVX-512, one product (no batch), up to DIRECT_B_BLOCK_M rows: B's rows
   * read in place by one M block when they lie at most DIRECT_B_ROW_BYTES
   * apart (bench/gemm_bench.c, 1 thread, ratio to OpenBLAS: the small MLP's
   * 128 x 256 x 784 1.06-1.08 -> 1.11-1.13; 96-256 rows x 128-512 columns
   * 3-7 % faster; rows 4 KiB apart, 256 x 1024 x 1024, no faster, and 784
   * rows in one block slower) */
  if (!g->direct_b && g->VW == 16 && g->batch == 1 && !g->tc && !g->ct && !g->direct_a && !g->direct_at && ob->fast &&
      ob->x_affine && ob->x_coef == 1 && ob->k_affine && g->M <= DIRECT_B_BLOCK_M &&
      4 * ob->k_coef <= DIRECT_B_ROW_BYTES) {
    g->direct_b = true;
    g->MC = (g->M + g->MR - 1) / g->MR * g->MR;
  }
  /* B's rows in place in rows of the output (a convolution's output rows,
   * read at the padded input's width): each panel's vectors in one row */
  if (g->direct_b_tab && !ob->x_affine) {
    if (b_rows_fit(ob, g->N, g->NR, g->VW)) g->b_row = ob->x_row, g->b_row_stride = ob->x_row_stride;
    else g->direct_b = g->direct_b_tab = false;
  }
  /* the dot form: both operands contiguous along k (the transposed-both
   * shape of filter gradients), K much longer than M and N */
  bool dot_m = g->M <= DOT_MAX_M || (g->M <= DOT_MAX_M_NARROW && g->N <= DOT_NARROW_N);
  bool dot = !g->tc && !g->ct && g->batch == 1 && oa->fast && ob->fast && oa->k_unit && ob->k_unit && dot_m &&
             g->N <= 256 && g->K >= 16 * g->N;
  /* a skinny NN product (a classifier's N = 10 columns of weights read
   * along N, rows of A contiguous along k): vectors along N leave lanes
   * idle and a transposed C would need A transposed, so Q is transposed
   * into scratch ([N][K], a few KiB) and C runs in the dot form, lanes
   * along k (256 x 10 x 1024: 52 -> 58-66 GFLOP/s) */
  bool qt = !g->tc && !g->ct && g->batch == 1 && oa->fast && oa->k_unit && ob->fast && ob->x_affine && ob->k_affine &&
            !ob->k_unit && g->N <= 2 * g->VW && lane_use(g->N, g->VW) < DOT_QT_LANES && g->K >= DOT_QT_MIN_K;
  if (dot || qt) {
    int64_t run = dot_run(p, k, g, qt ? 1 : 2);
    /* a run longer than a block is cut into equal contiguous pieces */
    if (run > DOT_BLOCK) {
      int64_t d = DOT_BLOCK;
      while (d > 8 && (run % d || d % 8)) d--;
      if (run % d == 0) run = d;
    }
    if (run) {
      g->dot = true;
      g->dot_qt = qt;
      g->run = run;
      g->runs_per_block = run >= DOT_BLOCK ? 1 : DOT_BLOCK / run;
      g->RM = DOT_RM; /* RM x RN accumulators + RN rows of Q + 1 of P: at most 16 vector registers */
      g->RN = DOT_RN;
      if (qt) { /* columns in equal tiles of 4-6 (the fewest idle ones, the widest on a tie) */
        int64_t best = 0;
        for (int64_t rn = 6; rn >= 4; rn--)
          if (lane_use(g->N, rn) > best) best = lane_use(g->N, rn), g->RN = rn;
      }
      if (g->VW == 16 && !qt) /* 32 registers: larger tiles */
        dot_tile_512(g);
      g->by_batch = false;
      /* units: row tiles for a packed Q^T (its few columns would leave
       * threads idle) and where there are more row tiles than column
       * blocks (each thread then reads only its rows of P, the large
       * operand: the small VGG's first filter gradient, 32 x 27, at 2
       * threads 1.53-1.65 -> 1.29-1.48 ms), else column blocks */
      g->dot_rows = qt || (g->M + g->RM - 1) / g->RM > (g->N + g->RN - 1) / g->RN;
      /* column blocks as units: each of their row tiles a unit of its own,
       * column blocks outer (LeNet-5's first filter gradient, 6 x 25: five
       * column blocks split 3 : 2 over two threads, fifteen tiles 8 : 7) */
      g->units = g->dot_rows ? (g->M + g->RM - 1) / g->RM : (g->N + g->RN - 1) / g->RN * ((g->M + g->RM - 1) / g->RM);
      return true;
    }
  }
  if (g->nb > 0 && g->batch > 1) {
    g->by_batch = true;
    g->units = g->batch;
    /* P (packed) read alike by every batch entry: packed once per call */
    bool bad = false, uses = false;
    for (int d = 0; d < g->nb; d++) uses = uses || vx_uses_var(g->P, d, &bad);
    g->a_once = !uses && !bad && oa->fast && !g->direct_a && !g->direct_at && 4 * A_BLOCKS(g) * g->KC * g->MC <= A_ONCE_BYTES;
  } else {
    g->by_batch = false;
    g->units = (g->M + g->MR - 1) / g->MR;
    /* few row tiles (a filter gradient: M = output channels, K huge): split
     * the columns, so threads do not pack the same B twice */
    int64_t npan = (g->N + g->NR - 1) / g->NR;
    /* ... and where a packed B is wider than A is tall: each thread then packs
     * only its columns of B and all of A, the smaller operand, instead of all
     * of B (the large MLP's forward and data-gradient products, 256 x 1024 x
     * 1024 NT at 2 threads 147-162 -> 168-176 GFLOP/s, bench/gemm_bench.c) */
    bool wide_b = !g->direct_b && !g->tc && g->N >= SPLIT_N_RATIO * g->M && g->K >= SPLIT_N_MIN_K;
    if (!g->ct && ((g->M <= g->MC && npan > g->units) || (wide_b && npan >= SPLIT_N_MIN_PANELS))) {
      g->split_n = true;
      g->units = npan;
    }
  }
  return true;
}

bool cg_gemm_plan(const CgModule *m, const Program *p, const Kernel *k, GemmPlan *g) {
  bool ok = plan(m, p, k, g);
  const char *dbg = getenv("DLC_DEBUG"); /* >= 2: the GEMM plans on stderr */
  if (ok && dbg && atoi(dbg) >= 2)
    fprintf(stderr,
            "dlc-debug: gemm plan %s: batch %lld M %lld N %lld K %lld tile %lldx%lld KC %lld"
            " direct A/A^T/B %d%d%d%s%s%s rows %lld/%lld dot %d%s transposed %d%s split-N %d"
            " P(fast %d affine x/k %d%d unit x/k %d%d) Q(fast %d affine x/k %d%d unit x/k %d%d)\n",
            k->name, (long long)g->batch, (long long)g->M, (long long)g->N, (long long)g->K,
            (long long)(g->dot ? g->RM : g->MR), (long long)(g->dot ? g->RN : g->NR), (long long)g->KC, g->direct_a, g->direct_at, g->direct_b, g->direct_b_tab ? " (table)" : "", g->direct_a_tab ? " (A table)" : "", g->a_once ? " A once" : "",
            (long long)g->b_row, (long long)g->b_row_stride, g->dot,
            g->dot_qt ? " (Q^T packed)" : "", g->tc, g->ct ? " (C^T in scratch)" : "", g->split_n,
            g->op[0].fast, g->op[0].x_affine, g->op[0].k_affine, g->op[0].x_unit, g->op[0].k_unit, g->op[1].fast,
            g->op[1].x_affine, g->op[1].k_affine, g->op[1].x_unit, g->op[1].k_unit);
  return ok;
}

/* ---------------- IR helpers ---------------- */

typedef struct {
  LLVMBasicBlockRef header, exit;
  LLVMValueRef iv, step;
  int hint; /* LoopHint for the back edge, or -1 for none (LLVM decides) */
} GLoop;

/* for (iv = lo; iv < hi; iv += step) */
static LLVMValueRef gloop_begin(KernelCg *kc, GLoop *L, LLVMValueRef lo, LLVMValueRef hi, int64_t step,
                                const char *name) {
  LLVMContextRef c = kc->m->ctx;
  LLVMBuilderRef b = kc->b;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  L->header = LLVMAppendBasicBlockInContext(c, kc->fn, name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c, kc->fn, name);
  L->exit = LLVMAppendBasicBlockInContext(c, kc->fn, name);
  L->step = cg_i64(kc->m, step);
  L->hint = LOOP_NO_UNROLL;
  LLVMBuildBr(b, L->header);
  LLVMPositionBuilderAtEnd(b, L->header);
  L->iv = LLVMBuildPhi(b, kc->m->t_i64, name);
  LLVMAddIncoming(L->iv, &lo, &pre, 1);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, L->iv, hi, ""), body, L->exit);
  LLVMPositionBuilderAtEnd(b, body);
  return L->iv;
}

static void gloop_end(KernelCg *kc, GLoop *L) {
  LLVMBuilderRef b = kc->b;
  LLVMValueRef next = LLVMBuildNSWAdd(b, L->iv, L->step, "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  /* never unrolled: packing, edge-tile and epilogue loops have constant
   * trip counts that LLVM would unroll into thousands of instructions */
  LLVMValueRef br = LLVMBuildBr(b, L->header);
  if (L->hint >= 0) cg_loop_hint(kc->m, br, (LoopHint)L->hint);
  LLVMAddIncoming(L->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(b, L->exit);
}

static LLVMValueRef I64(KernelCg *kc, int64_t v) { return cg_i64(kc->m, v); }
static LLVMValueRef ADD(KernelCg *kc, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildNSWAdd(kc->b, x, y, ""); }
static LLVMValueRef SUB(KernelCg *kc, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildNSWSub(kc->b, x, y, ""); }
static LLVMValueRef MUL(KernelCg *kc, LLVMValueRef x, int64_t c) {
  return c == 1 ? x : LLVMBuildNSWMul(kc->b, x, I64(kc, c), "");
}
static LLVMValueRef MIN(KernelCg *kc, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildSelect(kc->b, LLVMBuildICmp(kc->b, LLVMIntSLT, x, y, ""), x, y, "");
}
static LLVMValueRef LT(KernelCg *kc, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildICmp(kc->b, LLVMIntSLT, x, y, "");
}
static LLVMValueRef GEPF(KernelCg *kc, LLVMValueRef base, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(kc->b, kc->m->t_f32, base, &idx, 1, "");
}

/* A call of dlrt_scratch(bytes): the calling thread's scratch memory. */
static LLVMValueRef scratch(KernelCg *kc, int64_t bytes, const char *name) {
  CgModule *m = kc->m;
  LLVMTypeRef ft = LLVMFunctionType(m->t_ptr, &m->t_i64, 1, 0);
  LLVMValueRef fs = LLVMGetNamedFunction(m->mod, "dlrt_scratch");
  if (!fs) fs = LLVMAddFunction(m->mod, "dlrt_scratch", ft);
  LLVMValueRef n = cg_i64(m, bytes);
  return LLVMBuildCall2(kc->b, ft, fs, &n, 1, name);
}

/* Sets kc->var[first .. first+n) from the row-major flat index f over ext. */
static void set_vars(KernelCg *kc, int first, int n, const int64_t *ext, LLVMValueRef f) {
  for (int d = n - 1; d >= 0; d--) {
    if (d == 0) {
      kc->var[first + d] = f;
    } else {
      kc->var[first + d] = LLVMBuildURem(kc->b, f, I64(kc, ext[d]), "");
      f = LLVMBuildUDiv(kc->b, f, I64(kc, ext[d]), "");
    }
  }
}

typedef struct {
  KernelCg *kc;
  const GemmPlan *g;
  LLVMValueRef bidx;  /* flat batch index */
  LLVMValueRef Ap, Bp, tile;
  LLVMValueRef C;     /* C's memory: the output buffer, or the scratch of one batch entry */
  LLVMTypeRef vt;     /* <VW x float> */
  /* fast operand addressing: per-block offset tables (i64) and bases */
  LLVMValueRef ktab[2], xtab[2], base[2];
} GemmCg;

static void zero_vars(GemmCg *G) {
  const Kernel *k = G->kc->k;
  for (int v = 0; v < k->shape.rank + k->n_red; v++) G->kc->var[v] = cg_i64(G->kc->m, 0);
}

static LLVMValueRef emit_offset(KernelCg *kc, const VExpr *l) {
  const Buffer *B = &kc->p->bufs[l->buf];
  LLVMValueRef idx[IR_MAX_RANK];
  for (int d = 0; d < l->rank; d++) idx[d] = cg_ix(kc, l->idx[d]);
  return cg_linear(kc, idx, B->shape.d, l->rank);
}

static void set_batch_vars(GemmCg *G) {
  const Kernel *k = G->kc->k;
  if (G->g->nb > 0) set_vars(G->kc, 0, G->g->nb, k->shape.d, G->bidx);
}
/* vars of C's row dims (I) and column dims (J) from their flat index */
static void set_i_vars(GemmCg *G, LLVMValueRef i) {
  const Kernel *k = G->kc->k;
  set_vars(G->kc, G->g->nb, G->g->ni, k->shape.d + G->g->nb, i);
}
static void set_j_vars(GemmCg *G, LLVMValueRef j) {
  const Kernel *k = G->kc->k;
  int j0 = G->g->nb + G->g->ni;
  set_vars(G->kc, j0, G->g->nj, k->shape.d + j0, j);
}
/* vars of the GEMM's rows (P's own dims) and columns (Q's): I and J, or J
 * and I when C is computed transposed */
static void set_row_vars(GemmCg *G, LLVMValueRef x) {
  if (G->g->tc || G->g->ct) set_j_vars(G, x);
  else set_i_vars(G, x);
}
static void set_col_vars(GemmCg *G, LLVMValueRef x) {
  if (G->g->tc || G->g->ct) set_i_vars(G, x);
  else set_j_vars(G, x);
}
static void set_k_vars(GemmCg *G, LLVMValueRef kk) {
  const Kernel *k = G->kc->k;
  set_vars(G->kc, k->shape.rank, k->n_red, k->red_ext, kk);
}

/* tab[t] = offset of operand w at group `grp` flat index start + t (other
 * groups at 0) minus f0, for t in [0, count). grp: 1 own dims, 2 reduction. */
static void fill_table(GemmCg *G, int w, int grp, LLVMValueRef tab, LLVMValueRef start, LLVMValueRef count) {
  KernelCg *kc = G->kc;
  const VExpr *l = w == 0 ? G->g->P : G->g->Q;
  GLoop L;
  LLVMValueRef t = gloop_begin(kc, &L, cg_i64(kc->m, 0), count, 1, "tab");
  zero_vars(G);
  LLVMValueRef x = LLVMBuildNSWAdd(kc->b, start, t, "");
  if (grp == 2) set_k_vars(G, x);
  else if (w == 0) set_row_vars(G, x);
  else set_col_vars(G, x);
  LLVMValueRef off = LLVMBuildNSWSub(kc->b, emit_offset(kc, l), cg_i64(kc->m, G->g->op[w].f0), "");
  LLVMValueRef ptr = LLVMBuildInBoundsGEP2(kc->b, kc->m->t_i64, tab, &t, 1, "");
  LLVMBuildStore(kc->b, off, ptr);
  gloop_end(kc, &L);
}

/* base[w] = offset of operand w at the current batch entry (other groups 0). */
static void set_base(GemmCg *G, int w) {
  zero_vars(G);
  set_batch_vars(G);
  G->base[w] = emit_offset(G->kc, w == 0 ? G->g->P : G->g->Q);
}

/* Offset part of operand w for group grp at flat index x (block start `start`). */
static LLVMValueRef part_offset(GemmCg *G, int w, int grp, LLVMValueRef x, LLVMValueRef start) {
  KernelCg *kc = G->kc;
  const GemmOperand *o = &G->g->op[w];
  bool aff = grp == 2 ? o->k_affine : o->x_affine;
  int64_t c = grp == 2 ? o->k_coef : o->x_coef;
  if (aff) return c == 1 ? x : LLVMBuildNSWMul(kc->b, x, cg_i64(kc->m, c), "");
  if (grp == 1 && o->x_row) /* rows: no table */
    return ADD(kc, MUL(kc, LLVMBuildUDiv(kc->b, x, I64(kc, o->x_row), ""), o->x_row_stride),
               LLVMBuildURem(kc->b, x, I64(kc, o->x_row), ""));
  LLVMValueRef t = LLVMBuildNSWSub(kc->b, x, start, "");
  LLVMValueRef ptr = LLVMBuildInBoundsGEP2(kc->b, kc->m->t_i64, grp == 2 ? G->ktab[w] : G->xtab[w], &t, 1, "");
  return LLVMBuildLoad2(kc->b, kc->m->t_i64, ptr, "");
}

/* Element of operand w at own flat index x and flat reduction index kk. */
static LLVMValueRef fast_value(GemmCg *G, int w, LLVMValueRef x, LLVMValueRef xstart, LLVMValueRef kk,
                               LLVMValueRef kstart) {
  KernelCg *kc = G->kc;
  const VExpr *l = w == 0 ? G->g->P : G->g->Q;
  LLVMValueRef off = LLVMBuildNSWAdd(kc->b, G->base[w], part_offset(G, w, 2, kk, kstart), "");
  off = LLVMBuildNSWAdd(kc->b, off, part_offset(G, w, 1, x, xstart), "");
  LLVMValueRef ptr = LLVMBuildInBoundsGEP2(kc->b, kc->m->t_f32, kc->buf[l->buf], &off, 1, "");
  return LLVMBuildLoad2(kc->b, kc->m->t_f32, ptr, "");
}

/* Whether e's innermost reduction var walks its loads contiguously (the
 * transposed-operand case): then packing loops run k innermost. */
static bool k_contiguous(const Program *p, const Kernel *k, const VExpr *e) {
  return cg_unit_stride_along(p, e, k->shape.rank + k->n_red - 1);
}

/* Whether packing operand w should run k innermost (its contiguous direction). */
static bool operand_k_inner(GemmCg *G, int w) {
  const GemmOperand *o = &G->g->op[w];
  /* rows along the own index are copied as vectors only when they are
   * affine with unit stride (an implicit im2col's x = (c, kh, kw) steps by
   * one within a window row but not across rows: k-inner, contiguous in q) */
  if (o->fast) /* (rows of whole vectors: pack_block too) */
    return o->k_unit && !(o->x_unit && ((o->x_affine && o->x_coef == 1) || rows_of_vectors(o, G->g->VW)));
  return k_contiguous(G->kc->p, G->kc->k, w == 0 ? G->g->P : G->g->Q);
}

/* Element of operand w (P: w = 0, Q: w = 1) at own flat index x (clamped,
 * in its block's tables) and flat reduction index pc + kl, generic or fast. */
static LLVMValueRef operand_value(GemmCg *G, int w, LLVMValueRef x, LLVMValueRef xs, LLVMValueRef kk,
                                  LLVMValueRef pc) {
  KernelCg *kc = G->kc;
  if (G->g->op[w].fast) return fast_value(G, w, x, xs, kk, pc);
  set_batch_vars(G);
  if (w == 0) {
    set_row_vars(G, x);
    set_col_vars(G, I64(kc, 0));
  } else {
    set_col_vars(G, x);
    set_row_vars(G, I64(kc, 0));
  }
  set_k_vars(G, kk);
  return cg_vx(kc, w == 0 ? G->g->P : G->g->Q);
}

/* Pointer to operand w (fast) at own index x and reduction index kk. */
static LLVMValueRef fast_ptr(GemmCg *G, int w, LLVMValueRef x, LLVMValueRef xs, LLVMValueRef kk, LLVMValueRef pc) {
  KernelCg *kc = G->kc;
  const VExpr *l = w == 0 ? G->g->P : G->g->Q;
  LLVMValueRef off = ADD(kc, G->base[w], part_offset(G, w, 2, kk, pc));
  off = ADD(kc, off, part_offset(G, w, 1, x, xs));
  return GEPF(kc, kc->buf[l->buf], off);
}

static LLVMValueRef shuf(GemmCg *G, LLVMValueRef a, LLVMValueRef b, const int *mask, int n) {
  CgModule *m = G->kc->m;
  LLVMValueRef e[16];
  for (int i = 0; i < n; i++) e[i] = cg_i32(m, mask[i]);
  return LLVMBuildShuffleVector(G->kc->b, a, b, LLVMConstVector(e, (unsigned)n), "");
}

/* In place 8x8 transpose of <8 x float> rows (unpack, 64-bit shuffle, 128-bit permute). */
static void transpose8(GemmCg *G, LLVMValueRef r[8]) {
  static const int lo[8] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[8] = {2, 10, 3, 11, 6, 14, 7, 15};
  static const int sa[8] = {0, 1, 8, 9, 4, 5, 12, 13}, sb[8] = {2, 3, 10, 11, 6, 7, 14, 15};
  static const int pl[8] = {0, 1, 2, 3, 8, 9, 10, 11}, ph[8] = {4, 5, 6, 7, 12, 13, 14, 15};
  LLVMValueRef t[8], u[8];
  for (int i = 0; i < 8; i += 2) t[i] = shuf(G, r[i], r[i + 1], lo, 8), t[i + 1] = shuf(G, r[i], r[i + 1], hi, 8);
  for (int q = 0; q < 8; q += 4) {
    u[q + 0] = shuf(G, t[q + 0], t[q + 2], sa, 8), u[q + 1] = shuf(G, t[q + 0], t[q + 2], sb, 8);
    u[q + 2] = shuf(G, t[q + 1], t[q + 3], sa, 8), u[q + 3] = shuf(G, t[q + 1], t[q + 3], sb, 8);
  }
  for (int i = 0; i < 4; i++) r[i] = shuf(G, u[i], u[4 + i], pl, 8), r[4 + i] = shuf(G, u[i], u[4 + i], ph, 8);
}

/* Packs operand w over own indices [xs, xs + cnt) and reduction indices
 * [pc, pc + kc_cur) into dst as panels of R = MR (P) or NR (Q):
 * dst[(panel * KC + k) * R + r], 0 where the own index is >= lim. Panels
 * [p0, ceil(cnt / R)); element by element, at clamped indices. */
static void pack_generic(GemmCg *G, int w, LLVMValueRef dst, LLVMValueRef xs, LLVMValueRef cnt, LLVMValueRef lim,
                         LLVMValueRef pc, LLVMValueRef kc_cur, LLVMValueRef p0) {
  KernelCg *kc = G->kc;
  const GemmPlan *g = G->g;
  LLVMBuilderRef b = kc->b;
  int64_t R = w == 0 ? g->MR : g->NR;
  LLVMValueRef npan = LLVMBuildUDiv(b, ADD(kc, cnt, I64(kc, R - 1)), I64(kc, R), "");
  GLoop Lp, Lk, Lr;
  bool kin = operand_k_inner(G, w);
  LLVMValueRef p = gloop_begin(kc, &Lp, p0, npan, 1, "pp");
  LLVMValueRef kl, r;
  if (kin) {
    r = gloop_begin(kc, &Lr, I64(kc, 0), I64(kc, R), 1, "pr");
    kl = gloop_begin(kc, &Lk, I64(kc, 0), kc_cur, 1, "pk");
  } else {
    kl = gloop_begin(kc, &Lk, I64(kc, 0), kc_cur, 1, "pk");
    r = gloop_begin(kc, &Lr, I64(kc, 0), I64(kc, R), 1, "pr");
    Lr.hint = LOOP_FULL_UNROLL;
  }
  LLVMValueRef x = ADD(kc, ADD(kc, xs, MUL(kc, p, R)), r);
  LLVMValueRef xcl = MIN(kc, x, SUB(kc, lim, I64(kc, 1)));
  LLVMValueRef v = operand_value(G, w, xcl, xs, ADD(kc, pc, kl), pc);
  v = LLVMBuildSelect(b, LT(kc, x, lim), v, cg_f32(kc->m, 0.0), "");
  LLVMValueRef at = ADD(kc, MUL(kc, ADD(kc, MUL(kc, p, g->KC), kl), R), r);
  LLVMBuildStore(b, v, GEPF(kc, dst, at));
  if (kin) {
    gloop_end(kc, &Lk);
    gloop_end(kc, &Lr);
  } else {
    gloop_end(kc, &Lr);
    gloop_end(kc, &Lk);
  }
  gloop_end(kc, &Lp);
}

/* pack_generic's contract, vectorized where the operand allows:
 *  - own index unit-stride (rows of R contiguous floats per k): full panels
 *    copy one <R x float> per k, the tail panel goes element by element;
 *  - reduction index unit-stride (the transposed operand): groups of 8 k
 *    whose offsets are contiguous load <8 x float> per own index and
 *    transpose 8x8 blocks; other k element by element. */
static void pack_block(GemmCg *G, int w, LLVMValueRef dst, LLVMValueRef xs, LLVMValueRef cnt, LLVMValueRef lim,
                       LLVMValueRef pc, LLVMValueRef kc_cur) {
  KernelCg *kc = G->kc;
  CgModule *m = kc->m;
  const GemmPlan *g = G->g;
  const GemmOperand *o = &g->op[w];
  LLVMBuilderRef b = kc->b;
  LLVMContextRef ctx = m->ctx;
  int64_t R = w == 0 ? g->MR : g->NR;
  bool kin = o->fast && operand_k_inner(G, w);
  /* Q in rows (GemmOperand.x_row): a panel's vectors each within a row, at their rows' offsets */
  bool vrows = rows_of_vectors(o, g->VW);
  if (o->fast && !kin && ((o->x_affine && o->x_coef == 1) || vrows)) {
    int64_t lw = vrows ? g->VW : R;
    LLVMTypeRef vt = LLVMVectorType(m->t_f32, (unsigned)lw);
    LLVMValueRef nfull = LLVMBuildUDiv(b, cnt, I64(kc, R), "");
    GLoop Lp, Lk;
    LLVMValueRef p = gloop_begin(kc, &Lp, I64(kc, 0), nfull, 1, "vp");
    LLVMValueRef x0 = ADD(kc, xs, MUL(kc, p, R));
    /* the panel's own offsets (its vectors' rows), outside the k loop */
    LLVMValueRef xo[16] = {0};
    for (int64_t q = 0; q < R; q += lw) xo[q / lw] = ADD(kc, G->base[w], part_offset(G, w, 1, ADD(kc, x0, I64(kc, q)), xs));
    LLVMValueRef kl = gloop_begin(kc, &Lk, I64(kc, 0), kc_cur, 1, "vk");
    LLVMValueRef d0 = MUL(kc, ADD(kc, MUL(kc, p, g->KC), kl), R);
    LLVMValueRef koff = part_offset(G, w, 2, ADD(kc, pc, kl), pc);
    for (int64_t q = 0; q < R; q += lw) {
      LLVMValueRef src = GEPF(kc, kc->buf[(w == 0 ? g->P : g->Q)->buf], ADD(kc, xo[q / lw], koff));
      LLVMValueRef v = LLVMBuildLoad2(b, vt, src, "");
      LLVMSetAlignment(v, 4);
      LLVMValueRef st = LLVMBuildStore(b, v, GEPF(kc, dst, ADD(kc, d0, I64(kc, q))));
      LLVMSetAlignment(st, 4);
    }
    gloop_end(kc, &Lk);
    gloop_end(kc, &Lp);
    /* a partial panel exists only when the extent is not a multiple of R
     * (blocks and thread ranges are) */
    if ((w == 0 ? g->M : g->N) % R) pack_generic(G, w, dst, xs, cnt, lim, pc, kc_cur, nfull);
    return;
  }
  if (!kin || (R % 8 && R > 8)) {
    pack_generic(G, w, dst, xs, cnt, lim, pc, kc_cur, I64(kc, 0));
    return;
  }
  LLVMTypeRef v8 = LLVMVectorType(m->t_f32, 8);
  LLVMValueRef npan = LLVMBuildUDiv(b, ADD(kc, cnt, I64(kc, R - 1)), I64(kc, R), "");
  LLVMValueRef k8 = MUL(kc, LLVMBuildUDiv(b, kc_cur, I64(kc, 8), ""), 8);
  GLoop Lp, Lk;
  LLVMValueRef p = gloop_begin(kc, &Lp, I64(kc, 0), npan, 1, "tp");
  LLVMValueRef x0 = ADD(kc, xs, MUL(kc, p, R));
  LLVMValueRef lim1 = SUB(kc, lim, I64(kc, 1));
  LLVMValueRef kl = gloop_begin(kc, &Lk, I64(kc, 0), k8, 8, "tk");
  LLVMValueRef kk = ADD(kc, pc, kl);
  LLVMValueRef contig = LLVMConstInt(m->t_i1, 1, 0);
  bool always_contig = o->k_affine && o->k_coef == 1;
  int64_t k_last = g->K - (g->K - 1) / g->KC * g->KC; /* the last K block's length */
  bool k_rem = g->KC % 8 || k_last % 8;
  if (!always_contig) {
    LLVMValueRef d = SUB(kc, part_offset(G, w, 2, ADD(kc, kk, I64(kc, 7)), pc), part_offset(G, w, 2, kk, pc));
    contig = LLVMBuildICmp(b, LLVMIntEQ, d, I64(kc, 7), "");
  }
  LLVMBasicBlockRef bv = LLVMAppendBasicBlockInContext(ctx, kc->fn, "tvec");
  LLVMBasicBlockRef bs = always_contig ? NULL : LLVMAppendBasicBlockInContext(ctx, kc->fn, "tscal");
  LLVMBasicBlockRef bj = LLVMAppendBasicBlockInContext(ctx, kc->fn, "tjoin");
  if (always_contig) LLVMBuildBr(b, bv);
  else LLVMBuildCondBr(b, contig, bv, bs);
  LLVMPositionBuilderAtEnd(b, bv);
  for (int64_t g0 = 0; g0 < R; g0 += 8) {
    LLVMValueRef rows[8];
    for (int t = 0; t < 8; t++) {
      if (g0 + t >= R) {
        rows[t] = LLVMConstNull(v8);
        continue;
      }
      LLVMValueRef x = ADD(kc, x0, I64(kc, g0 + t));
      LLVMValueRef ld = LLVMBuildLoad2(b, v8, fast_ptr(G, w, MIN(kc, x, lim1), xs, kk, pc), "");
      LLVMSetAlignment(ld, 4);
      rows[t] = LLVMBuildSelect(b, LT(kc, x, lim), ld, LLVMConstNull(v8), "");
    }
    transpose8(G, rows);
    int64_t width = R - g0 < 8 ? R - g0 : 8;
    LLVMTypeRef wt = LLVMVectorType(m->t_f32, (unsigned)width);
    static const int first[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int t = 0; t < 8; t++) {
      LLVMValueRef v = width == 8 ? rows[t] : shuf(G, rows[t], rows[t], first, (int)width);
      LLVMValueRef at = ADD(kc, MUL(kc, ADD(kc, MUL(kc, p, g->KC), ADD(kc, kl, I64(kc, t))), R), I64(kc, g0));
      LLVMValueRef st = LLVMBuildStore(b, v, GEPF(kc, dst, at));
      LLVMSetAlignment(st, 4);
      (void)wt;
    }
  }
  LLVMBuildBr(b, bj);
  if (bs) { /* a group of 8 k crossing a run of contiguous k: element by element */
    LLVMPositionBuilderAtEnd(b, bs);
    GLoop Lr, Lt;
    LLVMValueRef r = gloop_begin(kc, &Lr, I64(kc, 0), I64(kc, R), 1, "sr");
    LLVMValueRef t = gloop_begin(kc, &Lt, I64(kc, 0), I64(kc, 8), 1, "st");
    LLVMValueRef x = ADD(kc, x0, r);
    LLVMValueRef v = operand_value(G, w, MIN(kc, x, lim1), xs, ADD(kc, kk, t), pc);
    v = LLVMBuildSelect(b, LT(kc, x, lim), v, cg_f32(m, 0.0), "");
    LLVMValueRef at = ADD(kc, MUL(kc, ADD(kc, MUL(kc, p, g->KC), ADD(kc, kl, t)), R), r);
    LLVMBuildStore(b, v, GEPF(kc, dst, at));
    gloop_end(kc, &Lt);
    gloop_end(kc, &Lr);
    LLVMBuildBr(b, bj);
  }
  LLVMPositionBuilderAtEnd(b, bj);
  gloop_end(kc, &Lk);
  if (k_rem) { /* the k remainder */
    GLoop Lr, Lt;
    LLVMValueRef r = gloop_begin(kc, &Lr, I64(kc, 0), I64(kc, R), 1, "rr");
    LLVMValueRef t = gloop_begin(kc, &Lt, k8, kc_cur, 1, "rt");
    LLVMValueRef x = ADD(kc, x0, r);
    LLVMValueRef v = operand_value(G, w, MIN(kc, x, lim1), xs, ADD(kc, pc, t), pc);
    v = LLVMBuildSelect(b, LT(kc, x, lim), v, cg_f32(m, 0.0), "");
    LLVMValueRef at = ADD(kc, MUL(kc, ADD(kc, MUL(kc, p, g->KC), t), R), r);
    LLVMBuildStore(b, v, GEPF(kc, dst, at));
    gloop_end(kc, &Lt);
    gloop_end(kc, &Lr);
  }
  gloop_end(kc, &Lp);
}

static LLVMValueRef vload(GemmCg *G, LLVMValueRef ptr, unsigned align) {
  LLVMValueRef v = LLVMBuildLoad2(G->kc->b, G->vt, ptr, "");
  LLVMSetAlignment(v, align);
  return v;
}
static void vstore(GemmCg *G, LLVMValueRef v, LLVMValueRef ptr, unsigned align) {
  LLVMValueRef s = LLVMBuildStore(G->kc->b, v, ptr);
  LLVMSetAlignment(s, align);
}

/* Transposed C (plan tc): tile element (r, c) is C[c * ldc + r]. Copies
 * the valid rows x cols between C and the tile buffer (tile[r][c], rows
 * of NR), C's contiguous direction innermost. */
static void tc_copy(GemmCg *G, LLVMValueRef C, LLVMValueRef ldc, LLVMValueRef rows, LLVMValueRef cols, bool to_c) {
  KernelCg *kc = G->kc;
  LLVMBuilderRef b = kc->b;
  GLoop Lc, Lr;
  LLVMValueRef c = gloop_begin(kc, &Lc, I64(kc, 0), cols, 1, "tcc");
  LLVMValueRef r = gloop_begin(kc, &Lr, I64(kc, 0), rows, 1, "tcr");
  LLVMValueRef pc = GEPF(kc, C, ADD(kc, LLVMBuildNSWMul(b, c, ldc, ""), r));
  LLVMValueRef pt = GEPF(kc, G->tile, ADD(kc, MUL(kc, r, G->g->NR), c));
  LLVMValueRef x = LLVMBuildLoad2(b, kc->m->t_f32, to_c ? pt : pc, "");
  LLVMBuildStore(b, x, to_c ? pc : pt);
  gloop_end(kc, &Lr);
  gloop_end(kc, &Lc);
}

/* Transposed C: the accumulators' start (0 for the first K block, else C
 * through the tile buffer), as phis in bb_pre. */
static void tc_init(GemmCg *G, LLVMValueRef C, LLVMValueRef ldc, LLVMValueRef rows, LLVMValueRef cols,
                    LLVMValueRef first, LLVMBasicBlockRef bb_pre, LLVMValueRef *init) {
  KernelCg *kc = G->kc;
  LLVMBuilderRef b = kc->b;
  int MR = (int)G->g->MR, NV = (int)(G->g->NR / G->g->VW), VW = (int)G->g->VW;
  LLVMValueRef zero = LLVMConstNull(G->vt), from_c[64];
  LLVMBasicBlockRef bb_first = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef bb_load = LLVMAppendBasicBlockInContext(kc->m->ctx, kc->fn, "tc.load");
  LLVMBuildCondBr(b, first, bb_pre, bb_load);
  LLVMPositionBuilderAtEnd(b, bb_load);
  for (int a = 0; a < MR * NV; a++) vstore(G, zero, GEPF(kc, G->tile, I64(kc, a * VW)), (unsigned)(VW * 4));
  tc_copy(G, C, ldc, rows, cols, false);
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++)
      from_c[r * NV + v] = vload(G, GEPF(kc, G->tile, I64(kc, r * G->g->NR + v * VW)), (unsigned)(VW * 4));
  LLVMBasicBlockRef bb_load_end = LLVMGetInsertBlock(b);
  LLVMBuildBr(b, bb_pre);
  LLVMPositionBuilderAtEnd(b, bb_pre);
  for (int a = 0; a < MR * NV; a++) {
    init[a] = LLVMBuildPhi(b, G->vt, "");
    LLVMValueRef vals[2] = {from_c[a], zero};
    LLVMBasicBlockRef bbs[2] = {bb_load_end, bb_first};
    LLVMAddIncoming(init[a], vals, bbs, 2);
  }
}

/* Transposed C: the accumulators to C through the tile buffer. */
static void tc_store(GemmCg *G, LLVMValueRef C, LLVMValueRef ldc, LLVMValueRef rows, LLVMValueRef cols,
                     const LLVMValueRef *acc) {
  KernelCg *kc = G->kc;
  int MR = (int)G->g->MR, NV = (int)(G->g->NR / G->g->VW), VW = (int)G->g->VW;
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++)
      vstore(G, acc[r * NV + v], GEPF(kc, G->tile, I64(kc, r * G->g->NR + v * VW)), (unsigned)(VW * 4));
  tc_copy(G, C, ldc, rows, cols, true);
}

/* The micro-kernel's column masks: cm[v] = lanes of vector v below cols. */
static void col_masks(GemmCg *G, LLVMValueRef cols, int NV, LLVMValueRef *cm) {
  KernelCg *kc = G->kc;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int VW = (int)G->g->VW;
  LLVMTypeRef it = LLVMVectorType(m->t_i64, (unsigned)VW);
  LLVMValueRef cs = LLVMBuildInsertElement(b, LLVMGetUndef(it), cols, cg_i32(m, 0), "");
  cs = LLVMBuildShuffleVector(b, cs, LLVMGetUndef(it), LLVMConstNull(LLVMVectorType(m->t_i32, (unsigned)VW)), "");
  for (int v = 0; v < NV; v++) {
    LLVMValueRef lanes[64];
    for (int l = 0; l < VW; l++) lanes[l] = I64(kc, v * VW + l);
    cm[v] = LLVMBuildICmp(b, LLVMIntSLT, LLVMConstVector(lanes, (unsigned)VW), cs, "");
  }
}

/* The micro-kernel, one function per module (all GEMM kernels share it):
 *   ukr(ptr ap, ptr bp, i64 kc, ptr c, i64 ldc, i64 rows, i64 cols, i1 first)
 * C[r, 0..cols) for r < rows (row r at c + r * ldc) = (first ? 0 : C) +
 * sum over kc of Ap[k][r] * Bp[k][..]: MR x (NR/VW) vector accumulators,
 * one broadcast of Ap and NR/VW vector loads of Bp per k; a full tile is
 * loaded and stored directly, an edge tile through a small tile buffer. */
static LLVMValueRef ukr_fn(CgModule *m, const GemmPlan *g) {
  char name[96];
  snprintf(name, sizeof name, "dlc.gemm.ukr.%lldx%lld.v%lld%s%s%s%s.r%lld.%lld", (long long)g->MR, (long long)g->NR,
           (long long)g->VW, g->direct_a ? ".da" : "", g->direct_a_tab ? ".at" : "", g->tc ? ".tc" : "",
           g->direct_b_tab ? ".bt" : "", (long long)g->b_row, (long long)g->b_row_stride);
  LLVMValueRef fn = LLVMGetNamedFunction(m->mod, name);
  if (fn) return fn;
  LLVMTypeRef pt[13] = {m->t_ptr, m->t_i64, m->t_ptr, m->t_i64, m->t_i64, m->t_ptr, m->t_i64,
                        m->t_i64, m->t_i64, m->t_i1,  m->t_ptr, m->t_ptr, m->t_ptr};
  fn = LLVMAddFunction(m->mod, name, LLVMFunctionType(m->t_void, pt, 13, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  cg_add_fn_attrs(m, fn);
  unsigned noinl = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(m->ctx, noinl, 0));
  unsigned na = LLVMGetEnumAttributeKindForName("noalias", 7);
  unsigned nc = LLVMGetEnumAttributeKindForName("nocapture", 9);
  unsigned pidx[3] = {1, 3, 6};
  for (int i = 0; i < 3; i++) {
    LLVMAddAttributeAtIndex(fn, pidx[i], LLVMCreateEnumAttribute(m->ctx, na, 0));
    LLVMAddAttributeAtIndex(fn, pidx[i], LLVMCreateEnumAttribute(m->ctx, nc, 0));
  }

  KernelCg kcs = {0};
  KernelCg *kc = &kcs;
  kc->m = m;
  kc->fn = fn;
  kc->b = LLVMCreateBuilderInContext(m->ctx);
  LLVMBuilderRef b = kc->b;
  LLVMContextRef ctx = m->ctx;
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef ap = LLVMGetParam(fn, 0), lda = LLVMGetParam(fn, 1), bp = LLVMGetParam(fn, 2);
  LLVMValueRef ldb = LLVMGetParam(fn, 3), kc_cur = LLVMGetParam(fn, 4);
  LLVMValueRef C = LLVMGetParam(fn, 5), ldc = LLVMGetParam(fn, 6), rows = LLVMGetParam(fn, 7);
  LLVMValueRef cols = LLVMGetParam(fn, 8), first = LLVMGetParam(fn, 9), btab = LLVMGetParam(fn, 10);
  LLVMValueRef abase = LLVMGetParam(fn, 11), aktab = LLVMGetParam(fn, 12);
  enum { MAXACC = 64 };
  int MR = (int)g->MR, NV = (int)(g->NR / g->VW), VW = (int)g->VW;
  int64_t NR = g->NR;
  GemmCg Gs = {0};
  GemmCg *G = &Gs;
  G->kc = kc;
  G->g = g;
  G->vt = LLVMVectorType(m->t_f32, (unsigned)VW);
  G->tile = LLVMBuildAlloca(b, LLVMArrayType2(m->t_f32, (uint64_t)(MR * NR)), "tile");
  LLVMSetAlignment(G->tile, 64);
  LLVMValueRef zero = LLVMConstNull(G->vt);
  LLVMValueRef arow[MAXACC];
  /* direct A: row r at ap + min(r, rows - 1) * lda (rows past M repeat the last valid one) */
  LLVMValueRef aclamp[MAXACC] = {0};
  for (int r = 0; r < MR; r++) aclamp[r] = MIN(kc, I64(kc, r), SUB(kc, rows, I64(kc, 1)));
  for (int r = 0; r < MR && g->direct_a; r++) arow[r] = GEPF(kc, ap, LLVMBuildNSWMul(b, lda, aclamp[r], ""));
  /* direct A through tables: row r at abase + ap[min(r, rows - 1)] (ap: the
   * tile's row offsets, i64), its k at aktab[kl] */
  for (int r = 0; r < MR && g->direct_a_tab; r++) {
    LLVMValueRef off = LLVMBuildLoad2(b, m->t_i64, LLVMBuildInBoundsGEP2(b, m->t_i64, ap, &aclamp[r], 1, ""), "");
    arow[r] = GEPF(kc, abase, off);
  }

  LLVMValueRef init[MAXACC], full = NULL, crowc[MAXACC] = {0};
  LLVMBasicBlockRef bb_pre = LLVMAppendBasicBlockInContext(ctx, fn, "tile.pre");
  if (g->tc)
    tc_init(G, C, ldc, rows, cols, first, bb_pre, init);
  else {
    /* full-width tiles (any rows) load and store C directly: row r at row
     * min(r, rows - 1), stored last row first, so rows past `rows` land on
     * row rows - 1 before its own value does */
    full = LLVMBuildICmp(b, LLVMIntEQ, cols, I64(kc, NR), "full");
    for (int r = 0; r < MR; r++) crowc[r] = GEPF(kc, C, LLVMBuildNSWMul(b, ldc, aclamp[r], ""));
    LLVMBasicBlockRef bb_full = LLVMAppendBasicBlockInContext(ctx, fn, "tile.full");
    LLVMBasicBlockRef bb_edge = LLVMAppendBasicBlockInContext(ctx, fn, "tile.edge");
    /* the first K block starts from 0 without reading C */
    LLVMBasicBlockRef bb_first = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef bb_load = LLVMAppendBasicBlockInContext(ctx, fn, "tile.load");
    LLVMBuildCondBr(b, first, bb_pre, bb_load);
    LLVMPositionBuilderAtEnd(b, bb_load);
    LLVMBuildCondBr(b, full, bb_full, bb_edge);
    LLVMValueRef init_full[MAXACC], init_edge[MAXACC];
    LLVMPositionBuilderAtEnd(b, bb_full);
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++) init_full[r * NV + v] = vload(G, GEPF(kc, crowc[r], I64(kc, v * VW)), 4);
    LLVMBasicBlockRef bb_full_end = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, bb_pre);

    LLVMPositionBuilderAtEnd(b, bb_edge);
    { /* short width: masked loads of the valid columns (rows clamped) */
      LLVMValueRef cm[4];
      col_masks(G, cols, NV, cm);
      LLVMTypeRef ov[2] = {G->vt, m->t_ptr};
      for (int v = 0; v < NV; v++) {
        for (int r = 0; r < MR; r++) {
          LLVMValueRef args[4] = {GEPF(kc, crowc[r], I64(kc, v * VW)), cg_i32(m, 4), cm[v], zero};
          init_edge[r * NV + v] = cg_intrinsic(m, b, "llvm.masked.load", ov, 2, args, 4);
        }
      }
    }
    LLVMBasicBlockRef bb_edge_end = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, bb_pre);
    LLVMPositionBuilderAtEnd(b, bb_pre);
    for (int a = 0; a < MR * NV; a++) {
      init[a] = LLVMBuildPhi(b, G->vt, "");
      LLVMValueRef vals[3] = {init_full[a], init_edge[a], zero};
      LLVMBasicBlockRef bbs[3] = {bb_full_end, bb_edge_end, bb_first};
      LLVMAddIncoming(init[a], vals, bbs, 3);
    }
  }
  /* the k loop: do { ... } while (++kl < kc_cur)  (kc_cur >= 1) */
  LLVMBasicBlockRef bb_k = LLVMAppendBasicBlockInContext(ctx, fn, "kloop");
  LLVMBasicBlockRef bb_kx = LLVMAppendBasicBlockInContext(ctx, fn, "kloop.exit");
  LLVMBuildBr(b, bb_k);
  LLVMPositionBuilderAtEnd(b, bb_k);
  LLVMValueRef kl = LLVMBuildPhi(b, m->t_i64, "kl");
  LLVMValueRef acc[MAXACC];
  for (int a = 0; a < MR * NV; a++) acc[a] = LLVMBuildPhi(b, G->vt, "acc");
  LLVMValueRef bv[4];
  LLVMValueRef boff;
  if (g->direct_b_tab) /* row kl at bp + btab[kl] */
    boff = LLVMBuildLoad2(b, m->t_i64, LLVMBuildInBoundsGEP2(b, m->t_i64, btab, &kl, 1, ""), "");
  else
    boff = LLVMBuildNSWMul(b, kl, ldb, "");
  /* B rows read in place (direct B) are not vector-aligned */
  for (int v = 0; v < NV; v++) { /* (in rows: vector v of the panel in row v*VW / b_row) */
    int64_t vo = g->b_row ? v * VW / g->b_row * g->b_row_stride + v * VW % g->b_row : v * VW;
    bv[v] = vload(G, GEPF(kc, bp, ADD(kc, boff, I64(kc, vo))), 4);
  }
  /* k-major A (packed: lda = MR; transposed A in place: lda = its k stride),
   * rows past `rows` read the last valid row */
  LLVMValueRef aoff = g->direct_a_tab ? LLVMBuildLoad2(b, m->t_i64, LLVMBuildInBoundsGEP2(b, m->t_i64, aktab, &kl, 1, ""), "")
                                      : LLVMBuildNSWMul(b, kl, lda, "");
  LLVMTypeRef vt = G->vt;
  LLVMValueRef nacc[MAXACC];
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(m->t_i32, (unsigned)VW));
  for (int r = 0; r < MR; r++) {
    LLVMValueRef aptr = g->direct_a       ? GEPF(kc, arow[r], kl)
                        : g->direct_a_tab ? GEPF(kc, arow[r], aoff)
                                          : GEPF(kc, ap, ADD(kc, aoff, aclamp[r]));
    LLVMValueRef s = LLVMBuildLoad2(b, m->t_f32, aptr, "");
    LLVMValueRef one = LLVMBuildInsertElement(b, LLVMGetUndef(vt), s, cg_i32(m, 0), "");
    LLVMValueRef sp = LLVMBuildShuffleVector(b, one, LLVMGetUndef(vt), mask, "");
    for (int v = 0; v < NV; v++) {
      LLVMValueRef args[3] = {sp, bv[v], acc[r * NV + v]};
      nacc[r * NV + v] = cg_intrinsic(m, b, "llvm.fma", &vt, 1, args, 3);
    }
  }
  LLVMValueRef kn = ADD(kc, kl, I64(kc, 1));
  LLVMBasicBlockRef bb_k_end = LLVMGetInsertBlock(b);
  /* not unrolled: LLVM's runtime unrolling (4x for tiles under 16
   * accumulators) spilled the row pointers of the unrolled copies inside the
   * loop (LeNet-5's K = 16 data gradient 0.60-0.70 -> 0.50-0.56 ms, its
   * forward convolutions and the small MLP a few % faster; the small VGG and
   * the large MLP unchanged, `dlrun bench --per-kernel`) */
  cg_loop_hint(m, LLVMBuildCondBr(b, LT(kc, kn, kc_cur), bb_k, bb_kx), LOOP_NO_UNROLL);
  LLVMValueRef z64 = I64(kc, 0);
  LLVMAddIncoming(kl, &z64, &bb_pre, 1);
  LLVMAddIncoming(kl, &kn, &bb_k_end, 1);
  for (int a = 0; a < MR * NV; a++) {
    LLVMAddIncoming(acc[a], &init[a], &bb_pre, 1);
    LLVMAddIncoming(acc[a], &nacc[a], &bb_k_end, 1);
  }

  /* store */
  LLVMPositionBuilderAtEnd(b, bb_kx);
  if (g->tc) {
    tc_store(G, C, ldc, rows, cols, nacc);
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
    return fn;
  }
  LLVMBasicBlockRef bs_full = LLVMAppendBasicBlockInContext(ctx, fn, "st.full");
  LLVMBasicBlockRef bs_edge = LLVMAppendBasicBlockInContext(ctx, fn, "st.edge");
  LLVMBasicBlockRef bs_done = LLVMAppendBasicBlockInContext(ctx, fn, "st.done");
  LLVMBuildCondBr(b, full, bs_full, bs_edge);
  LLVMPositionBuilderAtEnd(b, bs_full);
  for (int r = MR - 1; r >= 0; r--)
    for (int v = 0; v < NV; v++) vstore(G, nacc[r * NV + v], GEPF(kc, crowc[r], I64(kc, v * VW)), 4);
  LLVMBuildBr(b, bs_done);
  LLVMPositionBuilderAtEnd(b, bs_edge);
  if (VW < 16) { /* AVX2's masked store is slow on some cores (LeNet-5's data gradient +10 %):
                  * the tile buffer and a copy of the valid part */
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++)
        vstore(G, nacc[r * NV + v], GEPF(kc, G->tile, I64(kc, r * NR + v * VW)), (unsigned)(VW * 4));
    GLoop Lr, Lc;
    LLVMValueRef r = gloop_begin(kc, &Lr, I64(kc, 0), rows, 1, "sr");
    LLVMValueRef c = gloop_begin(kc, &Lc, I64(kc, 0), cols, 1, "sc");
    LLVMValueRef x = LLVMBuildLoad2(b, m->t_f32, GEPF(kc, G->tile, ADD(kc, MUL(kc, r, NR), c)), "");
    LLVMBuildStore(b, x, GEPF(kc, C, ADD(kc, LLVMBuildNSWMul(b, r, ldc, ""), c)));
    gloop_end(kc, &Lc);
    gloop_end(kc, &Lr);
  } else { /* short width: masked stores of the valid columns, rows clamped and
     * stored last row first as in the full tile */
    LLVMValueRef cm[4];
    col_masks(G, cols, NV, cm);
    LLVMTypeRef ov[2] = {G->vt, m->t_ptr};
    for (int r = MR - 1; r >= 0; r--)
      for (int v = 0; v < NV; v++) {
        LLVMValueRef args[4] = {nacc[r * NV + v], GEPF(kc, crowc[r], I64(kc, v * VW)), cg_i32(m, 4), cm[v]};
        cg_intrinsic(m, b, "llvm.masked.store", ov, 2, args, 4);
      }
  }
  LLVMBuildBr(b, bs_done);
  LLVMPositionBuilderAtEnd(b, bs_done);
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  return fn;
}

/* The tile at C rows i0.. (rows valid), cols j0.. (cols valid): a call of
 * the shared micro-kernel. */
static void micro_tile(GemmCg *G, LLVMValueRef ap, LLVMValueRef lda, LLVMValueRef abase, LLVMValueRef aktab,
                       LLVMValueRef bp, LLVMValueRef ldb, LLVMValueRef btab, LLVMValueRef kc_cur, LLVMValueRef cbase,
                       LLVMValueRef i0, LLVMValueRef rows, LLVMValueRef j0, LLVMValueRef cols, LLVMValueRef first) {
  KernelCg *kc = G->kc;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  const GemmPlan *g = G->g;
  LLVMValueRef C = G->C;
  /* row r of the tile in C starts at cbase + (i0 + r) * ldc + j0 (transposed:
   * column r at cbase + j0 * ldc + i0 + r; C^T in scratch: rows of N) */
  int64_t ldc = g->ct ? g->N : g->ldc;
  LLVMValueRef crow0 = g->tc ? ADD(kc, ADD(kc, cbase, MUL(kc, j0, ldc)), i0)
                             : ADD(kc, ADD(kc, cbase, MUL(kc, i0, ldc)), j0);
  LLVMValueRef full = ukr_fn(m, g), ukr = full;
  /* the N tail's panel (N % NR columns, the same in every N block: NC is a
   * multiple of NR) runs a micro-kernel of as few vectors as it needs (N =
   * 100 in 2-vector panels: 4 tail columns on 1 vector, not 2) */
  int64_t tail = g->N % g->NR, nvt = (tail + g->VW - 1) / g->VW;
  if (tail && nvt < g->NR / g->VW) {
    GemmPlan gn = *g;
    gn.NR = nvt * g->VW;
    ukr = LLVMBuildSelect(b, LT(kc, cols, I64(kc, g->NR)), ukr_fn(m, &gn), ukr, "ukr");
  }
  LLVMValueRef null = LLVMConstPointerNull(m->t_ptr);
  LLVMValueRef args[13] = {ap,   lda,  bp,    ldb,  kc_cur, GEPF(kc, C, crow0), I64(kc, ldc), rows, cols, first,
                           btab ? btab : null, abase ? abase : null, aktab ? aktab : null};
  LLVMBuildCall2(b, LLVMGlobalGetValueType(full), ukr, args, 13, "");
}

/* The epilogue over C rows [m_lo, m_hi) x cols [n_lo, n_hi) of the current
 * batch entry, after every K block: a plain nest (the inner loop over
 * columns vectorizes), while that part of C is still in cache. */
static void epilogue_nest(GemmCg *G, LLVMValueRef cbase, LLVMValueRef m_lo, LLVMValueRef m_hi, LLVMValueRef n_lo,
                          LLVMValueRef n_hi) {
  KernelCg *kc = G->kc;
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  const Kernel *k = kc->k;
  LLVMValueRef C = G->C;
  GLoop Lr, Lc;
  LLVMValueRef r = gloop_begin(kc, &Lr, m_lo, m_hi, 1, "xr");
  LLVMValueRef row = ADD(kc, cbase, MUL(kc, r, G->g->ldc));
  LLVMValueRef c = gloop_begin(kc, &Lc, n_lo, n_hi, 1, "xc");
  Lc.hint = -1; /* LLVM vectorizes and interleaves it */
  LLVMValueRef p = GEPF(kc, C, ADD(kc, row, c));
  LLVMValueRef x = LLVMBuildLoad2(b, m->t_f32, p, "");
  set_batch_vars(G);
  set_i_vars(G, r);
  set_j_vars(G, c);
  for (int rr = 0; rr < k->n_red; rr++) kc->var[k->shape.rank + rr] = NULL;
  kc->acc = x;
  LLVMValueRef y = cg_vx(kc, k->epilogue);
  kc->acc = NULL;
  y = cg_convert(kc, y, k->epilogue->dtype, DT_F32);
  LLVMBuildStore(b, y, p);
  gloop_end(kc, &Lc);
  gloop_end(kc, &Lr);
}

/* Accumulators carried by loop L (just begun, entered from block pre):
 * phi[i] at its head starts from cur[i], and cur[i] becomes phi[i]; the
 * back-edge values are added at the latch. Leaves the builder in the body. */
static void loop_phis(KernelCg *kc, GLoop *L, LLVMBasicBlockRef pre, LLVMTypeRef t, LLVMValueRef *phi,
                      LLVMValueRef *cur, int n) {
  LLVMBuilderRef b = kc->b;
  LLVMPositionBuilderBefore(b, L->iv);
  for (int i = 0; i < n; i++) {
    phi[i] = LLVMBuildPhi(b, t, "acc");
    LLVMAddIncoming(phi[i], &cur[i], &pre, 1);
    cur[i] = phi[i];
  }
  LLVMPositionBuilderAtEnd(b, LLVMGetNextBasicBlock(L->header));
}

/* The dot form. For the column blocks of units [begin, end), per block of
 * runs (ascending), per RM x RN tile of C: RM x RN vector accumulators
 * over k (vectors of VW lanes, lane t % VW of each run; a masked load for a run's
 * tail), kept in the thread's scratch between blocks; after the last block
 * they are reduced (a fixed tree over the lanes) and the epilogue writes C. The order of
 * every sum is fixed by the plan alone, whatever the units' split. */
/* The part of operand w's offset from its own flat index x (C's row for P,
 * column for Q): x * coef, or computed from the index expression (an
 * implicit im2col's window offset c*Hp*Wp + kh*Wp + kw). */
static LLVMValueRef own_offset(GemmCg *G, int w, LLVMValueRef x) {
  KernelCg *kc = G->kc;
  const GemmOperand *o = &G->g->op[w];
  if (o->x_affine) return MUL(kc, x, o->x_coef);
  zero_vars(G);
  if (w == 0) set_row_vars(G, x);
  else set_col_vars(G, x);
  return SUB(kc, emit_offset(kc, w == 0 ? G->g->P : G->g->Q), I64(kc, o->f0));
}

/* The sum of a vector's W lanes in a fixed order (halves, then quarters,
 * ..., then the pair), as shuffles and vector adds. */
static LLVMValueRef hsum(KernelCg *kc, LLVMValueRef v, int W) {
  CgModule *m = kc->m;
  for (int w = W / 2; w >= 1; w /= 2) {
    LLVMValueRef lo[8], hi[8];
    for (int i = 0; i < w; i++) lo[i] = cg_i32(m, i), hi[i] = cg_i32(m, w + i);
    LLVMValueRef a = LLVMBuildShuffleVector(kc->b, v, v, LLVMConstVector(lo, (unsigned)w), "");
    LLVMValueRef c = LLVMBuildShuffleVector(kc->b, v, v, LLVMConstVector(hi, (unsigned)w), "");
    v = LLVMBuildFAdd(kc->b, a, c, "");
  }
  return LLVMBuildExtractElement(kc->b, v, cg_i32(m, 0), "");
}

/* The lane sums of n vectors of W lanes into out[0..n) (an array of
 * ceil(n / W) * W floats), in hsum's order for each: level by level, two
 * vectors of groups of h lanes (group i of vector j holding the partial
 * sums of vector j * G + i) are folded into one of twice the groups of h / 2
 * lanes (lanes t and t + h / 2 of each group added), a zero vector padding
 * an odd count. After log2(W) levels vector j holds the sums of vectors
 * j * W .. j * W + W - 1 in order. 2-3 shuffles and an add per pair of
 * vectors per level, not per vector (10 accumulators of 16 lanes: 11
 * pairs against 40 shuffle-and-add steps). */
static void hsum_many(KernelCg *kc, LLVMValueRef *v, int n, int W, LLVMValueRef out) {
  CgModule *m = kc->m;
  LLVMTypeRef vt = LLVMVectorType(m->t_f32, (unsigned)W);
  LLVMValueRef cur[32], zero = LLVMConstNull(vt);
  for (int i = 0; i < n; i++) cur[i] = v[i];
  int cnt = n;
  for (int h = W, G = 1; h > 1; h /= 2, G *= 2) {
    int nn = (cnt + 1) / 2;
    for (int j = 0; j < nn; j++) {
      LLVMValueRef x = cur[2 * j], y = 2 * j + 1 < cnt ? cur[2 * j + 1] : zero;
      LLVMValueRef lo[64], hi[64];
      for (int p = 0; p < W; p++) {
        int q = p / (h / 2), t = p % (h / 2);
        int base = q < G ? q * h : W + (q - G) * h;
        lo[p] = cg_i32(m, base + t);
        hi[p] = cg_i32(m, base + h / 2 + t);
      }
      LLVMValueRef a = LLVMBuildShuffleVector(kc->b, x, y, LLVMConstVector(lo, (unsigned)W), "");
      LLVMValueRef c = LLVMBuildShuffleVector(kc->b, x, y, LLVMConstVector(hi, (unsigned)W), "");
      cur[j] = LLVMBuildFAdd(kc->b, a, c, "");
    }
    cnt = nn;
  }
  for (int j = 0; j < cnt; j++) {
    LLVMValueRef st = LLVMBuildStore(kc->b, cur[j], GEPF(kc, out, I64(kc, (int64_t)j * W)));
    LLVMSetAlignment(st, 4);
  }
}

static void emit_dot(KernelCg *kc, const GemmPlan *g, LLVMValueRef begin, LLVMValueRef end) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  const Kernel *k = kc->k;
  GemmCg G = {0};
  G.kc = kc;
  G.g = g;
  enum { MAXT = 18 };
  int RM = (int)g->RM, RN = (int)g->RN, NT = RM * RN;
  int W = (int)g->VW; /* lanes: 16 on AVX-512, 8 on AVX2 */
  LLVMTypeRef vw = LLVMVectorType(m->t_f32, (unsigned)W);
  LLVMValueRef tile = LLVMBuildAlloca(b, LLVMArrayType2(m->t_f32, (uint64_t)((NT + W - 1) / W * W)), "dtile");
  G.bidx = I64(kc, 0); /* (batch dims, if any, have extent 1) */
  zero_vars(&G);
  set_base(&G, 0);
  set_base(&G, 1);
  LLVMValueRef base0 = G.base[0], base1 = G.base[1];
  LLVMValueRef Pb = kc->buf[g->P->buf], Qb = kc->buf[g->Q->buf], C = kc->buf[k->out_buf];
  int64_t L = g->run, LW = L / W * W, nruns = g->K / L, RB = g->runs_per_block;
  /* units: RM-row tiles (dot_rows, see plan()), or the tiles of the
   * RN-column blocks, a block's row tiles consecutive; either way the
   * column blocks are the outer loop (Q's block stays in L1: rows outside
   * measured slower) */
  bool rows = g->dot_rows;
  int64_t itiles = (g->M + RM - 1) / RM, jtiles = (g->N + RN - 1) / RN, ntiles_max = itiles * jtiles;
  LLVMValueRef i_lo = I64(kc, 0), i_hi = I64(kc, g->M);
  if (rows) {
    i_lo = MUL(kc, begin, RM);
    i_hi = MIN(kc, MUL(kc, end, RM), I64(kc, g->M));
  }
  LLVMValueRef zero = LLVMConstNull(vw);
  LLVMValueRef tmask = NULL;
  if (L % W) {
    LLVMValueRef bits[16];
    for (int i = 0; i < W; i++) bits[i] = LLVMConstInt(m->t_i1, i < L % W, 0);
    tmask = LLVMConstVector(bits, (unsigned)W);
  }
  GLoop Lb, Lj, Li, Lr, Lt;
  /* scratch: rtab[2 r + w], the offset of run r's first k in operand w
   * (beyond its row part), filled once per call; then the tiles' vector
   * accumulators between blocks, vacc[tile][NT] */
  int64_t vacc_at = (16 * nruns + 63) / 64 * 64, qt_at = vacc_at + 4 * W * NT * ntiles_max;
  LLVMValueRef rtab, vacc;
  {
    rtab = scratch(kc, qt_at + (g->dot_qt ? 4 * g->N * g->K : 0), "rtab");
    vacc = GEPF(kc, rtab, I64(kc, vacc_at / 4));
    GLoop Lf;
    LLVMValueRef rr = gloop_begin(kc, &Lf, I64(kc, 0), I64(kc, nruns), 1, "dfill");
    for (int w = 0; w < 2; w++) {
      zero_vars(&G);
      set_k_vars(&G, MUL(kc, rr, L));
      LLVMValueRef off = w == 1 && g->dot_qt ? MUL(kc, rr, L)
                                             : SUB(kc, emit_offset(kc, w == 0 ? g->P : g->Q), I64(kc, g->op[w].f0));
      LLVMValueRef ix = ADD(kc, MUL(kc, rr, 2), I64(kc, w));
      LLVMBuildStore(b, off, LLVMBuildInBoundsGEP2(b, m->t_i64, rtab, &ix, 1, ""));
    }
    gloop_end(kc, &Lf);
  }
  if (g->dot_qt) { /* Qt[j][k] = Q(k, j), every column (Q is affine in both) */
    LLVMValueRef qt = GEPF(kc, rtab, I64(kc, qt_at / 4));
    const GemmOperand *o = &g->op[1];
    GLoop Lq, Lk;
    LLVMValueRef j = gloop_begin(kc, &Lq, I64(kc, 0), I64(kc, g->N), 1, "dqj");
    LLVMValueRef src = GEPF(kc, Qb, ADD(kc, base1, MUL(kc, j, o->x_coef)));
    LLVMValueRef dst = GEPF(kc, qt, MUL(kc, j, g->K));
    LLVMValueRef kk = gloop_begin(kc, &Lk, I64(kc, 0), I64(kc, g->K), 1, "dqk");
    LLVMValueRef v = LLVMBuildLoad2(b, m->t_f32, GEPF(kc, src, MUL(kc, kk, o->k_coef)), "");
    LLVMBuildStore(b, v, GEPF(kc, dst, kk));
    gloop_end(kc, &Lk);
    gloop_end(kc, &Lq);
    Qb = qt;
    base1 = I64(kc, 0);
  }
  LLVMValueRef rb = gloop_begin(kc, &Lb, I64(kc, 0), I64(kc, nruns), RB, "db");
  LLVMValueRef re = MIN(kc, ADD(kc, rb, I64(kc, RB)), I64(kc, nruns));
  LLVMValueRef first = LLVMBuildICmp(b, LLVMIntEQ, rb, I64(kc, 0), "");
  LLVMValueRef last = LLVMBuildICmp(b, LLVMIntSGE, ADD(kc, rb, I64(kc, RB)), I64(kc, nruns), "");
  LLVMValueRef jb, ib, tix;
  if (rows) {
    jb = gloop_begin(kc, &Lj, I64(kc, 0), I64(kc, g->N), RN, "dj");
    ib = gloop_begin(kc, &Li, i_lo, i_hi, RM, "di");
    tix = ADD(kc, MUL(kc, LLVMBuildUDiv(b, SUB(kc, ib, i_lo), I64(kc, RM), ""), jtiles), LLVMBuildUDiv(b, jb, I64(kc, RN), ""));
  } else { /* tile u: column block u / itiles, row tile u % itiles */
    LLVMValueRef u = gloop_begin(kc, &Lj, begin, end, 1, "du");
    jb = MUL(kc, LLVMBuildUDiv(b, u, I64(kc, itiles), ""), RN);
    ib = MUL(kc, LLVMBuildURem(b, u, I64(kc, itiles), ""), RM);
    tix = SUB(kc, u, begin);
  }
  LLVMValueRef arow[MAXT], brow[MAXT];
  for (int i = 0; i < RM; i++)
    arow[i] = GEPF(kc, Pb, ADD(kc, base0, own_offset(&G, 0, MIN(kc, ADD(kc, ib, I64(kc, i)), I64(kc, g->M - 1)))));
  for (int j = 0; j < RN; j++) {
    LLVMValueRef jj = MIN(kc, ADD(kc, jb, I64(kc, j)), I64(kc, g->N - 1));
    brow[j] = GEPF(kc, Qb, ADD(kc, base1, g->dot_qt ? MUL(kc, jj, g->K) : own_offset(&G, 1, jj)));
  }
  /* accumulators as phis of the run loop and the k loop, starting from the
   * tile's accumulators of the previous block */
  LLVMValueRef accR[MAXT], accT[MAXT], cur[MAXT], init[MAXT];
  LLVMValueRef tbase = MUL(kc, tix, NT * W);
  for (int q = 0; q < NT; q++) {
    LLVMValueRef ld = LLVMBuildLoad2(b, vw, GEPF(kc, vacc, ADD(kc, tbase, I64(kc, q * W))), "");
    LLVMSetAlignment(ld, (unsigned)(4 * W));
    init[q] = LLVMBuildSelect(b, first, zero, ld, "");
  }
  for (int t = 0; t < NT; t++) cur[t] = init[t];
  LLVMBasicBlockRef preR = LLVMGetInsertBlock(b);
  LLVMValueRef r = gloop_begin(kc, &Lr, rb, re, 1, "dr");
  loop_phis(kc, &Lr, preR, vw, accR, cur, NT);
  /* offsets of the run's first k in each operand (beyond the row part) */
  LLVMValueRef ko[2];
  for (int w = 0; w < 2; w++) {
    LLVMValueRef ix = ADD(kc, MUL(kc, r, 2), I64(kc, w));
    ko[w] = LLVMBuildLoad2(b, m->t_i64, LLVMBuildInBoundsGEP2(b, m->t_i64, rtab, &ix, 1, ""), "");
  }
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && !tmask) break;
    if (pass == 0 && LW == 0) continue;
    LLVMValueRef t;
    if (pass == 0) {
      LLVMBasicBlockRef preT = LLVMGetInsertBlock(b);
      t = gloop_begin(kc, &Lt, I64(kc, 0), I64(kc, LW), W, "dt");
      loop_phis(kc, &Lt, preT, vw, accT, cur, NT);
    } else {
      t = I64(kc, LW);
    }
    LLVMValueRef av[MAXT], bv[MAXT];
    for (int i = 0; i < RM + RN; i++) {
      LLVMValueRef ptr = i < RM ? GEPF(kc, arow[i], ADD(kc, ko[0], t)) : GEPF(kc, brow[i - RM], ADD(kc, ko[1], t));
      LLVMValueRef v;
      if (pass == 0) {
        v = LLVMBuildLoad2(b, vw, ptr, "");
        LLVMSetAlignment(v, 4);
      } else {
        LLVMTypeRef ov[2] = {vw, m->t_ptr};
        LLVMValueRef args[4] = {ptr, cg_i32(m, 4), tmask, zero};
        v = cg_intrinsic(m, b, "llvm.masked.load", ov, 2, args, 4);
      }
      if (i < RM) av[i] = v;
      else bv[i - RM] = v;
    }
    LLVMValueRef nxt[MAXT];
    for (int i = 0; i < RM; i++)
      for (int j = 0; j < RN; j++) {
        LLVMValueRef args[3] = {av[i], bv[j], cur[i * RN + j]};
        nxt[i * RN + j] = cg_intrinsic(m, b, "llvm.fma", &vw, 1, args, 3);
      }
    if (pass == 0) {
      LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
      for (int q = 0; q < NT; q++) LLVMAddIncoming(accT[q], &nxt[q], &latch, 1);
      gloop_end(kc, &Lt); /* at the exit the header phis hold the sums */
    } else {
      for (int q = 0; q < NT; q++) cur[q] = nxt[q];
    }
  }
  {
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    for (int q = 0; q < NT; q++) LLVMAddIncoming(accR[q], &cur[q], &latch, 1);
  }
  gloop_end(kc, &Lr);
  /* not the last block: keep the accumulators; the last: reduce into C */
  LLVMBasicBlockRef bkeep = LLVMAppendBasicBlockInContext(m->ctx, kc->fn, "dkeep");
  LLVMBasicBlockRef bfin = LLVMAppendBasicBlockInContext(m->ctx, kc->fn, "dfin");
  LLVMBasicBlockRef bnext = LLVMAppendBasicBlockInContext(m->ctx, kc->fn, "dnext");
  LLVMBuildCondBr(b, last, bfin, bkeep);
  LLVMPositionBuilderAtEnd(b, bkeep);
  for (int q = 0; q < NT; q++) {
    LLVMValueRef st = LLVMBuildStore(b, accR[q], GEPF(kc, vacc, ADD(kc, tbase, I64(kc, q * W))));
    LLVMSetAlignment(st, (unsigned)(4 * W));
  }
  LLVMBuildBr(b, bnext);
  LLVMPositionBuilderAtEnd(b, bfin);
  /* lanes summed as a fixed tree (8 lanes: (0+4 + 2+6) + (1+5 + 3+7)) */
  const char *each = getenv("DLC_DOT_FOLD"); /* =0: each accumulator summed alone (measurements) */
  if (each && *each == '0')
    for (int t = 0; t < NT; t++) LLVMBuildStore(b, hsum(kc, accR[t], W), GEPF(kc, tile, I64(kc, t)));
  else
    hsum_many(kc, accR, NT, W, tile);
  { /* C (valid part) = epilogue(sums) */
    GLoop Lx, Ly;
    LLVMValueRef nrow = MIN(kc, I64(kc, RM), SUB(kc, i_hi, ib));
    LLVMValueRef ncol = MIN(kc, I64(kc, RN), SUB(kc, I64(kc, g->N), jb));
    LLVMValueRef i = gloop_begin(kc, &Lx, I64(kc, 0), nrow, 1, "dx");
    LLVMValueRef j = gloop_begin(kc, &Ly, I64(kc, 0), ncol, 1, "dy");
    LLVMValueRef v = LLVMBuildLoad2(b, m->t_f32, GEPF(kc, tile, ADD(kc, MUL(kc, i, RN), j)), "");
    LLVMValueRef cp = GEPF(kc, C, ADD(kc, MUL(kc, ADD(kc, ib, i), g->N), ADD(kc, jb, j)));
    if (k->epilogue) {
      set_i_vars(&G, ADD(kc, ib, i));
      set_j_vars(&G, ADD(kc, jb, j));
      for (int rr = 0; rr < k->n_red; rr++) kc->var[k->shape.rank + rr] = NULL;
      kc->acc = v;
      v = cg_convert(kc, cg_vx(kc, k->epilogue), k->epilogue->dtype, DT_F32);
      kc->acc = NULL;
    }
    LLVMBuildStore(b, v, cp);
    gloop_end(kc, &Ly);
    gloop_end(kc, &Lx);
  }
  LLVMBuildBr(b, bnext);
  LLVMPositionBuilderAtEnd(b, bnext);
  if (rows) gloop_end(kc, &Li);
  gloop_end(kc, &Lj);
  gloop_end(kc, &Lb);
}

/* a_once: P's packed block of the K block at pc and the M block at ic
 * (blocks [K block][M block], KC x MC floats each). */
static LLVMValueRef a_block(GemmCg *G, LLVMValueRef Aall, LLVMValueRef pc, LLVMValueRef ic) {
  KernelCg *kc = G->kc;
  const GemmPlan *g = G->g;
  LLVMValueRef kb = LLVMBuildUDiv(kc->b, pc, I64(kc, g->KC), ""), mb = LLVMBuildUDiv(kc->b, ic, I64(kc, g->MC), "");
  LLVMValueRef blk = ADD(kc, MUL(kc, kb, (g->M + g->MC - 1) / g->MC), mb);
  return GEPF(kc, Aall, MUL(kc, blk, g->KC * g->MC));
}

void cg_emit_gemm(KernelCg *kc, const GemmPlan *g, LLVMValueRef begin, LLVMValueRef end) {
  cg_emit_gemm_fused(kc, g, begin, end, NULL);
}

void cg_emit_gemm_fused(KernelCg *kc, const GemmPlan *g, LLVMValueRef begin, LLVMValueRef end, const GemmFuse *f) {
  bool then = f && f->then, lead = f && f->lead;
  int64_t slice = lead ? f->lead_slice : 0;
  LLVMValueRef Aall = NULL; /* a_once: P's packed blocks [K block][M block] */
  if (g->dot) {
    emit_dot(kc, g, begin, end);
    return;
  }
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  GemmCg G = {0};
  G.kc = kc;
  G.g = g;
  G.vt = LLVMVectorType(m->t_f32, (unsigned)g->VW);
  /* scratch (entry block: static allocas) */
  LLVMTypeRef ta = LLVMArrayType2(m->t_f32, (uint64_t)(g->KC * g->MC));
  { /* the packed Q block (up to a few MiB) lives in the thread's heap
     * scratch, followed by a batch entry's C when a follower takes it */
    int64_t bp = (g->KC * g->NC + 15) / 16 * 16, cn = then ? (g->M * g->N + 15) / 16 * 16 : 0;
    int64_t sl = (slice + 15) / 16 * 16, aall = g->a_once ? A_BLOCKS(g) * g->KC * g->MC : 0;
    int64_t ct = g->ct ? g->M * g->N : 0; /* C^T */
    G.Bp = scratch(kc, 4 * (bp + cn + sl + aall + ct), "Bp");
    G.C = then ? GEPF(kc, G.Bp, I64(kc, bp)) : kc->buf[kc->k->out_buf];
    if (slice) kc->buf[f->lead_buf] = GEPF(kc, G.Bp, I64(kc, bp + cn));
    if (aall) Aall = GEPF(kc, G.Bp, I64(kc, bp + cn + sl));
    if (ct) G.C = GEPF(kc, G.Bp, I64(kc, bp + cn + sl + aall));
  }
  G.Ap = LLVMBuildAlloca(b, ta, "Ap");
  LLVMSetAlignment(G.Ap, 64);
  for (int w = 0; w < 2; w++) {
    const GemmOperand *o = &g->op[w];
    if (!o->fast) continue;
    if (!o->k_affine || (w == 0 && g->direct_a_tab))
      G.ktab[w] = LLVMBuildAlloca(b, LLVMArrayType2(m->t_i64, (uint64_t)g->KC), "ktab");
    if (!o->x_affine || (w == 0 && g->direct_a_tab))
      G.xtab[w] = LLVMBuildAlloca(b, LLVMArrayType2(m->t_i64, (uint64_t)(w == 0 ? g->MC : g->NC)), "xtab");
  }

  /* direct B through the K block's table: the packed N tail's rows are at
   * ptab[k] = k * NR */
  LLVMValueRef ptab = NULL;
  if (g->direct_b_tab && g->N % g->NR) {
    ptab = LLVMBuildAlloca(b, LLVMArrayType2(m->t_i64, (uint64_t)g->KC), "ptab");
    GLoop Lt;
    LLVMValueRef t = gloop_begin(kc, &Lt, I64(kc, 0), I64(kc, g->KC), 1, "ptab");
    LLVMBuildStore(b, MUL(kc, t, g->NR), LLVMBuildInBoundsGEP2(b, m->t_i64, ptab, &t, 1, ""));
    gloop_end(kc, &Lt);
  }

  LLVMValueRef m_lo, m_hi, b_lo, b_hi, n_lo = I64(kc, 0), n_hi = I64(kc, g->N);
  if (g->by_batch) {
    b_lo = begin;
    b_hi = end;
    m_lo = I64(kc, 0);
    m_hi = I64(kc, g->M);
  } else if (g->split_n) {
    b_lo = I64(kc, 0);
    b_hi = I64(kc, 1);
    m_lo = I64(kc, 0);
    m_hi = I64(kc, g->M);
    n_lo = MUL(kc, begin, g->NR);
    n_hi = MIN(kc, MUL(kc, end, g->NR), I64(kc, g->N));
  } else {
    b_lo = I64(kc, 0);
    b_hi = I64(kc, 1);
    m_lo = MUL(kc, begin, g->MR);
    m_hi = MIN(kc, MUL(kc, end, g->MR), I64(kc, g->M));
  }
  GLoop Lb, Ljc, Lpc, Lic, Ljr, Lir;
  if (Aall) { /* P's blocks, once for every batch entry of the call */
    GLoop L1, L2;
    G.bidx = I64(kc, 0);
    set_base(&G, 0);
    LLVMValueRef pc = gloop_begin(kc, &L1, I64(kc, 0), I64(kc, g->K), g->KC, "apc");
    LLVMValueRef kc_cur = MIN(kc, I64(kc, g->KC), SUB(kc, I64(kc, g->K), pc));
    if (G.ktab[0]) fill_table(&G, 0, 2, G.ktab[0], pc, kc_cur);
    LLVMValueRef ic = gloop_begin(kc, &L2, I64(kc, 0), I64(kc, g->M), g->MC, "aic");
    LLVMValueRef mc_cur = MIN(kc, I64(kc, g->MC), SUB(kc, I64(kc, g->M), ic));
    if (G.xtab[0]) fill_table(&G, 0, 1, G.xtab[0], ic, mc_cur);
    pack_block(&G, 0, a_block(&G, Aall, pc, ic), ic, mc_cur, I64(kc, g->M), pc, kc_cur);
    gloop_end(kc, &L2);
    gloop_end(kc, &L1);
  }
  G.bidx = gloop_begin(kc, &Lb, b_lo, b_hi, 1, "gb");
  LLVMValueRef cbase = then || g->ct ? I64(kc, 0) : MUL(kc, G.bidx, g->M * g->N);
  if (lead) f->lead(f->ctx, G.bidx, slice ? kc->buf[f->lead_buf] : NULL);
  for (int w = 0; w < 2; w++)
    if (g->op[w].fast) {
      set_base(&G, w);
      /* the leader's slice in scratch: no batch offset */
      if (slice && (w == 0 ? g->P : g->Q)->buf == f->lead_buf) {
        zero_vars(&G);
        G.base[w] = emit_offset(kc, w == 0 ? g->P : g->Q);
      }
    }
  LLVMValueRef jc = gloop_begin(kc, &Ljc, n_lo, n_hi, g->NC, "jc");
  LLVMValueRef nc_cur = MIN(kc, I64(kc, g->NC), SUB(kc, n_hi, jc));
  if (G.xtab[1] && !g->op[1].x_row) fill_table(&G, 1, 1, G.xtab[1], jc, nc_cur); /* (rows: computed) */
  LLVMValueRef pc = gloop_begin(kc, &Lpc, I64(kc, 0), I64(kc, g->K), g->KC, "pc");
  LLVMValueRef kc_cur = MIN(kc, I64(kc, g->KC), SUB(kc, I64(kc, g->K), pc));
  for (int w = Aall ? 1 : 0; w < 2; w++)
    if (G.ktab[w]) fill_table(&G, w, 2, G.ktab[w], pc, kc_cur);
  LLVMValueRef first = LLVMBuildICmp(b, LLVMIntEQ, pc, I64(kc, 0), "first");
  LLVMValueRef nfull = MUL(kc, LLVMBuildUDiv(b, nc_cur, I64(kc, g->NR), ""), g->NR);
  if (g->direct_b) { /* full panels are read in place; only the N tail is packed (panel 0) */
    if (g->N % g->NR) pack_block(&G, 1, G.Bp, ADD(kc, jc, nfull), SUB(kc, nc_cur, nfull), I64(kc, g->N), pc, kc_cur);
  }
  else
    pack_block(&G, 1, G.Bp, jc, nc_cur, I64(kc, g->N), pc, kc_cur);
  LLVMValueRef ic = gloop_begin(kc, &Lic, m_lo, m_hi, g->MC, "ic");
  LLVMValueRef mc_cur = MIN(kc, I64(kc, g->MC), SUB(kc, m_hi, ic));
  LLVMValueRef ablk = NULL;
  if (Aall) {
    ablk = a_block(&G, Aall, pc, ic);
  } else if (g->direct_a_tab) {
    fill_table(&G, 0, 1, G.xtab[0], ic, mc_cur);
  } else if (!g->direct_a && !g->direct_at) {
    if (G.xtab[0]) fill_table(&G, 0, 1, G.xtab[0], ic, mc_cur);
    pack_block(&G, 0, G.Ap, ic, mc_cur, m_hi, pc, kc_cur);
  }
  LLVMValueRef jr = gloop_begin(kc, &Ljr, I64(kc, 0), nc_cur, g->NR, "jr");
  LLVMValueRef cols = MIN(kc, I64(kc, g->NR), SUB(kc, nc_cur, jr));
  LLVMValueRef bp, ldb, btab = NULL;
  if (g->direct_b) {
    /* (in rows: the panel's first row and column) */
    LLVMValueRef off = ADD(kc, G.base[1], part_offset(&G, 1, 1, ADD(kc, jc, jr), jc));
    if (!g->direct_b_tab) off = ADD(kc, off, MUL(kc, pc, g->op[1].k_coef));
    LLVMValueRef full = g->N % g->NR ? LT(kc, jr, nfull) : LLVMConstInt(m->t_i1, 1, 0);
    bp = LLVMBuildSelect(b, full, GEPF(kc, kc->buf[g->Q->buf], off), G.Bp, "");
    ldb = LLVMBuildSelect(b, full, I64(kc, g->op[1].k_coef), I64(kc, g->NR), "");
    if (g->direct_b_tab) btab = g->N % g->NR ? LLVMBuildSelect(b, full, G.ktab[1], ptab, "") : G.ktab[1];
  } else {
    bp = GEPF(kc, G.Bp, MUL(kc, LLVMBuildUDiv(b, jr, I64(kc, g->NR), ""), g->KC * g->NR));
    ldb = I64(kc, g->NR);
  }
  LLVMValueRef ir = gloop_begin(kc, &Lir, I64(kc, 0), mc_cur, g->MR, "ir");
  LLVMValueRef rows = MIN(kc, I64(kc, g->MR), SUB(kc, mc_cur, ir));
  LLVMValueRef ap, lda, abase = NULL;
  if (g->direct_a_tab) { /* the tile's row offsets; the operand's base */
    ap = LLVMBuildInBoundsGEP2(b, m->t_i64, G.xtab[0], &ir, 1, "");
    lda = I64(kc, 0);
    abase = GEPF(kc, kc->buf[g->P->buf], G.base[0]);
  } else if (g->direct_a) {
    LLVMValueRef off = ADD(kc, ADD(kc, G.base[0], MUL(kc, ADD(kc, ic, ir), g->op[0].x_coef)), pc);
    ap = GEPF(kc, kc->buf[g->P->buf], off);
    lda = I64(kc, g->op[0].x_coef);
  } else if (g->direct_at) {
    LLVMValueRef off = ADD(kc, ADD(kc, G.base[0], ADD(kc, ic, ir)), MUL(kc, pc, g->op[0].k_coef));
    ap = GEPF(kc, kc->buf[g->P->buf], off);
    lda = I64(kc, g->op[0].k_coef);
  } else {
    ap = GEPF(kc, Aall ? ablk : G.Ap, MUL(kc, LLVMBuildUDiv(b, ir, I64(kc, g->MR), ""), g->KC * g->MR));
    lda = I64(kc, g->MR);
  }
  micro_tile(&G, ap, lda, abase, abase ? G.ktab[0] : NULL, bp, ldb, btab, kc_cur, cbase, ADD(kc, ic, ir), rows,
             ADD(kc, jc, jr), cols, first);
  gloop_end(kc, &Lir);
  gloop_end(kc, &Ljr);
  gloop_end(kc, &Lic);
  gloop_end(kc, &Lpc);
  gloop_end(kc, &Ljc);
  if (g->ct) { /* C[j, i] = C^T[i, j] for the unit's rows i of C^T */
    LLVMValueRef ct = G.C;
    G.C = kc->buf[kc->k->out_buf];
    GLoop Lj, Li;
    LLVMValueRef j = gloop_begin(kc, &Lj, I64(kc, 0), I64(kc, g->N), 1, "ctj");
    LLVMValueRef i = gloop_begin(kc, &Li, m_lo, m_hi, 1, "cti");
    LLVMValueRef v = LLVMBuildLoad2(b, m->t_f32, GEPF(kc, ct, ADD(kc, MUL(kc, i, g->N), j)), "");
    LLVMBuildStore(b, v, GEPF(kc, G.C, ADD(kc, MUL(kc, j, g->ldc), i)));
    gloop_end(kc, &Li);
    gloop_end(kc, &Lj);
  }
  if (kc->k->epilogue) { /* over C's rows and columns (swapped back when transposed) */
    if (g->tc || g->ct) epilogue_nest(&G, cbase, n_lo, n_hi, m_lo, m_hi);
    else epilogue_nest(&G, cbase, m_lo, m_hi, n_lo, n_hi);
  }
  if (then) f->then(f->ctx, G.bidx, G.C);
  gloop_end(kc, &Lb);
}
