"""Under torchrun: score HellaSwag with an Accelerator across processes and write rank 0's result as JSON.

torchrun --nproc_per_node 2 tests/dist_hellaswag_worker.py MODEL_DIR DATA OUT_JSON LIMIT
"""

import json
import sys

from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_scratch.hellaswag import evaluate_hellaswag


def main() -> None:
    model_dir, data, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    accelerator = Accelerator(cpu=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    result = evaluate_hellaswag(model, tokenizer, data, batch_size=8, limit=limit, accelerator=accelerator)
    if accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump(result, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
