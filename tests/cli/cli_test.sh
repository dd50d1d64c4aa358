#!/usr/bin/env bash
# cli_test.sh — command-line tests of dlc and dlrun (registered by tests/cli.cmake).
#   cli_test.sh GROUP DLC DLRUN ST_TOOL CLI_DIR SRC_DIR [ARG]
# GROUP: errors | dlrun_errors | xor | linreg | checkpoint | cache | updates | ir_golden | emit MODEL [fast]
# (emit ... fast: --emit=llvm and --emit=asm at -O0 only; otherwise at -O0 and
# at the default level)
# Every check prints `ok - ...` or `FAIL - ...`; the exit status is the number
# of failures (capped at 1).
set -u
GROUP=$1 DLC=$2 DLRUN=$3 ST=$4 CLI=$5 SRC=$6 ARG=${7:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dlc-cli-$GROUP.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; FAILS=$((FAILS + 1)); }

# run EXPECTED_STATUS CMD... : runs CMD, stdout in $WORK/out, stderr in $WORK/err
run() {
  local want=$1; shift
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    bad "'$*' exited $rc, expected $want"; sed 's/^/    /' "$WORK/err" | head -20; return 1
  fi
  return 0
}

# expect_diag FILE LINE COL REGEX CMD... : exit 1, first stderr line is
# FILE:LINE:COL: error: <matches REGEX>, then the source line, then a caret
# under column COL.
expect_diag() {
  local file=$1 line=$2 col=$3 re=$4; shift 4
  run 1 "$@" || return
  local l1 l2 l3
  l1=$(sed -n 1p "$WORK/err"); l2=$(sed -n 2p "$WORK/err"); l3=$(sed -n 3p "$WORK/err")
  if [[ ! "$l1" =~ ^"$file:$line:$col: error: " ]]; then bad "'$*': first line '$l1' is not $file:$line:$col: error: ..."; return; fi
  if [[ ! "$l1" =~ $re ]]; then bad "'$*': message '$l1' does not match /$re/"; return; fi
  local src; src=$(sed -n "${line}p" "$file")
  if [[ "$l2" != *"$src"* ]]; then bad "'$*': second line '$l2' is not the source line '$src'"; return; fi
  # the caret sits under column COL of the source line as printed on line 2
  local indent=$(( ${#l2} - ${#src} ))
  local want_caret; want_caret=$(printf '%*s^' $((indent + col - 1)) '')
  if [[ "$l3" != "$want_caret" ]]; then bad "'$*': caret line '$l3' is not under column $col ('$want_caret')"; return; fi
  ok "$* -> $l1"
}

# expect_err STATUS REGEX CMD... : CMD exits STATUS, its first stderr line
# matches REGEX and no stderr line says `error: error:`
expect_err() {
  local want=$1 re=$2; shift 2
  run "$want" "$@" || return 1
  local l1; l1=$(sed -n 1p "$WORK/err")
  if [[ ! "$l1" =~ $re ]]; then bad "'$*': message '$l1' does not match /$re/"; return 1; fi
  if grep -q 'error: error:' "$WORK/err"; then bad "'$*': a doubled 'error: error:' in: $(cat "$WORK/err")"; return 1; fi
  ok "$* -> $want: $l1"
}

# field NAME FILE: the number after NAME in the last line of FILE containing it
last_field() { grep -o "$1 [-0-9.e+]*" "$2" | tail -1 | awk '{print $NF}'; }

case "$GROUP" in
errors)
  cd "$CLI" || exit 1
  expect_diag syntax_error.dl 3 8 "expected an expression" "$DLC" syntax_error.dl --emit=ir
  expect_diag unknown_name.dl 3 9 "unknown name 'Wrong'" "$DLC" unknown_name.dl --emit=ir
  expect_diag matmul_shape.dl 4 7 'f32\[4,3\].*f32\[4,2\]' "$DLC" matmul_shape.dl --emit=ir
  expect_diag missing_input.dl 4 8 "unknown name 'x'" "$DLC" missing_input.dl --emit=ir
  # -D: a value that is not an integer is a bad command line like a missing
  # value; an unknown const is an error of the model (the diagnostic points into it)
  expect_err 2 '^dlc: error: -D B=abc: the value is not an integer$' "$DLC" define.dl -D B=abc --emit=ir
  expect_err 2 '^dlc: error: -D B=: the value is not an integer$' "$DLC" define.dl -D B= --emit=ir
  expect_err 2 '^dlc: error: -D B: expected NAME=VALUE$' "$DLC" define.dl -D B --emit=ir
  expect_diag define.dl 1 1 "no const Q" "$DLC" define.dl -D Q=3 --emit=ir
  run 0 "$DLC" define.dl -D B=7 --emit=ir && grep -q 'input x : f32\[7,3\]' "$WORK/out" && ok "-D B=7 overrides B" || bad "-D B=7 does not give x f32[7,3]"
  # the same errors through dlrun
  expect_diag matmul_shape.dl 4 7 'f32\[4,3\].*f32\[4,2\]' "$DLRUN" bench matmul_shape.dl --steps 1
  expect_err 2 '^dlrun: error: -D B=1.5: the value is not an integer$' "$DLRUN" bench define.dl -D B=1.5 --steps 1
  # several independent errors in one file are all reported, in order
  expect_diag multi_error.dl 2 5 "unknown name 'foo'" "$DLC" multi_error.dl --emit=ir
  n=$(grep -c ': error: ' "$WORK/err")
  if [ "$n" -eq 3 ] && grep -q "^multi_error.dl:3:10: error: unknown name 'bar'" "$WORK/err" &&
     grep -q '^multi_error.dl:4:7: error: matmul: f32\[2,3\] @ f32\[2,3\]' "$WORK/err"; then
    ok "multi_error.dl: all 3 errors reported"
  else
    bad "multi_error.dl: expected 3 errors (2:5, 3:10, 4:7), got $n:"; cat "$WORK/err"
  fi
  # command-line errors: exit 2
  run 2 "$DLC" define.dl --emit=ir --no-such-option && ok "dlc unknown option -> 2"
  run 2 "$DLC" define.dl --emit=nonsense && ok "dlc unknown --emit kind -> 2"
  run 2 "$DLC" && ok "dlc without a model -> 2"
  # a model file that cannot be read: an error of the input (1), as `TOOL: error: cannot read FILE: REASON`
  expect_err 1 '^dlc: error: cannot read no_such_model.dl: No such file or directory$' "$DLC" no_such_model.dl --emit=ir
  expect_err 1 '^dlc: error: cannot read no_such_model.dl: No such file or directory$' "$DLC" no_such_model.dl -o "$WORK/m.so"
  expect_err 1 '^dlrun: error: cannot read no_such_model.dl: No such file or directory$' "$DLRUN" bench no_such_model.dl
  expect_err 1 '^dlrun: error: cannot read no_such_model.so: No such file or directory$' "$DLRUN" bench no_such_model.so
  # -o with an unknown extension (without --emit) is a bad command line, before any compiling
  expect_err 2 "^dlc: error: -o $WORK/x.txt: the output must end in .so .* or .o " "$DLC" define.dl -o "$WORK/x.txt"
  [ ! -e "$WORK/x.txt" ] && ok "dlc -o x.txt wrote nothing" || bad "dlc -o x.txt wrote $WORK/x.txt"
  # --cpu: empty is a bad command line; an unknown CPU too, said once with the tool's name
  expect_err 2 '^dlc: error: --cpu= needs a CPU name' "$DLC" define.dl --emit=ir --cpu=
  # before code generation too (LLVM is asked about the name up front)
  for k in ast ir grad opt stats dot; do
    expect_err 2 "^dlc: error: unknown CPU 'bogus'" "$DLC" define.dl --emit=$k --cpu=bogus
  done
  expect_err 2 "^dlc: error: unknown CPU 'bogus'" "$DLC" define.dl --emit=llvm --cpu=bogus &&
    { [ "$(wc -l <"$WORK/err")" -eq 1 ] && ok "dlc --cpu=bogus: one line" || bad "dlc --cpu=bogus: $(cat "$WORK/err")"; }
  ;;
dlrun_errors)
  cd "$WORK" || exit 1
  M=$CLI/small.dl
  "$ST" write p.st W F32 3,2 0.1,-0.2,0.3,0.4,-0.5,0.6 b F32 2 0.01,-0.02 || bad "st_tool write"
  "$ST" write f.st x F32 2,3 1,2,3,-1,0.5,2 y F32 2,2 0.5,-0.5,0.25,0 || bad "st_tool write"
  "$ST" write nolabel.st x F32 2,3 1,2,3,-1,0.5,2 || bad "st_tool write"
  "$ST" write noinput.st y F32 2,2 0.5,-0.5,0.25,0 || bad "st_tool write"
  "$ST" write pshape.st W F32 2,3 0 b F32 2 0 || bad "st_tool write"
  # a good step first: the reference for the failures below
  if run 0 "$DLRUN" step "$M" --params p.st --feed f.st --grads g.st --out-params p2.st --out o.st; then
    if grep -q '^loss [-0-9.e]*$' "$WORK/out" && [ -s g.st ] && [ -s p2.st ] && [ -s o.st ]; then ok "dlrun step"; else bad "dlrun step output"; cat "$WORK/out"; fi
    # W' = W - 0.5 * grad W
    paste <("$ST" get p.st W) <("$ST" get g.st W) <("$ST" get p2.st W) |
      awk '{d = $1 - 0.5 * $2 - $3; if (d < 0) d = -d; if (d > 1e-6) bad = 1} END {exit bad}' &&
      ok "step: updated W = W - lr * grad" || bad "step: updated W != W - lr * grad"
  fi
  run 1 "$DLRUN" step "$M" --params p.st --feed noinput.st && grep -q "\bx\b" "$WORK/err" && ok "step: feed without input x -> 1, names x" || bad "step: feed without the input: message does not name x: $(cat "$WORK/err")"
  run 1 "$DLRUN" step "$M" --params p.st --feed nolabel.st && grep -q "\by\b" "$WORK/err" && ok "step: feed without label y -> 1, names y" || bad "step: feed without the label: message does not name y: $(cat "$WORK/err")"
  run 1 "$DLRUN" step "$M" --params pshape.st --feed f.st && grep -q "W" "$WORK/err" && grep -q "\[2,3\]\|2, *3" "$WORK/err" && ok "step: params of the wrong shape -> 1" || bad "step: wrong shape message: $(cat "$WORK/err")"
  run 1 "$DLRUN" step "$M" --params missing.st --feed f.st && grep -q "missing.st" "$WORK/err" && ok "step: missing params file -> 1" || bad "step: missing params file"
  # scalars (a param, @step, an input) also load from [1]-shaped tensors; [2] is still an error
  "$ST" write ps.st s F32 1 0.5 s@m F32 1 0.1 s@v F32 1 0.01 @step I32 1 3 || bad "st_tool write"
  "$ST" write fs.st x F32 2,3 1,2,3,-1,0.5,2 k F32 1 0.25 y F32 2,3 0 || bad "st_tool write"
  "$ST" write ps2.st s F32 2 0.5 || bad "st_tool write"
  run 0 "$DLRUN" step "$CLI/scalar.dl" --params ps.st --feed fs.st --out-params ps_out.st && [ "$("$ST" get ps_out.st @step)" = 4 ] &&
    ok "step: scalars from [1]-shaped params and feed" || bad "step: [1]-shaped scalars: $(cat "$WORK/err")"
  run 1 "$DLRUN" step "$CLI/scalar.dl" --params ps2.st --feed fs.st && grep -q "\bs\b" "$WORK/err" && ok "step: a [2] tensor for a scalar param -> 1" || bad "step: [2] for a scalar: $(cat "$WORK/err")"
  run 1 "$DLRUN" step no_such_model.dl --params p.st --feed f.st && grep -q "no_such_model.dl" "$WORK/err" && ok "dlrun: nonexistent model -> 1" || bad "dlrun: nonexistent model"
  run 1 "$DLRUN" train no_such_model.dl --data xor && ok "dlrun train: nonexistent model -> 1"
  run 2 "$DLRUN" step "$M" --params p.st --feed f.st --no-such-option && ok "dlrun: unknown option -> 2"
  run 2 "$DLRUN" frobnicate "$M" && ok "dlrun: unknown subcommand -> 2"
  run 2 "$DLRUN" && ok "dlrun without arguments -> 2"
  run 2 "$DLRUN" train "$M" --data xor --epochs && ok "dlrun: option without its value -> 2"
  # the options the synopsis requires: missing is a bad command line (2), before compiling
  "$ST" write nofeed.st x F32 2,3 1,2,3,-1,0.5,2 || bad "st_tool write"
  expect_err 2 '^dlrun: error: train needs --data DATASET$' "$DLRUN" train "$M" --epochs 1
  expect_err 2 '^dlrun: error: eval needs --data DATASET, --load CKPT$' "$DLRUN" eval "$M"
  expect_err 2 '^dlrun: error: eval needs --load CKPT$' "$DLRUN" eval "$M" --data xor
  expect_err 2 '^dlrun: error: predict needs --load CKPT$' "$DLRUN" predict "$M" --feed nofeed.st --out po.st
  [ ! -e po.st ] && ok "predict without --load wrote nothing" || bad "predict without --load wrote po.st"
  expect_err 2 '^dlrun: error: predict needs --feed FEED.safetensors$' "$DLRUN" predict "$M" --load p.st --out po.st
  expect_err 2 '^dlrun: error: predict needs --out OUT.safetensors$' "$DLRUN" predict "$M" --load p.st --feed nofeed.st
  expect_err 2 '^dlrun: error: step needs --params P.safetensors$' "$DLRUN" step "$M" --feed f.st
  expect_err 2 '^dlrun: error: step needs --feed F.safetensors$' "$DLRUN" step "$M" --params p.st
  run 0 "$DLRUN" predict "$M" --load p.st --feed nofeed.st --out po.st && [ -s po.st ] && ok "predict with --load, --feed, --out" || bad "predict with every option"
  # -D VALUE and --cpu= through dlrun
  expect_err 2 '^dlrun: error: -D B=abc: the value is not an integer$' "$DLRUN" step "$M" --params p.st --feed f.st -D B=abc
  expect_err 2 '^dlrun: error: --cpu= needs a CPU name' "$DLRUN" step "$M" --params p.st --feed f.st --cpu=
  # an unknown CPU: one line, `dlrun: error: ...`, not `error: error: ...` once per JIT part
  if expect_err 2 "^dlrun: error: unknown CPU 'bogus' \\(use native or an LLVM CPU name" "$DLRUN" step "$M" --params p.st --feed f.st --cpu=bogus; then
    [ "$(wc -l <"$WORK/err")" -eq 1 ] && ok "dlrun --cpu=bogus: said once" || bad "dlrun --cpu=bogus: $(cat "$WORK/err")"
  fi
  # the two JIT parts ask about the CPU at once: the probe (it redirects
  # stderr) must not race (a lost warning let LLVM abort one run in three)
  aborted=0
  for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    "$DLRUN" step "$M" --params p.st --feed f.st --cpu=bogus$i >/dev/null 2>&1
    [ $? -eq 2 ] || aborted=$((aborted + 1))
  done
  [ $aborted -eq 0 ] && ok "--cpu=bogusN: exit 2 in 12 runs" || bad "--cpu=bogusN: $aborted of 12 runs did not exit 2"
  # a model without `train` has no loss: eval and predict print what it has (its metrics), no `loss nan`
  sed '/^train /d' "$SRC/examples/xor_mlp.dl" >xor_notrain.dl
  "$ST" write xnt.st W1 F32 2,8 0.5,-0.5,0.5,-0.5,0.5,-0.5,0.5,-0.5,0.5,0.5,-0.5,-0.5,0.5,0.5,-0.5,-0.5 b1 F32 8 0,0,0,0,0,0,0,0 \
    W2 F32 8,2 0.5,-0.5,0.5,-0.5,0.5,-0.5,0.5,-0.5,0.5,0.5,-0.5,-0.5,0.5,0.5,-0.5,-0.5 b2 F32 2 0,0 || bad "st_tool write"
  if run 0 "$DLRUN" eval xor_notrain.dl --data xor --load xnt.st; then
    if grep -q '^test samples 4  acc [0-9.]*$' "$WORK/out" && ! grep -qi 'nan' "$WORK/out"; then ok "eval of a model without train: $(cat "$WORK/out")"
    else bad "eval of a model without train printed: $(cat "$WORK/out")"; fi
  fi
  run 0 "$DLRUN" train "$SRC/examples/xor_mlp.dl" --data xor --epochs 2 --log log.csv &&
    [ "$(head -1 log.csv)" = epoch,train_loss,train_acc,test_loss,test_acc,samples_per_s,seconds ] && ! grep -qi nan log.csv "$WORK/out" &&
    ok "train --log: a loss column for each split, no nan" || bad "train --log: $(cat log.csv)"
  # a library made by dlc: the options of compilation are dlc's (2); a
  # damaged or truncated library is an error naming the file (1), never a crash
  if run 0 "$DLC" "$M" -o small.so; then
    run 0 "$DLRUN" step small.so --params p.st --feed f.st --out-params so_p2.st && cmp -s p2.st so_p2.st &&
      ok "step with small.so: the .dl's result" || bad "step with small.so differs from the .dl's"
    for opt in "-D B=2" "-DB=2" -O0 -O1 -O2 --cpu=native --cpu=x86-64-v3 --verify-each --time-passes --print-after=all; do
      # shellcheck disable=SC2086
      expect_err 2 "^dlrun: error: ${opt//[-=.]/.}: .*apply when compiling a \\.dl model; small.so was already compiled by dlc \\(pass them to dlc\\)$" \
        "$DLRUN" step small.so --params p.st --feed f.st $opt
    done
    expect_err 2 '^dlrun: error: -O0 -D B=2: ' "$DLRUN" bench small.so -O0 -D B=2 --steps 1
    expect_err 2 '^dlrun: error: -D NOPE=8: .*small.so was already compiled by dlc' "$DLRUN" train small.so --data xor -D NOPE=8
    for n in 0 30 64 1000 3000 8000 20000; do
      head -c "$n" small.so >"t$n.so"
      expect_err 1 "^dlrun: error: cannot load t$n.so: (not a shared library made by dlc|truncated or damaged library)" "$DLRUN" step "t$n.so" --params p.st --feed f.st
    done
    # the section header table gone, the file cut in a segment: still caught, by the segments
    python3 - <<'PY' && expect_err 1 '^dlrun: error: cannot load noshdr.so: truncated or damaged library \(segment [0-9]+, ' "$DLRUN" step noshdr.so --params p.st --feed f.st
import struct
b = bytearray(open("small.so", "rb").read())
b[0x28:0x30] = struct.pack("<Q", 0)
open("noshdr.so", "wb").write(b[:len(b) // 2])
PY
    cp small.so c32.so && printf '\001' | dd of=c32.so bs=1 seek=4 conv=notrunc 2>/dev/null
    expect_err 1 '^dlrun: error: cannot load c32.so: an ELF file for another machine' "$DLRUN" step c32.so --params p.st --feed f.st
    printf '%0200d\n' 0 >text.so
    expect_err 1 '^dlrun: error: cannot load text.so: not a shared library made by dlc \(no ELF header\)$' "$DLRUN" step text.so --params p.st --feed f.st
    mkdir dir.so && expect_err 1 '^dlrun: error: cannot load dir.so: not a regular file$' "$DLRUN" step dir.so --params p.st --feed f.st
    mkfifo fifo.so && expect_err 1 '^dlrun: error: cannot load fifo.so: not a regular file$' timeout 10 "$DLRUN" step fifo.so --params p.st --feed f.st
  fi  # class indices out of range are an error (a one-hot row of zeros would
  # change the loss silently): a feed, a dataset with more classes, the C API
  X=$SRC/examples/xor_mlp.dl
  if run 0 "$DLRUN" train "$X" --data xor --epochs 1 --save xp.st; then
    "$ST" write xf.st x F32 4,2 0,0,0,1,1,0,1,1 y I32 4 0,1,2,1 || bad "st_tool write"
    expect_err 1 '^dlrun: error: xf.st: label y: value 2 at index 2 is not a class index in \[0, 2\)$' "$DLRUN" step "$X" --params xp.st --feed xf.st
    "$ST" write xn.st x F32 4,2 0,0,0,1,1,0,1,1 y I32 4 0,-1,1,1 || bad "st_tool write"
    expect_err 1 '^dlrun: error: xn.st: label y: value -1 at index 1 is not a class index in \[0, 2\)$' "$DLRUN" step "$X" --params xp.st --feed xn.st
    "$ST" write xg.st x F32 4,2 0,0,0,1,1,0,1,1 y I32 4 0,1,1,0 || bad "st_tool write"
    run 0 "$DLRUN" step "$X" --params xp.st --feed xg.st && ok "step with class indices in range"
    if run 0 "$DLC" "$X" -o xo.so; then
      expect_err 1 '^dlrun: error: xf.st: label y: value 2 at index 2 is not a class index in \[0, 2\)$' "$DLRUN" step xo.so --params xp.st --feed xf.st
    fi
  fi
  expect_err 1 '^dlrun: error: epoch 1 step 1: label y: value 2 at index [0-9]+ is not a class index in \[0, 2\)$' "$DLRUN" train "$X" --data spiral --epochs 1
  # an option of another subcommand would be ignored: a usage error
  expect_err 2 '^dlrun: error: --epochs is not an option of dlrun step$' "$DLRUN" step "$X" --params xp.st --feed xg.st --epochs 9
  expect_err 2 '^dlrun: error: --save is not an option of dlrun eval$' "$DLRUN" eval "$X" --data xor --load xp.st --save e.st
  expect_err 2 '^dlrun: error: --log is not an option of dlrun bench$' "$DLRUN" bench "$X" --steps 2 --log b.csv
  expect_err 2 '^dlrun: error: --steps is not an option of dlrun train$' "$DLRUN" train "$X" --data xor --steps 3
  [ ! -e e.st ] && [ ! -e b.csv ] && ok "refused runs wrote nothing" || bad "a refused run wrote a file"
  # a run refused by its data writes no log either
  expect_err 1 '^dlrun: error: dataset xor has 4 training samples, fewer than the batch size 8$' "$DLRUN" train "$X" --data xor -D B=8 --log refused.csv
  [ ! -e refused.csv ] && ok "refused train: no --log file" || bad "refused train left refused.csv"
  ;;
xor)
  cd "$WORK" || exit 1
  if run 0 "$DLRUN" train "$SRC/examples/xor_mlp.dl" --data xor --epochs 300; then
    acc=$(grep '^epoch 300/300' "$WORK/out" | grep -o 'train loss [0-9.e+-]*  acc [0-9.]*' | awk '{print $NF}')
    [ "$acc" = "1.0000" ] && ok "xor_mlp: train accuracy $acc after 300 epochs" || { bad "xor_mlp: train accuracy '$acc' != 1.0000"; tail -3 "$WORK/out"; }
  fi
  ;;
bench)
  cd "$WORK" || exit 1
  if run 0 "$DLRUN" bench "$SRC/examples/xor_mlp.dl" --steps 20 --threads 1 --per-kernel; then
    grep -q '^measured peak [0-9.]* GFLOP/s per core' "$WORK/out" && ok "bench: measured peak printed" || bad "bench: no measured peak line"
    for e in 'train step' 'inference'; do
      line=$(grep "^$e " "$WORK/out")
      echo "$line" | grep -Eq 'median [0-9.]+ ms  \(min [0-9.]+, p90 [0-9.]+\)  [0-9]+ steps/s  [0-9]+ samples/s  [0-9.]+ GFLOP/s  [0-9]+% of peak' &&
        ok "bench: $e line has median, spread, samples/s, GFLOP/s and share of peak" || bad "bench: $e line malformed: '$line'"
    done
    grep -q 'xor_mlp.dl:[0-9]*' "$WORK/out" && ok "bench --per-kernel: kernels with source lines" || bad "bench --per-kernel: no per-kernel table"
  fi
  ;;
linreg)
  cd "$WORK" || exit 1
  if run 0 "$DLRUN" train "$SRC/examples/linreg.dl" --data linreg --epochs 5 --save W.safetensors; then
    w=$("$ST" get W.safetensors W | tr '\n' ' '); b=$("$ST" get W.safetensors b)
    echo "W = $w b = $b"
    echo "$w $b" | awk '{d1 = $1 - 2; d2 = $2 + 3.4; d3 = $3 - 4.2; if (d1 < 0) d1 = -d1; if (d2 < 0) d2 = -d2; if (d3 < 0) d3 = -d3;
                        exit !(d1 < 1e-2 && d2 < 1e-2 && d3 < 1e-2)}' && ok "linreg: W ~ [2, -3.4], b ~ 4.2" || bad "linreg: W = $w, b = $b"
  fi
  ;;
