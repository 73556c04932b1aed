"""The model to train: a frozen base (4-bit NF4 for QLoRA, full precision otherwise) plus the method's
trainable parameters (core/methods.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.models import load_causal_lm


def load_base(path: str, method: str, *, for_training: bool = True) -> Any:
    """A freshly loaded base: QLoRA = NF4 with double quantization (QLoRA paper), every other method fp32."""
    model = load_causal_lm(path, quantize=method == "qlora")
    if for_training and method == "qlora":
        keep_4bit_weights_trainable(model)
    return model


def keep_4bit_weights_trainable(model: Any) -> int:
    """Stop bitsandbytes repacking 4-bit weights for fast CPU inference.

    On AVX512-BF16 CPUs the first eval-mode forward whose inputs need no gradient (`generate`) repacks
    the weights, after which backward gets no gradients: only a `gemv_4bit` warning and a loss
    that stops falling. (The trainer's eval step escapes it only because gradient checkpointing makes
    the inputs require grad.) Returns how many layers were switched.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def answer_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
    """Mean next-token loss over labelled (answer) tokens, running the LM head only there.

    The 49k-word vocabulary makes logits the largest activation of a small model; prompt and
    padding positions carry no loss, so their logits are never built (less memory and compute).
    """
    import torch.nn.functional as F

    from finetune.data import IGNORE

    # Through the model's own forward: under multi-process training `model` is a DDP wrapper,
    # which syncs gradients only for a forward it ran (logits_to_keep=1: one position's logits).
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1)
    # The final-norm output, equal to the base's last_hidden_state; prompt tuning puts its virtual
    # tokens in front of the input, so keep the input's own positions.
    hidden = outputs.hidden_states[-1][:, -input_ids.shape[1] :]
    lm_head = getattr(model, "module", model).get_output_embeddings()
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logits = lm_head(hidden[:, :-1][mask]).float()
    return F.cross_entropy(logits, targets[mask])


def answer_loss_trainer() -> Any:
    """transformers' Trainer with `answer_loss` in place of the model's full-vocabulary loss."""
    from transformers import Trainer

    from core import methods

    class AnswerLossTrainer(Trainer):
        loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides by accumulation steps

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            loss = answer_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            return (loss, {"loss": loss}) if return_outputs else loss

        # Checkpoints of our own methods hold their trainable tensors only, as peft's do.
        def _save(self, output_dir=None, state_dict=None):  # type: ignore[no-untyped-def]
            if not methods.is_custom(self.model):
                return super()._save(output_dir, state_dict)
            methods.save(self.model, Path(output_dir or self.args.output_dir))

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # type: ignore[no-untyped-def]
            if not methods.is_custom(model or self.model):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            methods.load_weights(model or self.model, Path(resume_from_checkpoint))

    return AnswerLossTrainer
