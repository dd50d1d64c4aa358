#!/bin/bash
# bench/run.sh — dlc against PyTorch (and OpenBLAS for GEMM) on this machine, one command.
#
#   bench/run.sh [BUILD_DIR] [STEPS]      (default /tmp/build-perf, 100 steps)
#
# 1. Reference workloads (bench/models/*.dl, the models of /work/shared/bench/torch_ref.py):
#    MLP 784-256-10 B=128, MLP 784-1024-1024-10 B=256, LeNet-5 B=64, VGG-small B=64; train step
#    and inference, at 1 and 2 threads; `dlrun bench` and bench/torch_step.py alternate per
#    workload (same minute, same machine load). Torch threading: 1 thread = torch 1 thread,
#    OpenBLAS 1; 2 threads = the best reference config (MLP: torch 1 + OpenBLAS 2, convnets:
#    torch 2 + OpenBLAS 1; see /work/shared/bench/README.md). Ratio = torch ms / dlc ms (> 1: dlc faster),
#    the median over ROUNDS (default 3) alternating rounds.
# 2. GEMM table: bench/gemm_bench.c (dlc's GEMM kernel vs cblas_sgemm, same process, alternating).
# 3. Fused elementwise vs STREAM triad: bench/models/{triad,relu_chain}_16m.dl (one fused kernel each
#    over 16M floats) against /work/shared/bench/stream.c, 1 and 2 threads (target: ratio >= 0.8).
# Medians are printed; with other jobs on the 2 vCPUs the absolute numbers drift, the ratios less.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
B="${1:-/tmp/build-perf}"
STEPS="${2:-100}"
DLRUN="$B/tools/dlrun"
PY=/usr/bin/python3
DLC="$B/tools/dlc"
[ -x "$DLRUN" ] || { echo "no dlrun in $B (build: cmake -S $ROOT -B $B -DCMAKE_BUILD_TYPE=Release && cmake --build $B -j2)"; exit 1; }
HAVE_TORCH=0
$PY -c "import torch" 2>/dev/null && HAVE_TORCH=1

dl_ms() { # model threads -> "train_ms infer_ms"
  "$DLRUN" bench "$HERE/models/$1.dl" --threads "$2" --steps "$STEPS" 2>/dev/null |
    awk '/^train step/{t=$4} /^inference/{i=$3} END{print t, i}'
}
torch_ms() { # letter threads -> "train_ms infer_ms"
  local tt=1 bt=1
  if [ "$2" = 2 ]; then case "$1" in a|b) tt=1; bt=2;; *) tt=2; bt=1;; esac; fi
  OPENBLAS_NUM_THREADS=$bt $PY "$HERE/torch_step.py" "$1" "$tt" "$STEPS" 2>/dev/null |
    awk '/^torch_train_ms/{t=$2} /^torch_infer_ms/{i=$2} END{print t, i}'
}

