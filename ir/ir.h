/* ir.h — the computation graph: nodes (op + typed attributes + operands) with
 * static dtypes and shapes and source locations, and the graph's roles
 * (inputs, labels, params, state, outputs, metrics, loss, grads, updates).
 * Nodes live in one array and are referred to by id; operands always have
 * smaller ids than their users (the array is in topological order). */
#ifndef IR_IR_H
#define IR_IR_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/arena.h"
#include "ir/diag.h"
#include "runtime/dlrt.h"

#define IR_MAX_RANK 8

typedef enum { DT_F32 = 0, DT_I32 = 1 } DType; /* equal to DlrtDType */

typedef struct {
  int rank;
  int64_t d[IR_MAX_RANK];
} Shape;

typedef enum {
#define OP(e, name, arity, flags) OP_##e,
#include "ir/ops.def"
#undef OP
  OP__COUNT
} OpKind;

enum {
  OPF_LEAF = 1 << 0,
  OPF_ELEMWISE = 1 << 1,
  OPF_COMMUTATIVE = 1 << 2,
  OPF_SHAPE = 1 << 3,
  OPF_REDUCTION = 1 << 4,
  OPF_CONTRACTION = 1 << 5,
  OPF_NONDIFF = 1 << 6,
  OPF_RANDOM = 1 << 7,
};

extern const char *const ir_op_names[OP__COUNT];
extern const int ir_op_arity[OP__COUNT];
extern const unsigned ir_op_flags[OP__COUNT];
static inline bool op_has(OpKind op, unsigned f) { return (ir_op_flags[op] & f) != 0; }
/* OpKind from its printed name; -1 if unknown. */
int ir_op_from_name(const char *name);

/* ---- typed attributes ---- */
typedef struct {
  const char *name; /* the .dl name, e.g. "fc1.W" */
  DlrtInit init;    /* params and state */
  bool frozen;      /* params only */
  bool opt_state;   /* STATE made by the optimizer: "W@momentum", "W@m", "W@v", "@step" */
} LeafAttr;
typedef struct { float v; } ScalarAttr;
typedef struct { uint32_t axes; bool keepdim; } ReduceAttr; /* bit i = axis i of the operand */
typedef struct { int perm[IR_MAX_RANK]; } PermAttr;
typedef struct { int64_t start[IR_MAX_RANK], step[IR_MAX_RANK]; } SliceAttr; /* per operand axis (slice) / per output axis (unslice) */
typedef struct { int axis; } AxisAttr;
typedef struct { int stride[2], pad[2], dil[2], groups; } ConvAttr;
typedef struct { int k[2], stride[2], pad[2]; } PoolAttr;
typedef struct { float p; uint64_t salt; } DropoutAttr;

typedef union {
  LeafAttr leaf;     /* INPUT LABEL PARAM STATE */
  ScalarAttr scalar; /* CONST ELU LEAKY_RELU POWS */
  ReduceAttr reduce; /* SUM MEAN MAX ARGMAX */
  PermAttr perm;     /* TRANSPOSE */
  SliceAttr slice;   /* SLICE UNSLICE */
  AxisAttr axis;     /* CONCAT SOFTMAX LOG_SOFTMAX */
  ConvAttr conv;     /* CONV2D* */
  PoolAttr pool;     /* *POOL2D* */
  DropoutAttr dropout;
} NodeAttr;

typedef enum { PHASE_FORWARD = 0, PHASE_BACKWARD = 1, PHASE_UPDATE = 2 } Phase;

typedef struct Node {
  int id;
  OpKind op;
  DType dtype;
  Shape shape;
  int nin;
  int *in;           /* operand ids (arena) */
  NodeAttr attr;
  SrcLoc loc;
  Phase phase;
  const char *name;  /* optional: the .dl name bound to this value ("h"), for printing */
} Node;

/* ---- optimizer (SPEC §4) ---- */
typedef enum { OPT_NONE = 0, OPT_SGD, OPT_ADAM, OPT_ADAMW } OptKind;
typedef struct {
  OptKind kind;
  float lr, momentum, weight_decay, beta1, beta2, eps;
  bool nesterov;
  SrcLoc loc;
} Optimizer;

typedef struct { const char *name; int node; } NamedValue;
typedef struct { int target; int value; } Update; /* leaf (PARAM/STATE) := value after the step */
typedef struct { int param; int grad; } GradOf;

