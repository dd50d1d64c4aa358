/* schedule.c — kernel order for cache reuse. Lowering emits an entry's
 * kernels in graph order, so a light reduction (a bias gradient's sum, a
 * max pooling's argmax) may run long after the kernel that produced its
 * input, with a heavy product in between that has pushed that input out of
 * the caches: the small VGG's first bias gradient read its 8 MB input from
 * memory, after the next convolution's filter gradient (0.84 -> 0.36 ms).
 * Such a kernel moves up to just after the last kernel it depends on,
 * where its input is still in cache; its result is smaller than its input,
 * so what its readers lose is less. (Kernels without a reduction stay:
 * a pad moved up measured slower, its result then cold for the product
 * right after its old place.)
 *
 * A kernel depends on an earlier one when it reads what that one writes,
 * writes what it reads, or writes the same buffer (views count as their
 * root). A kernel never lands between a product and the kernel before it
 * whose result it reads directly (a leader the backend may run image by
 * image with it) or the one after it reading its result (a follower); a
 * reduction is neither (the backend fuses elementwise leaders, col2im
 * followers). Kernels only move when at
 * least one product lies between: the order of everything else is kept.
 * Needs: lowered, fused program; runs before memory planning (which then
 * plans the new order). */
#include <string.h>

#include "passes/pipeline.h"

/* Whether kernel k reads (a view of) the buffer whose root is r. */
static bool reads(const Program *p, const Kernel *k, int r) {
  return kir_reads_root(p, k->body, r) || kir_reads_root(p, k->epilogue, r);
}

/* A matrix product or convolution (the kernels worth keeping data hot for). */
static bool heavy(const Kernel *k) { return k->red == RED_SUM && k->body && k->body->op == VX_MUL; }

/* Whether b must stay after a (data or memory dependency). */
static bool depends(const Program *p, const Kernel *b, const Kernel *a) {
  int ra = kir_root(p, a->out_buf), rb = kir_root(p, b->out_buf);
  return ra == rb || reads(p, b, ra) || reads(p, a, rb);
}

/* Whether k and the next kernel n may be fused by the backend (the
 * superset of its rules): a kernel whose result a product reads directly
 * (a leader, run image by image before it), or a sum reading a product's
 * result directly (a follower, the col2im of a data gradient). */
static bool fusable(const Kernel *k, const Kernel *n) {
  if (heavy(n) && k->red == RED_NONE)
    return (n->body->a->op == VX_LOAD && n->body->a->buf == k->out_buf) ||
           (n->body->b->op == VX_LOAD && n->body->b->buf == k->out_buf);
  return heavy(k) && n->red == RED_SUM && n->body && n->body->op == VX_LOAD && n->body->buf == k->out_buf;
}

static bool schedule_entry(const Program *p, Entry *en) {
  bool changed = false;
  Kernel **ks = en->kernels;
  int n = en->n_kernels;
  for (int j = 1; j < n; j++) {
    Kernel *k = ks[j];
    if (heavy(k) || k->red == RED_NONE) continue;
    int d = j - 1;
    while (d >= 0 && !depends(p, k, ks[d])) d--;
    int at = d + 1;
    while (at < j && at > 0 && fusable(ks[at - 1], ks[at])) at++;
    bool across = false;
    for (int i = at; i < j && !across; i++) across = heavy(ks[i]);
    if (!across) continue;
    memmove(&ks[at + 1], &ks[at], sizeof(Kernel *) * (size_t)(j - at));
    ks[at] = k;
    changed = true;
  }
  return changed;
}

bool pass_schedule(Program *p, Diag *d) {
  (void)d;
  bool changed = false;
  for (int e = 0; e < ENTRY__COUNT; e++)
    if (p->entries[e].present) changed |= schedule_entry(p, &p->entries[e]);
  return changed;
}