checkpoint)
  mkdir "$WORK/ck" && cd "$WORK/ck" || exit 1
  for model in xor_mlp linreg; do
    data=${model%_mlp}
    M=$SRC/examples/$model.dl
    run 0 "$DLRUN" train "$M" --data "$data" --epochs 1 --save ck.safetensors || continue
    want=$(grep '^epoch 1/1' "$WORK/out" | grep -o 'test loss [0-9.e+-]*' | awk '{print $NF}')
    "$ST" validate ck.safetensors >"$WORK/names" && ok "$model: checkpoint is valid safetensors ($(tr '\n' ' ' <"$WORK/names"))" || bad "$model: invalid checkpoint"
    left=$(ls -A | grep -v '^ck.safetensors$' | grep -v '^ck2.safetensors$' | tr '\n' ' ')
    [ -z "$left" ] && ok "$model: no temporary file left behind" || bad "$model: files left behind: $left"
    run 0 "$DLRUN" eval "$M" --data "$data" --load ck.safetensors || continue
    got=$(grep -o 'loss [0-9.e+-]*' "$WORK/out" | tail -1 | awk '{print $NF}')
    [ -n "$want" ] && [ "$want" = "$got" ] && ok "$model: eval --load gives the training run's test loss $got" || bad "$model: eval loss '$got' != training test loss '$want'"
    # saving over an existing checkpoint replaces it
    run 0 "$DLRUN" train "$M" --data "$data" --epochs 1 --seed 5 --load ck.safetensors --save ck.safetensors && "$ST" validate ck.safetensors >/dev/null && ok "$model: --load and --save of the same file"
  done
  # a checkpoint of another model: exit 1, the mismatch named
  run 0 "$DLRUN" train "$SRC/examples/linreg.dl" --data linreg --epochs 1 --save lin.safetensors
  if run 1 "$DLRUN" eval "$SRC/examples/xor_mlp.dl" --data xor --load lin.safetensors; then
    grep -q "W1" "$WORK/err" && ok "--load of another model's checkpoint -> 1, names W1: $(head -1 "$WORK/err")" || bad "--load mismatch message does not name the missing W1: $(cat "$WORK/err")"
  fi
  run 1 "$DLRUN" train "$SRC/examples/xor_mlp.dl" --data xor --epochs 1 --load lin.safetensors && ok "train --load of another model's checkpoint -> 1"
  ;;
