/* kernel.h — the kernel IR: what passes/lower.c makes of a graph and what
 * the backend compiles. A kernel computes one output buffer over its
 * iteration space (the output shape), optionally reducing over extra axes:
 *
 *   for o in out_shape:                    (loop vars 0 .. rank-1)
 *     acc = init(red)
 *     for r in red_ext:                    (loop vars rank .. rank+n_red-1)
 *       acc = combine(acc, body(o, r))
 *     out[o] = epilogue(acc)               (acc = body(o) when red == RED_NONE)
 *
 * Expressions are trees: index expressions (IExpr, int64) over loop vars,
 * and value expressions (VExpr) over loads of buffers at per-dimension
 * indices. Fusion is substitution: a producer's body is inlined at its
 * consumer's load with the producer's loop vars replaced by the load's
 * indices. Everything is allocated from the compilation's arena. */
#ifndef IR_KERNEL_H
#define IR_KERNEL_H

#include "ir/ir.h"

typedef enum {
  IX_CONST, /* v */
  IX_VAR,   /* loop var `var` */
  IX_ADD, IX_SUB, IX_MUL,
  IX_DIV,   /* a / b, C semantics (truncation); only used where guarded or a >= 0 */
  IX_MOD,   /* a % b, C semantics */
  IX_LT, IX_GE, IX_EQ, IX_AND, /* 0/1 */
} IxOp;

typedef struct IExpr {
  IxOp op;
  int var;
  int64_t v;
  struct IExpr *a, *b;
} IExpr;

typedef enum {
  VX_CONST,  /* f (f32) or i (i32) */
  VX_LOAD,   /* buf at idx[0..rank) (row-major over the buffer's shape);
                if guard != NULL and guard evaluates to 0 the load does not
                touch memory and yields `f` (fill) instead */
  VX_INDEX,  /* the value of index expression ix, converted to dtype */
  VX_ACC,    /* the reduced accumulator (epilogue only) */
  VX_RAND,   /* uniform [0,1): dlrt_uniform01(dlrt_mix64(seed ^ salt, step), ix)
                with seed, step the two u64 of the @rng buffer (buf) */
  /* unary (a) */
  VX_NEG, VX_EXP, VX_LOG, VX_SQRT, VX_ABS, VX_RELU, VX_SIGMOID, VX_TANH,
  VX_ELU,    /* alpha = f */
  VX_LEAKY,  /* slope = f */
  VX_POWS,   /* a ** f */
  VX_SIGN, VX_STEP,
  VX_CAST,   /* a converted to dtype (f32<->i32; f32->i32 truncates) */
  /* binary (a, b) */
  VX_ADD, VX_SUB, VX_MUL, VX_DIV, VX_POW, VX_MAX, VX_MIN,
  VX_GT, VX_GE, VX_LT, VX_EQ, /* operands of one dtype; result is dtype (1 or 0) */
  /* ternary */
  VX_SELECT, /* a != 0 ? b : c */
} VxOp;

typedef struct VExpr {
  VxOp op;
  DType dtype;          /* the expression's result type */
  float f;
  int32_t i;
  struct VExpr *a, *b, *c;
  /* VX_LOAD */
  int buf;
  int rank;
  IExpr **idx;
  IExpr *guard;
  /* VX_INDEX, VX_RAND */
  IExpr *ix;
  uint64_t salt;
} VExpr;

typedef enum { RED_NONE = 0, RED_SUM, RED_MAX, RED_ARGMAX } RedKind;

/* One image's slice of a convolution's im2col columns up to this size stays
 * in L2 when produced and consumed image by image (the backend's per-image
 * fusion, LeNet-5's 60-80 KB); larger columns are not materialised at all:
 * stride-1 convolutions then read a padded image in place (lower.c). */
enum { KIR_IMAGE_SLICE_BYTES = 256 << 10 };
/* RED_ARGMAX: the kernel's dtype is i32; the result is the row-major
 * linear index over red_ext of the first maximum of the (f32) body. */

