/* codegen_expr.c — lowering of kernel expressions to LLVM IR at the current
 * point of a loop nest: index expressions (i64 arithmetic over loop
 * variables), value expressions (f32/i32) including loads with
 * row-major linearisation and guards, the inline counter-based RNG
 * (dlrt_mix64 / dlrt_uniform01), and element-wise math. Float arithmetic is
 * marked `reassoc contract` (never nnan/ninf: NaNs propagate); max/min use
 * llvm.maximum/minimum, which propagate NaN. */
#include "backend/cg_internal.h"

LLVMTypeRef cg_dtype(CgModule *m, DType dt) {
  switch (dt) {
  case DT_F32: return m->t_f32;
  case DT_I32: return m->t_i32;
  }
  return m->t_f32;
}

/* ---- index expressions ---- */

LLVMValueRef cg_ix(KernelCg *kc, const IExpr *e) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  if (!e) {
    cg_kernel_error(kc, "missing index expression");
    return cg_i64(m, 0);
  }
  switch (e->op) {
  case IX_CONST: return cg_i64(m, e->v);
  case IX_VAR:
    if (e->var < 0 || e->var >= 2 * IR_MAX_RANK || !kc->var[e->var]) {
      cg_kernel_error(kc, "index expression uses loop variable %d outside the loop nest", e->var);
      return cg_i64(m, 0);
    }
    return kc->var[e->var];
  case IX_ADD: return LLVMBuildNSWAdd(b, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
  case IX_SUB: return LLVMBuildNSWSub(b, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
  case IX_MUL: return LLVMBuildNSWMul(b, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
  case IX_DIV:
  case IX_MOD: {
    if (e->b && e->b->op == IX_CONST && e->b->v == 0) {
      cg_kernel_error(kc, "index division by the constant 0");
      return cg_i64(m, 0);
    }
    LLVMValueRef x = cg_ix(kc, e->a), y = cg_ix(kc, e->b);
    if (!(e->b && e->b->op == IX_CONST)) {
      /* a variable divisor: never trap (the result is guarded anyway) */
      LLVMValueRef z = LLVMBuildICmp(b, LLVMIntEQ, y, cg_i64(m, 0), "");
      y = LLVMBuildSelect(b, z, cg_i64(m, 1), y, "");
    }
    return e->op == IX_DIV ? LLVMBuildSDiv(b, x, y, "") : LLVMBuildSRem(b, x, y, "");
  }
  case IX_LT:
  case IX_GE:
  case IX_EQ:
  case IX_AND: return LLVMBuildZExt(b, cg_ix_cond(kc, e), m->t_i64, "");
  }
  cg_kernel_error(kc, "unknown index op %d", (int)e->op);
  return cg_i64(m, 0);
}

LLVMValueRef cg_ix_cond(KernelCg *kc, const IExpr *e) {
  LLVMBuilderRef b = kc->b;
  if (e) {
    switch (e->op) {
    case IX_LT: return LLVMBuildICmp(b, LLVMIntSLT, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
    case IX_GE: return LLVMBuildICmp(b, LLVMIntSGE, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
    case IX_EQ: return LLVMBuildICmp(b, LLVMIntEQ, cg_ix(kc, e->a), cg_ix(kc, e->b), "");
    case IX_AND: return LLVMBuildAnd(b, cg_ix_cond(kc, e->a), cg_ix_cond(kc, e->b), "");
    case IX_CONST:
    case IX_VAR:
    case IX_ADD:
    case IX_SUB:
    case IX_MUL:
    case IX_DIV:
    case IX_MOD: break;
    }
  }
  return LLVMBuildICmp(b, LLVMIntNE, cg_ix(kc, e), cg_i64(kc->m, 0), "");
}

LLVMValueRef cg_linear(KernelCg *kc, LLVMValueRef const *idx, const int64_t *shape, int rank) {
  if (rank == 0) return cg_i64(kc->m, 0);
  LLVMValueRef lin = idx[0];
  for (int d = 1; d < rank; d++)
    lin = LLVMBuildNSWAdd(kc->b, LLVMBuildNSWMul(kc->b, lin, cg_i64(kc->m, shape[d]), ""), idx[d],
                          "");
  return lin;
}

/* ---- value helpers ---- */

LLVMValueRef cg_convert(KernelCg *kc, LLVMValueRef v, DType from, DType to) {
  if (from == to) return v;
  CgModule *m = kc->m;
  if (from == DT_F32) { /* f32 -> i32 truncates; saturating, NaN -> 0 (never poison) */
    LLVMTypeRef ovl[2] = {m->t_i32, m->t_f32};
    return cg_intrinsic(m, kc->b, "llvm.fptosi.sat", ovl, 2, &v, 1);
  }
  return LLVMBuildSIToFP(kc->b, v, m->t_f32, "");
}

/* i1 -> 1/0 of dtype */
static LLVMValueRef from_bool(KernelCg *kc, LLVMValueRef c, DType dt) {
  switch (dt) {
  case DT_F32: return LLVMBuildUIToFP(kc->b, c, kc->m->t_f32, "");
  case DT_I32: return LLVMBuildZExt(kc->b, c, kc->m->t_i32, "");
  }
  return c;
}

/* v != 0 as i1 (NaN counts as true, as in C) */
static LLVMValueRef truth(KernelCg *kc, LLVMValueRef v, DType dt) {
  switch (dt) {
  case DT_F32: return LLVMBuildFCmp(kc->b, LLVMRealUNE, v, cg_f32(kc->m, 0.0), "");
  case DT_I32: return LLVMBuildICmp(kc->b, LLVMIntNE, v, cg_i32(kc->m, 0), "");
  }
  return v;
}

static LLVMValueRef intr1(KernelCg *kc, const char *name, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return cg_intrinsic(kc->m, kc->b, name, &t, 1, &x, 1);
}
static LLVMValueRef intr2(KernelCg *kc, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef args[2] = {x, y};
  return cg_intrinsic(kc->m, kc->b, name, &t, 1, args, 2);
}

/* ---- loads and random numbers ---- */

static LLVMValueRef buffer_ptr(KernelCg *kc, int buf) {
  if (buf < 0 || buf >= kc->p->n_bufs || !kc->buf[buf]) {
    cg_kernel_error(kc, "reference to buffer %d that the kernel did not bind", buf);
    return NULL;
  }
  return kc->buf[buf];
}

static LLVMValueRef emit_load(KernelCg *kc, const VExpr *e) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef base = buffer_ptr(kc, e->buf);
  if (!base) return LLVMGetUndef(cg_dtype(m, e->dtype));
  const Buffer *B = &kc->p->bufs[e->buf];
  if (e->rank != B->shape.rank) {
    cg_kernel_error(kc, "load of %s with %d indices, buffer rank %d", B->name, e->rank,
                    B->shape.rank);
    return LLVMGetUndef(cg_dtype(m, e->dtype));
  }
  LLVMValueRef idx[IR_MAX_RANK];
  for (int d = 0; d < e->rank; d++) idx[d] = cg_ix(kc, e->idx[d]);
  if (kc->has_slice_buf && e->buf == kc->slice_buf && e->rank > 0) idx[0] = cg_i64(m, 0);
  LLVMValueRef lin = cg_linear(kc, idx, B->shape.d, e->rank);
  LLVMTypeRef et = cg_dtype(m, B->dtype);
  if (e->guard && !kc->branch_guards) {
    /* A guarded-off load must not touch memory: read element 0 instead
     * (always in bounds) and select the fill value. */
    LLVMValueRef g = cg_ix_cond(kc, e->guard);
    lin = LLVMBuildSelect(b, g, lin, cg_i64(m, 0), "");
    LLVMValueRef ptr = LLVMBuildInBoundsGEP2(b, et, base, &lin, 1, "");
    LLVMValueRef v = cg_convert(kc, LLVMBuildLoad2(b, et, ptr, ""), B->dtype, e->dtype);
    LLVMValueRef fill = e->dtype == DT_F32 ? cg_f32(m, e->f) : cg_i32(m, (int64_t)e->f);
    return LLVMBuildSelect(b, g, v, fill, "");
  }
  if (!e->guard) {
    LLVMValueRef ptr = LLVMBuildInBoundsGEP2(b, et, base, &lin, 1, "");
    return cg_convert(kc, LLVMBuildLoad2(b, et, ptr, ""), B->dtype, e->dtype);
  }
  /* With branch_guards the load sits in a block entered only when the
   * guard holds, and a phi yields the fill value
   * otherwise. Along a loop where the address is contiguous the vectorizer
   * turns this into a masked load (a select of the index instead made the
   * address irregular: a gather). */
  LLVMValueRef g = cg_ix_cond(kc, e->guard);
  LLVMValueRef fill = e->dtype == DT_F32 ? cg_f32(m, e->f) : cg_i32(m, (int64_t)e->f);
  LLVMBasicBlockRef from = LLVMGetInsertBlock(b);
  LLVMValueRef fn = LLVMGetBasicBlockParent(from);
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(m->ctx, fn, "gload");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(m->ctx, fn, "gload.join");
  LLVMBuildCondBr(b, g, then, join);
  LLVMPositionBuilderAtEnd(b, then);
  LLVMValueRef ptr = LLVMBuildInBoundsGEP2(b, et, base, &lin, 1, "");
  LLVMValueRef v = cg_convert(kc, LLVMBuildLoad2(b, et, ptr, ""), B->dtype, e->dtype);
  LLVMBasicBlockRef then_end = LLVMGetInsertBlock(b);
  LLVMBuildBr(b, join);
  LLVMPositionBuilderAtEnd(b, join);
  LLVMValueRef phi = LLVMBuildPhi(b, cg_dtype(m, e->dtype), "");
  LLVMValueRef vals[2] = {v, fill};
  LLVMBasicBlockRef bbs[2] = {then_end, from};
  LLVMAddIncoming(phi, vals, bbs, 2);
  return phi;
}

/* dlrt_mix64, exactly (runtime/dlrt.h). */
static LLVMValueRef mix64(KernelCg *kc, LLVMValueRef seed, LLVMValueRef counter) {
  LLVMBuilderRef b = kc->b;
  LLVMTypeRef t = kc->m->t_i64;
  LLVMValueRef z = LLVMBuildAdd(
      b, seed, LLVMBuildMul(b, counter, LLVMConstInt(t, 0x9E3779B97F4A7C15ull, 0), ""), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 30, 0), ""), ""),
                   LLVMConstInt(t, 0xBF58476D1CE4E5B9ull, 0), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 27, 0), ""), ""),
                   LLVMConstInt(t, 0x94D049BB133111EBull, 0), "");
  return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 31, 0), ""), "");
}