cache)
  # the object-code cache (tools/jit_cache.h): a second run loads the first
  # run's code; results are bit-identical with the cache off, on a miss and
  # on a hit; a damaged file is a miss (and is replaced); no files with the
  # cache off or with the per-kernel profile; an unusable directory only
  # turns caching off
  cd "$WORK" || exit 1
  M=$SRC/examples/xor_mlp.dl
  train() { local name=$1; shift; run 0 env "$@" "$DLRUN" train "$M" --data xor --epochs 20 --time-passes --save "$name"; }
  unset DLC_CACHE DLC_CACHE_DIR
  train off.st DLC_CACHE=0 DLC_CACHE_DIR="$WORK/c0" && [ ! -e "$WORK/c0" ] && ok "DLC_CACHE=0: no cache directory" || bad "DLC_CACHE=0 made $WORK/c0"
  if train miss.st DLC_CACHE_DIR="$WORK/c"; then
    n=$(ls "$WORK/c" | grep -c '\.o$')
    [ "$n" -ge 1 ] && ! grep -q 'cached object code' "$WORK/err" && ok "first run: compiled, $n objects stored" || bad "first run: $n objects, $(grep jit "$WORK/err")"
  fi
  if train hit.st DLC_CACHE_DIR="$WORK/c"; then
    grep -q 'jit (cached object code)' "$WORK/err" && ok "second run: code from the cache" || bad "second run: no cache hit: $(grep jit "$WORK/err")"
  fi
  cmp -s off.st miss.st && cmp -s off.st hit.st && ok "trained parameters bit-identical: cache off, miss, hit" || bad "trained parameters differ between cache off, miss and hit"
  # another dlrun binary (a rebuild, here a copy) never takes this one's code
  cp "$DLRUN" "$WORK/dlrun-copy"
  run 0 env DLC_CACHE_DIR="$WORK/c" "$WORK/dlrun-copy" train "$M" --data xor --epochs 20 --time-passes --save copy.st &&
    ! grep -q 'cached object code' "$WORK/err" && cmp -s off.st copy.st && ok "another dlrun binary: compiled, same result" || bad "another dlrun binary used the cache"
  for o in "$WORK"/c/*.o; do head -c 100 "$o" >"$o.part" && mv "$o.part" "$o"; done
  if train torn.st DLC_CACHE_DIR="$WORK/c"; then
    ! grep -q 'cached object code' "$WORK/err" && cmp -s off.st torn.st && ok "damaged objects: compiled again, same result" || bad "damaged objects were used or the result differs"
  fi
  train again.st DLC_CACHE_DIR="$WORK/c" && grep -q 'jit (cached object code)' "$WORK/err" && ok "damaged objects replaced: the next run hits" || bad "damaged objects not replaced"
  # the per-kernel profile's entries call this process's counters: never
  # stored, so a second profiled run times its kernels again
  for i in 1 2; do
    run 0 env DLC_CACHE_DIR="$WORK/cp" "$DLRUN" bench "$M" --steps 5 --threads 1 --per-kernel --time-passes || continue
    calls=$(grep -E '^k[0-9]+_train' "$WORK/out" | awk '{s += $3} END {print s + 0}')
    ! grep -q 'jit (cached object code)' "$WORK/err" && [ "$calls" -gt 0 ] &&
      ok "--per-kernel run $i: compiled, kernels timed ($calls calls)" || bad "--per-kernel run $i: $calls calls, $(grep jit "$WORK/err")"
  done
  train ro.st DLC_CACHE_DIR=/proc/no/such/dir && cmp -s off.st ro.st && ok "unusable cache directory: runs, same result" || bad "unusable cache directory"
  # at most 256 objects: the least recently used go first
  mkdir -p "$WORK/full" && (cd "$WORK/full" && for i in $(seq 1 300); do echo x >"old$i.o"; done && touch -d '2020-01-01' old*.o)
  if train full.st DLC_CACHE_DIR="$WORK/full"; then
    n=$(ls "$WORK/full" | grep -c '\.o$'); mine=$(ls "$WORK/full" | grep -v '^old' | grep -c '\.o$')
    [ "$n" -le 256 ] && [ "$mine" -ge 1 ] && ok "full cache pruned to $n objects, the new ones kept" || bad "cache of $n objects, $mine new"
  fi
  ;;
updates)
  # optimizer state first, then the param from the new state (PyTorch's
  # in-place order): the param's update reads its own buffer and its
  # state's, never the gradient again
  cd "$WORK" || exit 1
  for opt in "sgd(lr=0.5, momentum=0.9):W@momentum" "sgd(lr=0.5, momentum=0.9, weight_decay=0.01):W@momentum" \
             "sgd(lr=0.5, momentum=0.5, nesterov=true):W@momentum" "adam(lr=0.01):W@m W@v" "adamw(lr=0.01, weight_decay=0.1):W@m W@v"; do
    spec=${opt%%:*} states=${opt#*:}
    sed "s/^train loss with .*/train loss with $spec/" "$CLI/small.dl" >m.dl
    run 0 "$DLC" m.dl --emit=opt || continue
    wline=$(grep -n '\[update W\]' "$WORK/out" | cut -d: -f1 | head -1)
    body=$(sed -n "$((wline + 1))p" "$WORK/out")
    fine=1
    for st in $states; do
      sline=$(grep -n "\[update $st\]" "$WORK/out" | cut -d: -f1 | head -1)
      [ -n "$sline" ] && [ -n "$wline" ] && [ "$sline" -lt "$wline" ] && [[ "$body" == *"$st#"* ]] || fine=0
    done
    # nesterov's step still reads the gradient (d + m*buf)
    # W's body reads W's own buffer (the kernel's output), its states and
    # scalars, and no other tensor (the gradient is buffer `W` too, another number)
    own=$(sed -n "${wline}p" "$WORK/out" | grep -o -- '-> W#[0-9]*' | cut -c4-)
    others=$(echo "$body" | grep -Eo '(W|%t[0-9]+)#[0-9]+\[i' | grep -v "^$own\[" | tr '\n' ' ')
    case "$spec" in *nesterov*) ;; *) [ -n "$own" ] && [ -z "$others" ] || fine=0 ;; esac
    [ "$fine" = 1 ] && ok "$spec: $states written first, W from them: $body" || bad "$spec: W's update: $body"
  done
  ;;
