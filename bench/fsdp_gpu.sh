#!/usr/bin/env bash
# FSDP through Accelerate, as a user runs it, on one GPU: `accelerate launch --config_file fsdp.yaml train.py`
# (FSDP2, each block wrapped, sharded checkpoints) trains configs/tiny.yaml for 20 steps with checkpoints at 10 and
# 20 and exports; a second run resumes from the first run's step-10 checkpoint to step 20 and exports; the two
# exports must hold the same weights, and load as ordinary models. Accelerate sets up FSDP only on accelerators: on
# a machine without GPUs this runs DDP and says so (tests/test_train.py checks that warning).
#
#     bash bench/fsdp_gpu.sh [WORK_DIR]
set -euo pipefail
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cat >"$work/fsdp.yaml" <<EOF
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 1
mixed_precision: bf16
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: GPTScratchBlock
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_reshard_after_forward: true
EOF
train() {  # train RUN_DIR ARGS...: the launcher as a user types it
    local run_dir=$1
    shift
    python3 -m accelerate.commands.launch --config_file "$work/fsdp.yaml" train.py configs/tiny.yaml \
        --run_dir "$run_dir" --max_steps 20 --checkpoint_interval 10 --keep_checkpoints 3 --eval_interval 10 "$@"
}
train "$work/continuous"
train "$work/resumed" --resume "$work/continuous/checkpoints/step-000010"
python3 - "$work" <<'EOF'
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

work = Path(sys.argv[1])
models = [AutoModelForCausalLM.from_pretrained(work / run / "model", trust_remote_code=True) for run in
          ("continuous", "resumed")]
first, second = (model.state_dict() for model in models)
differences = {name: (first[name] - second[name]).abs().max().item() for name in first}
print(f"FSDP exports: {len(first)} tensors, largest difference continuous vs resumed {max(differences.values()):.3g}")
assert all(torch.equal(first[name], second[name]) for name in first), "resume did not reach the same weights"
print("FSDP run: trained, checkpointed, resumed to the same weights, exported as an ordinary model")
EOF
