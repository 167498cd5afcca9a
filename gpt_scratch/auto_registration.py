"""The config and models registered with transformers' Auto classes as soon as both sides are loaded.

``import gpt_scratch`` promises that ``AutoModelForCausalLM.from_pretrained(saved_dir)`` works afterwards without
``trust_remote_code``, and that ``save_pretrained`` writes ``auto_map`` and copies the code. Registering at import would
load torch and transformers (2-7 s) before any program could print its ``--help``; so the registration waits until
transformers' Auto modules or this package's model modules are loaded (by the user, or by this package), and happens
then. If they are loaded already, it happens at once.

This is a post-import hook: a finder at the front of ``sys.meta_path`` that finds transformers' and this package's
modules with the finders behind it (no second search) and wraps their loader, so that it knows when each has run. It
registers only when no such import is halfway through: transformers' modules import one another in cycles (the Auto
modules are imported from inside ``modeling_layers``, ``pipelines``, ``trainer``...), and ours import transformers.
"""

import importlib.abc
import sys

# part -> (transformers' Auto module, this package's module): a part registers once either is loaded
PARTS = {
    "config": ("transformers.models.auto.configuration_auto", "gpt_scratch.configuration_gpt_scratch"),
    "models": ("transformers.models.auto.modeling_auto", "gpt_scratch.modeling_gpt_scratch"),
}
WATCHED_PREFIXES = ("transformers.", "gpt_scratch.")
_registered: set[str] = set()
_imports_running = 0  # watched modules whose code is running now (nested imports)


def _register(part: str) -> None:
    from .configuration_gpt_scratch import GPTScratchConfig

    if part == "config":
        from transformers import AutoConfig

        AutoConfig.register(GPTScratchConfig.model_type, GPTScratchConfig, exist_ok=True)
        GPTScratchConfig.register_for_auto_class()
    else:
        from transformers import AutoModel, AutoModelForCausalLM

        from .modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchModel

        AutoModel.register(GPTScratchConfig, GPTScratchModel, exist_ok=True)
        AutoModelForCausalLM.register(GPTScratchConfig, GPTScratchForCausalLM, exist_ok=True)
        GPTScratchModel.register_for_auto_class("AutoModel")
        GPTScratchForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def register_what_is_loaded() -> None:
    """Each part one of whose modules is loaded is registered (once); the config first, as the models need it."""
    global _imports_running
    _imports_running += 1  # the registration's own imports must not start it again
    try:
        for part, modules in PARTS.items():
            if part not in _registered and any(name in sys.modules for name in modules):
                _registered.add(part)
                _register(part)
    finally:
        _imports_running -= 1


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds transformers' and this package's modules with the finders after it, and counts their imports."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(WATCHED_PREFIXES) or len(_registered) == len(PARTS):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        run_module = getattr(spec.loader, "exec_module", None)
        if run_module is None:
            return spec

        def exec_module(module):
            global _imports_running
            _imports_running += 1
            try:
                run_module(module)
            finally:
                _imports_running -= 1
            if _imports_running == 0:  # the outermost import is done: every module it needed is complete
                register_what_is_loaded()

        spec.loader.exec_module = exec_module  # this spec's own loader object: nothing else changes
        return spec


def install() -> None:
    """Registers whatever is loaded now, and the rest as it loads."""
    if not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
    if _imports_running == 0:
        register_what_is_loaded()
