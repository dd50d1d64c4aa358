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
#    torch 2 + OpenBLAS 1; see /work/shared/bench/README.md). Ratio = torch ms / dlc ms (> 1: dlc faster).
# 2. GEMM table: bench/gemm_bench.c (dlc's GEMM kernel vs cblas_sgemm, same process, alternating).
# Medians are printed; with other jobs on the 2 vCPUs the absolute numbers drift, the ratios less.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
B="${1:-/tmp/build-perf}"
STEPS="${2:-100}"
DLRUN="$B/tools/dlrun"
PY=/usr/bin/python3
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

echo "== workloads: median ms per step ($STEPS steps; ratio = torch / dlc) =="
printf "%-28s %3s | %9s %9s %6s | %9s %9s %6s\n" model thr "dlc train" "torch" ratio "dlc infer" "torch" ratio
for spec in a:mlp_784_256_10_b128 b:mlp_784_1024_1024_10_b256 c:lenet5_b64 d:vgg_small_b64; do
  L=${spec%%:*}; M=${spec#*:}
  for T in 1 2; do
    read -r dt di < <(dl_ms "$M" "$T")
    if [ $HAVE_TORCH = 1 ]; then read -r tt ti < <(torch_ms "$L" "$T"); else tt=nan; ti=nan; fi
    awk -v m="$M" -v T="$T" -v dt="$dt" -v tt="$tt" -v di="$di" -v ti="$ti" 'BEGIN{
      printf "%-28s %3s | %9.3f %9.3f %6.2f | %9.3f %9.3f %6.2f\n", m, T, dt, tt, (dt>0?tt/dt:0), di, ti, (di>0?ti/di:0)}'
  done
done

echo
echo "== GEMM: dlc vs OpenBLAS (GFLOP/s) =="
GB=/tmp/dlc_gemm_bench
gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$ROOT" -I/usr/lib/llvm-19/include "$HERE/gemm_bench.c" -o $GB \
  "$B/backend/libdlc_backend.a" "$B/ir/libdlc_ir.a" "$B/runtime/libdlrt.a" -L/usr/lib/llvm-19/lib -lLLVM-19 \
  -lopenblas -fopenmp -lm -Wl,-rpath,/usr/lib/llvm-19/lib || exit 1
for T in 1 2; do OPENBLAS_NUM_THREADS=$T $GB $T 5; echo; done
