"""A peft LoRA adapter as a GGUF LoRA, so llama.cpp runs it on top of a (quantized) GGUF base: the chat's
llama-cpp backend exports it beside the adapter when first used (`adapter_gguf`); `python -m finetune.gguf_lora`
does it by hand.

The layout of llama.cpp's convert_lora_to_gguf.py, for llama bases only: f32 `blk.N.attn_q.weight.lora_a`
(r, in) and `.lora_b` (out, r) per target, alpha in `adapter.lora.alpha` (llama.cpp scales by alpha / r, as peft).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# llama.cpp applies W·x + alpha/r · B·A·x; these adapter_config.json options change that formula or add tensors.
UNSUPPORTED = {
    "use_rslora": "rsLoRA (scale alpha/sqrt(r))",
    "use_dora": "DoRA (magnitude vectors)",
    "use_qalora": "QA-LoRA (pooled inputs)",
    "alpha_pattern": "a per-module lora_alpha",
    "lora_bias": "a bias on lora_B",
    "modules_to_save": "fully trained modules",
    "alora_invocation_tokens": "activated LoRA",
}
TARGETS = {  # peft target module -> llama.cpp tensor (gguf.MODEL_TENSOR member name)
    "q_proj": "ATTN_Q",
    "k_proj": "ATTN_K",
    "v_proj": "ATTN_V",
    "o_proj": "ATTN_OUT",
    "gate_proj": "FFN_GATE",
    "up_proj": "FFN_UP",
    "down_proj": "FFN_DOWN",
}
KEY = re.compile(r"base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight")


class GgufExportError(ValueError):
    """The adapter (or its base) is something llama.cpp's LoRA format cannot express; the message says what."""


def export_lora(adapter_dir: Path, output: Path | None = None, *, base: Path | None = None) -> Path:
    """Write the GGUF LoRA (default ADAPTER_DIR/adapter.gguf) atomically and return its path."""
    config = lora_config(adapter_dir)
    base_config = llama_config(base or base_folder(adapter_dir, config))
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise GgufExportError(f"{weights} not found: not a saved peft adapter")
    output = output or adapter_dir / "adapter.gguf"
    write_gguf(gguf_tensors(read_weights(weights), base_config), float(config["lora_alpha"]), output)
    return output


def lora_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    try:
        config = dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise GgufExportError(f"{path}: no readable adapter config ({exc})") from None
    kind = config.get("peft_type") or config.get("askdocs_method", "unknown")
    if kind != "LORA":
        raise GgufExportError(f"{path}: a {kind} adapter, not LoRA; only LoRA adapters export to GGUF")
    for field, what in UNSUPPORTED.items():
        if config.get(field):
            raise GgufExportError(f"{path}: {field} is set ({what}); llama.cpp's LoRA cannot express it")
    return config


def base_folder(adapter_dir: Path, config: dict[str, Any]) -> Path:
    """The base peft recorded at training time (a path relative to the cwd then, as we train from the repo root)."""
    if not config.get("base_model_name_or_path"):
        raise GgufExportError(f"{adapter_dir}: the adapter config names no base model; pass --base HF_FOLDER")
    return Path(config["base_model_name_or_path"])


def llama_config(base: Path) -> dict[str, Any]:
    """The base's HF config: llama.cpp's q/k rows are permuted per head, so LoRA B needs the head counts."""
    path = base / "config.json"
    try:
        config = dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise GgufExportError(f"{path}: base model config unreadable ({exc}); pass --base HF_FOLDER") from None
    if "LlamaForCausalLM" not in config.get("architectures", []):
        raise GgufExportError(f"{path}: base is {config.get('architectures')}, not LlamaForCausalLM; only llama")
    return config


def read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file  # torch reads bf16, numpy cannot

    return {name: tensor.float().numpy() for name, tensor in load_file(str(path)).items()}


def gguf_tensors(weights: dict[str, np.ndarray], base_config: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """(llama.cpp name, f32 array) for every lora_a / lora_b, with q/k's B rows in llama.cpp's head order."""
    import gguf

    heads = {"q_proj": base_config["num_attention_heads"]}
    heads["k_proj"] = base_config.get("num_key_value_heads", heads["q_proj"])
    for key in sorted(weights):
        match = KEY.fullmatch(key)
        if match is None:
            raise GgufExportError(f"adapter tensor {key}: llama.cpp has no LoRA slot for it")
        layer, module, half = match.groups()
        if module not in TARGETS:
            raise GgufExportError(f"target module {module} cannot be mapped to llama.cpp (supported: {list(TARGETS)})")
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[TARGETS[module]]].format(bid=int(layer))
        array = weights[key]
        if half == "B" and module in heads:
            array = permute_rows(array, heads[module])
        yield f"{name}.weight.lora_{half.lower()}", np.ascontiguousarray(array, dtype=np.float32)


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's q/k permutation: HF rotates half-head pairs, llama.cpp adjacent pairs."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(tensors: Iterator[tuple[str, np.ndarray]], alpha: float, output: Path) -> None:
    """Through a temporary file, so a reader never finds half an adapter."""
    import gguf

    tmp = output.with_name(output.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, "llama")  # also writes general.architecture
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, array in tensors:
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(output)


def adapter_gguf(adapter_dir: Path, base: Path) -> Path:
    """The adapter as a GGUF LoRA beside it (adapter.gguf), exported now if missing or older than its weights."""
    output = adapter_dir / "adapter.gguf"
    weights = adapter_dir / "adapter_model.safetensors"
    if not output.is_file() or (weights.is_file() and output.stat().st_mtime < weights.stat().st_mtime):
        export_lora(adapter_dir, output, base=base)
    return output
