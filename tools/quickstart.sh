#!/usr/bin/env bash
# The README's first command: install what is missing, build dlc, and train
# the Fashion-MNIST MLP of examples/mnist_mlp.dl for three epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
build/tools/dlrun train examples/mnist_mlp.dl --data fashion-mnist --epochs 3
