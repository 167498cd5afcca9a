"""Under torchrun: score HellaSwag, or the benchmark tasks, with an Accelerator across processes and write rank 0's
result as JSON.

torchrun --nproc_per_node 2 tests/dist_eval_worker.py hellaswag MODEL_DIR DATA OUT_JSON LIMIT
torchrun --nproc_per_node 2 tests/dist_eval_worker.py tasks MODEL_DIR DATA_JSON OUT_JSON LIMIT NUM_FEWSHOT
torchrun --nproc_per_node 2 tests/dist_eval_worker.py core MODEL_DIR BUNDLE_DIR OUT_JSON MAX_PER_TASK
"""

import json
import sys

from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_scratch.hellaswag import evaluate_hellaswag
from gpt_scratch.tasks import evaluate_tasks
from gpt_scratch.tasks.core import evaluate_core


def main() -> None:
    what, model_dir, data, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    accelerator = Accelerator(cpu=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    if what == "hellaswag":
        result = evaluate_hellaswag(model, tokenizer, data, batch_size=8, limit=limit, accelerator=accelerator)
    elif what == "core":
        result = evaluate_core(model, tokenizer, data, max_per_task=limit, batch_size=8, accelerator=accelerator)
        result = {key: result[key] for key in ("core", "tasks", "correct")}  # losses: each process's own items
    else:
        tasks = json.loads(data)
        result = evaluate_tasks(model, tokenizer, list(tasks), tasks, int(sys.argv[6]), limit, 8, accelerator)
    if accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump(result, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
