#!/bin/sh
# Tests of `dlc -o` (tools/aot.c), registered by tests/embed.cmake:
#
#   aot_test.sh GROUP DLC CC SRCDIR BINDIR WORK
#
#   link_o         dlc xor_mlp.dl -o xor_mlp.o; `CC one_model.c xor_mlp.o -lm
#                  -fopenmp` links (the object holds the runtime) and runs;
#                  the object defines only the C API; no temporary is left
#   two_models     xor_mlp.o and linreg.o in one program (examples/embed/main.c)
#   reserved       reserved model names are user errors (exit 1) at the name,
#                  with the source line and a caret, and write nothing
#   self_contained dlc holds no path into the source or build tree, and
#                  (where `unshare` can mount) builds a .so and a .o with both
#                  trees hidden
#
# DLC_TEST_LINK_FLAGS: flags a program linking an object of this build needs
# (a sanitizer build's runtime is instrumented: -fsanitize=address,undefined).
#
# Exit status: 0 pass, 1 fail, 77 skipped (SKIP_RETURN_CODE).
set -u
lf=${DLC_TEST_LINK_FLAGS:-}
if [ $# -ne 6 ]; then
  echo "usage: $0 GROUP DLC CC SRCDIR BINDIR WORK" >&2
  exit 2
fi
group=$1 dlc=$2 cc=$3 src=$4 bin=$5 work=$6/$1
here=$src/tests/aot
rm -rf "$work" && mkdir -p "$work/tmp" || exit 1
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

case $group in
link_o)
  TMPDIR=$work/tmp "$dlc" "$src/examples/xor_mlp.dl" -o "$work/xor_mlp.o" || fail "dlc -o xor_mlp.o"
  [ -f "$work/xor_mlp.h" ] || fail "no xor_mlp.h beside xor_mlp.o"
  [ -z "$(ls -A "$work/tmp")" ] || fail "dlc left temporary files: $(ls -A "$work/tmp")"
  echo "\$ $cc one_model.c xor_mlp.o -lm -fopenmp"
  "$cc" -I"$work" "$here/one_model.c" "$work/xor_mlp.o" -lm -fopenmp $lf -o "$work/one_model" || fail "link"
  "$work/one_model" "$work/xor.safetensors" || fail "run"
  if command -v nm >/dev/null; then
    # only the C API is global: the runtime (dlrt_*, dlc_api_*), the entries
    # and dlc_model_describe are local
    extra=$(nm -g --defined-only "$work/xor_mlp.o" | awk 'NF == 3 {print $3}' |
      grep -v -x -E 'xor_mlp_(create|destroy|error|num_tensors|tensor_info|predict|train_step|eval_step|save|load|set_threads|describe)')
    [ -z "$extra" ] || fail "global symbols beyond the C API: $extra"
    nm "$work/xor_mlp.o" | grep -q ' t dlrt_parallel_for$' || fail "the runtime is not in the object"
  fi
  ;;
two_models)
  for m in xor_mlp linreg; do
    "$dlc" "$src/examples/$m.dl" -o "$work/$m.o" || fail "dlc -o $m.o"
  done
  echo "\$ $cc main.c xor_mlp.o linreg.o -lm -fopenmp"
  "$cc" -I"$work" "$src/examples/embed/main.c" "$work/xor_mlp.o" "$work/linreg.o" -lm -fopenmp $lf -o "$work/embed_o" ||
    fail "link two models' objects"
  "$work/embed_o" "$work/xor.safetensors" || fail "run"
  ;;
