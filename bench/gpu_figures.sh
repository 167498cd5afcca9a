#!/usr/bin/env bash
# The GPU figures, for a lent H100/H200 machine (../shared/GPU_NOTES.md says what to carry): training tokens/s, MFU
# and peak memory of GPT-2 124M (ours against transformers' GPT2LMHeadModel, then the modern recipe against our GPT-2),
# both compiled in bf16; then peak memory of the modern recipe's step with the full logits against the chunked head +
# loss, FP8 blocks against bf16 (torchao, from .compat/torchao when carried there), FSDP through `accelerate launch`
# (train, checkpoint, resume, export) and greedy generation tokens/s. Each step has its own time limit so one that
# hangs still leaves the others' figures; everything goes to $OUT/gpu.log (or ./gpu.log). About 15 minutes in all:
# a command of the device tool runs one part at a time.
#
#     bash bench/gpu_figures.sh        # both parts
#     bash bench/gpu_figures.sh 1      # the two training comparisons (about 7 minutes)
#     bash bench/gpu_figures.sh 2      # memory, FP8, FSDP, generation (about 8 minutes)
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
part=${1:-all}
if [ -d .compat/torchao ]; then export PYTHONPATH=".compat/torchao${PYTHONPATH:+:$PYTHONPATH}"; fi
shape=(--preset gpt2 --seq-len 1024 --micro-batch 64 --bf16 --compile)
if [ "$part" != 2 ]; then
    step 200 python3 bench/train_speed.py "${shape[@]}"
    step 200 python3 bench/train_speed.py --modern "${shape[@]}"
fi
if [ "$part" != 1 ]; then
    step 150 python3 bench/head_loss_memory.py --device cuda --bf16 --compile --micro-batch 64 --steps 4 \
        --variants standard,chunked
    step 150 python3 bench/train_speed.py --fp8 "${shape[@]}" --rounds 2
    step 120 bash bench/fsdp_gpu.sh "${OUT:-.}/fsdp"
    step 110 python3 bench/generation_speed.py --preset gpt2 --dtype bfloat16
fi
