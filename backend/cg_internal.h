/* cg_internal.h — private to backend/: the CgModule, the per-kernel
 * code-generation state, and the functions the backend's files share
 * (module utilities in codegen.c, expressions in codegen_expr.c, loop nests
 * in codegen_kernel.c, inline vector math in vecmath.c). Relies on the LLVM
 * C API (LLVM 19) and ir/kernel.h. Tests may include it for the debug hooks
 * at the bottom. */
#ifndef BACKEND_CG_INTERNAL_H
#define BACKEND_CG_INTERNAL_H

#include <stdbool.h>

#include <llvm-c/Core.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include "backend/backend.h"

struct CgModule {
  /* The context is owned through a ThreadSafeContext so that the module can
   * be handed to ORC without copying (cg_jit). */
  LLVMOrcThreadSafeContextRef tsc;
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMTargetMachineRef tm;
  char *triple, *cpu, *features; /* malloc'ed */
  int opt_level;
  bool optimized;
  bool process_addresses;    /* the code embeds this process's addresses (the per-kernel profile) */
  /* cached types */
  LLVMTypeRef t_void, t_i1, t_i32, t_i64, t_f32, t_ptr;
  LLVMTypeRef t_kernel;      /* void (ptr, i64, i64) */
  LLVMTypeRef t_entry;       /* void (ptr) */
  LLVMTypeRef t_par_for;     /* void (ptr, ptr, i64, i64) */
  LLVMValueRef fn_par_for;   /* declared lazily */
  /* partitioned modules (CgOptions.parts > 1): the table the entries call
   * kernels through, and the table order */
  LLVMValueRef ktab;
  const Kernel **kt;
  int nkt;
  /* kernel bodies by structural key (codegen_kernel.c): kernels that differ
   * only in name and buffer identities (the forward pass of the train, eval
   * and infer entries) share one body function */
  struct CgBodyKey *bodies;
  int n_bodies, cap_bodies;
  /* per-image fusion decisions already made (cg_fusion), by kernel */
  struct CgFusionMemo *fusions;
  int n_fusions, cap_fusions;
  /* elementwise chains of each entry (cg_chain), by entry */
  struct CgChainMemo *chains;
  int n_chains, cap_chains;
};

typedef struct CgBodyKey {
  char *key;        /* malloc'ed */
  LLVMValueRef fn;  /* K.body */
  int uses;
} CgBodyKey;

/* State while lowering one kernel. */
typedef struct {
  CgModule *m;
  LLVMBuilderRef b;
  const Program *p;
  const Kernel *k;
  Diag *d;
  bool failed;                       /* an error was reported */
  LLVMValueRef fn;                   /* the kernel body function */
  LLVMValueRef *buf;                 /* [p->n_bufs]: pointer of each used buffer */
  LLVMValueRef var[2 * IR_MAX_RANK]; /* loop variables (i64) */
  LLVMValueRef acc;                  /* value of VX_ACC in the epilogue */
  bool branch_guards;                /* guarded loads as a branch around the load (masked vector
                                        loads in a vectorized loop) instead of a select of the index */
  int64_t out_slice;                 /* > 0: the output pointer holds one slice of this many
                                        elements along dim 0 (a fused leader in scratch) */
  LLVMValueRef out_tmp, out_tmp_base; /* non-NULL: outputs go to out_tmp[lin - out_tmp_base]
                                         (a streaming kernel's chunk buffer) */
  bool has_slice_buf;                /* loads of slice_buf read one image's slice: their dim-0 */
  int slice_buf;                     /* index taken as 0 (a GEMM's result for one image, kept in
                                        scratch for the elementwise kernel fused after it) */
} KernelCg;

/* ---- codegen.c: module utilities ---- */
/* Target machine for triple/cpu/features at opt_level (PIC). */
LLVMTargetMachineRef cg_make_target_machine(const char *triple, const char *cpu,
                                            const char *features, int opt_level);
