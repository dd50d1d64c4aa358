#!/bin/sh
# render_dot.sh — draws a model's training graph with Graphviz:
# `dlc MODEL.dl --emit=dot | dot -Tsvg`. Forward, backward and update ops
# are blue, orange and green; leaves have their own shapes; each fused kernel
# is a dashed cluster around its ops (when the lowering records them).
#   tools/render_dot.sh [MODEL.dl [OUT.svg]]
# defaults: examples/mnist_mlp.dl -> examples/mnist_mlp.svg. DLC=path/to/dlc
# overrides the compiler (default: build/tools/dlc, then dlc on PATH).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/examples/mnist_mlp.dl}
out=${2:-${model%.dl}.svg}
dlc=${DLC:-$root/build/tools/dlc}
[ -x "$dlc" ] || dlc=$(command -v dlc) || { echo "render_dot.sh: no dlc (build first or set DLC)" >&2; exit 2; }
command -v dot >/dev/null || { echo "render_dot.sh: Graphviz 'dot' is not installed" >&2; exit 2; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$dlc" "$model" --emit=dot > "$tmp"
dot -Tsvg "$tmp" > "$out"
echo "wrote $out"
