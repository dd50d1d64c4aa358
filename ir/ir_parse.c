/* ir_parse.c — the parser of the printed graph form (ir_print: --emit=ir,
 * --emit=grad), the top level of a .dlir file (graphs and a kernel program,
 * the latter parsed by kir_parse.c), on the cursor of ir_parse_cursor.c.
 * Nodes are rebuilt with ir_append and typed with ir_infer; a printed type
 * that disagrees with the derived one is an error at its column. */
#include "ir/ir_parse.h"

#include <stdlib.h>
#include <string.h>

/* ---- graphs ---- */
/* One line of a graph body before the nodes are built. */
typedef struct {
  SrcLoc at, type_at;   /* the line's start and its type in the text */
  bool leaf;            /* a named leaf (input label param state) */
  OpKind op;
  int64_t fid;          /* %N as printed (non-leaves) */
  const char *lname;    /* leaf name */
  DType dt;
  Shape sh;
  NodeAttr attr;
  int nin;
  const char **ref_name; /* per operand: leaf name or NULL */
  int64_t *ref_id;       /* per operand: %N when ref_name is NULL */
  SrcLoc *ref_at;
  Phase phase;
  SrcLoc loc;
  const char *name;
} PLine;

typedef struct {
  SrcLoc at;
  const char *kw, *name;
  const char *ref_name;
  int64_t ref_id;
} PRole;

typedef struct {
  int64_t fid;
  int id;
} IdMap;

typedef struct {
  IrpCur *c;
  Graph *g;
  PLine *lines;
  int n_lines, cap_lines;
  PRole *roles;
  int n_roles, cap_roles;
  IdMap *map; /* open addressing, cap_map a power of two */
  int cap_map;
  int *leaf_ids; /* final ids of named leaves */
  int n_leaves;
} GParse;

#define GROW(arr, n, cap)                                                                          \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      int nc_ = (cap) ? (cap) * 2 : 32;                                                            \
      (arr) = arena_grow(gp->c->a, (arr), sizeof(*(arr)), (size_t)(n), (size_t)nc_);               \
      (cap) = nc_;                                                                                 \
    }                                                                                              \
  } while (0)

/* Attributes as printed: key=value pairs, checked against the op later. */
typedef struct {
  const char *key;
  SrcLoc at;
  bool is_list;
  int n;
  double v[IR_MAX_RANK];
  uint64_t u;
  bool used;
} PAttr;

static bool parse_attr_value(IrpCur *c, PAttr *pa) {
  irp_ws(c);
  pa->at = irp_loc(c);
  if (irp_accept(c, "[")) {
    pa->is_list = true;
    if (irp_accept(c, "]")) return true;
    for (;;) {
      int64_t v;
      if (pa->n == IR_MAX_RANK) return irp_error(c, irp_loc(c), "more than %d values", IR_MAX_RANK);
      if (!irp_int(c, &v)) return false;
      pa->v[pa->n++] = (double)v;
      if (irp_accept(c, "]")) return true;
      if (!irp_expect(c, ",")) return false;
    }
  }
  if (irp_keyword(c, "true")) pa->v[0] = 1;
  else if (irp_keyword(c, "false")) pa->v[0] = 0;
  else if (!strcmp(pa->key, "salt")) return irp_u64(c, &pa->u);
  else {
    float f;
    if (!irp_float(c, &f)) return false;
    pa->v[0] = f;
  }
  return true;
}

static PAttr *find_attr(IrpCur *c, PAttr *as, int n, const char *key, bool list, int len, SrcLoc at) {
  for (int i = 0; i < n; i++) {
    if (strcmp(as[i].key, key)) continue;
    as[i].used = true;
    if (as[i].is_list != list || (list && len >= 0 && as[i].n != len)) {
      if (list) irp_error(c, as[i].at, "attribute %s: expected a list of %d integers", key, len);
      else irp_error(c, as[i].at, "attribute %s: expected a single value", key);
      return NULL;
    }
    return &as[i];
  }
  irp_error(c, at, "missing attribute %s", key);
  return NULL;
}

static bool get_ints(IrpCur *c, PAttr *as, int n, const char *key, int len, int *out, SrcLoc at) {
  PAttr *a = find_attr(c, as, n, key, true, len, at);
  if (!a) return false;
  for (int i = 0; i < a->n; i++) out[i] = (int)a->v[i];
  return true;
}

