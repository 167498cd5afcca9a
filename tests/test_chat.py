"""Chat fine-tuning: conversation rows as data, the loss on the answers as TRL's SFTTrainer computes it, packed
conversations that never see each other, a template that travels with the model, generation that stops at a turn's
end, and bad rows said in one line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from test_train import final_weights, kill_after_checkpoint
from train_runs import ROOT, free_port, run_train
from transformers import AutoTokenizer

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.chat_template import END_OF_TURN, fit_model_to_tokenizer, with_chat_template
from gpt_scratch.conversations import conversation
from gpt_scratch.data import TextSource
from gpt_scratch.data.mixture import MixtureEntry
from gpt_scratch.data.sft import ConversationBatches, encode
from gpt_scratch.tokenizer import gpt2_tokenizer
from gpt_scratch.training.step import train_step

NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}  # train mode, yet deterministic
WORDS = ["apple", "pear", "plum", "river", "stone", "cloud", "green", "small", "quick", "slow", "bright", "cold"]


def conversations(count: int, seed: int) -> list[dict]:
    """Multi-turn conversations, a system message in every other one, of varied lengths."""
    rng = __import__("random").Random(seed)

    def say(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    rows = []
    for index in range(count):
        messages = [{"role": "system", "content": say(2, 5)}] if index % 2 else []
        for _ in range(rng.randint(1, 3)):
            messages += [{"role": "user", "content": say(1, 8)}, {"role": "assistant", "content": say(1, 12)}]
        rows.append({"messages": messages})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def as_prompt_completion(rows: list[dict], strings: bool) -> list[dict]:
    """Each conversation's last assistant turn as the completion of what comes before it."""
    out = []
    for row in rows:
        *prompt, completion = row["messages"]
        if strings:
            out.append({"prompt": " ".join(m["content"] for m in prompt), "completion": " " + completion["content"]})
        else:
            out.append({"prompt": prompt, "completion": [completion]})
    return out


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory):
    """GPT-2's tokenizer with the chat template, saved and loaded back as a user's process would read it."""
    directory = tmp_path_factory.mktemp("chat-tokenizer")
    with_chat_template(gpt2_tokenizer()).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def split_window(inputs: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> list[tuple[list, list]]:
    """A packed window back into its sequences: (tokens, counted target flags) each, from the restarting positions."""
    starts = [i for i, p in enumerate(positions.tolist()) if p == 0] + [len(positions)]
    return [(inputs[a:b].tolist(), (targets[a:b] != -100).tolist()) for a, b in zip(starts, starts[1:])]


def test_packed_conversations_count_exactly_the_assistant_tokens_apply_chat_template_marks(tmp_path, chat_tokenizer):
    """Multi-turn conversations with a system message: every window holds whole conversations with positions
    restarting at each; the targets counted are exactly the tokens ``apply_chat_template(...,
    return_assistant_tokens_mask=True)`` marks (each assistant turn and its end-of-turn token), nothing else; a
    conversation longer than the window is cut and counted."""
    rows = conversations(40, seed=1)
    rows.append({"messages": [{"role": "user", "content": "long"}, {"role": "assistant", "content": "apple " * 80}]})
    source = TextSource(str(write_rows(tmp_path / "chat.jsonl", rows)))
    data = ConversationBatches(source, chat_tokenizer, batch_size=4, seq_len=64, shuffle_buffer=1)
    reference = {}
    for row in rows:
        rendered = chat_tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                      return_assistant_tokens_mask=True)  # fmt: skip
        reference[tuple(rendered["input_ids"][:65])] = rendered["assistant_masks"][:65]
    seen, long_ones = 0, 0
    while seen < len(rows):
        for window in zip(*data.next_batch()):
            for tokens, counted_targets in split_window(*window):
                if set(tokens) == {chat_tokenizer.eos_token_id}:
                    continue  # the window's padding
                key = next(k for k in reference if list(k[: len(tokens)]) == tokens)
                long_ones += len(key) == 65  # the one longer than a window, cut to T + 1 tokens
                mask = reference[key]
                # the target of token i is token i + 1: counted when the template marks token i + 1
                assert counted_targets[: len(mask) - 1] == [bool(m) for m in mask[1:]][: len(tokens)]
                seen += 1
    assert long_ones and data.truncated == long_ones