/* Calls the overloaded intrinsic `name` (overload types ovl[0..novl)). */
LLVMValueRef cg_intrinsic(CgModule *m, LLVMBuilderRef b, const char *name, LLVMTypeRef *ovl,
                          unsigned novl, LLVMValueRef *args, unsigned nargs);
LLVMValueRef cg_f32(CgModule *m, double v);
LLVMValueRef cg_i32(CgModule *m, int64_t v);
LLVMValueRef cg_i64(CgModule *m, int64_t v);
/* nounwind, target-cpu/-features (and 512-bit vectors on AVX-512). */
void cg_add_fn_attrs(CgModule *m, LLVMValueRef fn);
/* Loop metadata on a loop's back-edge branch. */
/* LOOP_VECTORIZE: vectorize 8 wide whatever LLVM's cost model says (rows
 * of a pooling window's strided loads, which it judges unprofitable);
 * LOOP_VECTORIZE_X4 also interleaves 4 vectors (a long sum's partials);
 * LOOP_VECTORIZE_4: the same 4 wide (a short row whose trip count leaves
 * fewer iterations to the scalar remainder at 4 than at 8);
 * LOOP_VECTORIZE_16: the same 16 wide (AVX-512, a row of whole 16s);
 * LOOP_VECTORIZE_ROW: vectorize this loop at the width LLVM picks, never
 * unrolled away first (a short contiguous row, which fully unrolled left
 * the loop around it to be vectorized across rows with gathers);
 * LOOP_NO_VECTORIZE: never vectorized (a loop around a short unrolled row,
 * which LLVM would vectorize across rows with gathers). */