/* dlrt_uniform01(dlrt_mix64(seed ^ salt, step), ix) with seed, step the two
 * little-endian u64 of the @rng buffer. */
static LLVMValueRef emit_rand(KernelCg *kc, const VExpr *e) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  int rb = kc->p->rng_buf >= 0 ? kc->p->rng_buf : e->buf; /* the program's one @rng */
  LLVMValueRef base = buffer_ptr(kc, rb);
  if (!base) return cg_f32(m, 0.0);
  LLVMValueRef one = cg_i64(m, 1);
  LLVMValueRef seed = LLVMBuildLoad2(b, m->t_i64, base, "seed");
  LLVMValueRef step =
      LLVMBuildLoad2(b, m->t_i64, LLVMBuildInBoundsGEP2(b, m->t_i64, base, &one, 1, ""), "step");
  LLVMSetAlignment(seed, 4);
  LLVMSetAlignment(step, 4);
  LLVMValueRef s =
      mix64(kc, LLVMBuildXor(b, seed, LLVMConstInt(m->t_i64, e->salt, 0), ""), step);
  LLVMValueRef z = mix64(kc, s, cg_ix(kc, e->ix));
  LLVMValueRef u = LLVMBuildLShr(b, z, LLVMConstInt(m->t_i64, 40, 0), "");
  LLVMValueRef f = LLVMBuildUIToFP(b, u, m->t_f32, "");
  f = LLVMBuildFMul(b, f, cg_f32(m, 1.0 / 16777216.0), "");
  return cg_convert(kc, f, DT_F32, e->dtype);
}

