#!/usr/bin/env bash
# Installs what dlc needs and is missing, with apt-get (sudo when not root):
# LLVM 19, cmocka, OpenMP, zlib, CMake and compilers, Fashion-MNIST.
set -euo pipefail
pkgs=(llvm-19-dev libcmocka-dev libomp-dev zlib1g-dev cmake gcc make dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
