"""Text in a document that speaks to the model instead of to the reader: planted instructions and
chat-control tokens. Passages are data, never instructions: ingestion flags such text in its
report, and the check lets no passage that carries it vouch for an answer."""

from __future__ import annotations

import re

# Turn markers of common chat templates (ChatML, Llama 3, Mistral, Gemma), as a document might plant them.
CONTROL_TOKEN = re.compile(r"<\|[\w.-]{1,40}\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>")
# The phrasings of published prompt-injection attacks: orders to drop the rules, a fake system voice,
# a fixed reply for every question, a new persona.
INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
    r"(?:previous|prior|above|earlier|preceding|former|other)\s+(?:instructions?|prompts?|rules|directions|messages)"
    r"|\b(?:system|admin(?:istrator)?|developer|assistant)\s+(?:note|message|prompt|instruction|override)s?\s*:"
    r"|\b(?:answer|respond|reply)\s+(?:to\s+)?(?:every|each|all|any)\s+(?:questions?|quer(?:y|ies)|requests?|prompts?)"
    r"\s+(?:with|by)\b"
    r"|\byou\s+are\s+now\s+(?:a|an|the|in)\b"
    r"|\bnew\s+instructions?\s*:",
    re.IGNORECASE,
)


def planted_instruction(text: str) -> str:
    """The first chat-control token or instruction-like phrase in `text`, or ''."""
    found = [m for m in (CONTROL_TOKEN.search(text), INSTRUCTION.search(text)) if m]
    return " ".join(min(found, key=lambda m: m.start()).group(0).split()) if found else ""


def defuse(text: str) -> str:
    """Chat-control strings in a document (<|im_start|>, <|eot_id|>, ...) stay text for any tokenizer or
    server: a zero-width space after '<' keeps them from becoming special tokens (a planted system turn)."""
    return CONTROL_TOKEN.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text)
