/* vecmath.c — exp, log, tanh, sigmoid and pow for f32, emitted inline as
 * branch-free LLVM IR (range reduction + polynomial + selects for the
 * special cases), so that loops containing them vectorize and no libm call
 * appears in a kernel. Polynomials are Cephes' single-precision ones
 * (about 1 ulp on their reduced ranges). Multiply-adds use llvm.fmuladd,
 * which fuses only where the target has FMA; no fast-math flags are set here
 * because they would break the Cody-Waite range reductions. Special values:
 * expm1 uses the same polynomial near 0. exp overflows to +inf and underflows to 0 (through the subnormals),
 * log(0) = -inf, log(x<0) = NaN, log(+inf) = +inf, NaN propagates. */
#include "backend/cg_internal.h"

#include <math.h>

typedef struct {
  CgModule *m;
  LLVMBuilderRef b;
} Vm;

static LLVMValueRef fk(Vm *v, double c) { return cg_f32(v->m, c); }
static LLVMValueRef ik(Vm *v, int64_t c) { return cg_i32(v->m, c); }

static LLVMValueRef madd(Vm *v, LLVMValueRef x, LLVMValueRef y, LLVMValueRef z) {
  LLVMValueRef args[3] = {x, y, z};
  LLVMTypeRef t = v->m->t_f32;
  return cg_intrinsic(v->m, v->b, "llvm.fmuladd", &t, 1, args, 3);
}
static LLVMValueRef fabs_(Vm *v, LLVMValueRef x) {
  LLVMTypeRef t = v->m->t_f32;
  return cg_intrinsic(v->m, v->b, "llvm.fabs", &t, 1, &x, 1);
}
static LLVMValueRef copysign_(Vm *v, LLVMValueRef mag, LLVMValueRef sgn) {
  LLVMValueRef args[2] = {mag, sgn};
  LLVMTypeRef t = v->m->t_f32;
  return cg_intrinsic(v->m, v->b, "llvm.copysign", &t, 1, args, 2);
}
static LLVMValueRef fcmp(Vm *v, LLVMRealPredicate p, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildFCmp(v->b, p, x, y, "");
}
static LLVMValueRef sel(Vm *v, LLVMValueRef c, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildSelect(v->b, c, x, y, "");
}
static LLVMValueRef fmul(Vm *v, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildFMul(v->b, x, y, ""); }
static LLVMValueRef fadd(Vm *v, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildFAdd(v->b, x, y, ""); }
static LLVMValueRef fsub(Vm *v, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildFSub(v->b, x, y, ""); }
static LLVMValueRef fdiv(Vm *v, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildFDiv(v->b, x, y, ""); }
static LLVMValueRef as_int(Vm *v, LLVMValueRef x) { return LLVMBuildBitCast(v->b, x, v->m->t_i32, ""); }
static LLVMValueRef as_float(Vm *v, LLVMValueRef x) { return LLVMBuildBitCast(v->b, x, v->m->t_f32, ""); }

/* Horner: c[0]*x^(n-1) + ... + c[n-1]. */
static LLVMValueRef horner(Vm *v, LLVMValueRef x, const double *c, int n) {
  LLVMValueRef p = fk(v, c[0]);
  for (int i = 1; i < n; i++) p = madd(v, p, x, fk(v, c[i]));
  return p;
}

/* 2^n for an integer n in [-126, 127] (i32), as f32 bits. */
static LLVMValueRef pow2i(Vm *v, LLVMValueRef n) {
  LLVMValueRef e = LLVMBuildAdd(v->b, n, ik(v, 127), "");
  return as_float(v, LLVMBuildShl(v->b, e, ik(v, 23), ""));
}

/* exp(x) = 2^n * e^r, n = round(x / ln 2), r = x - n ln 2 (Cody-Waite, two
 * constants), e^r by a degree-7 polynomial on |r| <= ln2/2. 2^n is applied
 * as two factors 2^(n>>1) * 2^(n - n>>1) so that n in [-150, 128] neither
 * overflows an exponent field nor loses the subnormal range. */