reserved)
  # expect FILE.dl OUT LOCATION NAME: exit 1, `LOCATION: error: the model
  # name 'NAME' ...`, the source line and a caret; no library, no header
  expect() {
    (cd "$here" && "$dlc" "$1" -o "$work/$2") >"$work/out" 2>&1
    rc=$?
    cat "$work/out"
    [ $rc -eq 1 ] || fail "$1: exit $rc, want 1"
    head -1 "$work/out" | grep -q -F "$3: error: the model name '$4'" || fail "$1: want '$3: error: ...'"
    sed -n 3p "$work/out" | grep -q '^ *^$' || fail "$1: no caret line"
    [ ! -e "$work/$2" ] && [ ! -e "$work/${2%.*}.h" ] || fail "$1: output written"
  }
  expect dlrt.dl dlrt.so dlrt.dl:1:1 dlrt
  expect reserved_model.dl dlc_api.o reserved_model.dl:2:7 dlc_api
  expect libc_clash.dl pthread.so libc_clash.dl:2:7 pthread
  grep -q "pthread_create" "$work/out" || fail "the libc clash names pthread_create"
  # the audit's repro clash/dlrt_model.dl: named after its file
  sed 's/^model dlc_api$//' "$here/reserved_model.dl" >"$work/dlrt_model.dl"
  (cd "$work" && "$dlc" dlrt_model.dl -o "$work/m.so") >"$work/out" 2>&1
  [ $? -eq 1 ] && grep -q -F "dlrt_model.dl:1:1: error: the model name 'dlrt_model' is reserved" "$work/out" ||
    fail "dlrt_model.dl: $(cat "$work/out")"
  # near misses are fine
  sed 's/^model dlc_api$/model dlrtnet/' "$here/reserved_model.dl" >"$work/ok.dl"
  "$dlc" "$work/ok.dl" -o "$work/ok.so" || fail "model dlrtnet"
  ;;
self_contained)
  ran=0
  # no path into the source or build tree in the loaded image: the headers
  # and libdlrt.a are embedded (debug info, stripped here, may name sources)
  # (an instrumented build's sanitizer metadata names every source file)
  if [ -n "$lf" ]; then
    echo "skip the path check: an instrumented build ($lf)"
  elif command -v strip >/dev/null && command -v strings >/dev/null; then
    strip -o "$work/dlc.stripped" "$dlc" || fail "strip"
    strings -n 4 "$work/dlc.stripped" >"$work/strings"
    if grep -n -x -F -e "$src" -e "-I$src" "$work/strings" || grep -n -F -e "$src/runtime" -e "$bin/" "$work/strings"; then
      fail "dlc names the source or build tree (above)"
    fi
    ran=1
  fi
  # the audit repro: both trees hidden under empty mounts
  t=$(mktemp -d) || fail mktemp
  trap 'rm -rf "$t"' EXIT
  case $t/ in "$src"/* | "$bin"/*) echo "skip unshare: $t is inside a hidden tree" ;; *)
    cp "$dlc" "$t/dlc" && cp "$src/examples/xor_mlp.dl" "$t/" || fail copy
    us=
    if unshare -m true 2>/dev/null; then us="unshare -m"
    elif unshare -rm true 2>/dev/null; then us="unshare -rm"
    fi
    if [ -z "$us" ] || ! $us sh -c "mount -t tmpfs none '$bin' && mount -t tmpfs none '$src'" 2>/dev/null; then
      echo "skip unshare: cannot mount in a new namespace"
    else
      echo "\$ $us sh -c 'mount -t tmpfs none $bin; mount -t tmpfs none $src; dlc xor_mlp.dl -o x.so; dlc xor_mlp.dl -o x.o'"
      $us sh -c "mount -t tmpfs none '$bin' && mount -t tmpfs none '$src' && [ ! -e '$src/runtime/dlrt_api.h' ] &&
        cd '$t' && ./dlc xor_mlp.dl -o '$t/x.so' && ./dlc xor_mlp.dl -o '$t/xor_mlp.o'" || fail "dlc with the trees hidden"
      "$cc" -I"$t" "$here/one_model.c" "$t/xor_mlp.o" -lm -fopenmp $lf -o "$t/one_model" && "$t/one_model" "$t/x.st" ||
        fail "the object made with the trees hidden"
      ! command -v nm >/dev/null || nm -D "$t/x.so" | grep -q ' T xor_mlp_create$' || fail "x.so"
      ran=1
    fi
  esac
  [ $ran -eq 1 ] || exit 77
  ;;
*)
  echo "unknown group $group" >&2
  exit 2
  ;;
esac
echo "PASS $group"