/* ---- value expressions ---- */

static LLVMValueRef float_only(KernelCg *kc, const VExpr *e, LLVMValueRef a, const char *what) {
  if (e->a->dtype != DT_F32) {
    cg_kernel_error(kc, "%s of an i32 value", what);
    return LLVMGetUndef(kc->m->t_f32);
  }
  return a;
}

/* i32 division that never traps: x / 0 = 0, INT_MIN / -1 wraps. */
static LLVMValueRef safe_sdiv(KernelCg *kc, LLVMValueRef x, LLVMValueRef y) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef z = LLVMBuildICmp(b, LLVMIntEQ, y, cg_i32(m, 0), "");
  LLVMValueRef neg1 = LLVMBuildICmp(b, LLVMIntEQ, y, cg_i32(m, -1), "");
  LLVMValueRef ys = LLVMBuildSelect(b, LLVMBuildOr(b, z, neg1, ""), cg_i32(m, 1), y, "");
  LLVMValueRef q = LLVMBuildSDiv(b, x, ys, "");
  q = LLVMBuildSelect(b, neg1, LLVMBuildSub(b, cg_i32(m, 0), x, ""), q, "");
  return LLVMBuildSelect(b, z, cg_i32(m, 0), q, "");
}

static LLVMValueRef emit_unary(KernelCg *kc, const VExpr *e) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  LLVMValueRef a = cg_vx(kc, e->a);
  bool f = e->a->dtype == DT_F32;
  LLVMValueRef zf = cg_f32(m, 0.0), zi = cg_i32(m, 0);
  LLVMValueRef r = NULL;
  switch (e->op) {
  case VX_NEG: r = f ? LLVMBuildFNeg(b, a, "") : LLVMBuildSub(b, zi, a, ""); break;
  case VX_EXP: r = vm_exp(m, b, float_only(kc, e, a, "exp")); break;
  case VX_LOG: r = vm_log(m, b, float_only(kc, e, a, "log")); break;
  case VX_SQRT: r = intr1(kc, "llvm.sqrt", float_only(kc, e, a, "sqrt")); break;
  case VX_ABS:
    if (f) r = intr1(kc, "llvm.fabs", a);
    else r = intr2(kc, "llvm.abs", a, LLVMConstInt(m->t_i1, 0, 0));
    break;
  case VX_RELU: /* x < 0 ? 0 : x, NaN passes through (as ir/interp.c) */
    if (f) r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, zf, ""), zf, a, "");
    else r = intr2(kc, "llvm.smax", a, zi);
    break;
  case VX_SIGMOID: r = vm_sigmoid(m, b, float_only(kc, e, a, "sigmoid")); break;
  case VX_TANH: r = vm_tanh(m, b, float_only(kc, e, a, "tanh")); break;
  case VX_ELU: { /* x > 0 ? x : alpha expm1(x) */
    a = float_only(kc, e, a, "elu");
    LLVMValueRef neg = LLVMBuildFMul(b, cg_f32(m, e->f), vm_expm1(m, b, a), "");
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, zf, ""), a, neg, "");
    break;
  }
  case VX_LEAKY: /* x > 0 ? x : slope x */
    a = float_only(kc, e, a, "leaky_relu");
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, zf, ""), a,
                        LLVMBuildFMul(b, a, cg_f32(m, e->f), ""), "");
    break;
  case VX_POWS:
    if (f) r = vm_pow_const(m, b, a, e->f);
    else r = cg_convert(kc, vm_pow_const(m, b, cg_convert(kc, a, DT_I32, DT_F32), e->f), DT_F32, DT_I32);
    break;
  case VX_SIGN: /* x > 0 ? 1 : x < 0 ? -1 : 0 (NaN gives 0, as ir/interp.c) */
    if (f) {
      LLVMValueRef s = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, zf, ""),
                                       cg_f32(m, -1.0), zf, "");
      r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, zf, ""), cg_f32(m, 1.0), s, "");
    } else {
      LLVMValueRef gt = LLVMBuildZExt(b, LLVMBuildICmp(b, LLVMIntSGT, a, zi, ""), m->t_i32, "");
      LLVMValueRef lt = LLVMBuildZExt(b, LLVMBuildICmp(b, LLVMIntSLT, a, zi, ""), m->t_i32, "");
      r = LLVMBuildSub(b, gt, lt, "");
    }
    break;
  case VX_STEP: /* x > 0 ? 1 : 0 */
    r = from_bool(kc, f ? LLVMBuildFCmp(b, LLVMRealOGT, a, zf, "") : LLVMBuildICmp(b, LLVMIntSGT, a, zi, ""),
                  e->a->dtype);
    break;
  case VX_CAST: return cg_convert(kc, a, e->a->dtype, e->dtype);
  case VX_CONST:
  case VX_LOAD:
  case VX_INDEX:
  case VX_ACC:
  case VX_RAND:
  case VX_ADD:
  case VX_SUB:
  case VX_MUL:
  case VX_DIV:
  case VX_POW:
  case VX_MAX:
  case VX_MIN:
  case VX_GT:
  case VX_GE:
  case VX_LT:
  case VX_EQ:
  case VX_SELECT: break;
  }
  if (!r) {
    cg_kernel_error(kc, "bad unary op %d", (int)e->op);
    return LLVMGetUndef(cg_dtype(m, e->dtype));
  }
  /* unary ops keep their operand's dtype; the node's dtype decides */
  return cg_convert(kc, r, e->a->dtype, e->dtype);
}