static LLVMValueRef exp_impl(Vm *v, LLVMValueRef x) {
  /* Clamp (NaN passes through: ordered compares are false for it). */
  LLVMValueRef xc = sel(v, fcmp(v, LLVMRealOGT, x, fk(v, 89.0)), fk(v, 89.0), x);
  xc = sel(v, fcmp(v, LLVMRealOLT, xc, fk(v, -104.0)), fk(v, -104.0), xc);
  /* n = round-to-nearest(x * log2 e) by the 1.5 * 2^23 trick: the integer
   * sits in the low mantissa bits of t. */
  const double magic = 12582912.0;
  LLVMValueRef t = madd(v, xc, fk(v, 1.44269504088896341), fk(v, magic));
  LLVMValueRef nf = fsub(v, t, fk(v, magic));
  LLVMValueRef ni = LLVMBuildSub(v->b, as_int(v, t), ik(v, 0x4b400000), "");
  LLVMValueRef r = madd(v, nf, fk(v, -0.693359375), xc);
  r = madd(v, nf, fk(v, 2.12194440e-4), r);
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef p = horner(v, r, P, 6);
  LLVMValueRef r2 = fmul(v, r, r);
  LLVMValueRef y = fadd(v, madd(v, p, r2, r), fk(v, 1.0));
  LLVMValueRef n1 = LLVMBuildAShr(v->b, ni, ik(v, 1), "");
  LLVMValueRef n2 = LLVMBuildSub(v->b, ni, n1, "");
  return fmul(v, fmul(v, y, pow2i(v, n1)), pow2i(v, n2));
}

LLVMValueRef vm_exp(CgModule *m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = {m, b};
  return exp_impl(&v, x);
}

/* expm1(x): on |x| < ln2/2 the exp polynomial without its leading 1
 * (x + x^2 P(x), no cancellation), else exp(x) - 1. */
LLVMValueRef vm_expm1(CgModule *m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v_ = {m, b}, *v = &v_;
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef small = madd(v, horner(v, x, P, 6), fmul(v, x, x), x);
  LLVMValueRef big = fsub(v, exp_impl(v, x), fk(v, 1.0));
  return sel(v, fcmp(v, LLVMRealOLT, fabs_(v, x), fk(v, 0.34657359)), small, big);
}

/* log(x) = e ln 2 + log(1 + f), x = 2^e (1 + f) with 1 + f in
 * [sqrt(1/2), sqrt(2)); subnormal inputs are scaled by 2^23 first. */
static LLVMValueRef log_impl(Vm *v, LLVMValueRef x) {
  LLVMValueRef tiny = fcmp(v, LLVMRealOLT, x, fk(v, 0x1p-126));
  LLVMValueRef xs = sel(v, tiny, fmul(v, x, fk(v, 0x1p23)), x);
  LLVMValueRef eadj = sel(v, tiny, ik(v, -23), ik(v, 0));
  LLVMValueRef ix = LLVMBuildSub(v->b, as_int(v, xs), ik(v, 0x3f3504f3), "");
  LLVMValueRef ei = LLVMBuildAdd(v->b, LLVMBuildAShr(v->b, ix, ik(v, 23), ""), eadj, "");
  LLVMValueRef mb = LLVMBuildAdd(v->b, LLVMBuildAnd(v->b, ix, ik(v, 0x7fffff), ""),
                                 ik(v, 0x3f3504f3), "");
  LLVMValueRef f = fsub(v, as_float(v, mb), fk(v, 1.0));
  LLVMValueRef e = LLVMBuildSIToFP(v->b, ei, v->m->t_f32, "");
  static const double P[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                             -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                             2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
  LLVMValueRef z = fmul(v, f, f);
  LLVMValueRef y = fmul(v, fmul(v, horner(v, f, P, 9), f), z);
  y = madd(v, e, fk(v, -2.12194440e-4), y);
  y = madd(v, z, fk(v, -0.5), y);
  LLVMValueRef r = fadd(v, f, y);
  r = madd(v, e, fk(v, 0.693359375), r);
  /* special values */
  LLVMValueRef inf = fk(v, INFINITY);
  r = sel(v, fcmp(v, LLVMRealOEQ, x, inf), inf, r);
  r = sel(v, fcmp(v, LLVMRealOEQ, x, fk(v, 0.0)), fk(v, -INFINITY), r);
  r = sel(v, fcmp(v, LLVMRealULT, x, fk(v, 0.0)), fk(v, NAN), r); /* x < 0 or NaN */
  return r;
}

LLVMValueRef vm_log(CgModule *m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v = {m, b};
  return log_impl(&v, x);
}

/* tanh: odd polynomial for |x| < 0.625, else sign(x) (1 - 2 / (e^{2|x|} + 1))
 * (e^{2|x|} = inf gives exactly ±1). */
LLVMValueRef vm_tanh(CgModule *m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v_ = {m, b}, *v = &v_;
  LLVMValueRef ax = fabs_(v, x);
  LLVMValueRef z = fmul(v, x, x);
  static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                             1.33314422036E-1, -3.33332819422E-1};
  LLVMValueRef ys = madd(v, fmul(v, horner(v, z, P, 5), z), x, x);
  LLVMValueRef e = exp_impl(v, fadd(v, ax, ax));
  LLVMValueRef yl = fsub(v, fk(v, 1.0), fdiv(v, fk(v, 2.0), fadd(v, e, fk(v, 1.0))));
  LLVMValueRef y = sel(v, fcmp(v, LLVMRealOLT, ax, fk(v, 0.625)), ys, yl);
  return copysign_(v, y, x); /* odd; keeps tanh(-0) = -0 */
}