static bool get_num(IrpCur *c, PAttr *as, int n, const char *key, double *out, SrcLoc at) {
  PAttr *a = find_attr(c, as, n, key, false, 0, at);
  if (!a) return false;
  *out = a->v[0];
  return true;
}

/* Fills ln->attr from the printed attributes; every attribute must be used. */
static bool convert_attrs(IrpCur *c, PLine *ln, PAttr *as, int n) {
  NodeAttr *at = &ln->attr;
  SrcLoc w = ln->at;
  double v;
  int r = ln->sh.rank;
  switch (ln->op) {
    case OP_ELU: if (!get_num(c, as, n, "alpha", &v, w)) return false; at->scalar.v = (float)v; break;
    case OP_LEAKY_RELU: if (!get_num(c, as, n, "slope", &v, w)) return false; at->scalar.v = (float)v; break;
    case OP_POWS: if (!get_num(c, as, n, "p", &v, w)) return false; at->scalar.v = (float)v; break;
    case OP_SUM: case OP_MEAN: case OP_MAX: case OP_ARGMAX: {
      PAttr *ax = find_attr(c, as, n, "axes", true, -1, w);
      if (!ax || !get_num(c, as, n, "keepdim", &v, w)) return false;
      for (int i = 0; i < ax->n; i++) {
        if (ax->v[i] < 0 || ax->v[i] >= 32) return irp_error(c, ax->at, "axis %g out of range", ax->v[i]);
        at->reduce.axes |= 1u << (int)ax->v[i];
      }
      at->reduce.keepdim = v != 0;
      break;
    }
    case OP_TRANSPOSE: if (!get_ints(c, as, n, "perm", r, at->perm.perm, w)) return false; break;
    case OP_SLICE: case OP_UNSLICE: {
      PAttr *st = find_attr(c, as, n, "start", true, r, w), *sp = st ? find_attr(c, as, n, "step", true, r, w) : NULL;
      if (!sp) return false;
      for (int i = 0; i < r; i++) {
        at->slice.start[i] = (int64_t)st->v[i];
        at->slice.step[i] = (int64_t)sp->v[i];
      }
      break;
    }
    case OP_CONCAT: case OP_SOFTMAX: case OP_LOG_SOFTMAX:
      if (!get_num(c, as, n, "axis", &v, w)) return false;
      at->axis.axis = (int)v;
      break;
    case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_FILTER:
      if (!get_ints(c, as, n, "stride", 2, at->conv.stride, w) || !get_ints(c, as, n, "pad", 2, at->conv.pad, w) ||
          !get_ints(c, as, n, "dilation", 2, at->conv.dil, w) || !get_num(c, as, n, "groups", &v, w))
        return false;
      at->conv.groups = (int)v;
      break;
    case OP_MAXPOOL2D: case OP_MAXPOOL2D_ARGMAX: case OP_MAXPOOL2D_BWD: case OP_AVGPOOL2D: case OP_AVGPOOL2D_BWD:
      if (!get_ints(c, as, n, "k", 2, at->pool.k, w) || !get_ints(c, as, n, "stride", 2, at->pool.stride, w) ||
          !get_ints(c, as, n, "pad", 2, at->pool.pad, w))
        return false;
      break;
    case OP_DROPOUT_MASK: {
      PAttr *s = find_attr(c, as, n, "salt", false, 0, w);
      if (!s || !get_num(c, as, n, "p", &v, w)) return false;
      at->dropout.p = (float)v;
      at->dropout.salt = s->u;
      break;
    }
    case OP_INPUT: case OP_LABEL: case OP_PARAM: case OP_STATE: case OP_CONST:
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_RELU: case OP_SIGMOID: case OP_TANH:
    case OP_SIGN: case OP_STEP: case OP_CAST: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW:
    case OP_MAXIMUM: case OP_MINIMUM: case OP_GT: case OP_GE: case OP_EQ: case OP_SELECT: case OP_BROADCAST:
    case OP_RESHAPE: case OP_MATMUL: case OP_ONEHOT: case OP__COUNT:
      break;
  }
  for (int i = 0; i < n; i++)
    if (!as[i].used) return irp_error(c, as[i].at, "%s has no attribute %s", ir_op_names[ln->op], as[i].key);
  return true;
}