static LLVMValueRef emit_binary(KernelCg *kc, const VExpr *e) {
  CgModule *m = kc->m;
  LLVMBuilderRef b = kc->b;
  DType dt = e->a->dtype; /* operand dtype */
  LLVMValueRef x = cg_vx(kc, e->a);
  LLVMValueRef y = cg_convert(kc, cg_vx(kc, e->b), e->b->dtype, dt);
  bool f = dt == DT_F32;
  LLVMValueRef r = NULL;
  switch (e->op) {
  case VX_ADD: r = f ? cg_fast(LLVMBuildFAdd(b, x, y, "")) : LLVMBuildAdd(b, x, y, ""); break;
  case VX_SUB: r = f ? cg_fast(LLVMBuildFSub(b, x, y, "")) : LLVMBuildSub(b, x, y, ""); break;
  case VX_MUL: r = f ? cg_fast(LLVMBuildFMul(b, x, y, "")) : LLVMBuildMul(b, x, y, ""); break;
  case VX_DIV: r = f ? cg_fast(LLVMBuildFDiv(b, x, y, "")) : safe_sdiv(kc, x, y); break;
  case VX_POW:
    if (f) r = vm_pow(m, b, x, y);
    else
      r = cg_convert(kc, vm_pow(m, b, cg_convert(kc, x, DT_I32, DT_F32), cg_convert(kc, y, DT_I32, DT_F32)),
                     DT_F32, DT_I32);
    break;
  case VX_MAX: r = intr2(kc, f ? "llvm.maximum" : "llvm.smax", x, y); break;
  case VX_MIN: r = intr2(kc, f ? "llvm.minimum" : "llvm.smin", x, y); break;
  case VX_GT:
  case VX_GE:
  case VX_LT:
  case VX_EQ: {
    LLVMValueRef c;
    if (f) {
      LLVMRealPredicate p = e->op == VX_GT ? LLVMRealOGT
                            : e->op == VX_GE ? LLVMRealOGE
                            : e->op == VX_LT ? LLVMRealOLT
                                             : LLVMRealOEQ;
      c = LLVMBuildFCmp(b, p, x, y, "");
    } else {
      LLVMIntPredicate p = e->op == VX_GT ? LLVMIntSGT
                           : e->op == VX_GE ? LLVMIntSGE
                           : e->op == VX_LT ? LLVMIntSLT
                                            : LLVMIntEQ;
      c = LLVMBuildICmp(b, p, x, y, "");
    }
    return from_bool(kc, c, e->dtype);
  }
  case VX_CONST:
  case VX_LOAD:
  case VX_INDEX:
  case VX_ACC:
  case VX_RAND:
  case VX_NEG:
  case VX_EXP:
  case VX_LOG:
  case VX_SQRT:
  case VX_ABS:
  case VX_RELU:
  case VX_SIGMOID:
  case VX_TANH:
  case VX_ELU:
  case VX_LEAKY:
  case VX_POWS:
  case VX_SIGN:
  case VX_STEP:
  case VX_CAST:
  case VX_SELECT: break;
  }
  if (!r) {
    cg_kernel_error(kc, "bad binary op %d", (int)e->op);
    return LLVMGetUndef(cg_dtype(m, e->dtype));
  }
  return cg_convert(kc, r, dt, e->dtype);
}

