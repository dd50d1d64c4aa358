#!/bin/sh
# run.sh — random differential check of dlc against PyTorch (see README.md):
# `dlrun step` on every case (check.py), then `dlrun predict` (check_predict.py).
# usage: tools/refcheck/run.sh [DLRUN] [SEED...]
#   DLRUN  the dlrun to check (default: build/tools/dlrun)
#   SEED   one or more seeds (default: 1); COUNT cases each (env, default 60)
# Keeps the cases of failing seeds in $KEEP (env, default /tmp/refcheck-SEED).
# FLAGS (env) adds options to every `dlrun step`, e.g. FLAGS=-O0; AOT=1 runs
# dlrun on a library made by `dlc MODEL.dl -o model.so` instead of the .dl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dlrun=${1:-$root/build/tools/dlrun}
[ $# -gt 0 ] && shift
seeds=${*:-1}
count=${COUNT:-60}
python=${PYTHON:-/usr/bin/python3}
check=${CHECK:-$root/../shared/conformance/check.py}
[ -x "$dlrun" ] || { echo "run.sh: no dlrun at $dlrun" >&2; exit 2; }
[ -f "$check" ] || { echo "run.sh: no check.py at $check (set CHECK=)" >&2; exit 2; }
status=0
if [ -n "${FLAGS:-}${AOT:-}" ]; then  # check.py runs DLRUN as given: wrap it
  wrap=$(mktemp "${TMPDIR:-/tmp}/refcheck-dlrun-XXXXXX")
  if [ -n "${AOT:-}" ]; then
    # AOT=1: `dlc MODEL.dl -o model.so` (the dlc beside DLRUN), then dlrun on the library
    cat > "$wrap" <<WRAP
#!/bin/sh
cmd=\$1 model=\$2
shift 2
d=\$(mktemp -d "\${TMPDIR:-/tmp}/refcheck-aot-XXXXXX")
"$(dirname "$dlrun")/dlc" "\$model" -o "\$d/model.so" ${FLAGS:-} || { rm -rf "\$d"; exit 3; }
"$dlrun" "\$cmd" "\$d/model.so" "\$@" ${FLAGS:-}
rc=\$?
rm -rf "\$d"
exit \$rc
WRAP
  else
    printf '#!/bin/sh\nexec "%s" "$@" %s\n' "$dlrun" "$FLAGS" > "$wrap"
  fi
  chmod +x "$wrap"
  trap 'rm -f "$wrap"' EXIT
  dlrun=$wrap
fi
for seed in $seeds; do
  dir=$(mktemp -d "${TMPDIR:-/tmp}/refcheck-$seed-XXXXXX")
  "$python" "$here/gen_cases.py" --seed "$seed" --count "$count" --out "$dir" > /dev/null
  ok=1
  "$python" "$check" "$dlrun" "$dir"/*/ || ok=0
  # predict: only the failures and the count
  CONFORMANCE=$(dirname "$check") "$python" "$here/check_predict.py" "$dlrun" "$dir"/*/ > "$dir/predict.log" || ok=0
  grep -v '^ok' "$dir/predict.log" || true
  if [ $ok = 1 ]; then
    rm -rf "$dir"
  else
    status=1
    keep=${KEEP:-/tmp/refcheck-$seed}
    rm -rf "$keep" && mv "$dir" "$keep"
    echo "seed $seed: failing cases kept in $keep"
  fi
done
exit $status
