"""FP8 training of the blocks' linear layers (and optionally the head) through torchao's float8 training.

torchao swaps each chosen ``nn.Linear`` for its ``Float8Linear``: the weights stay ordinary (fp32 master) tensors, and
each matmul of forward and backward casts its operands to float8 with a dynamic per-tensor scale (e4m3 for inputs
and weights, e5m2 for gradients) and runs on the GPU's FP8 tensor cores. Checkpoints, the optimizers and the exported
model see ordinary weights under the same names. nanochat reports +17% tokens/s on its 8-GPU node from FP8;
modded-nanogpt runs its head in FP8.

    convert_to_fp8(model)                # what train.py does with fp8: true (after fp8_unavailable(device) is None)
    convert_to_fp8(model, emulate=True)  # on any device: the same casts in plain arithmetic (for tests)
"""

import torch

FP8_CAPABILITY = (8, 9)  # Ada and Hopper (L4, RTX 4090, H100, H200) and later have FP8 matmuls
NEEDS_FP8_GPU = "fp8: true needs a GPU with FP8 matmuls (compute capability 8.9+: H100, H200, L4)"


def fp8_unavailable(device: torch.device) -> str | None:
    """Why ``device`` cannot train in FP8 (None where it can): its hardware, or torchao missing."""
    if device.type != "cuda":
        return f"{NEEDS_FP8_GPU}, not {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        return f"{NEEDS_FP8_GPU}; {torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}"
    return torchao_missing()


def torchao_missing() -> str | None:
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return "fp8: true trains through torchao, which is not installed: pip install torchao"
    return None


def fp8_layer_names(model: torch.nn.Module, include_head: bool = False) -> list[str]:
    """The linear layers FP8 training converts: every one inside the blocks (and the head where asked) whose two
    dimensions are multiples of 16, as FP8 matmul kernels require."""
    head = model.get_output_embeddings() if include_head else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        in_blocks = ".h." in f".{name}."
        if (in_blocks or module is head) and module.in_features % 16 == 0 and module.out_features % 16 == 0:
            names.append(name)
    return names


def convert_to_fp8(model: torch.nn.Module, include_head: bool = False, emulate: bool = False) -> list[str]:
    """Swap the layers ``fp8_layer_names`` picks for torchao's Float8Linear (in place, weights kept: same tensors,
    same names); return their names. ``emulate`` runs the float8 casts without FP8 hardware."""
    missing = torchao_missing()
    if missing:
        raise ValueError(missing)
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    chosen = set(fp8_layer_names(model, include_head))
    convert_to_float8_training(
        model,
        module_filter_fn=lambda module, name: name in chosen,
        config=Float8LinearConfig(emulate=emulate),
    )
    return sorted(chosen)
