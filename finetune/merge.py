"""Merge an adapter into its base for serving without peft: one plain HF folder.

LoRA: W + B·A; IA3: W scaled by its vectors; PEQA: scale · (Q - zero). The others cannot merge
(methods.NOT_MERGEABLE says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import adapter, methods
from core.models import llm_model_path
from core.settings import Settings
from finetune import data

TOLERANCE = 1e-3  # max |logit difference| between merged and base + adapter


def merge(settings: Settings, name: str) -> tuple[Path, float]:
    """Write DATA_DIR/models/merged-<name> and return it with the measured max logit difference.

    A QLoRA adapter was trained against the NF4 base; merged here into the full-precision base
    (4-bit weights can't absorb B·A exactly), so it is compared with fp32 base + adapter.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = settings.adapters_dir / name
    base_path = llm_model_path(settings)
    adapter.check_base(folder, settings.llm_base, adapter.base_hash(base_path))
    method = methods.method_of(folder)
    if method in methods.NOT_MERGEABLE:
        raise adapter.AdapterError(f"{name} ({method}) cannot be merged: {methods.NOT_MERGEABLE[method]}")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32, device_map="cpu")
    model = methods.load(base, folder)
    probe = probe_ids(tokenizer)
    with torch.no_grad():
        unmerged = model(input_ids=probe).logits
        merged_model = methods.merge_peqa(model) if method == "peqa" else model.merge_and_unload()
        merged = merged_model(input_ids=probe).logits
    difference = float((merged - unmerged).abs().max())
    if difference > TOLERANCE:
        raise adapter.AdapterError(
            f"merged logits differ from base + adapter by {difference:.2e} (> {TOLERANCE}); not saved"
        )
    target = settings.models_dir / f"merged-{name}"
    merged_model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target, difference


def probe_ids(tokenizer: Any) -> Any:
    import torch

    messages = [{"role": "user", "content": "How many days can I work remotely?"}]
    return torch.tensor([data.render(tokenizer, messages, generation_prompt=True)])