@pytest.mark.parametrize("data_format", ["messages", "prompt_completion-messages", "prompt_completion-strings"])
def test_a_steps_loss_equals_trl_sft_trainers_on_the_same_examples_and_weights(tmp_path, chat_tokenizer, data_format):
    """The loss of a training step (``train_step`` over ConversationBatches from a file, 2 micro-batches) equals TRL
    SFTTrainer's on the examples that step drew, packed padding-free: the mean over the counted tokens of the whole
    step (TRL: ``assistant_only_loss`` for conversations, its default ``completion_only_loss`` for prompt-completion),
    fp32, within 1e-5. (An unpadded vocabulary: TRL's fused head scores every row of the head, padded ones too.)"""
    from trl import SFTConfig, SFTTrainer

    rows = conversations(12, seed=2)
    kind = data_format.split("-")[0]
    if kind == "prompt_completion":
        rows = as_prompt_completion(rows, strings=data_format.endswith("strings"))
    source = TextSource(str(write_rows(tmp_path / "chat.jsonl", rows)))
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=50257, **NO_DROPOUT))
    fit_model_to_tokenizer(model, chat_tokenizer, print)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    data = ConversationBatches(source, chat_tokenizer, batch_size=2, seq_len=96, shuffle_buffer=4)
    drawn_windows = []
    original = data.next_batch

    def next_batch():
        batch = original()
        drawn_windows.append(batch)
        return batch

    data.next_batch = next_batch
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ours, _ = train_step(model, model, data, [optimizer], [scheduler], accelerator, 2, 0.0)
    # The examples the step drew, recognised by their tokens among the file's rows (repeats included).
    encoded = {tuple(encode(conversation(row, kind, "test"), chat_tokenizer)[0]): row for row in rows}
    drawn = []
    for batch in drawn_windows:
        for window in zip(*batch):
            for tokens, _ in split_window(*window):
                if set(tokens) != {chat_tokenizer.eos_token_id}:
                    drawn.append(next(row for key, row in encoded.items() if list(key[: len(tokens)]) == tokens))
    assert len(drawn) > len(rows)  # the stream went round the file: some rows twice
    model.load_state_dict(state)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, packing=True, padding_free=True,
                     assistant_only_loss=kind == "messages", max_length=8192, per_device_train_batch_size=len(drawn),
                     report_to=[], shuffle_dataset=False)  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(drawn), processing_class=chat_tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        theirs = trainer.compute_loss(model, batch)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_a_packed_windows_logits_equal_each_conversations_alone(tmp_path, chat_tokenizer):
    """Restarting positions keep attention inside each conversation (both architectures): a packed window's logits
    equal each conversation's run alone."""
    source = TextSource(str(write_rows(tmp_path / "chat.jsonl", conversations(20, seed=3))))
    inputs, _, positions = ConversationBatches(source, chat_tokenizer, batch_size=2, seq_len=128).next_batch()
    for modern in (False, True):
        torch.manual_seed(0)
        extra = {"position_embedding_type": "rope", "norm_type": "rmsnorm", "qk_norm": True} if modern else {}
        model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=len(chat_tokenizer), **extra))
        model.eval()
        with torch.no_grad():
            packed = model(input_ids=inputs, position_ids=positions).logits
            for row in range(len(inputs)):
                starts = [i for i, p in enumerate(positions[row].tolist()) if p == 0] + [inputs.shape[1]]
                assert len(starts) > 2  # several conversations in the window
                for a, b in zip(starts, starts[1:]):
                    alone = model(input_ids=inputs[row : row + 1, a:b]).logits[0]
                    torch.testing.assert_close(packed[row, a:b], alone, rtol=1e-5, atol=1e-5)


