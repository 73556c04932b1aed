"""python -m finetune.synth: synthetic Q&A from the ingested chunks, written as chat JSONL.

For every chunk of the collection the local LLM is asked for a question the chunk answers and
the answer; pairs that are empty, not supported by the chunk, or duplicates are dropped. Each
kept line records its source file and chunk id. Re-running continues where the last run stopped.

    python -m finetune.synth --output data/qa/synthetic.jsonl --limit 200
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from core.cli import add_store_options
from core.metrics import words

PROMPT = (
    "Read the text below and write one question that an employee could ask and that the text answers, "
    "followed by its answer taken from the text.\nReply exactly as:\nQuestion: ...\nAnswer: ...\n\nText:\n{chunk}"
)
PAIR = re.compile(r"Question:\s*(?P<question>.+?)\s*Answer:\s*(?P<answer>.+)", re.DOTALL | re.IGNORECASE)
MIN_SUPPORT = 0.6  # share of the answer's words that must occur in the chunk
MAX_NEW_TOKENS = 96


def parse_pair(reply: str) -> tuple[str, str] | None:
    match = PAIR.search(reply)
    if not match:
        return None
    question, answer = (" ".join(match.group(g).split()) for g in ("question", "answer"))
    return (question, answer) if question and answer else None


def keep(question: str, answer: str, chunk: str, seen: set[str]) -> bool:
    """A real question, an answer the chunk supports, not asked before."""
    key = " ".join(words(question))
    answer_words = set(words(answer))
    support = len(answer_words & set(words(chunk))) / max(len(answer_words), 1)
    if not question.endswith("?") or len(words(question)) < 3 or not answer_words or key in seen:
        return False
    if support < MIN_SUPPORT or " ".join(words(answer)) in key:
        return False
    seen.add(key)
    return True


def already_done(output: Path) -> tuple[set[str], set[str]]:
    """Chunk ids processed by earlier runs (kept or not) and the questions already written."""
    progress = progress_file(output)
    done = set(progress.read_text().split()) if progress.exists() else set()
    seen = set()
    if output.exists():
        for line in output.read_text().splitlines():
            if line.strip():
                seen.add(" ".join(words(json.loads(line)["messages"][0]["content"])))
    return done, seen


def progress_file(output: Path) -> Path:
    return output.with_name(output.name + ".progress")


def synthesize(settings: Any, output: Path, limit: int | None = None) -> dict[str, int]:
    """Walk the collection and append kept pairs to `output`; returns counts."""
    from tqdm import tqdm

    from core import store
    from core.llm import shared_model
    from finetune.evaluate import generate

    collection = store.client(settings).get_collection(settings.collection)
    rows: Any = collection.get(include=["documents", "metadatas"])
    chunks = sorted(zip(rows["ids"], rows["documents"], rows["metadatas"], strict=True))
    done, seen = already_done(output)
    todo = [c for c in chunks if c[0] not in done][:limit]
    loaded = shared_model(settings)  # the chat's copy
    model, tokenizer = loaded.model, loaded.tokenizer
    counts = {"chunks": len(todo), "kept": 0, "dropped": 0}
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as out, progress_file(output).open("a") as progress:
        for chunk_id, text, meta in tqdm(todo, desc="synthesizing", unit="chunk"):
            [(reply, _)] = generate(
                model, tokenizer, [[{"role": "user", "content": PROMPT.format(chunk=text)}]], MAX_NEW_TOKENS
            )
            pair = parse_pair(reply)
            if pair and keep(*pair, text, seen):
                messages = [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
                out.write(json.dumps({"messages": messages, "source": meta["source"], "chunk_id": chunk_id}) + "\n")
                counts["kept"] += 1
            else:
                counts["dropped"] += 1
            out.flush()
            progress.write(chunk_id + "\n")  # after the pair: a kill never loses a kept pair
            progress.flush()
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("data/qa/synthetic.jsonl"), help="chat JSONL to append to")
    parser.add_argument("--limit", type=int, help="at most this many new chunks this run")
    add_store_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.cli import ingested_settings

    settings = ingested_settings(args.collection, args.data_dir, args.user)
    if isinstance(settings, int):
        return settings
    counts = synthesize(settings, args.output, args.limit)
    print(f"{counts['chunks']} chunks read, {counts['kept']} pairs kept, {counts['dropped']} dropped -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
