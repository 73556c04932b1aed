"""The parameter-efficient methods of the reference notes (seeds 000-004) behind one name.

    lora, qlora      LoRA matrices on attention + MLP (qlora: over a 4-bit NF4 base)   peft
    ia3              learned rescaling of keys, values and the MLP's inner activations peft
    prefix, prompt   virtual tokens: per-layer keys/values (prefix) or input embeddings peft
    series-adapter   bottleneck after each MLP: h + up(act(down(h)))                  below
    parallel-adapter bottleneck beside each MLP: mlp(x) + up(act(down(x)))            below
    peqa             every decoder linear as b-bit integers x per-channel scales;      below
                     only the scales train (seed 004)

Every method saves `adapter_model.safetensors` (its trainable tensors only) + `adapter_config.json`
in the adapter folder; peft's own format for peft methods, the same file names for ours.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.settings import TrainSettings

PEFT_METHODS = ("lora", "qlora", "ia3", "prefix", "prompt")
CUSTOM_METHODS = ("series-adapter", "parallel-adapter", "peqa")
WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"
# Why a method cannot be folded into the base's weights (`--merge`).
NOT_MERGEABLE = {
    "prefix": "prefix tuning adds learned keys/values to every attention layer; no weight can absorb them",
    "prompt": "prompt tuning prepends learned input embeddings; no weight can absorb them",
    "series-adapter": "a bottleneck adapter is nonlinear (up(act(down(h)))); no linear weight can absorb it",
    "parallel-adapter": "a bottleneck adapter is nonlinear (up(act(down(x)))); no linear weight can absorb it",
}
IA3_TARGETS = ["k_proj", "v_proj", "down_proj"]  # peft's LLaMA default: keys, values, MLP input to down_proj


class MethodError(ValueError):
    """A method's settings don't fit the base model."""


def unwrap(model: Any) -> Any:
    return getattr(model, "module", model)  # DDP


def is_custom(model: Any) -> bool:
    return hasattr(unwrap(model), "askdocs_adapter")


def attach(model: Any, cfg: TrainSettings, base_path: str) -> Any:
    """The base with `cfg.method`'s trainable parameters added (or, for PEQA, swapped in); all else frozen."""
    if cfg.method in PEFT_METHODS:
        return attach_peft(model, cfg, base_path)
    apply_custom(model, custom_config(model, cfg))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model


def peft_config(cfg: TrainSettings, base_path: str) -> Any:
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit

    if cfg.method == "ia3":
        return IA3Config(task_type="CAUSAL_LM", target_modules=IA3_TARGETS, feedforward_modules=["down_proj"])
    if cfg.method == "prefix":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.virtual_tokens)
    if cfg.method == "prompt":  # started from a task description's embeddings: converges far faster than random
        return PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=cfg.virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text="Answer the question from the numbered context and cite the passage.",
            tokenizer_name_or_path=base_path,
        )
    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def attach_peft(model: Any, cfg: TrainSettings, base_path: str) -> Any:
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        # Non-reentrant like the other paths: peft's reentrant default fails under DDP (torchrun) with
        # "Expected to mark a variable ready only once".
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif cfg.method in ("lora", "ia3"):  # prefix/prompt tuning need the attention cache checkpointing disables
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config(cfg, base_path))


def parameter_count(model: Any) -> int:
    """Parameters of a model as trained, 4-bit ones counted unpacked (bitsandbytes packs two per byte)."""
    total = 0
    for parameter in model.parameters():
        shape = getattr(getattr(parameter, "quant_state", None), "shape", None)
        total += math.prod(shape) if shape else parameter.numel()
    return total


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: exactly the method's trainable ones."""
    model = unwrap(model)
    if not is_custom(model):
        from peft import get_peft_model_state_dict

        return dict(get_peft_model_state_dict(model))
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save(model: Any, folder: Path) -> None:
    from safetensors.torch import save_file

    model = unwrap(model)
    if not is_custom(model):
        model.save_pretrained(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(model.askdocs_adapter, indent=2))


def load_weights(model: Any, folder: Path) -> None:
    """Our methods' tensors from `folder` into a model already built for them (resume, inference)."""
    from safetensors.torch import load_file

    model = unwrap(model)
    tensors = load_file(str(folder / WEIGHTS))
    expected = set(adapter_state(model))
    if set(tensors) != expected:
        raise ValueError(f"{folder / WEIGHTS} holds {len(tensors)} tensors, the model expects {len(expected)}")
    model.load_state_dict(tensors, strict=False)


def method_of(folder: Path) -> str:
    """The method an adapter folder was trained with (peft's config for peft methods)."""
    config = json.loads((folder / CONFIG).read_text())
    if "askdocs_method" in config:
        return str(config["askdocs_method"])
    peft_type = str(config.get("peft_type", "LORA")).lower()
    return {"prefix_tuning": "prefix", "prompt_tuning": "prompt"}.get(peft_type, peft_type)


def load(model: Any, folder: Path) -> Any:
    """A base model with the adapter in `folder` on top, for inference."""
    if method_of(folder) in PEFT_METHODS:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(folder)).eval()
    apply_custom(model, json.loads((folder / CONFIG).read_text()))
    load_weights(model, folder)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def serving(model: Any) -> Any:
    """The model as the chat runs it: PEQA's scales folded into plain weights (same outputs, no
    dequantizing per token); every other method as it is."""
    return merge_peqa(model) if getattr(model, "askdocs_adapter", {}).get("askdocs_method") == "peqa" else model


