"""python -m finetune --verifier: train the answer check's verifier on a collection's own documents.

A LoRA adapter and a one-logit head on the bundled MiniLM (core/verifier.py), trained on CPU on
(claim, passage) pairs made from the collection's chunks (finetune/verifier_data.py); 10 % of the
chunks are held out and the accuracy per kind of claim is printed and kept in the manifest. The
result goes to DATA_DIR/verifiers/COLLECTION (or --output), which the check then uses for that
collection; the folder is replaced only when training has finished.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.adapter import base_hash, write_manifest
from core.models import embedding_model_path
from core.settings import BUNDLED_EMBEDDING, Settings
from core.verifier import load_classifier, scores, trained_dir
from finetune.verifier_data import Chunk, Pair, build_pairs, chunk_of

LORA: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["query", "key", "value", "dense"],
}


def collection_chunks(settings: Settings) -> tuple[list[Chunk], Any]:
    """Every chunk of the settings' collection, and its stored embeddings (normalised)."""
    import numpy as np

    from core import store

    collection = store.checked_collection(settings, settings.collection)
    rows: Any = collection.get(include=["documents", "metadatas", "embeddings"])
    chunks = [chunk_of(d, m) for d, m in zip(rows["documents"], rows["metadatas"], strict=True)]
    vectors = np.asarray(rows["embeddings"], dtype=np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def split(pairs: list[Pair], held_out: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Train and validation pairs, split by chunk so no validation chunk was seen in training."""
    chunks = sorted({p.chunk for p in pairs})
    random.Random(seed).shuffle(chunks)
    validation = set(chunks[: int(len(chunks) * held_out)])
    return [p for p in pairs if p.chunk not in validation], [p for p in pairs if p.chunk in validation]


def train(model: Any, tokenizer: Any, pairs: list[Pair], epochs: int, lr: float, batch_size: int, seed: int) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from core.verifier import MAX_TOKENS

    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", **LORA))  # the head trains fully (SEQ_CLS)
    positives = sum(p.label for p in pairs)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(pairs) - positives) / max(positives, 1)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * -(-len(pairs) // batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)
    rng = random.Random(seed)
    model.train()
    with tqdm(total=steps, desc="training the verifier", unit="step") as bar:
        for _ in range(epochs):
            order = rng.sample(pairs, len(pairs))
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = tokenizer(
                    [p.claim for p in batch],
                    [p.passage for p in batch],
                    truncation="only_second",
                    max_length=MAX_TOKENS,
                    padding=True,
                    return_tensors="pt",
                )
                loss = loss_fn(model(**inputs).logits[:, 0], torch.tensor([float(p.label) for p in batch]))
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update()
    model.eval()
    return model


def accuracy(model: Any, tokenizer: Any, pairs: list[Pair]) -> dict[str, float]:
    """Share of validation pairs judged right (P >= 0.5 for supported), per kind and overall."""
    judged = scores(model, tokenizer, [(p.claim, p.passage) for p in pairs])
    right: dict[str, list[bool]] = defaultdict(list)
    for pair, score in zip(pairs, judged, strict=True):
        right[pair.kind].append((score >= 0.5) == bool(pair.label))
        right["all"].append((score >= 0.5) == bool(pair.label))
    return {kind: round(sum(flags) / len(flags), 3) for kind, flags in sorted(right.items())}


def train_verifier(
    settings: Settings,
    output: Path | None = None,
    chunks: int = 3000,
    epochs: int = 1,
    lr: float = 5e-4,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Build pairs from the collection, train, validate, and write the verifier folder; returns its manifest."""
    started = time.time()
    target = output or trained_dir(settings)
    texts, vectors = collection_chunks(settings)
    pairs_train, pairs_validation = split(build_pairs(texts, vectors, chunks, settings.train.seed), 0.1, 0)
    base = embedding_model_path(BUNDLED_EMBEDDING)
    model, tokenizer = load_classifier(base)
    model = train(model, tokenizer, pairs_train, epochs, lr, batch_size, settings.train.seed)
    validation = accuracy(model, tokenizer, pairs_validation)
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    manifest = {
        "kind": "verifier",
        "base": BUNDLED_EMBEDDING,
        "base_hash": base_hash(base),
        "collection": settings.collection,
        "chunks_in_collection": len(texts),
        "chunks_sampled": min(chunks, len(texts)),
        "pairs": {"train": len(pairs_train), "validation": len(pairs_validation)},
        "validation_accuracy": validation,
        "lora": LORA,
        "epochs": epochs,
        "lr": lr,
        "seconds": round(time.time() - started),
    }
    write_manifest(scratch, manifest)
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return manifest