/* `%N = op(operands, attrs) : type  # name loc` after the `%`. */
/* Appends operand reference (name, or %id when name is NULL) to ln, growing its arrays. */
static void push_ref(IrpCur *c, PLine *ln, int *cap, const char *name, int64_t id, SrcLoc at) {
  if (ln->nin == *cap) {
    size_t n = (size_t)*cap;
    ln->ref_name = arena_grow(c->a, ln->ref_name, sizeof(char *), n, n * 2);
    ln->ref_id = arena_grow(c->a, ln->ref_id, sizeof(int64_t), n, n * 2);
    ln->ref_at = arena_grow(c->a, ln->ref_at, sizeof(SrcLoc), n, n * 2);
    *cap *= 2;
  }
  ln->ref_name[ln->nin] = name;
  ln->ref_id[ln->nin] = id;
  ln->ref_at[ln->nin] = at;
  ln->nin++;
}

static bool parse_node_line(GParse *gp, PLine *ln) {
  IrpCur *c = gp->c;
  if (!irp_int(c, &ln->fid) || !irp_expect(c, "=")) return false;
  irp_ws(c);
  SrcLoc opat = irp_loc(c);
  const char *opname;
  if (!irp_word(c, &opname)) return false;
  int op = ir_op_from_name(opname);
  if (op < 0) return irp_error(c, opat, "unknown op '%s'", opname);
  if (op_has((OpKind)op, OPF_LEAF) && op != OP_CONST && op != OP_DROPOUT_MASK)
    return irp_error(c, opat, "%s is a leaf: declare it as `%s NAME : TYPE`", opname, opname);
  ln->op = (OpKind)op;
  ln->at = opat;
  if (*c->p != '(') return irp_error(c, irp_loc(c), "expected '(' after %s", opname);
  c->p++;
  int cap = 4;
  ln->ref_name = ARENA_ARRAY(c->a, const char *, cap);
  ln->ref_id = ARENA_ARRAY(c->a, int64_t, cap);
  ln->ref_at = ARENA_ARRAY(c->a, SrcLoc, cap);
  PAttr as[12];
  int nas = 0;
  float cv = 0;
  if (op == OP_CONST && !irp_float(c, &cv)) return false;
  ln->attr.scalar.v = cv;
  bool first = op != OP_CONST;
  while (!irp_accept(c, ")")) {
    if (!first && !irp_expect(c, ",")) return false;
    first = false;
    irp_ws(c);
    SrcLoc at = irp_loc(c);
    if (*c->p == '%' && c->p[1] >= '0' && c->p[1] <= '9') {
      if (nas) return irp_error(c, at, "operand after the attributes");
      c->p++;
      int64_t id;
      if (!irp_int(c, &id)) return false;
      push_ref(c, ln, &cap, NULL, id, at);
      continue;
    }
    const char *w;
    if (!irp_word(c, &w)) return false;
    if (irp_accept(c, "=")) {
      if (nas == 12) return irp_error(c, at, "too many attributes");
      memset(&as[nas], 0, sizeof as[nas]);
      as[nas].key = w;
      if (!parse_attr_value(c, &as[nas])) return false;
      for (int i = 0; i < nas; i++)
        if (!strcmp(as[i].key, w)) return irp_error(c, at, "attribute %s given twice", w);
      nas++;
      continue;
    }
    if (nas) return irp_error(c, at, "operand after the attributes");
    push_ref(c, ln, &cap, w, 0, at);
  }
  if (!irp_expect(c, ":")) return false;
  irp_ws(c);
  ln->type_at = irp_loc(c);
  if (!irp_type(c, &ln->dt, &ln->sh)) return false;
  if (!convert_attrs(c, ln, as, nas)) return false;
  return irp_loc_comment(c, &ln->name, &ln->loc) && irp_eol(c);
}

