"""Under torchrun: score the benchmark tasks with an Accelerator across processes and write rank 0's result as JSON.

torchrun --nproc_per_node 2 tests/dist_tasks_worker.py MODEL_DIR DATA_JSON OUT_JSON NUM_FEWSHOT LIMIT
"""

import json
import sys

from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_scratch.tasks import evaluate_tasks


def main() -> None:
    model_dir, data, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    num_fewshot, limit = int(sys.argv[4]), int(sys.argv[5])
    accelerator = Accelerator(cpu=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    result = evaluate_tasks(model, tokenizer, list(data), data, num_fewshot, limit, 8, accelerator)
    if accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump(result, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