typedef struct Kernel {
  int id;
  const char *name;     /* e.g. "k12_matmul" — unique in the program */
  SrcLoc loc;           /* the .dl line of the main op */
  const char *ops;      /* member ops for printing, e.g. "matmul+add+relu" */
  Phase phase;
  int out_buf;
  DType dtype;
  Shape shape;          /* iteration space = output buffer's shape */
  RedKind red;
  int n_red;
  int64_t red_ext[IR_MAX_RANK];
  VExpr *body;
  VExpr *epilogue;      /* NULL means VX_ACC */
  bool accumulate;      /* out[o] += result instead of = (no reduction loops reordering needed) */
  int64_t flops;        /* estimated */
  int *members;         /* ids of the graph nodes this kernel computes (for --emit=dot); may be NULL */
  int n_members;
} Kernel;

/* ---- the program: buffers shared across entry points ---- */
/* Values are ABI (they appear in AOT descriptions): never reorder. */
typedef enum {
  BUF_INPUT = 0, BUF_LABEL = 1, BUF_PARAM = 2, BUF_STATE = 3, BUF_OPTSTATE = 4,
  BUF_GRAD = 5, BUF_OUTPUT = 6, BUF_METRIC = 7, BUF_LOSS = 8, BUF_TEMP = 9,
  BUF_RNG = 10, /* i32[4]: u64 seed, u64 step (little-endian) */
} BufRole;

typedef enum { ENTRY_TRAIN = 0, ENTRY_EVAL = 1, ENTRY_INFER = 2, ENTRY__COUNT } EntryKind;

typedef struct {
  const char *name;  /* .dl name for named buffers ("fc1.W", "W@momentum", "logits"); "%t12" for temps */
  BufRole role;
  DType dtype;
  Shape shape;
  DlrtInit init;     /* params, state, optimizer state */
  int entry;         /* -1 shared by all entries (leaves, optimizer state, rng); else the EntryKind it belongs to */
  int64_t offset;    /* in the arena for temps (memory plan); -1 when the buffer is allocated alone */
  int alias;         /* >= 0: a view of buffer `alias` (same memory, same numel, this shape); -1 otherwise */
  int64_t classes;   /* > 0: an i32 feed of class indices (cross_entropy, multi_margin, accuracy), each in
                      * [0, classes); checked before every call (dlrt_model_run) */
} Buffer;

typedef struct {
  bool present;
  Kernel **kernels;
  int n_kernels, cap_kernels;
} Entry;

typedef struct Program {
  Arena *arena;
  const char *model;
  Buffer *bufs;
  int n_bufs, cap_bufs;
  Entry entries[ENTRY__COUNT];
  int rng_buf;        /* -1 if the model draws no random numbers */
  int64_t arena_bytes; /* total size of the temp arena (0: temps allocated alone) */
} Program;

Program *kir_program_new(Arena *a, const char *model);
/* Finds a shared/entry buffer by name+role+entry, or adds it. */
int kir_buffer(Program *p, const char *name, BufRole role, DType dt, Shape shape, int entry);
int kir_find_buffer(const Program *p, const char *name, BufRole role, int entry);
void kir_add_kernel(Program *p, EntryKind e, Kernel *k);

/* expression constructors */
IExpr *ix_const(Arena *a, int64_t v);
IExpr *ix_var(Arena *a, int var);
IExpr *ix_bin(Arena *a, IxOp op, IExpr *x, IExpr *y); /* folds constants and x+0, x*1, x*0 */
VExpr *vx_const(Arena *a, DType dt, double v);
VExpr *vx_load(Arena *a, DType dt, int buf, int rank, IExpr **idx, IExpr *guard, float fill);
VExpr *vx_un(Arena *a, VxOp op, VExpr *x);          /* dtype of x (CAST: set dtype after) */
VExpr *vx_bin(Arena *a, VxOp op, VExpr *x, VExpr *y);
VExpr *vx_select(Arena *a, VExpr *c, VExpr *x, VExpr *y);
/* Whether e uses loop var v (true for an op it does not know). */
bool ix_uses_var(const IExpr *e, int v);
/* Deep copy of e with loop var v replaced by sub[v] (sub[v] == NULL keeps it). */
IExpr *ix_subst(Arena *a, const IExpr *e, IExpr *const *sub, int nsub);
VExpr *vx_subst(Arena *a, const VExpr *e, IExpr *const *sub, int nsub);

/* The buffer b is a view of (its alias), or b itself. */
int kir_root(const Program *p, int b);
/* Whether e loads (a view of) the buffer whose root is r. */
bool kir_reads_root(const Program *p, const VExpr *e, int r);

/* Prints the kernel program (--emit=opt). */
void kir_print(const Program *p, FILE *out);
const char *kir_role_name(BufRole r);

#endif
