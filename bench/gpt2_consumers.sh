#!/usr/bin/env bash
# Export a gpt-scratch model to GPT-2 format and run it in real GPT-2 consumers from PyPI, each in its own venv:
# CTranslate2 (ct2-transformers-converter) and ONNX Runtime (optimum-cli export onnx). Not part of the test suite:
# it downloads a few hundred MB of packages. Usage: bash bench/gpt2_consumers.sh [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
python "$here/bench/consumers.py" prepare "$work"

if [ ! -x "$work/venv-ct2/bin/python" ]; then
  python3 -m venv "$work/venv-ct2"
  "$work/venv-ct2/bin/pip" install -q torch==2.13.0
  "$work/venv-ct2/bin/pip" install -q "transformers>=4.45,<5" ctranslate2
fi
"$work/venv-ct2/bin/ct2-transformers-converter" --model "$work/gpt2" --output_dir "$work/ct2" --force
"$work/venv-ct2/bin/python" "$here/bench/consumers.py" ctranslate2 "$work"

if [ ! -x "$work/venv-onnx/bin/python" ]; then
  python3 -m venv "$work/venv-onnx"
  "$work/venv-onnx/bin/pip" install -q torch==2.13.0
  "$work/venv-onnx/bin/pip" install -q "optimum-onnx[onnxruntime]"
fi
"$work/venv-onnx/bin/optimum-cli" export onnx --model "$work/gpt2" --task text-generation-with-past "$work/onnx"
"$work/venv-onnx/bin/python" "$here/bench/consumers.py" onnxruntime "$work"
"$work/venv-ct2/bin/pip" list 2>/dev/null | grep -iE "^(ctranslate2|transformers) "
"$work/venv-onnx/bin/pip" list 2>/dev/null | grep -iE "^(onnxruntime|optimum|optimum-onnx|transformers) "
