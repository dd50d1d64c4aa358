/* stats.c — `dlc --emit=stats`: what the optimizer made of a model — graph
 * ops before fusion and kernels after, per-kernel FLOPs and bytes moved,
 * memory by role, the arena against the sum of all intermediates. */
#include <stdio.h>
#include <string.h>

#include "tools/stats.h"

static void mark(const VExpr *e, bool *seen) {
  if (!e) return;
  if (e->op == VX_LOAD) seen[e->buf] = true;
  mark(e->a, seen);
  mark(e->b, seen);
  mark(e->c, seen);
}

static int64_t buf_bytes(const Program *p, int b) { return shape_numel(&p->bufs[b].shape) * 4; }

int64_t stats_kernel_bytes(const Program *p, const Kernel *k, Arena *a) {
  bool *seen = ARENA_ARRAY(a, bool, p->n_bufs + 1);
  mark(k->body, seen);
  mark(k->epilogue, seen);
  int64_t bytes = buf_bytes(p, k->out_buf) * (k->accumulate ? 2 : 1);
  for (int b = 0; b < p->n_bufs; b++)
    if (seen[b]) bytes += buf_bytes(p, b);
  return bytes;
}

static int graph_ops(const Graph *g) {
  int n = 0;
  if (!g) return 0;
  for (int i = 0; i < g->n_nodes; i++) n += !op_has(g->nodes[i]->op, OPF_LEAF);
  return n;
}

void stats_print(const DrvModel *m, FILE *out) {
  const Program *p = m->prog;
  static const char *const names[] = {"train", "eval", "infer"};
  int64_t bytes[BUF_RNG + 1] = {0};
  int64_t intermediates = 0, peak = p->arena_bytes;
  for (int i = 0; i < p->n_bufs; i++) {
    const Buffer *b = &p->bufs[i];
    if (b->alias >= 0) continue;
    bytes[b->role] += buf_bytes(p, i);
    if (b->role == BUF_TEMP) intermediates += buf_bytes(p, i);
    if (b->offset < 0) peak += buf_bytes(p, i); /* allocated alone (dlrt_model_new), the rest in the arena */
  }
  /* every non-leaf graph value, as if each had its own buffer */
  int64_t unfused = 0;
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Graph *g = m->graph[e];
    if (!g) continue;
    for (int i = 0; i < g->n_nodes; i++)
      if (!op_has(g->nodes[i]->op, OPF_LEAF)) unfused += shape_numel(&g->nodes[i]->shape) * 4;
  }
  fprintf(out, "model %s\n\n", p->model);
  fprintf(out, "%-6s %10s %8s %14s %14s\n", "entry", "graph ops", "kernels", "FLOPs", "bytes moved");
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present) continue;
    int64_t fl = 0, mv = 0;
    for (int k = 0; k < en->n_kernels; k++) {
      fl += en->kernels[k]->flops;
      mv += stats_kernel_bytes(p, en->kernels[k], p->arena);
    }
    fprintf(out, "%-6s %10d %8d %14lld %14lld\n", names[e], graph_ops(m->graph[e]), en->n_kernels, (long long)fl,
            (long long)mv);
  }
  fprintf(out, "\nmemory (bytes)\n");
  fprintf(out, "  params            %12lld\n", (long long)bytes[BUF_PARAM]);
  fprintf(out, "  grads             %12lld\n", (long long)bytes[BUF_GRAD]);
  fprintf(out, "  optimizer state   %12lld\n", (long long)bytes[BUF_OPTSTATE]);
  fprintf(out, "  state             %12lld\n", (long long)bytes[BUF_STATE]);
  fprintf(out, "  inputs + labels   %12lld\n", (long long)(bytes[BUF_INPUT] + bytes[BUF_LABEL]));
  fprintf(out, "  results           %12lld\n", (long long)(bytes[BUF_OUTPUT] + bytes[BUF_METRIC] + bytes[BUF_LOSS]));
  fprintf(out, "  every graph value %12lld   (unfused: one buffer per op)\n", (long long)unfused);
  fprintf(out, "  temporaries       %12lld   (after fusion, one buffer each)\n", (long long)intermediates);
  fprintf(out, "  arena             %12lld   (after memory planning)\n", (long long)p->arena_bytes);
  fprintf(out, "  peak memory       %12lld   (what an instance allocates: the buffers above and the arena)\n",
          (long long)peak);
  for (int e = 0; e < ENTRY__COUNT; e++) {
    const Entry *en = &p->entries[e];
    if (!en->present) continue;
    fprintf(out, "\nkernels of %s\n%-34s %-28s %12s %12s  %s\n", names[e], "kernel", "ops", "FLOPs", "bytes",
            "source");
    for (int k = 0; k < en->n_kernels; k++) {
      const Kernel *kn = en->kernels[k];
      fprintf(out, "%-34s %-28.28s %12lld %12lld  %s:%d\n", kn->name, kn->ops ? kn->ops : "", (long long)kn->flops,
              (long long)stats_kernel_bytes(p, kn, p->arena), kn->loc.file ? kn->loc.file : "-", kn->loc.line);
    }
  }
}