/* `KIND NAME : TYPE [= INIT] [frozen] [optstate]  # loc` after KIND. */
static bool parse_leaf_line(GParse *gp, PLine *ln, OpKind op) {
  IrpCur *c = gp->c;
  ln->leaf = true;
  ln->op = op;
  if (!irp_word(c, &ln->lname) || !irp_expect(c, ":")) return false;
  irp_ws(c);
  ln->type_at = irp_loc(c);
  if (!irp_type(c, &ln->dt, &ln->sh)) return false;
  ln->attr.leaf.name = ln->lname;
  if (irp_accept(c, "=")) {
    if (op != OP_PARAM && op != OP_STATE) return irp_error(c, irp_loc(c), "only params and state have an initializer");
    if (!irp_init(c, &ln->attr.leaf.init)) return false;
  }
  for (;;) {
    if (irp_keyword(c, "frozen")) ln->attr.leaf.frozen = true;
    else if (irp_keyword(c, "optstate")) ln->attr.leaf.opt_state = true;
    else break;
  }
  const char *nm;
  if (!irp_loc_comment(c, &nm, &ln->loc)) return false;
  if (nm && !ln->loc.file) return irp_error(c, ln->at, "expected FILE:LINE:COL in the comment");
  ln->phase = ln->attr.leaf.opt_state ? PHASE_UPDATE : PHASE_FORWARD;
  return irp_eol(c);
}

static bool parse_role_line(GParse *gp, const char *kw) {
  IrpCur *c = gp->c;
  GROW(gp->roles, gp->n_roles, gp->cap_roles);
  PRole *r = &gp->roles[gp->n_roles++];
  memset(r, 0, sizeof *r);
  r->kw = kw;
  if (!irp_word(c, &r->name) || !irp_expect(c, "=")) return false;
  irp_ws(c);
  r->at = irp_loc(c);
  if (*c->p == '%') {
    c->p++;
    if (!irp_int(c, &r->ref_id)) return false;
  } else if (!irp_word(c, &r->ref_name)) {
    return false;
  }
  return irp_eol(c);
}

static bool parse_optimizer(GParse *gp) {
  IrpCur *c = gp->c;
  Optimizer *o = &gp->g->opt;
  SrcLoc at = irp_loc(c);
  const char *kind;
  if (!irp_word(c, &kind)) return false;
  if (!strcmp(kind, "sgd")) o->kind = OPT_SGD;
  else if (!strcmp(kind, "adam")) o->kind = OPT_ADAM;
  else if (!strcmp(kind, "adamw")) o->kind = OPT_ADAMW;
  else return irp_error(c, at, "unknown optimizer '%s'", kind);
  if (!irp_expect(c, "(")) return false;
  bool first = true;
  while (!irp_accept(c, ")")) {
    if (!first && !irp_expect(c, ",")) return false;
    first = false;
    irp_ws(c);
    SrcLoc kat = irp_loc(c);
    const char *k;
    float v = 0;
    if (!irp_word(c, &k) || !irp_expect(c, "=")) return false;
    if (!strcmp(k, "nesterov")) {
      if (irp_keyword(c, "true")) o->nesterov = true;
      else if (!irp_keyword(c, "false")) return irp_error(c, irp_loc(c), "expected true or false");
      continue;
    }
    if (!irp_float(c, &v)) return false;
    if (!strcmp(k, "lr")) o->lr = v;
    else if (!strcmp(k, "momentum")) o->momentum = v;
    else if (!strcmp(k, "weight_decay")) o->weight_decay = v;
    else if (!strcmp(k, "beta1")) o->beta1 = v;
    else if (!strcmp(k, "beta2")) o->beta2 = v;
    else if (!strcmp(k, "eps")) o->eps = v;
    else return irp_error(c, kat, "unknown optimizer setting '%s'", k);
  }
  const char *nm;
  return irp_loc_comment(c, &nm, &o->loc) && irp_eol(c);
}

/* ---- building the graph from the lines ---- */
static int *map_slot(GParse *gp, int64_t fid) {
  unsigned h = (unsigned)((uint64_t)fid * 0x9E3779B97F4A7C15ull >> 32) & (unsigned)(gp->cap_map - 1);
  while (gp->map[h].id >= 0 && gp->map[h].fid != fid) h = (h + 1) & (unsigned)(gp->cap_map - 1);
  gp->map[h].fid = fid;
  return &gp->map[h].id;
}

static int find_leaf(GParse *gp, const char *name) {
  for (int i = 0; i < gp->n_leaves; i++)
    if (!strcmp(gp->g->nodes[gp->leaf_ids[i]]->attr.leaf.name, name)) return gp->leaf_ids[i];
  return -1;
}

