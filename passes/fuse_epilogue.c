/* fuse_epilogue.c — epilogue fusion on the kernel program. An elementwise
 * kernel E whose body reads, at its own output index, the result T of a
 * sum/max reduction kernel R (a matmul, a convolution, a reduction) or of a
 * materialised kernel without reduction (max pooling's adjoint) is folded
 * into R: R's epilogue becomes E's body with that load replaced by R's
 * reduced value, and R writes E's output. Bias add, activation, residual add
 * and gradient masks thereby run on values still in registers, and T is
 * never written.
 *
 * Legal when: T is a temporary that only R writes and only E reads (no
 * views of it), E reads T only at identity indices without guards, both are
 * in the same entry with the same iteration space, R's result is f32, and no
 * kernel between R and E writes anything E reads or touches E's output.
 * Needs: lowered program; runs before memory planning. */
#include <string.h>

#include "passes/pipeline.h"

static bool is_identity_load(const VExpr *e, int rank) {
  if (e->guard || e->rank != rank) return false;
  for (int i = 0; i < rank; i++)
    if (e->idx[i]->op != IX_VAR || e->idx[i]->var != i) return false;
  return true;
}

/* Counts loads of buffer b in e; *ok stays true while each is an identity load. */
static int count_loads(const VExpr *e, int b, int rank, bool *ok) {
  if (!e) return 0;
  int n = 0;
  if (e->op == VX_LOAD && e->buf == b) {
    n++;
    if (!is_identity_load(e, rank)) *ok = false;
  }
  return n + count_loads(e->a, b, rank, ok) + count_loads(e->b, b, rank, ok) + count_loads(e->c, b, rank, ok);
}

static void mark_loads(const VExpr *e, bool *reads) {
  if (!e) return;
  if (e->op == VX_LOAD) reads[e->buf] = true;
  mark_loads(e->a, reads);
  mark_loads(e->b, reads);
  mark_loads(e->c, reads);
}

/* Copy of e with every load of buffer b replaced by `with`. */
static VExpr *replace_loads(Arena *a, const VExpr *e, int b, VExpr *with) {
  if (!e) return NULL;
  if (e->op == VX_LOAD && e->buf == b) return with;
  VExpr *r = ARENA_NEW(a, VExpr);
  *r = *e;
  r->a = replace_loads(a, e->a, b, with);
  r->b = replace_loads(a, e->b, b, with);
  r->c = replace_loads(a, e->c, b, with);
  return r;
}

/* A read through a view is a read of the buffer it views. */
static void mark_roots(const Program *p, bool *reads) {
  for (int b = 0; b < p->n_bufs; b++)
    if (reads[b] && p->bufs[b].alias >= 0) reads[p->bufs[b].alias] = true;
}

static bool fuse_entry(Program *p, Entry *en) {
  bool changed = false;
  int nb = p->n_bufs;
  Arena *a = p->arena;
  for (int ie = 0; ie < en->n_kernels; ie++) {
    Kernel *E = en->kernels[ie];
    if (E->red != RED_NONE || E->accumulate || E->epilogue) continue;
    bool *reads = ARENA_ARRAY(a, bool, nb);
    mark_loads(E->body, reads);
    mark_roots(p, reads);
    for (int ir = ie - 1; ir >= 0; ir--) {
      Kernel *R = en->kernels[ir];
      int T = R->out_buf;
      /* anything between R and E that writes what E reads, or E's output, blocks */
      if (!reads[T]) {
        /* a kernel in between: must neither write nor read E's output */
        bool *r2 = ARENA_ARRAY(a, bool, nb);
        mark_loads(R->body, r2);
        mark_loads(R->epilogue, r2);
        mark_roots(p, r2);
        if (reads[kir_root(p, R->out_buf)]) break;
        if (kir_root(p, R->out_buf) == kir_root(p, E->out_buf) || r2[E->out_buf] || r2[kir_root(p, E->out_buf)]) break;
        continue;
      }
      /* a reduction, or a materialised elementwise/gather kernel (pooling's
       * adjoint) whose value E reads at its own index */
      if ((R->red != RED_SUM && R->red != RED_MAX && R->red != RED_NONE) || R->dtype != DT_F32 || R->accumulate)
        break;
      if (p->bufs[T].role != BUF_TEMP || !shape_eq(&R->shape, &E->shape)) break;
      bool ok = true;
      if (count_loads(E->body, T, E->shape.rank, &ok) == 0 || !ok) break;
      /* only E reads T (or any view of it), only R writes it */
      for (int j = 0; j < en->n_kernels && ok; j++) {
        const Kernel *K = en->kernels[j];
        if (K != E && K != R && kir_root(p, K->out_buf) == T) ok = false;
        if (K == E) continue;
        bool *r2 = ARENA_ARRAY(a, bool, nb);
        mark_loads(K->body, r2);
        mark_loads(K->epilogue, r2);
        if (r2[T]) ok = false;
      }
      for (int b = 0; b < nb && ok; b++)
        if (p->bufs[b].alias == T) ok = false;
      for (int e2 = 0; e2 < ENTRY__COUNT && ok; e2++) {
        const Entry *other = &p->entries[e2];
        if (other == en) continue;
        for (int j = 0; j < other->n_kernels && ok; j++) {
          bool *r2 = ARENA_ARRAY(a, bool, nb);
          mark_loads(other->kernels[j]->body, r2);
          mark_loads(other->kernels[j]->epilogue, r2);
          if (r2[T]) ok = false;
        }
      }
      if (!ok) break;
      VExpr *acc = R->epilogue;
      if (!acc) {
        acc = ARENA_NEW(a, VExpr);
        acc->op = VX_ACC;
        acc->dtype = DT_F32;
      }
      R->epilogue = replace_loads(a, E->body, T, acc);
      R->out_buf = E->out_buf;
      R->dtype = E->dtype;
      R->ops = arena_printf(a, "%s+%s", R->ops ? R->ops : "", E->ops ? E->ops : "");
      R->flops += E->flops;
      int *mem = ARENA_ARRAY(a, int, R->n_members + E->n_members + 1);
      memcpy(mem, R->members, sizeof(int) * (size_t)R->n_members);
      memcpy(mem + R->n_members, E->members, sizeof(int) * (size_t)E->n_members);
      R->members = mem;
      R->n_members += E->n_members;
      /* R now runs E's work at R's position: move R to E's slot is not
       * needed, since nothing between them touches what E reads or writes. */
      memmove(&en->kernels[ie], &en->kernels[ie + 1], sizeof(Kernel *) * (size_t)(en->n_kernels - ie - 1));
      en->n_kernels--;
      ie--;
      changed = true;
      break;
    }
  }
  return changed;
}

bool pass_fuse_epilogue(Program *p, Diag *d) {
  (void)d;
  bool changed = false;
  for (int e = 0; e < ENTRY__COUNT; e++)
    if (p->entries[e].present) changed |= fuse_entry(p, &p->entries[e]);
  return changed;
}
