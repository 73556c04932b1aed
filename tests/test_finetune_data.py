"""Training data: three formats detected, bad lines named by line and field, loss only on answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune import data


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_the_three_formats_become_the_same_chat_messages(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.jsonl",
        {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]},
        {"instruction": "Q?", "output": "A."},
        {"question": "Q?", "answer": "A."},
        "",
    )
    expected = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    assert data.read_jsonl(path) == [expected] * 3


def test_alpaca_input_is_appended_to_the_instruction(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", {"instruction": "Translate", "input": "Hallo", "output": "Hello"})
    assert data.read_jsonl(path)[0][0]["content"] == "Translate\n\nHallo"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad.jsonl:2: not valid JSON"),
        ('["a list"]', "bad.jsonl:2: expected a JSON object"),
        ({"question": "Q?"}, "bad.jsonl:2: field 'answer' must be a non-empty string"),
        ({"question": "Q?", "answer": "  "}, "bad.jsonl:2: field 'answer' must be a non-empty string"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "bad.jsonl:2: field 'messages[0].role' must be one of"),
        ({"messages": [{"role": "user", "content": "x"}]}, "must end with an assistant message"),
        ({"text": "free text"}, "bad.jsonl:2: unknown format"),
        (
            {"messages": [{"role": "user", "content": "x", "weight": 0}, {"role": "assistant", "content": "y"}]},
            "bad.jsonl:2: field 'messages[0].weight' must be 0 or 1, on assistant messages only",
        ),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: object, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", {"question": "ok?", "answer": "ok."}, line)
    with pytest.raises(data.DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        data.read_jsonl(path)


def test_missing_and_empty_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="no such file"):
        data.read_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(data.DataError, match="empty file"):
        data.read_jsonl(write(tmp_path / "empty.jsonl", ""))


def test_held_out_split_is_seeded_and_disjoint() -> None:
    examples = [[{"role": "user", "content": str(i)}] for i in range(20)]
    train, held = data.split_eval(examples, 0.2, seed=1)
    assert len(held) == 4 and len(train) == 16
    assert data.split_eval(examples, 0.2, seed=1) == (train, held)
    assert not [m for m in held if m in train]


def test_labels_mask_exactly_the_prompt_and_keep_each_answer_with_its_eos(llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "system", "content": "You answer from the handbook."},
        {"role": "user", "content": "How many remote days?"},
        {"role": "assistant", "content": "Three days a week."},
        {"role": "user", "content": "And abroad?"},
        {"role": "assistant", "content": "Up to 20 days a year."},
    ]
    row = data.tokenize(messages, llm_tokenizer)
    ids, labels = row["input_ids"], row["labels"]
    prompt = data.render(llm_tokenizer, messages[:2], generation_prompt=True)
    assert labels[: len(prompt)] == [data.IGNORE] * len(prompt)
    learnt = llm_tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != data.IGNORE])
    assert learnt == "Three days a week.<|im_end|>Up to 20 days a year.<|im_end|>"
    assert all(label in (data.IGNORE, i) for i, label in zip(ids, labels, strict=True))
    assert ids[-1] == labels[-1] == llm_tokenizer.eos_token_id
    # the prompt side is exactly what inference renders for the second question
    second = data.render(llm_tokenizer, messages[:4], generation_prompt=True)
    assert ids[: len(second)] == second


def test_assistant_turns_with_weight_0_are_shown_but_not_learnt(tmp_path: Path, llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    few_shot = [
        {"role": "user", "content": "Example question?"},
        {"role": "assistant", "content": "Example answer.", "weight": 0},
    ]
    line = {"messages": [*few_shot, {"role": "user", "content": "Real?"}, {"role": "assistant", "content": "Real."}]}
    [messages] = data.read_jsonl(write(tmp_path / "w.jsonl", line))
    row = data.tokenize(messages, llm_tokenizer)
    learnt = [i for i, label in zip(row["input_ids"], row["labels"], strict=True) if label != data.IGNORE]
    assert llm_tokenizer.decode(learnt) == "Real.<|im_end|>"
    assert "Example answer." in llm_tokenizer.decode(row["input_ids"])


def test_shipped_domain_qa_is_valid_and_large_enough() -> None:
    root = Path(__file__).resolve().parents[1] / "data" / "qa"
    train, held_out = data.read_jsonl(root / "train.jsonl"), data.read_jsonl(root / "eval.jsonl")
    assert len(train) >= 150 and len(held_out) >= 40
    questions = {m[0]["content"] for m in train}
    assert not [m for m in held_out if m[0]["content"] in questions], "held-out questions are not trained on"


def test_examples_longer_than_max_seq_len_are_cut_and_counted(llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from finetune.train import tokenize_all

    short = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    long_answer = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "word " * 200}]
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Done."}]
    rows, cut = tokenize_all([short, long_answer, long_prompt], llm_tokenizer, 64)
    assert cut == 2
    assert [row["length"] for row in rows] == [len(rows[0]["input_ids"]), 64], "no answer left: left out"
    assert all(len(row["labels"]) == len(row["input_ids"]) for row in rows)


def test_a_max_seq_len_that_cuts_off_every_answer_is_one_clear_error(llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from finetune.train import tokenize_all

    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Done."}]
    with pytest.raises(
        data.DataError, match=r"--max-seq-len 64 cuts off every answer: the earliest starts at token 2\d\d"
    ):
        tokenize_all([long_prompt], llm_tokenizer, 64)