typedef enum { MODE_TRAIN = 0, MODE_EVAL = 1, MODE_INFER = 2 } GraphMode;

typedef struct Graph {
  Arena *arena;
  const char *name;  /* model name */
  GraphMode mode;
  Node **nodes;
  int n_nodes, cap_nodes;

  NamedValue *outputs; int n_outputs;
  NamedValue *metrics; int n_metrics;
  int loss;                 /* node id or -1 */
  const char *loss_name;
  Optimizer opt;

  GradOf *grads; int n_grads;        /* filled by autodiff */
  Update *updates; int n_updates;    /* batch-norm state (sema), optimizer (autodiff) */
} Graph;

Graph *ir_graph_new(Arena *a, const char *name, GraphMode mode);
static inline Node *ir_node(const Graph *g, int id) { return g->nodes[id]; }

/* ---- building: every builder infers dtype and shape (ir_shape.c) and
 * returns the new node id, or -1 after reporting a user error to `d` (the
 * message names the op and both shapes, at `loc`). `d` may be NULL for
 * internal construction, in which case errors abort via DL_ASSERT. ---- */
/* Low level: appends a node with the given operands and no type (callers set
 * dtype/shape/attr). Used by ir_op and by the textual IR parser. */
Node *ir_append(Graph *g, OpKind op, int nin, const int *in, SrcLoc loc);
/* Shape/dtype rule of one op (used by ir_op, the verifier and the IR parser). */
bool ir_infer(OpKind op, int nin, Node *const *ops, const NodeAttr *at, const Shape *out, DType cast_to,
              DType *odt, Shape *osh, Diag *d, SrcLoc loc);
int ir_leaf(Graph *g, OpKind op, const char *name, DType dt, Shape shape, SrcLoc loc);
int ir_const(Graph *g, float v, DType dt, Shape shape, SrcLoc loc);
int ir_scalar(Graph *g, float v, SrcLoc loc); /* f32[] constant */
/* Generic builder. `out` gives the output shape for the ops whose shape is
 * not implied by operands (RESHAPE BROADCAST UNSLICE CONV2D_BWD_* MAXPOOL2D_BWD
 * AVGPOOL2D_BWD ONEHOT DROPOUT_MASK) and the dtype for CAST (out->rank ignored
 * there: pass the operand's shape); NULL otherwise. */
int ir_op(Graph *g, OpKind op, int nin, const int *in, const NodeAttr *attr, const Shape *out,
          DType cast_to, SrcLoc loc, Diag *d);
/* Conveniences over ir_op (d may be NULL). */
int ir_un(Graph *g, OpKind op, int a, SrcLoc loc, Diag *d);
int ir_bin(Graph *g, OpKind op, int a, int b, SrcLoc loc, Diag *d);
int ir_reduce(Graph *g, OpKind op, int a, uint32_t axes, bool keepdim, SrcLoc loc, Diag *d);
int ir_reshape(Graph *g, int a, Shape s, SrcLoc loc, Diag *d);
int ir_broadcast(Graph *g, int a, Shape s, SrcLoc loc, Diag *d);

void ir_add_output(Graph *g, const char *name, int node);
void ir_add_metric(Graph *g, const char *name, int node);
void ir_add_update(Graph *g, int target, int value);
void ir_add_grad(Graph *g, int param, int grad);

/* ---- shapes ---- */
int64_t shape_numel(const Shape *s);
bool shape_eq(const Shape *a, const Shape *b);
Shape shape_make(int rank, const int64_t *d);
Shape shape_scalar(void);
/* NumPy broadcast of a and b into out; false if incompatible. */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out);
/* "f32[128,784]" into buf; returns buf. */
const char *shape_str(DType dt, const Shape *s, char *buf, int n);
const char *dtype_name(DType dt);

/* ---- graph utilities ---- */
/* Leaf node id by .dl name and op (-1 if absent). */
int ir_find_leaf(const Graph *g, OpKind op, const char *name);
/* use counts per node (arena array of n_nodes) counting roles as uses. */
int *ir_use_counts(const Graph *g, Arena *a);

/* ---- text ---- */
/* Prints the graph in the textual IR form (one value per line, with dtype,
 * shape and `# file:line:col`). */
void ir_print(const Graph *g, FILE *out);
/* Checks operand order, arity, dtypes and shapes against ir_shape's rules
 * and role consistency; reports problems to d; returns true if valid. */
bool ir_verify(const Graph *g, Diag *d);

#endif
