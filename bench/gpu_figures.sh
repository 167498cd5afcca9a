#!/usr/bin/env bash
# The GPU figures in one command, for a lent H100/H200 machine (../shared/GPU_NOTES.md says what to carry):
# training tokens/s, MFU and peak memory of GPT-2 124M (ours against transformers' GPT2LMHeadModel, then the modern
# recipe against our GPT-2), both compiled in bf16, and greedy generation tokens/s. Each step has its own time limit
# so one that hangs still leaves the others' figures; everything goes to $OUT/gpu.log (or ./gpu.log).
#
#     bash bench/gpu_figures.sh
set -u
log="${OUT:-.}/gpu.log"
step() {  # step SECONDS COMMAND...: run one measurement under a time limit, keep going if it fails
    local limit=$1
    shift
    echo "=== $* (limit ${limit}s)" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -vE "^\s*$|Warning|warn\(" | tee -a "$log"
    echo "=== exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" |
    tee -a "$log"
step 200 python3 bench/train_speed.py --preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile
step 200 python3 bench/train_speed.py --modern --preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile
step 110 python3 bench/generation_speed.py --preset gpt2 --dtype bfloat16
