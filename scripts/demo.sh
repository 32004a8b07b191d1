#!/usr/bin/env bash
# Sets up the default environment (.venv5: the newest transformers 5.x), then runs the end-to-end demo (no download; see demo/__main__.py, or pass --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --main-only
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv5/bin/python -m hf_tformer_demo "$@"
