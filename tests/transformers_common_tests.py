"""Our classes under transformers' common model tests, as a transformers model's own test file has them. Copied by
tests/transformers_common_suite.py into the transformers release's ``tests/`` package (the relative imports below
are its modules); not collected by our suite."""

import unittest

from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.testing_utils import require_torch

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, GPTScratchModel

from .test_modeling_common import ModelTesterMixin, ids_tensor, random_attention_mask

# The common tests find a model's base and causal-LM classes by name in transformers' own tables, as for its models.
MODEL_MAPPING_NAMES.setdefault(GPTScratchConfig.model_type, GPTScratchModel.__name__)
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.setdefault(GPTScratchConfig.model_type, GPTScratchForCausalLM.__name__)

# Every option of the modern recipe at once, as tests/conftest.py's MODERN; projections not zero-initialised
# (transformers' testers use random weights: a zero attention output would hide the positions from the outputs).
MODERN = {"position_embedding_type": "rope", "rope_theta": 500.0, "norm_type": "rmsnorm", "qk_norm": True,
          "activation_function": "relu2", "final_logit_softcapping": 3.0, "tie_word_embeddings": False,
          "bias": False}  # fmt: skip


class GPTScratchModelTester:
    def __init__(self, parent, architecture: dict) -> None:
        self.parent = parent
        self.architecture = architecture
        self.batch_size = 13
        self.seq_length = 7
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.max_position_embeddings = 64

    set_after_construction = False  # the architecture's options set as attributes of a built config instead

    def get_config(self) -> GPTScratchConfig:
        passed = {} if self.set_after_construction else self.architecture
        config = GPTScratchConfig(
            vocab_size=self.vocab_size, n_positions=self.max_position_embeddings, n_embd=self.hidden_size,
            n_layer=self.num_hidden_layers, n_head=self.num_attention_heads, embd_pdrop=0.0, resid_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=self.vocab_size - 1, eos_token_id=self.vocab_size - 1,
            pad_token_id=self.vocab_size - 1, **passed,
        )  # fmt: skip
        if self.set_after_construction:
            for name, value in self.architecture.items():
                setattr(config, name, value)
        return config

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


@require_torch
class GPTScratchModelTest(ModelTesterMixin, unittest.TestCase):
    """GPT-2's architecture: learned absolute positions (the rotary-scaling tests do not apply and skip)."""

    all_model_classes = (GPTScratchModel, GPTScratchForCausalLM)
    architecture: dict = {}

    set_after_construction = False

    def setUp(self) -> None:
        self.model_tester = GPTScratchModelTester(self, self.architecture)
        self.model_tester.set_after_construction = self.set_after_construction

    def test_generation_tester_mixin_inheritance(self) -> None:
        # It checks that a generative model's tester also runs GenerationTesterMixin, whose module the sdist lacks
        # (tests/transformers_common_suite.py); generate is tested against GPT2LMHeadModel in tests/test_generate.py.
        self.skipTest("GenerationTesterMixin is not in the transformers sdist")

    def test_causal_lm_loss(self) -> None:
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = GPTScratchForCausalLM(config).eval()
        outputs = model(**inputs, labels=inputs["input_ids"])
        self.assertEqual(outputs.logits.shape, (*inputs["input_ids"].shape, config.vocab_size))
        self.assertTrue(outputs.loss.isfinite())


class GPTScratchModernModelTest(GPTScratchModelTest):
    """The modern recipe: rotary positions (with transformers' rope-scaling tests), RMSNorm, QK-norm, ReLU²."""

    architecture = MODERN


class GPTScratchModernSetAfterConstructionModelTest(GPTScratchModernModelTest):
    """The modern recipe's options set on a built GPT-2 config, as transformers' tests and users change configs."""

    set_after_construction = True
