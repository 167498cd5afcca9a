"""``python -m gpt_scratch.serve [OPTIONS] MODEL_DIR``: transformers' own OpenAI-compatible server (``transformers
serve``: ``/v1/chat/completions``, streamed or not, ``/v1/completions``, ``/v1/models``) for a gpt-scratch model.

    python -m gpt_scratch.serve --host 127.0.0.1 --port 8000 runs/sft-quickstart/model
    transformers chat runs/sft-quickstart/model http://127.0.0.1:8000     # or any OpenAI client

Every option is ``transformers serve``'s (``transformers serve --help`` lists them). Why not ``transformers serve
--trust-remote-code DIR`` itself: up to transformers 5.25 it loads a model as ``getattr(transformers,
config.architectures[0])``, which no model with its own code passes (``AttributeError: module transformers has no
attribute GPTScratchForCausalLM``), whatever ``--trust-remote-code`` says. This program puts the model classes where
that lookup finds them, in this process and in the server's model process (which imports this module again), and
then runs ``transformers serve`` unchanged.
"""

import sys


def make_architectures_findable() -> None:
    """The model classes where transformers serve looks them up: the ``transformers`` module its model manager holds
    (transformers may put another module object in sys.modules later)."""
    from transformers.cli.serving import model_manager

    from .modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchModel

    for model_class in (GPTScratchForCausalLM, GPTScratchModel):
        setattr(model_manager.transformers, model_class.__name__, model_class)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):  # at once: transformers serve's own help loads transformers
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    make_architectures_findable()
    from transformers.cli.transformers import main as transformers_cli

    sys.argv = ["transformers serve", "serve", *argv]
    transformers_cli()


if __name__ == "__mp_main__":  # the server's model process, spawned: it imports this module under that name
    make_architectures_findable()
elif __name__ == "__main__":
    main(sys.argv[1:])
