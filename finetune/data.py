"""Q&A data: read JSONL in any of three formats, validate it, and tokenize it for causal-LM training.

Formats, detected per line: chat `{"messages": [{"role", "content"}, ...]}`, alpaca
`{"instruction", "input"?, "output"}` and `{"question", "answer"}`. Every line becomes chat
messages; the model's own chat template renders them exactly as the chain will at inference,
and only assistant tokens (each ending with the template's EOS) carry loss.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from core.jsonl import read_objects

IGNORE = -100  # label of tokens that carry no loss
ROLES = {"system", "user", "assistant"}

Messages = list[dict[str, Any]]  # {"role", "content"} and, on assistant turns, an optional "weight"


class DataError(ValueError):
    """Bad training data; the message names the file, line and field."""


def read_jsonl(path: Path) -> list[Messages]:
    """Every line of `path` as chat messages, or DataError naming the first bad line."""
    return [to_messages(record, where) for where, record in read_objects(path, DataError, "examples")]


def to_messages(record: dict[str, Any], where: str) -> Messages:
    if "messages" in record:
        return chat_messages(record["messages"], where)
    if "instruction" in record or "output" in record:
        prompt = "\n\n".join(p for p in (text(record, "instruction", where), str(record.get("input") or "")) if p)
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": text(record, "output", where)}]
    if "question" in record or "answer" in record:
        return [
            {"role": "user", "content": text(record, "question", where)},
            {"role": "assistant", "content": text(record, "answer", where)},
        ]
    raise DataError(f"{where}: unknown format: expected 'messages', 'instruction'/'output' or 'question'/'answer'")


def text(record: dict[str, Any], field: str, where: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{field}' must be a non-empty string")
    return value.strip()


def chat_messages(messages: Any, where: str) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list")
    checked = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(f"{where}: field '{field}.role' must be one of {sorted(ROLES)}")
        checked.append({"role": message["role"], "content": text(message, "content", f"{where}: {field}")})
        if "weight" in message:  # OpenAI's fine-tuning format: weight 0 = shown, not learnt
            if message["role"] != "assistant" or message["weight"] not in (0, 1):
                raise DataError(f"{where}: field '{field}.weight' must be 0 or 1, on assistant messages only")
            checked[-1]["weight"] = message["weight"]
    if checked[-1]["role"] != "assistant":
        raise DataError(f"{where}: field 'messages' must end with an assistant message")
    return checked


def split_eval(examples: list[Messages], fraction: float, seed: int) -> tuple[list[Messages], list[Messages]]:
    """A held-out slice (at least one example) when no eval file is given."""
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    held = max(1, round(len(shuffled) * fraction))
    return shuffled[held:], shuffled[:held]


def tokenize(messages: Messages, tokenizer: Any) -> dict[str, list[int]]:
    """input_ids and labels: labels copy the ids of assistant turns only (EOS included), else IGNORE.

    Assistant turns with weight 0 (few-shot examples in a prompt) are context, not learnt.

    Each assistant turn is located by rendering the conversation up to it, so the prompt side is
    exactly what `apply_chat_template(..., add_generation_prompt=True)` gives at inference.
    """
    ids: list[int] = []
    labels: list[int] = []
    for end, message in enumerate(messages, start=1):
        if message["role"] != "assistant" or message.get("weight") == 0:
            continue
        prompt = render(tokenizer, messages[: end - 1], generation_prompt=True)
        turn = render(tokenizer, messages[:end], generation_prompt=False)
        turn = turn[: last_index(turn, tokenizer.eos_token_id) + 1]  # stop at EOS: nothing after it is learnt
        if turn[: len(prompt)] != prompt:
            raise DataError("the chat template renders a conversation differently from its prefix")
        labels += [IGNORE] * (len(prompt) - len(ids)) + turn[len(prompt) :]
        ids = turn
    return {"input_ids": ids, "labels": labels}


def render(tokenizer: Any, messages: Messages, *, generation_prompt: bool) -> list[int]:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def last_index(ids: list[int], token: int) -> int:
    if token not in ids:
        raise DataError("the chat template does not end an assistant turn with the tokenizer's EOS token")
    return len(ids) - 1 - ids[::-1].index(token)