# Our methods: a JSON config (how to rebuild the structure) + the trained tensors.


def custom_config(model: Any, cfg: TrainSettings) -> dict[str, Any]:
    if cfg.method == "peqa":
        return {
            "askdocs_method": "peqa",
            "bits": cfg.peqa_bits,
            "group_size": cfg.peqa_group_size,
            "train_zeros": cfg.peqa_train_zeros,
        }
    hidden = model.config.hidden_size
    # LLM-Adapters: bottleneck 256 on LLaMA-7B's 4096-wide hidden state, i.e. 1/16 of it.
    return {"askdocs_method": cfg.method, "bottleneck": cfg.bottleneck or max(8, hidden * 256 // 4096)}


def apply_custom(model: Any, config: dict[str, Any]) -> None:
    """Freeze the base, then add the method's modules (trainable) as `config` describes them."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    method = config["askdocs_method"]
    if method == "peqa":
        quantize_linears(model, config["bits"], config["train_zeros"], config.get("group_size"))
    else:
        hidden, act = model.config.hidden_size, model.config.hidden_act
        for layer in decoder_layers(model):
            adapter = Bottleneck(hidden, config["bottleneck"], act).to(next(layer.mlp.parameters()).device)
            layer.mlp = (SeriesAdapter if method == "series-adapter" else ParallelAdapter)(layer.mlp, adapter)
    model.askdocs_adapter = config


def decoder_layers(model: Any) -> list[Any]:
    layers = [m for m in model.modules() if hasattr(m, "mlp") and hasattr(m, "self_attn")]
    if not layers:
        raise MethodError(f"{type(model).__name__}: no decoder layers with an `mlp` to put adapters on")
    return layers


class Bottleneck(nn.Module):
    """down (hidden → bottleneck), the model's activation, up (→ hidden); `up` starts at zero, so a
    new adapter leaves the model unchanged."""

    def __init__(self, hidden: int, bottleneck: int, activation: str) -> None:
        from transformers.activations import ACT2FN

        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class SeriesAdapter(nn.Module):
    """LLM-Adapters' series adapter: after the MLP, with a residual connection."""

    def __init__(self, mlp: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.mlp, self.adapter = mlp, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(x)
        return h + self.adapter(h)


class ParallelAdapter(nn.Module):
    """LLM-Adapters' parallel adapter: beside the MLP, reading the MLP's input."""

    def __init__(self, mlp: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.mlp, self.adapter = mlp, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.adapter(x)


class PeqaLinear(nn.Module):
    """PEQA (seed 004): W ≈ scale · (Q - zero) with Q frozen b-bit integers (uint8 storage) and one
    scale (and zero point) per output channel, or per `group_size` inputs of it (PEQA's grouping),
    from round-to-nearest min/max quantization of W."""

    q: torch.Tensor  # the frozen integers, a buffer: (out, groups, group_size)

    def __init__(self, linear: nn.Linear, bits: int, train_zeros: bool, group_size: int | None = None) -> None:
        super().__init__()
        out, width = linear.weight.shape
        group_size = group_size or width
        if width % group_size:
            raise MethodError(f"--peqa-group-size {group_size} does not divide a linear layer's {width} inputs")
        weight = linear.weight.detach().float().reshape(out, width // group_size, group_size)
        top = 2**bits - 1
        low, high = weight.min(dim=-1, keepdim=True).values, weight.max(dim=-1, keepdim=True).values
        scale = ((high - low) / top).clamp(min=1e-8)
        zero = torch.round(-low / scale)
        self.register_buffer("q", torch.clamp(torch.round(weight / scale) + zero, 0, top).to(torch.uint8))
        self.scale = nn.Parameter(scale)
        self.zero = nn.Parameter(zero, requires_grad=train_zeros)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def dequantized(self) -> torch.Tensor:
        return ((self.q.float() - self.zero) * self.scale).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized().to(x.dtype), self.bias)


def quantize_linears(model: Any, bits: int, train_zeros: bool, group_size: int | None) -> None:
    """Every linear layer of the decoder blocks becomes a PeqaLinear (embeddings and LM head stay)."""
    for layer in decoder_layers(model):
        for name, module in list(layer.named_modules()):
            if isinstance(module, nn.Linear):
                parent, _, child = name.rpartition(".")
                setattr(layer.get_submodule(parent), child, PeqaLinear(module, bits, train_zeros, group_size))


def merge_peqa(model: Any) -> Any:
    """PEQA's scales folded back: each PeqaLinear becomes a plain linear with weight scale · (Q - zero)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PeqaLinear):
                weight = child.dequantized().detach()
                linear = nn.Linear(weight.shape[1], weight.shape[0], bias=child.bias is not None)
                linear.weight = nn.Parameter(weight, requires_grad=False)
                if child.bias is not None:
                    linear.bias = nn.Parameter(child.bias.detach(), requires_grad=False)
                setattr(parent, name, linear)
    del model.askdocs_adapter
    return model
