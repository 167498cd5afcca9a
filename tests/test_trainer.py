"""transformers.Trainer trains the model as it is: no adapter code."""

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.tokenizer import gpt2_tokenizer

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def test_trainer_lowers_the_loss_with_gradient_accumulation(tmp_path):
    tokenizer = gpt2_tokenizer()
    ids = tokenizer(TEXT)["input_ids"]
    blocks = [ids[i : i + 32] for i in range(0, len(ids) - 32, 32)]
    dataset = Dataset.from_dict({"input_ids": blocks})
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", resid_pdrop=0.0, embd_pdrop=0.0))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=30,
        learning_rate=3e-3,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 5
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 3.0, losses
    trainer.save_model(str(tmp_path / "final"))
    reloaded = GPTScratchForCausalLM.from_pretrained(tmp_path / "final")
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight)