ir_golden)
  cd "$CLI" || exit 1
  for f in expected/*.ir; do
    name=$(basename "$f" .ir)
    if run 0 "$DLC" "$name.dl" --emit=ir; then
      diff -u "$f" "$WORK/out" >"$WORK/diff" && ok "$name.dl --emit=ir matches $f" || { bad "$name.dl --emit=ir differs from $f"; cat "$WORK/diff"; }
    fi
  done
  ;;
views)
  # a reshape of a buffer is read through a view in the reshape's shape (by
  # the ReLU mask on the pooled gradient, which the pooling adjoint reads)
  if run 0 "$DLC" "$CLI/flatten_view.dl" --emit=opt; then
    line=$(grep -A1 '_train_mul \[mul\]' "$WORK/out" | grep 'body =')
    echo "$line" | grep -q '\.view2x4x4x4#[0-9]*\[i0, i1, i2, i3\]' &&
      ok "flatten_view.dl: the pooled gradient's mask reads the flatten's gradient through a view" ||
      { bad "flatten_view.dl: no view in the pooled gradient's mask"; echo "    $line"; }
    # (per window; folded into the next convolution's pad by half a window: (i + 1) / 2 - 1)
    grep -A1 'maxpool2d_bwd' "$WORK/out" | grep 'body =' |
      grep -Eq "\[i0, i1, (\(i2 / 2\), \(i3 / 2\)|\(\(\(i2 \+ 1\) / 2\) - 1\), \(\(\(i3 \+ 1\) / 2\) - 1\))\] if .* else 0, 0\)|\[i0, i1, \(i2 / 2\), \(i3 / 2\)\], 0\)" &&
      ok "flatten_view.dl: the pooling adjoint reads the masked gradient per window" ||
      bad "flatten_view.dl: the pooling adjoint does not read the masked gradient"
    grep 'body =' "$WORK/out" | grep -q '/ 64)' && bad "flatten_view.dl: the flat index is still delinearized" ||
      ok "flatten_view.dl: no delinearized flat index"
  fi
  ;;
quiet)
  # LLVM's remarks and warnings on our loops are not printed (a compile, not the cache)
  if DLC_CACHE=0 run 0 "$DLRUN" bench "$CLI/quiet_llvm.dl" --steps 2; then
    [ -s "$WORK/err" ] && { bad "quiet_llvm.dl: the compile printed on stderr"; sed 's/^/    /' "$WORK/err" | head -5; } ||
      ok "quiet_llvm.dl: nothing on stderr"
  fi
  ;;
shift)
  # a 5x5 convolution over a small image: forward and filter gradient read
  # column-shifted copies of the padded image ([B, KW, C, Hp, Wo]), no im2col
  if run 0 "$DLC" "$CLI/conv_shift.dl" --emit=opt; then
    train=$(awk '/entry train/{t=1} /entry eval/{t=0} t' "$WORK/out")
    echo "$train" | grep -q 'conv2d_shift \[shift\] -> %t[0-9]*\.shift[0-9]*#[0-9]* : f32\[2,5,3,14,10\]' &&
      ok "conv_shift.dl: one [2,5,3,14,10] buffer of shifted copies" || bad "conv_shift.dl: no shifted copies"
    n=$(echo "$train" | grep -A1 -E '_train_conv2d(_bwd_filter)? ' | grep -c 'body = .*\.shift[0-9]*#[0-9]*\[')
    [ "$n" = 2 ] && ok "conv_shift.dl: the product and the filter gradient read them" ||
      bad "conv_shift.dl: $n of the product and filter gradient read the shifted copies"
    echo "$train" | grep -q '\[im2col\]' && bad "conv_shift.dl: an im2col buffer is still made" ||
      ok "conv_shift.dl: no im2col buffer"
  fi
  ;;
emit)
  M=$ARG
  runs="ir grad opt llvm:-O0 asm:-O0"
  [ "${8:-}" = fast ] || runs="$runs llvm asm"
  for r in $runs; do
    kind=${r%%:*} opt=; [ "$r" != "$kind" ] && opt=${r#*:}
    run 0 "$DLC" "$M" --emit=$kind $opt || continue
    [ -s "$WORK/out" ] && ok "--emit=$kind $opt $M" || bad "--emit=$kind $opt $M printed nothing"
    if [ "$kind" = grad ] && grep -q '^train ' "$M"; then
      base=$(basename "$M")
      # the train graph's backward and update sections: every value line has a location
      awk -v base="$base" '
        /mode=train/ { train = 1 }
        train && /^  ; backward/ { sec = "b"; nb++; next }
        train && /^  ; update/ { sec = "u"; nu++; next }
        train && /^  ; / { sec = ""; next }
        train && /^}/ { train = 0; sec = "" }
        sec != "" && /^  %/ { n[sec]++; if ($0 !~ ("# .*" base ":[0-9]+:[0-9]+$")) { print "    no location: " $0; badl++ } }
        END { if (!nb || !nu || !n["b"] || !n["u"] || badl) exit 1 }' "$WORK/out" >"$WORK/chk" &&
        ok "--emit=grad $base: ; backward and ; update lines carry $base:LINE:COL" ||
        { bad "--emit=grad $base: missing sections or locations"; head -20 "$WORK/chk"; }
    fi
  done
  ;;
*) echo "unknown group $GROUP"; exit 2 ;;
esac
echo "$GROUP: $FAILS failure(s)"
[ "$FAILS" -eq 0 ]