# ROUNDS rounds per workload, dlc and torch alternating within each round; the
# table shows the median step times over the rounds and the median of the
# per-round ratios (each ratio from two runs in the same minute: robust to the
# host's drift between minutes, which a single pair is not). min-max of the
# per-round ratios in the last columns.
ROUNDS="${ROUNDS:-3}"
# awk: the median of a[1..n] (sorts a)
AWK_MED='function med(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }'
echo "== workloads: median ms per step ($STEPS steps, $ROUNDS rounds; ratio = torch / dlc, median of rounds) =="
printf "%-28s %3s | %9s %9s %6s %11s | %9s %9s %6s %11s\n" model thr "dlc train" "torch" ratio "range" "dlc infer" "torch" ratio "range"
for spec in a:mlp_784_256_10_b128 b:mlp_784_1024_1024_10_b256 c:lenet5_b64 d:vgg_small_b64; do
  L=${spec%%:*}; M=${spec#*:}
  for T in 1 2; do
    LOG=$(mktemp)
    for R in $(seq "$ROUNDS"); do
      read -r dt di < <(dl_ms "$M" "$T")
      if [ $HAVE_TORCH = 1 ]; then read -r tt ti < <(torch_ms "$L" "$T"); else tt=nan; ti=nan; fi
      echo "$dt $tt $di $ti" >> "$LOG"
    done
    awk -v m="$M" -v T="$T" "$AWK_MED"'
      { n++; dt[n] = $1; tt[n] = $2; di[n] = $3; ti[n] = $4; rt[n] = ($1 > 0 ? $2 / $1 : 0); ri[n] = ($3 > 0 ? $4 / $3 : 0) }
      END {
        lo_t = hi_t = rt[1]; lo_i = hi_i = ri[1]
        for (i = 1; i <= n; i++) { if (rt[i] < lo_t) lo_t = rt[i]; if (rt[i] > hi_t) hi_t = rt[i]; if (ri[i] < lo_i) lo_i = ri[i]; if (ri[i] > hi_i) hi_i = ri[i] }
        printf "%-28s %3s | %9.3f %9.3f %6.2f %5.2f-%5.2f | %9.3f %9.3f %6.2f %5.2f-%5.2f\n", m, T,
               med(dt, n), med(tt, n), med(rt, n), lo_t, hi_t, med(di, n), med(ti, n), med(ri, n), lo_i, hi_i }' "$LOG"
    rm -f "$LOG"
  done
done

echo
echo "== GEMM: dlc vs OpenBLAS (GFLOP/s) =="
GB=/tmp/dlc_gemm_bench
gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$ROOT" -I/usr/lib/llvm-19/include "$HERE/gemm_bench.c" -o $GB \
  "$B/backend/libdlc_backend.a" "$B/ir/libdlc_ir.a" "$B/runtime/libdlrt.a" -L/usr/lib/llvm-19/lib -lLLVM-19 \
  -lopenblas -fopenmp -lm -Wl,-rpath,/usr/lib/llvm-19/lib || exit 1
for T in 1 2; do OPENBLAS_NUM_THREADS=$T $GB $T 5; echo; done

echo
echo "== fused elementwise vs STREAM triad =="
# Bandwidth of one fused elementwise kernel against the STREAM triad on the same cores.
#   dlc GB/s = bytes / t / 1e9, bytes = what the inference entry reads + writes per call, each
#   tensor once (= `dlc --emit=stats` "bytes moved" of entry infer; both models: 2 f32 inputs read
#   + 1 f32 output written = 12 B x 16M = 201326592 B), t = median wall time of one inference call
#   (`dlrun bench`; the entry is that one kernel, checked below via --emit=stats).
#   STREAM triad GB/s = 24 B/elem (a[i] = b[i] + s*c[i], doubles) x n / median time, also without
#   the write-allocate traffic, so both count the same bytes (12 B/float, 24 B/double) and both do
#   ordinary (write-allocate) stores; triad_nt (non-temporal stores) is shown for reference.
#   ratio = dlc GB/s / STREAM triad GB/s. Medians over BW_ROUNDS rounds; each round runs STREAM
#   (1T and 2T in one process) then the models, so both see the same machine load.
# stream.c is built as its header says (gcc -O3 -march=native -fopenmp); its read/copy_nt/triad_nt
# kernels use AVX-512 intrinsics, so on a CPU without AVX-512 they are mapped onto pairs of AVX2
# operations by a forced-include header (the triad kernel itself is plain C in both builds).
ST=/tmp/dlc_stream
STREAM_C=/work/shared/bench/stream.c
STREAM_N=$((1 << 24))  # doubles per array: 3 x 128 MiB >> 32 MiB L3
BW_ROUNDS=3
BW_STEPS=20
BW_MODELS="triad_16m relu_chain_16m"
if ! gcc -O3 -march=native -fopenmp -o $ST "$STREAM_C" 2>/dev/null; then
  cat > /tmp/dlc_stream_avx2.h <<'EOF'
#include <immintrin.h>
typedef struct { __m256d lo, hi; } dlc_m512d;
#define __m512d dlc_m512d
static inline dlc_m512d dlc512_load(const double *p) { dlc_m512d r = {_mm256_load_pd(p), _mm256_load_pd(p + 4)}; return r; }
static inline dlc_m512d dlc512_set1(double s) { dlc_m512d r = {_mm256_set1_pd(s), _mm256_set1_pd(s)}; return r; }
static inline dlc_m512d dlc512_add(dlc_m512d a, dlc_m512d b) { dlc_m512d r = {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; return r; }
static inline dlc_m512d dlc512_fmadd(dlc_m512d a, dlc_m512d b, dlc_m512d c) { dlc_m512d r = {_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)}; return r; }
static inline void dlc512_stream(double *p, dlc_m512d v) { _mm256_stream_pd(p, v.lo); _mm256_stream_pd(p + 4, v.hi); }
static inline double dlc512_reduce_add(dlc_m512d v) { double t[4]; _mm256_storeu_pd(t, _mm256_add_pd(v.lo, v.hi)); return t[0] + t[1] + t[2] + t[3]; }
#define _mm512_load_pd dlc512_load
#define _mm512_set1_pd dlc512_set1
#define _mm512_add_pd dlc512_add
#define _mm512_fmadd_pd dlc512_fmadd
#define _mm512_stream_pd dlc512_stream
#define _mm512_reduce_add_pd dlc512_reduce_add
EOF
  gcc -O3 -march=native -fopenmp -include /tmp/dlc_stream_avx2.h -o $ST "$STREAM_C" || exit 1
  echo "# (no AVX-512: stream.c's intrinsic kernels built as 2 x AVX2)"
fi
for M in $BW_MODELS; do
  read -r nk bytes < <("$DLC" "$HERE/models/$M.dl" --emit=stats | awk '$1=="infer"{print $3, $5}')
  [ "$nk" = 1 ] || echo "# warning: $M.dl's inference has $nk kernels, not one fused kernel"
  eval "BYTES_$M=$bytes"
done
BWLOG=$(mktemp)
for R in $(seq $BW_ROUNDS); do
  $ST $STREAM_N 5 | awk '/^stream_triad(_nt)?_[12]T /{print $1, $2}' >> "$BWLOG"
  for M in $BW_MODELS; do
    for T in 1 2; do
      ms=$("$DLRUN" bench "$HERE/models/$M.dl" --threads $T --steps $BW_STEPS 2>/dev/null | awk '/^inference/{print $3}')
      echo "${M}_${T}T $ms" >> "$BWLOG"
    done
  done
done
med() { awk -v k="$1" '$1==k && $2!=""{print $2}' "$BWLOG" | sort -g |
  awk '{v[++n]=$1} END{if(!n) print "nan"; else print (n%2 ? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2)}'; }
printf "%-16s %3s | %9s %9s | %12s %6s | %14s %6s\n" model thr "ms/call" "dlc GB/s" "triad GB/s" ratio "triad_nt GB/s" ratio
for M in $BW_MODELS; do
  for T in 1 2; do
    eval "bytes=\$BYTES_$M"
    awk -v m="$M" -v T="$T" -v ms="$(med "${M}_${T}T")" -v b="$bytes" -v tr="$(med "stream_triad_${T}T")" \
        -v nt="$(med "stream_triad_nt_${T}T")" 'BEGIN{
      g = (ms > 0 ? b / (ms * 1e-3) / 1e9 : 0)
      printf "%-16s %3s | %9.3f %9.2f | %12.2f %6.2f | %14.2f %6.2f\n", m, T, ms, g, tr, (tr>0?g/tr:0), nt, (nt>0?g/nt:0)}'
  done