/* sigmoid: e = e^{-|x|} (never overflows); 1/(1+e) for x >= 0, e/(1+e) else. */
LLVMValueRef vm_sigmoid(CgModule *m, LLVMBuilderRef b, LLVMValueRef x) {
  Vm v_ = {m, b}, *v = &v_;
  LLVMValueRef e = exp_impl(v, LLVMBuildFNeg(b, fabs_(v, x), ""));
  LLVMValueRef num = sel(v, fcmp(v, LLVMRealOGE, x, fk(v, 0.0)), fk(v, 1.0), e);
  return fdiv(v, num, fadd(v, fk(v, 1.0), e));
}

/* pow(x, y) = ±exp(y log|x|) with C99 special cases: y == 0 or x == 1 gives
 * 1; x < 0 needs an integer y (sign from its parity), else NaN. */
LLVMValueRef vm_pow(CgModule *m, LLVMBuilderRef b, LLVMValueRef x, LLVMValueRef y) {
  Vm v_ = {m, b}, *v = &v_;
  LLVMValueRef r = exp_impl(v, fmul(v, y, log_impl(v, fabs_(v, x))));
  LLVMValueRef big = fcmp(v, LLVMRealOGE, fabs_(v, y), fk(v, 0x1p24)); /* even integer */
  LLVMTypeRef ovl[2] = {m->t_i32, m->t_f32};
  LLVMValueRef yi = cg_intrinsic(m, b, "llvm.fptosi.sat", ovl, 2, &y, 1);
  LLVMValueRef is_int = LLVMBuildOr(
      b, big, fcmp(v, LLVMRealOEQ, LLVMBuildSIToFP(b, yi, m->t_f32, ""), y), "");
  LLVMValueRef odd = LLVMBuildAnd(
      b, LLVMBuildAnd(b, is_int, LLVMBuildNot(b, big, ""), ""),
      LLVMBuildTrunc(b, LLVMBuildAnd(b, yi, ik(v, 1), ""), m->t_i1, ""), "");
  LLVMValueRef xneg = LLVMBuildICmp(b, LLVMIntSLT, as_int(v, x), ik(v, 0), ""); /* sign bit */
  r = sel(v, LLVMBuildAnd(b, xneg, odd, ""), LLVMBuildFNeg(b, r, ""), r);
  LLVMValueRef bad = LLVMBuildAnd(b, fcmp(v, LLVMRealOLT, x, fk(v, 0.0)),
                                  LLVMBuildNot(b, is_int, ""), "");
  r = sel(v, bad, fk(v, NAN), r);
  r = sel(v, fcmp(v, LLVMRealOEQ, y, fk(v, 0.0)), fk(v, 1.0), r);
  return sel(v, fcmp(v, LLVMRealOEQ, x, fk(v, 1.0)), fk(v, 1.0), r);
}

LLVMValueRef vm_pow_const(CgModule *m, LLVMBuilderRef b, LLVMValueRef x, float c) {
  Vm v_ = {m, b}, *v = &v_;
  LLVMTypeRef t = m->t_f32;
  if (c == 0.0f) return fk(v, 1.0);
  if (c == 1.0f) return x;
  if (c == 2.0f) return fmul(v, x, x);
  if (c == 3.0f) return fmul(v, fmul(v, x, x), x);
  if (c == 4.0f) {
    LLVMValueRef x2 = fmul(v, x, x);
    return fmul(v, x2, x2);
  }
  if (c == -1.0f) return fdiv(v, fk(v, 1.0), x);
  if (c == -2.0f) return fdiv(v, fk(v, 1.0), fmul(v, x, x));
  if (c == 0.5f || c == -0.5f) {
    /* pow(±0, 0.5) = +0 and pow(-inf, 0.5) = +inf, unlike sqrt */
    LLVMValueRef s = cg_intrinsic(m, b, "llvm.sqrt", &t, 1, &x, 1);
    s = sel(v, fcmp(v, LLVMRealOEQ, x, fk(v, 0.0)), fk(v, 0.0), s);
    s = sel(v, fcmp(v, LLVMRealOEQ, x, fk(v, -INFINITY)), fk(v, INFINITY), s);
    return c > 0 ? s : fdiv(v, fk(v, 1.0), s);
  }
  return vm_pow(m, b, x, fk(v, c));
}