def test_chat_tokens_take_padded_rows_and_generation_stops_at_the_end_of_a_turn(chat_tokenizer):
    """GPT-2's vocabulary padded to 50,304: the four chat tokens take rows 50,257-50,260 and nothing is resized; the
    generation config stops at <|end|>: a model whose next token is <|end|> stops there, not at max_new_tokens."""
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=50257, padded_vocab_size=50304))
    said = []
    fit_model_to_tokenizer(model, with_chat_template(gpt2_tokenizer()), said.append)
    assert model.get_input_embeddings().weight.shape[0] == 50304 and model.config.vocab_size == 50261
    assert said == ["chat: the new tokens <|system|>, <|user|>, <|assistant|>, <|end|> take padded rows "
                    "50257..50260 of 50304; nothing resized"]  # fmt: skip
    end = chat_tokenizer.convert_tokens_to_ids(END_OF_TURN)
    prompt = chat_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    model.eval()
    with torch.no_grad():  # make <|end|> the most likely next token after the prompt
        hidden = model.transformer(prompt).last_hidden_state[0, -1]
        model.lm_head.weight[end] = hidden * 1000 / hidden.norm() ** 2
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False)
    assert out[0, -1].item() == end and out.shape[1] == prompt.shape[1] + 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "row 3: the conversation has no assistant turn"),
        ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
         "row 3: messages[0] has the role 'robot'; the roles are system, user, assistant"),
        ({"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]},
         "row 3: messages[0]'s content must be a string"),
        ({"messages": []}, "row 3: messages must be a non-empty list"),
    ],
)  # fmt: skip
def test_a_bad_row_is_one_line_naming_the_row_before_step_1(tmp_path, row, message):
    good = conversations(2, seed=4)
    path = write_rows(tmp_path / "chat.jsonl", [*good, row, *conversations(30, seed=5)])
    result = run_train(tmp_path / "run", "--data", str(path), "--val_docs", "2", check=False)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"error: {path}, {message}" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_transformers_serve_answers_the_openai_client_streamed_and_not(tmp_path, chat_tokenizer):
    """``python -m gpt_scratch.serve`` (transformers serve, as a real process on 127.0.0.1) answers
    ``chat.completions.create`` with the reply ``generate()`` gives here (greedy), streamed or not."""
    from openai import OpenAI

    from gpt_scratch import save_model_dir

    torch.manual_seed(7)
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=50257, padded_vocab_size=50304))
    fit_model_to_tokenizer(model, chat_tokenizer, print)
    model_dir = save_model_dir(model.eval(), tmp_path / "chat-model", chat_tokenizer)
    port = free_port()
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "GPT_SCRATCH_TRACEBACK": "1"}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below, after the server)
    server = subprocess.Popen([sys.executable, "-m", "gpt_scratch.serve", "--host", "127.0.0.1", "--port", port,
                               "--device", "cpu", str(model_dir)], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        deadline = time.monotonic() + 180
        while True:  # until the server answers (it loads the model first), bounded
            try:
                (served,) = [entry.id for entry in client.models.list().data]
                break
            except Exception:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(1)
        messages = [{"role": "user", "content": "What does `json.dumps` do?"}]
        answer = client.chat.completions.create(model=served, messages=messages, max_tokens=8, temperature=0)
        stream = client.chat.completions.create(model=served, messages=messages, max_tokens=8, temperature=0,
                                                stream=True)  # fmt: skip
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    prompt = chat_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)  # fmt: skip
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    expected = chat_tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.choices[0].message.content == expected == streamed and expected


