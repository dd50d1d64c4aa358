#!/bin/sh
# Smoke test for one example model: compile it with `dlc --emit=opt`, train
# it for two short epochs with `dlrun train --epochs 2 --max-steps K`, and
# check that the training loss falls (epoch 2's `train loss` < epoch 1's)
# and is finite.
#
#   train_loss_falls.sh DLC DLRUN MODEL.dl DATASET K [EXTRA DLRUN ARGS...]
#
# Exit status: 0 pass, 1 fail, 77 skipped (the Fashion-MNIST files are
# missing; CTest maps 77 to SKIPPED through SKIP_RETURN_CODE).
set -u
if [ $# -lt 5 ]; then
  echo "usage: $0 DLC DLRUN MODEL.dl DATASET K [ARGS...]" >&2
  exit 2
fi
dlc=$1 dlrun=$2 model=$3 data=$4 steps=$5
shift 5

# idx_head FILE N HDRLEN RECBYTES: the IDX file FILE (gzipped or not) cut
# to its first N records; the count in the header (bytes 4..7, big-endian)
# is rewritten.
idx_head() {   # (sh has no locals: names distinct from the caller's)
  if [ -f "$1.gz" ]; then idx_cat="gzip -dc $1.gz"; else idx_cat="cat $1"; fi
  $idx_cat | head -c 4
  printf "$(printf '\\%03o\\%03o\\%03o\\%03o' \
    $(($2 >> 24 & 255)) $(($2 >> 16 & 255)) $(($2 >> 8 & 255)) $(($2 & 255)))"
  $idx_cat | tail -c +9 | head -c $(($3 - 8 + $2 * $4))
}

# make_fashion_subset SRC DST NTRAIN NTEST: writes DST atomically (built in
# a scratch directory, then renamed; a concurrent test may win the race).
make_fashion_subset() {
  src=$1 dst=$2 ntrain=$3 ntest=$4
  mkdir -p "$(dirname "$dst")" || return 1
  tmp=$dst.tmp.$$
  rm -rf "$tmp" && mkdir "$tmp" || return 1
  idx_head "$src/train-images-idx3-ubyte" $ntrain 16 784 > "$tmp/train-images-idx3-ubyte" &&
  idx_head "$src/train-labels-idx1-ubyte" $ntrain 8 1 > "$tmp/train-labels-idx1-ubyte" &&
  idx_head "$src/t10k-images-idx3-ubyte" $ntest 16 784 > "$tmp/t10k-images-idx3-ubyte" &&
  idx_head "$src/t10k-labels-idx1-ubyte" $ntest 8 1 > "$tmp/t10k-labels-idx1-ubyte" || {
    echo "FAIL: could not write the Fashion-MNIST subset in $tmp"; rm -rf "$tmp"; return 1; }
  mv -T "$tmp" "$dst" 2>/dev/null || rm -rf "$tmp"
  [ -d "$dst" ]
}

if [ "$data" = fashion-mnist ]; then
  dir=${DLC_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  if [ ! -d "$dir" ]; then
    echo "SKIP: Fashion-MNIST not found in $dir (install dataset-fashion-mnist)"
    exit 77
  fi
  # The test set is only reported, never checked, and evaluating all 10000
  # images twice costs more than the training steps: with DLC_EXAMPLES_DATA
  # set, run on a cached subset (the first 6400 training and 1000 test
  # images) written there once.
  if [ -n "${DLC_EXAMPLES_DATA:-}" ]; then
    if [ ! -d "$DLC_EXAMPLES_DATA" ]; then
      make_fashion_subset "$dir" "$DLC_EXAMPLES_DATA" 6400 1000 || exit 1
    fi
    dir=$DLC_EXAMPLES_DATA
  fi
  set -- --data-dir "$dir" "$@"
fi

if ! "$dlc" "$model" --emit=opt > /dev/null; then
  echo "FAIL: dlc $model --emit=opt failed"
  exit 1
fi

out=$("$dlrun" train "$model" --data "$data" --epochs 2 --max-steps "$steps" --seed 0 "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "FAIL: dlrun train exited with status $rc"
  exit 1
fi

printf '%s\n' "$out" | awk '
  /^epoch [0-9]+\/[0-9]+ / {
    for (i = 1; i < NF; i++)
      if ($i == "train" && $(i + 1) == "loss") { loss[++n] = $(i + 2); break }
  }
  END {
    if (n < 2) { print "FAIL: expected 2 \"train loss\" lines, found " n; exit 1 }
    for (i = 1; i <= 2; i++)
      if (loss[i] !~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/) {
        print "FAIL: epoch " i " train loss is not a finite number: " loss[i]; exit 1
      }
    if (loss[2] + 0 < loss[1] + 0) {
      print "PASS: train loss fell from " loss[1] " to " loss[2]; exit 0
    }
    print "FAIL: train loss did not fall: epoch 1 " loss[1] ", epoch 2 " loss[2]; exit 1
  }'
