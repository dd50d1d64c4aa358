/* optimizer.c — the optimizer step (SPEC §4) as IR after autodiff, so that
 * fusion sees forward, backward and update together. Semantics and order of
 * operations follow torch.optim (1.13, single-tensor path): SGD with
 * momentum/nesterov/weight decay (dampening 0), Adam and AdamW. Emits
 * PHASE_UPDATE nodes and g->updates entries; creates the optimizer state
 * leaves named as SPEC §7 ("W@momentum", "W@m", "W@v", "@step"). */
#include <string.h>

#include "passes/passes.h"

typedef struct {
  Graph *g;
  SrcLoc loc;
} U;

static int bin(U *u, OpKind op, int a, int b) { return ir_bin(u->g, op, a, b, u->loc, NULL); }
static int sc(U *u, float v) { return ir_scalar(u->g, v, u->loc); }

static int opt_state(Graph *g, const char *name, DType dt, Shape s, SrcLoc loc) {
  int id = ir_leaf(g, OP_STATE, name, dt, s, loc);
  Node *n = g->nodes[id];
  n->attr.leaf.opt_state = true;
  n->attr.leaf.init.kind = DLRT_INIT_ZEROS;
  n->attr.leaf.init.a = n->attr.leaf.init.b = 0.0f;
  return id;
}

/* True for the CONST 0 autodiff gives a param the loss does not reach. */
static bool unreached(const Graph *g, int grad) {
  const Node *n = g->nodes[grad];
  return n->op == OP_CONST && n->attr.scalar.v == 0.0f;
}

static void sgd_step(U *u, const Optimizer *o, int p, int gr) {
  Graph *g = u->g;
  const Node *pn = g->nodes[p];
  int dp = gr;
  if (o->weight_decay != 0.0f) dp = bin(u, OP_ADD, dp, bin(u, OP_MUL, sc(u, o->weight_decay), p));
  if (o->momentum != 0.0f) {
    const char *name = arena_printf(g->arena, "%s@momentum", pn->attr.leaf.name);
    int buf = opt_state(g, name, DT_F32, pn->shape, u->loc);
    int nbuf = bin(u, OP_ADD, bin(u, OP_MUL, buf, sc(u, o->momentum)), dp); /* buf*m + d */
    ir_add_update(g, buf, nbuf);
    dp = o->nesterov ? bin(u, OP_ADD, dp, bin(u, OP_MUL, sc(u, o->momentum), nbuf)) : nbuf;
  }
  ir_add_update(g, p, bin(u, OP_SUB, p, bin(u, OP_MUL, sc(u, o->lr), dp)));
}

/* tf: the step count after increment (f32[]); bc1, bc2: 1 - beta^tf. */
static void adam_step(U *u, const Optimizer *o, int p, int gr, int bc1, int bc2_sqrt) {
  Graph *g = u->g;
  const Node *pn = g->nodes[p];
  int pd = p;
  int dp = gr;
  if (o->kind == OPT_ADAMW) {
    if (o->weight_decay != 0.0f) pd = bin(u, OP_MUL, p, sc(u, (float)(1.0 - (double)o->lr * o->weight_decay)));
  } else if (o->weight_decay != 0.0f) {
    dp = bin(u, OP_ADD, dp, bin(u, OP_MUL, sc(u, o->weight_decay), p));
  }
  int m = opt_state(g, arena_printf(g->arena, "%s@m", pn->attr.leaf.name), DT_F32, pn->shape, u->loc);
  int v = opt_state(g, arena_printf(g->arena, "%s@v", pn->attr.leaf.name), DT_F32, pn->shape, u->loc);
  /* m' = m*b1 + (1-b1)*d;  v' = v*b2 + (1-b2)*d*d */
  int m2 = bin(u, OP_ADD, bin(u, OP_MUL, m, sc(u, o->beta1)), bin(u, OP_MUL, sc(u, (float)(1.0 - o->beta1)), dp));
  int v2 = bin(u, OP_ADD, bin(u, OP_MUL, v, sc(u, o->beta2)),
               bin(u, OP_MUL, bin(u, OP_MUL, sc(u, (float)(1.0 - o->beta2)), dp), dp));
  /* denom = sqrt(v') / sqrt(bc2) + eps;  p' = p - (lr / bc1) * m' / denom */
  int denom = bin(u, OP_ADD, bin(u, OP_DIV, ir_un(g, OP_SQRT, v2, u->loc, NULL), bc2_sqrt), sc(u, o->eps));
  int step_size = bin(u, OP_DIV, sc(u, o->lr), bc1);
  int p2 = bin(u, OP_SUB, pd, bin(u, OP_DIV, bin(u, OP_MUL, step_size, m2), denom));
  ir_add_update(g, m, m2);
  ir_add_update(g, v, v2);
  ir_add_update(g, p, p2);
}

bool pass_optimizer(Graph *g, Diag *d) {
  const Optimizer *o = &g->opt;
  if (o->kind == OPT_NONE) return true;
  if (g->mode != MODE_TRAIN) {
    diag_error(d, o->loc, "optimizer: not a training graph");
    return false;
  }
  int n0 = g->n_nodes;
  U uu = {g, o->loc};
  U *u = &uu;
  int n_grads = g->n_grads; /* stable: the loop adds no grads */
  bool any = false;
  for (int i = 0; i < n_grads; i++) any = any || !unreached(g, g->grads[i].grad);
  int bc1 = -1, bc2_sqrt = -1;
  if (any && (o->kind == OPT_ADAM || o->kind == OPT_ADAMW)) {
    int step = opt_state(g, "@step", DT_I32, shape_scalar(), o->loc);
    int t = bin(u, OP_ADD, step, ir_const(g, 1.0f, DT_I32, shape_scalar(), o->loc));
    ir_add_update(g, step, t);
    Shape s0 = shape_scalar();
    int tf = ir_op(g, OP_CAST, 1, &t, NULL, &s0, DT_F32, o->loc, NULL);
    bc1 = bin(u, OP_SUB, sc(u, 1.0f), bin(u, OP_POW, sc(u, o->beta1), tf));
    int bc2 = bin(u, OP_SUB, sc(u, 1.0f), bin(u, OP_POW, sc(u, o->beta2), tf));
    bc2_sqrt = ir_un(g, OP_SQRT, bc2, o->loc, NULL);
  }
  for (int i = 0; i < n_grads; i++) {
    int p = g->grads[i].param, gr = g->grads[i].grad;
    const Node *pn = g->nodes[p];
    if (pn->attr.leaf.frozen || unreached(g, gr)) continue;
    switch (o->kind) {
      case OPT_NONE: break;
      case OPT_SGD: sgd_step(u, o, p, gr); break;
      case OPT_ADAM:
      case OPT_ADAMW: adam_step(u, o, p, gr, bc1, bc2_sqrt); break;
    }
  }
  for (int i = n0; i < g->n_nodes; i++) g->nodes[i]->phase = PHASE_UPDATE;
  return true;
}
