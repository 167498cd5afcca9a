#!/usr/bin/env bash
# Run a gpt-scratch model in llama.cpp: export to GPT-2 (`python -m gpt_scratch.convert to-gpt2`), convert with
# llama.cpp's own convert_hf_to_gguf.py, load the GGUF with llama-cpp-python and compare tokenizer and greedy tokens
# with ours. Not part of the test suite: llama-cpp-python builds llama.cpp from source (about 10 minutes).
# Usage: bash bench/llama_cpp.sh [WORK_DIR] [MODEL_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
version=0.3.36
mkdir -p "$work"
python "$here/bench/consumers.py" prepare "$work" ${2:+"$2"}

if [ ! -x "$work/venv-llama/bin/python" ]; then
  python3 -m venv "$work/venv-llama"
  "$work/venv-llama/bin/pip" install -q "llama-cpp-python==$version" torch==2.13.0 numpy safetensors sentencepiece \
    "transformers>=4.57"
fi
# The converter ships in the llama.cpp source that llama-cpp-python vendors, with the gguf-py it was written for.
if [ ! -d "$work/llama_cpp_python-$version" ]; then
  "$work/venv-llama/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
fi
llama_cpp_src="$work/llama_cpp_python-$version/vendor/llama.cpp"
PYTHONPATH="$llama_cpp_src/gguf-py" "$work/venv-llama/bin/python" "$llama_cpp_src/convert_hf_to_gguf.py" \
  "$work/gpt2" --outfile "$work/model.gguf" --outtype f32
"$work/venv-llama/bin/python" "$here/bench/consumers.py" llama_cpp "$work"