def test_a_chat_fine_tune_resumes_after_kill_9_bitwise_and_two_processes_train_it_like_one(tmp_path):
    """train.py on conversation rows, from a model of its own tokenizer (no padded rows: the embedding grows):
    killed with SIGKILL after a checkpoint and resumed, it ends with the uninterrupted run's weights, bitwise; on two
    processes (one global order of packed windows) with them up to fp32 summation order."""
    path = write_rows(tmp_path / "chat.jsonl", conversations(80, seed=8))
    args = ["--data", str(path), "--seq_len", "64", "--tokens_per_step", "512", "--max_steps", "12",
            "--checkpoint_interval", "4", "--hellaswag_data", "null", "--keep_checkpoints", "5"]  # fmt: skip
    straight = run_train(tmp_path / "straight", *args)
    assert "chat: the embedding and head grow from 384 to 388 rows" in straight.stdout, straight.stdout[-2000:]
    killed = tmp_path / "killed"
    kill_after_checkpoint(killed, args, 1, "step-000004")
    assert "resumed from" in run_train(killed, *args, "--resume", "auto").stdout
    reference, resumed = final_weights(tmp_path / "straight"), final_weights(killed)
    assert all(torch.equal(reference[name], resumed[name]) for name in reference)  # bitwise
    run_train(tmp_path / "two", *args, nproc=2)
    for name, tensor in final_weights(tmp_path / "two").items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-3, atol=1e-4, msg=name)
    template = (tmp_path / "straight" / "model" / "chat_template.jinja").read_text()
    assert (
        "{% generation %}" in template and "chat_template.jinja" in (tmp_path / "straight/model/README.md").read_text()
    )


def test_instruction_rows_are_a_user_turn_then_an_assistant_turn_as_litgpt_reads_them(chat_tokenizer):
    """Alpaca's rows: the instruction (and the input after a blank line, when there is one) as the user's turn, the
    output as the assistant's; tokens and counted mask as the template renders those two messages."""
    for row, user in (({"instruction": "Add them.", "input": "2 and 3", "output": "5"}, "Add them.\n\n2 and 3"),
                      ({"instruction": "Say hi.", "input": "", "output": "hi"}, "Say hi.")):  # fmt: skip
        ids, mask = encode(conversation(row, "instruction", "test"), chat_tokenizer)
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        rendered = chat_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                      return_assistant_tokens_mask=True)  # fmt: skip
        assert (ids, mask) == (rendered["input_ids"], rendered["assistant_masks"])


