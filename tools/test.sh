#!/usr/bin/env bash
# The README's second command: install what is missing, build dlc, and run
# the whole test suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
# JIT-compiled code is cached in the build tree, not the user's cache
# (the suite compiles each model once per build anyway; tests/cli "cache")
DLC_CACHE_DIR="$PWD/build/jit-cache" ctest --test-dir build -j2 --output-on-failure
