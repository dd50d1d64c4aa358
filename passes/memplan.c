/* memplan.c — memory planning. Every temporary of an entry gets an offset
 * in one arena by liveness (first kernel that writes it to last kernel that
 * reads it, views counting as reads of their root), first-fit; an
 * elementwise kernel may take over the slot of an input that dies there
 * when it reads it only at its own output index (in-place). Entries never
 * run at the same time, so they share the arena; its size is the largest
 * entry's peak. Results, grads, params and state are not temporaries and
 * keep their own memory. Needs: lowered and fused program (runs last). */
#include <string.h>

#include "passes/pipeline.h"

#define ALIGN 64

static void note_reads(const Program *p, const VExpr *e, int k, int *last) {
  if (!e) return;
  if (e->op == VX_LOAD) {
    int r = kir_root(p, e->buf);
    if (last[r] < k) last[r] = k;
  }
  note_reads(p, e->a, k, last);
  note_reads(p, e->b, k, last);
  note_reads(p, e->c, k, last);
}

/* Does kernel K read buffer b anywhere other than at its own output index? */
static bool reads_elsewhere(const Program *p, const VExpr *e, int b, int rank) {
  if (!e) return false;
  if (e->op == VX_LOAD && kir_root(p, e->buf) == b) {
    if (e->buf != b || e->guard || e->rank != rank) return true;
    for (int i = 0; i < rank; i++)
      if (e->idx[i]->op != IX_VAR || e->idx[i]->var != i) return true;
  }
  return reads_elsewhere(p, e->a, b, rank) || reads_elsewhere(p, e->b, b, rank) ||
         reads_elsewhere(p, e->c, b, rank);
}

static int64_t bytes_of(const Buffer *b) { return (shape_numel(&b->shape) * 4 + ALIGN - 1) / ALIGN * ALIGN; }

typedef struct {
  int64_t off, size;
  int buf;
} Slot;

static int64_t plan_entry(Program *p, const Entry *en, Arena *a) {
  int nb = p->n_bufs, nk = en->n_kernels;
  int *first = ARENA_ARRAY(a, int, nb), *last = ARENA_ARRAY(a, int, nb);
  for (int b = 0; b < nb; b++) first[b] = -1, last[b] = -1;
  for (int k = 0; k < nk; k++) {
    const Kernel *K = en->kernels[k];
    int o = kir_root(p, K->out_buf);
    if (first[o] < 0) first[o] = k;
    if (last[o] < k) last[o] = k;
    if (K->accumulate && last[o] < k) last[o] = k;
    note_reads(p, K->body, k, last);
    note_reads(p, K->epilogue, k, last);
  }
  /* Pairs of kernels the backend may run image by image together (its
   * per-image fusion; KIR_IMAGE_SLICE_BYTES): a batched product after the
   * producer of its per-image operand (im2col -> GEMM), or a kernel after a
   * batched product reading its result per image (GEMM -> col2im, or an
   * elementwise crop of a padded-width product). What the first of the pair
   * reads stays live through the second: the second's result must not
   * take its memory. */
  int *mark = ARENA_ARRAY(a, int, nb);
  for (int k = 0; k + 1 < nk; k++) {
    const Kernel *K = en->kernels[k], *N = en->kernels[k + 1];
    bool lead = N->red == RED_SUM && K->shape.rank >= 3 && N->shape.rank >= 3;
    bool then = K->red == RED_SUM && N->red == RED_NONE && K->shape.rank >= 2 && N->shape.rank >= 2;
    if (!(lead || then) || K->shape.d[0] != N->shape.d[0] ||
        4 * shape_numel(&K->shape) / K->shape.d[0] > KIR_IMAGE_SLICE_BYTES ||
        !kir_reads_root(p, N->body, kir_root(p, K->out_buf)))
      continue;
    for (int b = 0; b < nb; b++) mark[b] = -1;
    note_reads(p, K->body, k, mark);
    note_reads(p, K->epilogue, k, mark);
    for (int b = 0; b < nb; b++)
      if (mark[b] == k && last[b] == k) last[b] = k + 1;
  }
  Slot *live = ARENA_ARRAY(a, Slot, nb + 1);
  int nlive = 0;
  int64_t peak = 0;
  for (int k = 0; k < nk; k++) {
    const Kernel *K = en->kernels[k];
    int o = kir_root(p, K->out_buf);
    Buffer *ob = &p->bufs[o];
    bool is_temp = ob->role == BUF_TEMP && ob->alias < 0;
    if (!is_temp || first[o] != k) goto expire;
    /* in place: an input temp of the same size dying here, read only at our index */
    if (K->red == RED_NONE && !K->accumulate) {
      for (int s = 0; s < nlive; s++) {
        int in = live[s].buf;
        if (last[in] != k || live[s].size != bytes_of(ob) || in == o) continue;
        /* (an input it reads: a slot kept live for a fused product is not one) */
        if (!kir_reads_root(p, K->body, in) && !kir_reads_root(p, K->epilogue, in)) continue;
        if (reads_elsewhere(p, K->body, in, K->shape.rank) || reads_elsewhere(p, K->epilogue, in, K->shape.rank))
          continue;
        bool viewed = false;
        for (int b = 0; b < nb; b++) viewed |= p->bufs[b].alias == in;
        if (viewed) continue;
        ob->offset = live[s].off;
        live[s].buf = o;
        goto expire;
      }
    }
    {
      /* first fit among the gaps between live slots (kept sorted by offset) */
      int64_t size = bytes_of(ob), off = 0;
      int at = 0;
      for (; at < nlive; at++) {
        if (live[at].off - off >= size) break;
        off = live[at].off + live[at].size;
      }
      memmove(&live[at + 1], &live[at], sizeof(Slot) * (size_t)(nlive - at));
      live[at] = (Slot){off, size, o};
      nlive++;
      ob->offset = off;
      if (off + size > peak) peak = off + size;
    }
  expire:
    for (int s = 0; s < nlive;) {
      if (last[live[s].buf] <= k) {
        memmove(&live[s], &live[s + 1], sizeof(Slot) * (size_t)(nlive - s - 1));
        nlive--;
      } else {
        s++;
      }
    }
  }
  /* temporaries no kernel writes (folded away by fusion) get an empty slot */
  for (int b = 0; b < nb; b++)
    if (p->bufs[b].role == BUF_TEMP && p->bufs[b].alias < 0 && p->bufs[b].offset < 0 && first[b] < 0 &&
        p->bufs[b].entry == (int)(en - p->entries))
      p->bufs[b].offset = 0, p->bufs[b].shape.rank = 0;
  return peak;
}

bool pass_memplan(Program *p, Diag *d) {
  (void)d;
  int64_t arena = 0;
  for (int e = 0; e < ENTRY__COUNT; e++) {
    if (!p->entries[e].present) continue;
    int64_t peak = plan_entry(p, &p->entries[e], p->arena);
    if (peak > arena) arena = peak;
  }
  p->arena_bytes = arena;
  return arena > 0;
}