static int resolve(GParse *gp, const char *name, int64_t fid, SrcLoc at) {
  int id = -1;
  if (name) {
    id = find_leaf(gp, name);
    if (id < 0) irp_error(gp->c, at, "unknown leaf '%s'", name);
  } else {
    int *slot = map_slot(gp, fid);
    id = *slot;
    if (id < 0) irp_error(gp->c, at, "%%%lld is not defined before this use", (long long)fid);
  }
  return id;
}

static bool build_node(GParse *gp, PLine *ln) {
  IrpCur *c = gp->c;
  Graph *g = gp->g;
  if (ln->leaf) {
    if (find_leaf(gp, ln->lname) >= 0) return irp_error(c, ln->at, "leaf '%s' is declared twice", ln->lname);
    Node *n = ir_append(g, ln->op, 0, NULL, ln->loc);
    n->dtype = ln->dt;
    n->shape = ln->sh;
    n->attr = ln->attr;
    n->name = ln->lname;
    n->phase = ln->phase;
    gp->leaf_ids[gp->n_leaves++] = n->id;
    return true;
  }
  int *in = ARENA_ARRAY(c->a, int, ln->nin + 1);
  Node **ops = ARENA_ARRAY(c->a, Node *, ln->nin + 1);
  for (int j = 0; j < ln->nin; j++) {
    in[j] = resolve(gp, ln->ref_name[j], ln->ref_id[j], ln->ref_at[j]);
    if (in[j] < 0) return false;
    ops[j] = g->nodes[in[j]];
  }
  DType dt = ln->dt;
  Shape sh = ln->sh;
  if (ln->op == OP_CONST) {
    if (ln->nin) return irp_error(c, ln->ref_at[0], "const has no operands");
  } else {
    if (ir_op_arity[ln->op] >= 0 && ln->nin != ir_op_arity[ln->op])
      return irp_error(c, ln->at, "%s expects %d operands, got %d", ir_op_names[ln->op], ir_op_arity[ln->op], ln->nin);
    if (ln->op == OP_CONCAT && ln->nin < 1) return irp_error(c, ln->at, "concat needs operands");
    if (!ir_infer(ln->op, ln->nin, ops, &ln->attr, &ln->sh, ln->dt, &dt, &sh, c->d, ln->at)) {
      c->failed = true;
      return false;
    }
    if (dt != ln->dt || !shape_eq(&sh, &ln->sh)) {
      char b0[160], b1[160];
      return irp_error(c, ln->type_at, "type mismatch: %s is printed as %s but its operands give %s",
                       ir_op_names[ln->op], shape_str(ln->dt, &ln->sh, b0, sizeof b0), shape_str(dt, &sh, b1, sizeof b1));
    }
  }
  int *slot = map_slot(gp, ln->fid);
  if (*slot >= 0) return irp_error(c, ln->at, "%%%lld is defined twice", (long long)ln->fid);
  Node *n = ir_append(g, ln->op, ln->nin, in, ln->loc);
  n->dtype = dt;
  n->shape = sh;
  n->attr = ln->attr;
  n->phase = ln->phase;
  n->name = ln->name;
  *slot = n->id;
  return true;
}

/* Printed ids are node ids with the named leaves in the gaps: put each leaf
 * in the first free slot so that a printed graph keeps its ids; otherwise
 * (hand-written, sparse ids) leaves first, then the nodes in text order. */
static int *node_order(GParse *gp) {
  int n = gp->n_lines;
  int *order = ARENA_ARRAY(gp->c->a, int, n + 1);
  int li = 0, ni = 0, nl = 0;
  for (int i = 0; i < n; i++) nl += gp->lines[i].leaf;
  int *leaves = ARENA_ARRAY(gp->c->a, int, nl + 1), *nodes = ARENA_ARRAY(gp->c->a, int, n - nl + 1);
  for (int i = 0, a = 0, b = 0; i < n; i++) {
    if (gp->lines[i].leaf) leaves[a++] = i;
    else nodes[b++] = i;
  }
  bool ok = true;
  for (int t = 0; t < n; t++) {
    if (ni < n - nl && (li == nl || gp->lines[nodes[ni]].fid <= t)) {
      ok = ok && gp->lines[nodes[ni]].fid == t;
      order[t] = nodes[ni++];
    } else {
      order[t] = leaves[li++];
    }
  }
  if (ok) { /* every leaf a node uses must come first */
    int *pos = ARENA_ARRAY(gp->c->a, int, n + 1);
    for (int t = 0; t < n; t++) pos[order[t]] = t;
    for (int t = 0; ok && t < n; t++) {
      const PLine *ln = &gp->lines[order[t]];
      for (int j = 0; ok && j < ln->nin; j++) {
        if (!ln->ref_name[j]) continue;
        for (int k = 0; k < nl; k++)
          if (!strcmp(gp->lines[leaves[k]].lname, ln->ref_name[j]) && pos[leaves[k]] > t) ok = false;
      }
    }
  }
  if (!ok) {
    for (int k = 0; k < nl; k++) order[k] = leaves[k];
    for (int k = 0; k < n - nl; k++) order[nl + k] = nodes[k];
  }
  return order;
}

