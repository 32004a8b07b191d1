#!/usr/bin/env bash
# Creates the two test environments from the repo's own files (idempotent: an up-to-date venv is reused).
#   .venv   transformers 4.57.x + optimum-onnx + onnxruntime (constraints.txt)
#   .venv5  transformers 5.x, modeling only (constraints-v5.txt)
# torch is installed first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

make_env() {  # make_env DIR CONSTRAINTS EXTRAS
  local dir=$1 constraints=$2 extras=$3 stamp
  stamp="$dir/.hf_tformer-setup-$(cat "$constraints" pyproject.toml | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ]; then return 0; fi
  echo "[setup] creating $dir from $constraints"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  "$dir/bin/python" -m pip install -q -c "$constraints" -e ".[$extras]"
  rm -f "$dir"/.hf_tformer-setup-*
  touch "$stamp"
}

make_env .venv constraints.txt onnx,dev,clients,demo
if [ "${1:-}" != "--main-only" ]; then
  make_env .venv5 constraints-v5.txt dev,clients
fi