def test_a_template_that_fails_to_render_is_one_line_before_step_1(tmp_path):
    path = write_rows(tmp_path / "chat.jsonl", conversations(30, seed=9))
    template = tmp_path / "broken.jinja"
    template.write_text("{% for m in messages %}{% generation %}{{ m['content'] | no_such_filter }}{% endgeneration %}"
                        "{% endfor %}")  # fmt: skip
    result = run_train(tmp_path / "run", "--data", str(path), "--val_docs", "2", "--chat_template", str(template),
                       check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: the chat template fails to render {path}, row 1: " in result.stderr, result.stderr[-2000:]


def test_a_mixture_of_conversation_sources_draws_them_by_tokens_and_validates_each(tmp_path, chat_tokenizer):
    """Two conversation files at 3:1 by weight: the tokens drawn follow the weights (within one conversation), each
    conversation whole from its own file; train.py validates each source's held-out answers and reports its share;
    a mixture of conversations and plain text is refused in one line."""
    fruit = write_rows(tmp_path / "fruit.jsonl", conversations(60, seed=10))
    numbers = [{"messages": [{"role": "user", "content": f"{i} plus {i}?"}, {"role": "assistant",
                "content": f"{2 * i}, twice {i}"}]} for i in range(60)]  # fmt: skip
    numbers_path = write_rows(tmp_path / "numbers.jsonl", numbers)
    entries = [
        MixtureEntry("fruit", TextSource(str(fruit)), 0.75),
        MixtureEntry("numbers", TextSource(str(numbers_path)), 0.25),
    ]
    data = ConversationBatches(entries, chat_tokenizer, batch_size=4, seq_len=64)
    longest = 0
    for _ in range(6):
        for window in zip(*data.next_batch()):
            for tokens, _ in split_window(*window):
                text = chat_tokenizer.decode(tokens)
                assert ("plus" in text) != any(word in text for word in WORDS) or set(tokens) == {50256}
                longest = max(longest, len(tokens) + 1)
    drawn = data.drawn_tokens()
    assert abs(drawn["fruit"] - 3 * drawn["numbers"]) <= 3 * longest, drawn
    args = ["--data", json.dumps({str(fruit): 3, str(numbers_path): 1}), "--val_docs", "4", "--max_steps", "2",
            "--eval_interval", "2", "--hellaswag_data", "null"]  # fmt: skip
    result = run_train(tmp_path / "run", *args)
    assert "by source: fruit val loss" in result.stdout and "numbers val loss" in result.stdout, result.stdout[-2000:]
    text = write_rows(tmp_path / "text.jsonl", [{"text": "plain text"}] * 20)
    refused = run_train(tmp_path / "mixed", "--data", json.dumps({str(fruit): 1, str(text): 1}), check=False)
    assert refused.returncode == 1 and "error: data: fruit holds conversations and the other sources text" in (
        refused.stderr
    ), refused.stderr[-2000:]


def test_a_tokenizer_trained_with_chat_tokens_gives_its_models_rows_for_them(tmp_path):
    """``tokenizer train --chat_tokens``: the four chat tokens reserved before <|endoftext|> (still the last id); a
    model of that vocabulary takes the template without new rows, and the template's tokens are those ids."""
    from gpt_scratch.data.sources import SourceTexts
    from gpt_scratch.tokenizer import load_tokenizer
    from gpt_scratch.tokenizer.trainer import train_tokenizer

    corpus = SourceTexts(TextSource("python-stdlib"), val_docs=2, max_bytes=200_000)
    train_tokenizer(corpus, 512, tmp_path / "tokenizer", chat_tokens=True)
    trained = load_tokenizer(str(tmp_path / "tokenizer"))
    assert (trained.vocab_size, trained.eot_id) == (512, 511)
    tokenizer = trained.hf_tokenizer()
    assert tokenizer.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]) == [
        507,
        508,
        509,
        510,
    ]
    model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=512, bos_token_id=511,
                                                               eos_token_id=511, pad_token_id=511))  # fmt: skip
    said = []
    fit_model_to_tokenizer(model, with_chat_template(tokenizer), said.append)
    assert not said and model.get_input_embeddings().weight.shape[0] == 512
    assert model.generation_config.eos_token_id == [510, 511]


def test_the_format_is_recognised_from_the_columns_or_named_and_loss_on_all_counts_every_token(
    tmp_path, chat_tokenizer
):
    """Rows with a text column stay text (as before) unless ``format`` names another; prompt-completion and
    instruction rows are recognised; ``loss_on: all`` counts every token but a conversation's first."""
    from gpt_scratch.data.sources import source_format

    both = write_rows(tmp_path / "both.jsonl", [{"text": "plain", **row} for row in conversations(3, seed=11)])
    pairs = write_rows(tmp_path / "pairs.jsonl", as_prompt_completion(conversations(3, seed=12), strings=True))
    alpaca = write_rows(tmp_path / "alpaca.jsonl", [{"instruction": "Say hi.", "input": "", "output": "hi"}] * 3)
    assert source_format(TextSource(str(both))) == "text"
    assert source_format(TextSource(str(both), format="messages")) == "messages"
    assert source_format(TextSource(str(pairs))) == "prompt_completion"
    assert source_format(TextSource(str(alpaca))) == "instruction"
    row = conversations(1, seed=13)[0]
    ids, mask = encode(conversation(row, "messages", "test"), chat_tokenizer, loss_on="all")
    assert mask == [1] * len(ids)
    data = ConversationBatches(TextSource(str(both), format="messages"), chat_tokenizer, 2, 64, loss_on="all")
    inputs, targets, positions = data.next_batch()
    starts = positions[:, 1:] == 0  # a target that opens a sequence (a conversation, or the padding)
    real = inputs[:, 1:] != chat_tokenizer.eos_token_id
    assert ((targets[:, :-1] != -100) == (~starts & real)).all()  # target j is token j + 1