static bool build_roles(GParse *gp) {
  Graph *g = gp->g;
  for (int i = 0; i < gp->n_roles; i++) {
    PRole *r = &gp->roles[i];
    int id = resolve(gp, r->ref_name, r->ref_id, r->at);
    if (id < 0) return false;
    if (!strcmp(r->kw, "output")) ir_add_output(g, r->name, id);
    else if (!strcmp(r->kw, "metric")) ir_add_metric(g, r->name, id);
    else if (!strcmp(r->kw, "loss")) {
      if (g->loss >= 0) return irp_error(gp->c, r->at, "a second loss");
      if (g->nodes[id]->shape.rank != 0) return irp_error(gp->c, r->at, "the loss must be a scalar (f32[])");
      g->loss = id;
      g->loss_name = r->name;
    } else {
      int t = find_leaf(gp, r->name);
      bool grad = !strcmp(r->kw, "grad");
      if (t < 0 || (grad ? g->nodes[t]->op != OP_PARAM : g->nodes[t]->op != OP_PARAM && g->nodes[t]->op != OP_STATE))
        return irp_error(gp->c, r->at, "%s: '%s' is not a %s", r->kw, r->name, grad ? "param" : "param or state");
      const Node *tn = g->nodes[t], *vn = g->nodes[id];
      if (tn->dtype != vn->dtype || !shape_eq(&tn->shape, &vn->shape)) {
        char b0[160], b1[160];
        return irp_error(gp->c, r->at, "%s %s: %s differs from the value's %s", r->kw, r->name,
                         shape_str(tn->dtype, &tn->shape, b0, sizeof b0), shape_str(vn->dtype, &vn->shape, b1, sizeof b1));
      }
      if (grad) ir_add_grad(g, t, id);
      else ir_add_update(g, t, id);
    }
  }
  return true;
}

