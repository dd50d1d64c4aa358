/* rewrite.c — forwarding map and compaction for graph passes (see rewrite.h). */
#include "passes/rewrite.h"

#include <string.h>

static void rw_grow(Rewriter *r, int n) {
  if (n <= r->cap) return;
  int cap = r->cap ? r->cap : 64;
  while (cap < n) cap *= 2;
  r->fwd = arena_grow(r->g->arena, r->fwd, sizeof(int), (size_t)r->cap, (size_t)cap);
  for (int i = r->cap; i < cap; i++) r->fwd[i] = i;
  r->cap = cap;
}

void rw_init(Rewriter *r, Graph *g) {
  memset(r, 0, sizeof *r);
  r->g = g;
  rw_grow(r, g->n_nodes + 1);
}

int rw_find(Rewriter *r, int id) {
  rw_grow(r, id + 1);
  int root = id;
  while (r->fwd[root] != root) root = r->fwd[root];
  while (r->fwd[id] != root) { /* path compression */
    int next = r->fwd[id];
    r->fwd[id] = root;
    id = next;
  }
  return root;
}

void rw_replace(Rewriter *r, int old, int with) {
  DL_ASSERT(old >= 0 && old < r->g->n_nodes && with >= 0 && with < r->g->n_nodes);
  DL_ASSERT(!rw_is_named_leaf(r->g->nodes[old]->op));
  with = rw_find(r, with);
  old = rw_find(r, old);
  if (old == with) return;
  r->fwd[old] = with;
  r->n_replaced++;
}

void rw_resolve_operands(Rewriter *r, Node *n) {
  for (int j = 0; j < n->nin; j++) n->in[j] = rw_find(r, n->in[j]);
}

void rw_commit(Rewriter *r) {
  Graph *g = r->g;
  if (r->n_replaced == 0) return;
  bool *keep = ARENA_ARRAY(g->arena, bool, g->n_nodes + 1);
  for (int i = 0; i < g->n_nodes; i++) {
    keep[i] = rw_find(r, i) == i;
    if (keep[i]) rw_resolve_operands(r, g->nodes[i]);
  }
  for (int i = 0; i < g->n_outputs; i++) g->outputs[i].node = rw_find(r, g->outputs[i].node);
  for (int i = 0; i < g->n_metrics; i++) g->metrics[i].node = rw_find(r, g->metrics[i].node);
  if (g->loss >= 0) g->loss = rw_find(r, g->loss);
  for (int i = 0; i < g->n_grads; i++) g->grads[i].grad = rw_find(r, g->grads[i].grad);
  for (int i = 0; i < g->n_updates; i++) g->updates[i].value = rw_find(r, g->updates[i].value);
  rw_compact(g, keep);
  r->n_replaced = 0;
  r->cap = 0;
  r->fwd = NULL;
  rw_grow(r, g->n_nodes + 1);
}

static int remap(const int *newid, int id) {
  DL_ASSERT(id >= 0 && newid[id] >= 0);
  return newid[id];
}

bool *rw_roots(Graph *g) {
  bool *live = ARENA_ARRAY(g->arena, bool, g->n_nodes + 1);
  for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i].node] = true;
  for (int i = 0; i < g->n_metrics; i++) live[g->metrics[i].node] = true;
  if (g->loss >= 0) live[g->loss] = true;
  for (int i = 0; i < g->n_grads; i++) live[g->grads[i].param] = live[g->grads[i].grad] = true;
  for (int i = 0; i < g->n_updates; i++) live[g->updates[i].target] = live[g->updates[i].value] = true;
  return live;
}

void rw_compact(Graph *g, const bool *keep) {
  int n = g->n_nodes;
  Arena *a = g->arena;
  int *newid = ARENA_ARRAY(a, int, n + 1);
  int *state = ARENA_ARRAY(a, int, n + 1); /* 0 new, 1 on the stack, 2 placed */
  int *stack = ARENA_ARRAY(a, int, n + 1), *cursor = ARENA_ARRAY(a, int, n + 1);
  Node **order = ARENA_ARRAY(a, Node *, n + 1);
  int placed = 0;
  for (int i = 0; i < n; i++) newid[i] = -1;
  /* stable topological sort: a depth-first post-order from every kept node
   * in id order (iterative, so long chains cannot overflow the C stack) */
  for (int i = 0; i < n; i++) {
    if (!keep[i] || state[i]) continue;
    int sp = 0;
    stack[sp] = i, cursor[sp] = 0, sp++;
    state[i] = 1;
    while (sp > 0) {
      int t = stack[sp - 1];
      Node *nd = g->nodes[t];
      if (cursor[sp - 1] < nd->nin) {
        int op = nd->in[cursor[sp - 1]++];
        DL_ASSERT(op >= 0 && op < n && keep[op] && state[op] != 1); /* kept, and no cycle */
        if (state[op] == 0) {
          state[op] = 1;
          stack[sp] = op, cursor[sp] = 0, sp++;
        }
        continue;
      }
      state[t] = 2;
      newid[t] = placed;
      order[placed++] = nd;
      sp--;
    }
  }
  for (int i = 0; i < placed; i++) {
    Node *nd = order[i];
    nd->id = i;
    for (int j = 0; j < nd->nin; j++) nd->in[j] = remap(newid, nd->in[j]);
    g->nodes[i] = nd;
  }
  g->n_nodes = placed;
  for (int i = 0; i < g->n_outputs; i++) g->outputs[i].node = remap(newid, g->outputs[i].node);
  for (int i = 0; i < g->n_metrics; i++) g->metrics[i].node = remap(newid, g->metrics[i].node);
  if (g->loss >= 0) g->loss = remap(newid, g->loss);
  for (int i = 0; i < g->n_grads; i++) {
    g->grads[i].param = remap(newid, g->grads[i].param);
    g->grads[i].grad = remap(newid, g->grads[i].grad);
  }
  for (int i = 0; i < g->n_updates; i++) {
    g->updates[i].target = remap(newid, g->updates[i].target);
    g->updates[i].value = remap(newid, g->updates[i].value);
  }
}
