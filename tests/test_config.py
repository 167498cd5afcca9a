"""GPTScratchConfig: GPT-2's names and defaults, the standard aliases, presets, and errors a user can act on."""

import pytest
from transformers import AutoConfig, GPT2Config

from gpt_scratch import GPTScratchConfig


def test_defaults_are_gpt2_124m():
    ours, gpt2 = GPTScratchConfig(), GPT2Config()
    for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
                  "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
                  "bos_token_id", "eos_token_id", "tie_word_embeddings"):  # fmt: skip
        assert getattr(ours, field) == getattr(gpt2, field), field


def test_standard_names_alias_gpt2_names():
    config = GPTScratchConfig(n_embd=128, n_layer=3, n_head=8, n_positions=64)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 3, 8)
    assert config.max_position_embeddings == 64
    assert config.inner_size == 512


@pytest.mark.parametrize(
    "name, shape",
    [
        ("gpt2", (12, 12, 768)),
        ("gpt2-medium", (24, 16, 1024)),
        ("gpt2-large", (36, 20, 1280)),
        ("gpt2-xl", (48, 25, 1600)),
        ("tiny", (2, 4, 64)),
        ("mini", (4, 4, 128)),
        ("debug", (2, 4, 64)),  # tiny's earlier name: configs and commands that use it keep working
    ],  # fmt: skip
)
def test_presets(name, shape):
    config = GPTScratchConfig.from_preset(name, vocab_size=1000)
    assert (config.n_layer, config.n_head, config.n_embd) == shape
    assert config.vocab_size == 1000


def test_round_trips_through_auto_config(tmp_path):
    GPTScratchConfig.from_preset("tiny", activation_function="relu").save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is GPTScratchConfig
    assert (loaded.n_embd, loaded.activation_function) == (64, "relu")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_embd": 100, "n_head": 12}, r"n_embd \(100\) must be divisible by n_head \(12\)"),
        ({"n_layer": 0}, r"n_layer \(0\) must be a positive integer"),
        ({"n_head": -2}, r"n_head \(-2\) must be a positive integer"),
        ({"vocab_size": 0}, r"vocab_size \(0\) must be a positive integer"),
        ({"n_positions": 0}, r"n_positions \(0\) must be a positive integer"),
        ({"n_embd": 0}, r"n_embd \(0\) must be a positive integer"),
        ({"n_inner": 0}, r"n_inner \(0\) must be a positive integer, or None"),
        ({"resid_pdrop": 1.0}, r"resid_pdrop \(1.0\) must be in \[0, 1\)"),
        ({"attn_pdrop": -0.1}, r"attn_pdrop \(-0.1\) must be in \[0, 1\)"),
        ({"embd_pdrop": 1.5}, r"embd_pdrop \(1.5\) must be in \[0, 1\)"),
        ({"activation_function": "swish2"}, r"activation_function \('swish2'\) is not supported; use one of gelu_new"),
        ({"layer_norm_epsilon": 0.0}, r"layer_norm_epsilon \(0.0\) must be positive"),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_type": "linear", "factor": float("inf")}},
            r"rope_parameters 'linear' needs a factor >= 1 .*, got inf",
        ),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_type": "llama3", "factor": 8.0}},
            r"rope_parameters .llama3. needs low_freq_factor, high_freq_factor, original_max_position_embeddings",
        ),
    ],
)
def test_invalid_values_name_field_value_and_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTScratchConfig(**kwargs)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'gpt3'; use one of gpt2, gpt2-medium"):
        GPTScratchConfig.from_preset("gpt3")


def test_importing_gpt_scratch_registers_config_and_both_models_with_the_auto_classes():
    from transformers import AutoModel, AutoModelForCausalLM

    from gpt_scratch import GPTScratchForCausalLM, GPTScratchModel

    config = GPTScratchConfig.from_preset("tiny")
    assert type(AutoConfig.for_model("gpt_scratch")) is GPTScratchConfig
    assert type(AutoModel.from_config(config)) is GPTScratchModel
    assert type(AutoModelForCausalLM.from_config(config)) is GPTScratchForCausalLM


def test_rotary_options_set_after_construction_build_the_model_they_would_if_passed_to_the_constructor():
    import torch

    from gpt_scratch import GPTScratchForCausalLM

    changed = GPTScratchConfig.from_preset("tiny", vocab_size=100)
    changed.position_embedding_type, changed.rope_theta = "rope", 500.0  # as transformers' own tests change configs
    built = GPTScratchConfig.from_preset("tiny", vocab_size=100, position_embedding_type="rope", rope_theta=500.0)
    assert changed.rope_parameters == built.rope_parameters == {"rope_type": "default", "rope_theta": 500.0}
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(changed).eval()
    inputs = torch.randint(0, 100, (2, 40))
    for config, same in (
        (built, True),
        (GPTScratchConfig.from_preset("tiny", vocab_size=100, position_embedding_type="rope"), False),
    ):
        other = GPTScratchForCausalLM(config).eval()
        other.load_state_dict(model.state_dict())
        assert torch.equal(model(inputs).logits, other(inputs).logits) is same
    # The other spelling, the other way: rope_parameters carries the base into rope_theta.
    changed.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0}
    assert changed.rope_theta == 1000.0 and GPTScratchConfig.from_dict(changed.to_dict()).rope_theta == 1000.0
    changed.rope_parameters = {"rope_type": "default"}
    assert changed.rope_parameters == {"rope_type": "default", "rope_theta": 1000.0}
    changed.position_embedding_type = "absolute"  # only rotary models have rope_parameters (transformers reads so)
    assert not hasattr(changed, "rope_parameters")