/* `graph NAME(mode=M) {` ... `}` after the keyword. */
static Graph *parse_graph(IrpCur *c) {
  const char *name, *mode;
  SrcLoc mat;
  if (!irp_word(c, &name) || !irp_expect(c, "(") || !irp_keyword(c, "mode") || !irp_expect(c, "=")) {
    if (!c->failed) irp_error(c, irp_loc(c), "expected (mode=train|eval|infer)");
    return NULL;
  }
  irp_ws(c);
  mat = irp_loc(c);
  if (!irp_word(c, &mode) || !irp_expect(c, ")") || !irp_expect(c, "{") || !irp_eol(c)) return NULL;
  GraphMode gm;
  if (!strcmp(mode, "train")) gm = MODE_TRAIN;
  else if (!strcmp(mode, "eval")) gm = MODE_EVAL;
  else if (!strcmp(mode, "infer")) gm = MODE_INFER;
  else {
    irp_error(c, mat, "unknown mode '%s'", mode);
    return NULL;
  }
  GParse gps, *gp = &gps;
  memset(gp, 0, sizeof *gp);
  gp->c = c;
  gp->g = ir_graph_new(c->a, name, gm);
  Phase phase = PHASE_FORWARD;
  for (;;) {
    irp_skip_blank(c);
    SrcLoc at = irp_loc(c);
    if (*c->p == 0) {
      irp_error(c, at, "unterminated graph '%s': expected '}'", name);
      return NULL;
    }
    if (irp_accept(c, "}")) {
      if (!irp_eol(c)) return NULL;
      break;
    }
    if (irp_accept(c, ";")) {
      const char *ph;
      irp_ws(c);
      SrcLoc pat = irp_loc(c);
      if (!irp_word(c, &ph)) return NULL;
      if (!strcmp(ph, "forward")) phase = PHASE_FORWARD;
      else if (!strcmp(ph, "backward")) phase = PHASE_BACKWARD;
      else if (!strcmp(ph, "update")) phase = PHASE_UPDATE;
      else {
        irp_error(c, pat, "unknown phase '%s' (forward, backward or update)", ph);
        return NULL;
      }
      if (!irp_eol(c)) return NULL;
      continue;
    }
    if (irp_accept(c, "%")) {
      GROW(gp->lines, gp->n_lines, gp->cap_lines);
      PLine *ln = &gp->lines[gp->n_lines++];
      memset(ln, 0, sizeof *ln);
      ln->phase = phase;
      if (!parse_node_line(gp, ln)) return NULL;
      continue;
    }
    const char *kw;
    if (!irp_word(c, &kw)) return NULL;
    static const char *const leaf_kw[] = {"input", "label", "param", "state"};
    static const OpKind leaf_op[] = {OP_INPUT, OP_LABEL, OP_PARAM, OP_STATE};
    bool done = false;
    for (int k = 0; k < 4 && !done; k++) {
      if (strcmp(kw, leaf_kw[k])) continue;
      GROW(gp->lines, gp->n_lines, gp->cap_lines);
      PLine *ln = &gp->lines[gp->n_lines++];
      memset(ln, 0, sizeof *ln);
      ln->at = at;
      if (!parse_leaf_line(gp, ln, leaf_op[k])) return NULL;
      done = true;
    }
    static const char *const role_kw[] = {"output", "metric", "loss", "grad", "update"};
    for (int k = 0; k < 5 && !done; k++) {
      if (strcmp(kw, role_kw[k])) continue;
      if (!parse_role_line(gp, role_kw[k])) return NULL;
      done = true;
    }
    if (!done && !strcmp(kw, "optimizer")) {
      if (!parse_optimizer(gp)) return NULL;
      done = true;
    }
    if (!done) {
      irp_error(c, at, "expected a leaf, `%%N = op(...)`, a role or '}', found '%s'", kw);
      return NULL;
    }
  }
  gp->cap_map = 64;
  while (gp->cap_map < 2 * gp->n_lines + 2 * gp->n_roles + 8) gp->cap_map *= 2;
  gp->map = ARENA_ARRAY(c->a, IdMap, gp->cap_map);
  for (int i = 0; i < gp->cap_map; i++) gp->map[i].id = -1;
  gp->leaf_ids = ARENA_ARRAY(c->a, int, gp->n_lines + 1);
  int *order = node_order(gp);
  for (int t = 0; t < gp->n_lines; t++)
    if (!build_node(gp, &gp->lines[order[t]])) return NULL;
  if (!build_roles(gp)) return NULL;
  return gp->g;
}

bool ir_parse_module(Arena *a, const char *file, const char *text, IrModule *out, Diag *d) {
  memset(out, 0, sizeof *out);
  const char *fname = arena_strdup(a, file);
  diag_add_source(d, fname, text);
  IrpCur cur = {.a = a, .d = d, .file = fname, .p = text, .line_start = text, .line = 1};
  IrpCur *c = &cur;
  int cap = 0;
  for (;;) {
    irp_skip_blank(c);
    if (*c->p == 0) break;
    SrcLoc at = irp_loc(c);
    if (irp_keyword(c, "graph")) {
      Graph *g = parse_graph(c);
      if (!g) return false;
      if (out->n_graphs == cap) {
        cap = cap ? cap * 2 : 4;
        out->graphs = arena_grow(a, out->graphs, sizeof(Graph *), (size_t)out->n_graphs, (size_t)cap);
      }
      out->graphs[out->n_graphs++] = g;
    } else if (irp_keyword(c, "program")) {
      if (out->prog) return irp_error(c, at, "a second kernel program");
      out->prog = kir_parse_program(c);
      if (!out->prog) return false;
    } else {
      return irp_error(c, at, "expected `graph` or `program`");
    }
  }
  if (!out->n_graphs && !out->prog) return irp_error(c, irp_loc(c), "the file holds no graph and no program");
  return true;
}
