"""The educational GPT: same weights, same logits as the fast model; its own loop learns."""

import torch
from data_fixtures import make_documents

from gpt_scratch.educational import GPT, BPETokenizer, CharTokenizer, load_from_fast, train

from conftest import make_gpt2, ours_from


def test_educational_model_with_the_fast_models_weights_gives_equal_logits():
    fast = ours_from(make_gpt2(seed=50))
    readable = load_from_fast(fast)
    ids = torch.randint(0, 50257, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(readable(ids)[0], fast(ids).logits)


def test_its_training_loop_lowers_the_loss_on_a_small_text():
    text = " ".join(make_documents(30, seed=6))
    tokenizer = CharTokenizer(text)
    assert tokenizer.decode(tokenizer.encode(text[:100])) == text[:100]
    data = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = GPT(tokenizer.vocab_size, n_positions=32, n_embd=32, n_head=4, n_layer=2)
    losses = train(model, data, steps=150, batch_size=16, lr=3e-3, log_every=0)
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:10]) / 10, (losses[:10], losses[-10:])
    sample = model.generate(data[None, :1], 20)
    assert sample.shape == (1, 21)


def test_bpe_tokenizer_option_round_trips():
    tokenizer = BPETokenizer()
    assert tokenizer.vocab_size == 50257
    assert tokenizer.decode(tokenizer.encode("Hello, café!")) == "Hello, café!"