typedef enum {
  LOOP_NO_UNROLL,
  LOOP_FULL_UNROLL,
  LOOP_VECTORIZE,
  LOOP_VECTORIZE_X4,
  LOOP_VECTORIZE_4,
  LOOP_VECTORIZE_16,
  LOOP_VECTORIZE_ROW,
  LOOP_NO_VECTORIZE
} LoopHint;
void cg_loop_hint(CgModule *m, LLVMValueRef latch_br, LoopHint h);
/* Marks a float instruction `reassoc contract` (kernel arithmetic only). */
LLVMValueRef cg_fast(LLVMValueRef v);
/* Reports an internal error and marks the kernel failed. */
void cg_kernel_error(KernelCg *kc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- codegen_expr.c: expressions ---- */
LLVMValueRef cg_ix(KernelCg *kc, const IExpr *e);        /* i64 */
LLVMValueRef cg_ix_cond(KernelCg *kc, const IExpr *e);   /* i1: e != 0 */
LLVMValueRef cg_vx(KernelCg *kc, const VExpr *e);        /* f32 or i32 by e->dtype */
LLVMValueRef cg_convert(KernelCg *kc, LLVMValueRef v, DType from, DType to);
/* Row-major linear index of idx[0..rank) over shape. */
LLVMValueRef cg_linear(KernelCg *kc, LLVMValueRef const *idx, const int64_t *shape, int rank);
LLVMTypeRef cg_dtype(CgModule *m, DType dt);

/* ---- codegen_kernel.c: loop nests ---- */
/* Emits the kernel's function (internal linkage, named k->name); NULL on error. */
LLVMValueRef cg_kernel(CgModule *m, const Program *p, const Kernel *k, Diag *d);

/* ---- codegen_gemm.c: matmul-like sums as packed, register-blocked GEMM ---- */
/* How a GEMM operand (a single unguarded load) addresses memory: its
 * linear offset separates as base(batch) + off_X(x) + off_K(k) over the
 * flat row/column index x and the flat reduction index k; each part is
 * either x * coef (affine in the flat index) or looked up in a table
 * filled per block. */
typedef struct {
  bool fast;                 /* a single unguarded load with a separable offset */
  bool x_affine, k_affine;
  int64_t x_coef, k_coef;
  int64_t f0;                /* offset at all-zero vars */
  bool x_unit, k_unit;       /* most steps of the flat index move by one element */
  /* Q only: not x-affine but rows of x_row unit-stride elements, row t at t * x_row_stride (an
   * image's output rows in a padded input, read at width Wp: x = oh*Wo + ow at oh*Wp + ow), else 0 */
  int64_t x_row, x_row_stride;
} GemmOperand;

typedef struct {
  int nb, ni, nj;            /* output dims: [0,nb) batch, then ni I dims, then nj J dims */
  int64_t batch, M, N, K;    /* flattened extents */
  const VExpr *P, *Q;        /* body = P * Q; P reads no J var, Q no I var */
  GemmOperand op[2];         /* [0] P, [1] Q */
  int64_t VW, MR, NR;        /* vector width (floats), micro-tile MR x NR */
  int64_t KC, MC, NC;        /* cache blocking */
  bool by_batch;             /* units = batch entries (else MR-row tiles of M, or NR-column panels of N) */
  bool split_n;              /* no batch, M within one block: units are NR-column panels of N */
  /* dot form (both operands unit-stride along k in runs of `run`, M and N
   * small against K: filter gradients): RM x RN blocks of C as dot products
   * of vectors along k, over blocks of `runs_per_block` runs; units are
   * RN-column blocks */
  bool dot;
  bool dot_qt;               /* ... with Q transposed into scratch first ([N][K]: a skinny NN product's weights) */
  bool dot_rows;             /* ... units of RM-row tiles (else RN-column blocks) */
  int64_t run, runs_per_block, RM, RN;
  bool direct_a;             /* the micro-kernel reads P in place (rows of unit-stride k), no packing */
  bool direct_at;            /* ... reads P in place k-major (unit-stride rows i, a transposed A) */
  bool direct_b;             /* ... reads Q in place (rows of NR unit-stride j), packing only the N tail */
  bool a_once;               /* batched, P the same for every entry (a convolution's weights): P packed
                                once per call for all entries, not per entry */
  bool direct_b_tab;         /* ... its rows found through the K block's offset table (an implicit
                                im2col: row k = (c, kh, kw) at c*Hp*Wp + kh*Wp + kw) */
  int64_t b_row, b_row_stride; /* direct B in rows (op[1].x_row): a panel's vector v at
                                (v*VW / b_row) * b_row_stride + v*VW % b_row; NR % b_row == 0 or
                                b_row % NR == 0, N % NR == 0; else 0 */
  /* transposed C (a skinny N): the nest computes C^T = Q^T P^T, so P, Q,
   * op[], M and N above are swapped (rows of the nest = C's columns) */
  bool tc;
  /* C^T computed in scratch, transposed into C after the last K block (a
   * filter gradient: P, Q, op[], M and N swapped as for tc; P, an implicit
   * im2col, read in place through its row and k tables: direct_a_tab) */
  bool ct;
  bool direct_a_tab;
  int64_t ldc;               /* C's row stride (its N) */
  int64_t units;             /* the kernel's [begin, end) ranges over these */
} GemmPlan;
/* Whether k is lowered as a GEMM (fills g); deterministic in its inputs. */
/* Floats per vector register of the module's target (16 with AVX-512, else 8). */
int cg_vector_width(const CgModule *m);
bool cg_gemm_plan(const CgModule *m, const Program *p, const Kernel *k, GemmPlan *g);
/* Emits the GEMM nest for units [begin, end) at the builder's position
 * (the body function's entry block: the scratch allocas go there). */
void cg_emit_gemm(KernelCg *kc, const GemmPlan *g, LLVMValueRef begin, LLVMValueRef end);
/* Kernels fused into a batched GEMM, run per batch entry n (codegen_kernel.c):
 * a leader before the entry's GEMM (im2col of image n: its result is then
 * read hot, or from the thread's scratch when only the GEMM reads it), a
 * follower after it (col2im of the image's columns, which the GEMM leaves
 * in scratch instead of memory). */
typedef struct {
  void (*lead)(void *ctx, LLVMValueRef n, LLVMValueRef scratch); /* scratch NULL: into its buffer */
  void (*then)(void *ctx, LLVMValueRef n, LLVMValueRef c);
  int lead_buf;         /* the leader's result */
  int64_t lead_slice;   /* floats of one batch entry of it, when in scratch (else 0) */
  void *ctx;
} GemmFuse;
void cg_emit_gemm_fused(KernelCg *kc, const GemmPlan *g, LLVMValueRef begin, LLVMValueRef end, const GemmFuse *f);
typedef struct {
  const Kernel *lead, *then;
  bool lead_local;      /* the leader's result lives in scratch (only the GEMM reads it) */
} CgFusion;
/* The kernels fused into kernel a (false: none): the kernel right before a
 * in its entry if it is a per-image producer a's GEMM reads image by image,
 * the kernel right after if it is a col2im plane scatter of a's result
 * (only it reads it). DLC_IMAGE_FUSION=0 turns fusion off. Memoised in m. */
bool cg_fusion(CgModule *m, const Program *p, const Kernel *a, CgFusion *f);
/* Whether kernel i of entry en runs inside a neighbour's call. The answer
 * does not depend on m's target (a module without one gives it too): fused
 * GEMMs are batched, whose plans do not depend on the vector width in what
 * fusion looks at. */
bool cg_fused_away(CgModule *m, const Program *p, const Entry *en, int i);
/* The elementwise chain kernel k heads: its length (1: k runs alone) and,
 * with members, its kernels in order (at most CG_CHAIN_MAX). Consecutive
 * elementwise kernels of one iteration space that read each other's
 * results only at their own position run as one call, block by block
 * (codegen_kernel.c). Memoised in m; cg_chain_free drops the memo. */
enum { CG_CHAIN_MAX = 4 };
int cg_chain(CgModule *m, const Program *p, const Kernel *k, const Kernel **members);
void cg_chain_free(CgModule *m);
/* 0 automatic (default), 1 never use the GEMM path. */
void cg_debug_set_gemm(int mode);

/* Value of an index expression at loop var values v (*bad on division by 0). */
int64_t cg_ix_eval(const IExpr *e, const int64_t *v, bool *bad);
/* Whether a plane scatter's epilogue e reads (h, w) only at the plane's own
 * positions (planes of H x W), so that it runs as one loop over the plane. */
bool cg_plane_flat(const Program *p, const VExpr *e, int64_t H, int64_t W);
/* The flat (row-major) offset of load l at loop var values v. */
int64_t cg_load_offset(const Program *p, const VExpr *l, const int64_t *v, bool *bad);

/* ---- codegen_kernel.c: analysis shared with codegen_gemm.c ---- */
/* A plain sum whose output memory can hold partial sums (see reorder_legal). */
bool cg_sum_in_output_legal(const Program *p, const Kernel *k);
/* Every load of e moves by 0 or 1 element along loop var v, and one by 1. */
bool cg_unit_stride_along(const Program *p, const VExpr *e, int v);

/* ---- vecmath.c: inline branch-free f32 math (vectorizable) ---- */
LLVMValueRef vm_exp(CgModule *m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_expm1(CgModule *m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_log(CgModule *m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_tanh(CgModule *m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_sigmoid(CgModule *m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef vm_pow(CgModule *m, LLVMBuilderRef b, LLVMValueRef x, LLVMValueRef y);
/* x ** c for a constant c (small integers and halves specialised). */
LLVMValueRef vm_pow_const(CgModule *m, LLVMBuilderRef b, LLVMValueRef x, float c);

/* ---- debug hooks (tests) ---- */
/* Loop-order strategy for RED_SUM kernels: 0 automatic (default), 1 never
 * reorder, 2 reorder whenever legal. */
void cg_debug_set_reorder(int mode);
/* Whether the kernel would be lowered with the reordered (matmul) nest
 * under the current mode. */
bool cg_kernel_uses_reorder(const Program *p, const Kernel *k);

#endif
