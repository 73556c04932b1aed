"""The learned verifier: does this passage state this claim? A cross-encoder made here from the bundled
MiniLM (a LoRA adapter and a one-logit head on its weights), trained on claims planted with the errors
a small model makes (finetune/verifier.py). The check asks it for every claim a passage could vouch for.

Which one: `chat.verifier` = "auto" (the one trained on this collection's own documents, else the one
shipped in data/verifier), "none" (the word-overlap and similarity rules), or a folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from core.adapter import read_manifest_or_none
from core.settings import Settings

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "verifier"
MAX_TOKENS = 256  # claim + window; the window is cut from its end
WINDOW_WORDS = 90  # the part of a passage the verifier reads: the sentences nearest the claim (core/text.window)
NONE = "none"
Verify = Callable[[list[tuple[str, str]]], list[float]]  # (claim, passage) pairs -> P(the passage states it)
LOCK = threading.Lock()


def trained_dir(settings: Settings, collection: str | None = None) -> Path:
    """Where `python -m finetune --verifier` writes the verifier of a collection."""
    return settings.data_dir / "verifiers" / (collection or settings.collection)


def verifier_dir(settings: Settings, collection: str | None = None) -> Path | None:
    """The verifier folder the settings ask for, or None for the rules."""
    choice = settings.chat.verifier
    if choice == NONE:
        return None
    if choice != "auto":
        return Path(choice)
    own = trained_dir(settings, collection)
    if read_manifest_or_none(own) is not None:
        return own
    return SHIPPED if read_manifest_or_none(SHIPPED) is not None else None


def base_model_path() -> str:
    """The bundled MiniLM, whatever the embedder: the verifiers are trained on it."""
    from core.models import embedding_model_path
    from core.settings import BUNDLED_EMBEDDING

    return embedding_model_path(BUNDLED_EMBEDDING)


def load_classifier(base_path: str, folder: Path | None = None) -> tuple[Any, Any]:
    """MiniLM with a one-logit head; with `folder`, its trained LoRA and head on top (eval mode)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, torch_dtype=torch.float32)
    if folder is not None:
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        model.eval()
    return model, tokenizer


def scores(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """P(supported) for each (claim, passage) pair."""
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            claims, passages = zip(*pairs[start : start + batch_size], strict=True)
            batch = tokenizer(
                list(claims),
                list(passages),
                truncation="only_second",
                max_length=MAX_TOKENS,
                padding=True,
                return_tensors="pt",
            )
            out += torch.sigmoid(model(**batch).logits[:, 0]).tolist()
    return out


@cache
def _loaded(base_path: str, folder: Path) -> Verify:
    model, tokenizer = load_classifier(base_path, folder)

    def verify(pairs: list[tuple[str, str]]) -> list[float]:
        with LOCK:  # one forward at a time: two chat sessions share the weights
            return scores(model, tokenizer, pairs) if pairs else []

    return verify


def load_verifier(settings: Settings, collection: str | None = None) -> Verify | None:
    """The verifier for the settings' collection (loaded once per process), or None for the rules."""
    folder = verifier_dir(settings, collection)
    if folder is None:
        return None
    return _loaded(base_model_path(), folder.resolve())