done
rm -f "$BWLOG"

echo
echo "== Fashion-MNIST epoch (2 threads, per-step batch gathering included, file loading not) =="
# dlc: `dlrun train` epoch time (examples/mnist_mlp.dl B=128, examples/lenet.dl B=64: the models
# and batch sizes of /work/shared/bench/torch_train_fmnist.py); torch: that script's epoch time with
# 2 torch threads and OpenBLAS at 1 thread (its fastest 2-core setting). One epoch each, alternating,
# in ROUNDS rounds: median times and the median of the per-round ratios (range beside it).
if [ -d /usr/share/datasets/fashion-mnist ]; then
  printf "%-6s | %9s %9s %6s %11s\n" model "dlc s" "torch s" ratio range
  for spec in mlp:mnist_mlp lenet:lenet; do
    N=${spec%%:*}; E=${spec#*:}
    LOG=$(mktemp)
    for R in $(seq "$ROUNDS"); do
      dt=$("$DLRUN" train "$ROOT/examples/$E.dl" --data fashion-mnist --epochs 1 --threads 2 2>/dev/null |
           awk '/^epoch 1\/1/{print $NF}' | tr -d s)
      tt=nan
      if [ $HAVE_TORCH = 1 ]; then
        tt=$(cd /tmp && OPENBLAS_NUM_THREADS=1 $PY /work/shared/bench/torch_train_fmnist.py --models "$N" --epochs 1 \
             --threads 2 2>/dev/null | awk -v n="$N" '$1=="fmnist_"n"_2T_epoch1_time"{print $2}')
      fi
      echo "$dt $tt" >> "$LOG"
    done
    awk -v n="$N" "$AWK_MED"'
      { k++; d[k] = $1; t[k] = $2; r[k] = ($1 > 0 ? $2 / $1 : 0) }
      END { lo = hi = r[1]; for (i = 1; i <= k; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
            printf "%-6s | %9.2f %9.2f %6.2f %5.2f-%5.2f\n", n, med(d, k), med(t, k), med(r, k), lo, hi }' "$LOG"
    rm -f "$LOG"
  done
else
  echo "# dataset-fashion-mnist is not installed: skipped"
fi