LLVMValueRef cg_vx(KernelCg *kc, const VExpr *e) {
  CgModule *m = kc->m;
  if (!e) {
    cg_kernel_error(kc, "missing value expression");
    return LLVMGetUndef(m->t_f32);
  }
  switch (e->op) {
  case VX_CONST: return e->dtype == DT_F32 ? cg_f32(m, e->f) : cg_i32(m, e->i);
  case VX_LOAD: return emit_load(kc, e);
  case VX_INDEX: {
    LLVMValueRef i = cg_ix(kc, e->ix);
    return e->dtype == DT_F32 ? LLVMBuildSIToFP(kc->b, i, m->t_f32, "")
                              : LLVMBuildTrunc(kc->b, i, m->t_i32, "");
  }
  case VX_ACC:
    if (!kc->acc) {
      cg_kernel_error(kc, "VX_ACC outside an epilogue");
      return LLVMGetUndef(cg_dtype(m, e->dtype));
    }
    if (LLVMTypeOf(kc->acc) != cg_dtype(m, e->dtype))
      return cg_convert(kc, kc->acc, e->dtype == DT_F32 ? DT_I32 : DT_F32, e->dtype);
    return kc->acc;
  case VX_RAND: return emit_rand(kc, e);
  case VX_NEG:
  case VX_EXP:
  case VX_LOG:
  case VX_SQRT:
  case VX_ABS:
  case VX_RELU:
  case VX_SIGMOID:
  case VX_TANH:
  case VX_ELU:
  case VX_LEAKY:
  case VX_POWS:
  case VX_SIGN:
  case VX_STEP:
  case VX_CAST: return emit_unary(kc, e);
  case VX_ADD:
  case VX_SUB:
  case VX_MUL:
  case VX_DIV:
  case VX_POW:
  case VX_MAX:
  case VX_MIN:
  case VX_GT:
  case VX_GE:
  case VX_LT:
  case VX_EQ: return emit_binary(kc, e);
  case VX_SELECT: {
    LLVMValueRef c = truth(kc, cg_vx(kc, e->a), e->a->dtype);
    LLVMValueRef x = cg_convert(kc, cg_vx(kc, e->b), e->b->dtype, e->dtype);
    LLVMValueRef y = cg_convert(kc, cg_vx(kc, e->c), e->c->dtype, e->dtype);
    return LLVMBuildSelect(kc->b, c, x, y, "");
  }
  }
  cg_kernel_error(kc, "unknown value op %d", (int)e->op);
  return LLVMGetUndef(cg_dtype(m, e->dtype));
}
