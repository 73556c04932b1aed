"""QLoRA on the real SmolLM2 on CPU: loss falls (also after an eval step), base stays frozen,
the adapter reloads and stops at EOS, and a killed run resumes to the same adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core import adapter
from core.cli import EXIT_ERROR
from core.settings import Settings, TrainSettings
from finetune import cli, evaluate
from finetune.data import read_jsonl
from finetune.train import train
from tests.conftest import ROOT, write_office_qa

pytestmark = pytest.mark.slow
STEPS, SAVE = 6, 3


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_office_qa(tmp_path_factory.mktemp("qa"), 40, 32)


def toy_settings(data_dir: Path, files: tuple[Path, Path], output: str) -> Settings:
    train_cfg = TrainSettings(
        data=files[0], eval_data=files[1], max_steps=STEPS, save_steps=SAVE, lr=5e-4, output=output
    )
    return Settings(data_dir=data_dir, train=train_cfg)


@pytest.fixture(scope="module")
def trained(llm_data_dir: Path, toy_files: tuple[Path, Path]) -> Path:
    return train(toy_settings(llm_data_dir, toy_files, "toy"))


def test_qlora_lowers_the_loss_even_after_an_eval_step(trained: Path) -> None:
    manifest = adapter.read_manifest(trained)
    losses = dict(manifest["train_loss"])
    assert manifest["completed"] and manifest["steps"] == STEPS and manifest["method"] == "qlora"
    assert [step for step, _ in manifest["eval_loss"]] == [SAVE, STEPS], "the last step's eval is not run twice"
    assert manifest["final_eval_loss"] == manifest["eval_loss"][-1][1]
    assert losses[STEPS] < losses[SAVE + 1] < losses[1], "training must go on learning after an eval step"
    assert manifest["eval_loss"][-1][1] < manifest["eval_loss"][0][1]


def test_generating_with_the_4bit_model_being_trained_does_not_stop_its_gradients(llm_data_dir: Path) -> None:
    """On AVX512-BF16 CPUs bitsandbytes repacks the 4-bit weights on a no-grad eval forward (`generate`),
    after which backward gives the LoRA weights no gradient at all (only a `gemv_4bit` warning).
    The trainer's eval step does not trigger it: its inputs require grad (gradient checkpointing).
    Checked on such a CPU to fail without `keep_4bit_weights_trainable`; elsewhere it passes either way."""
    import torch

    from core import methods
    from finetune.model import load_base

    path = str(llm_data_dir / "models" / "smollm2-135m-instruct")
    model = methods.attach(load_base(path, "qlora"), TrainSettings(method="qlora"), path)
    ids = torch.tensor([[1, 504, 3458, 314, 253, 1205, 30]])
    model.eval()
    model.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if "lora_B" in name}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_the_4bit_base_keeps_no_mapping_of_its_checkpoint_and_stays_tied(llm_data_dir: Path) -> None:
    """The unquantized weights are copied off the safetensors file, so its pages (about 440 MB resident
    after quantizing) are not held for the whole run; the LM head stays the embedding matrix. (Other
    tests' models may still map the file: only this model's tensors are looked for in its mappings.)"""
    import gc

    from finetune.model import load_base

    folder = llm_data_dir / "models" / "smollm2-135m-instruct"
    model = load_base(str(folder), "qlora")
    gc.collect()
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines() if str(folder) in line]
    mapped = [[int(x, 16) for x in line[0].split("-")] for line in maps if line[-1].endswith(".safetensors")]
    tensors = [*model.parameters(), *model.buffers()]
    assert not [t for t in tensors if any(start <= t.data_ptr() < end for start, end in mapped)]
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_only_lora_weights_are_saved_and_they_moved_while_the_base_file_is_untouched(
    trained: Path, llm_data_dir: Path
) -> None:
    weights = load_file(str(trained / "adapter_model.safetensors"))
    assert weights and all("lora_" in name for name in weights)
    assert any(float(w.abs().max()) > 0 for name, w in weights.items() if "lora_B" in name), "B starts at zero"
    manifest = adapter.read_manifest(trained)
    assert manifest["base_hash"] == adapter.base_hash(manifest["base_path"])
    assert not (trained / "checkpoints").exists()
    for key in ("base", "hyperparameters", "data_files", "chat_template_hash", "wall_seconds", "peak_rss_mb"):
        assert manifest[key]


def test_reloaded_4bit_base_with_adapter_beats_the_base_and_stops_at_eos(
    trained: Path, llm_data_dir: Path, toy_files: tuple[Path, Path]
) -> None:
    settings = toy_settings(llm_data_dir, toy_files, "toy")
    results = evaluate.compare(settings, trained, "qlora", read_jsonl(toy_files[1])[:3])
    assert results["adapter"]["eval_loss"] < results["base"]["eval_loss"]
    assert results["adapter"]["token_f1"] > results["base"]["token_f1"]
    assert results["adapter"]["stopped_at_eos"] == 1.0


def test_list_shows_the_adapter(trained: Path, llm_data_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["--list", "--json", "--data-dir", str(llm_data_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "toy", "completed": True}.items() <= next(r for r in rows if r["name"] == "toy").items()
    assert adapter.newest_completed(llm_data_dir / "adapters") is not None


def test_killed_run_resumes_to_the_same_adapter(
    trained: Path, llm_data_dir: Path, toy_files: tuple[Path, Path]
) -> None:
    command = [sys.executable, "-m", "finetune", "--qlora", "--data-dir", str(llm_data_dir), "--output", "cut"]
    command += ["--data", str(toy_files[0]), "--eval-data", str(toy_files[1]), "--no-compare"]
    command += ["--max-steps", str(STEPS), "--save-steps", str(SAVE), "--lr", "5e-4"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = llm_data_dir / "adapters" / "cut" / "checkpoints" / f"checkpoint-{SAVE}" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    assert not adapter.read_manifest(checkpoint.parents[2])["completed"]

    resumed = train(toy_settings(llm_data_dir, toy_files, "cut"), resume=True)
    assert adapter.read_manifest(resumed)["completed"]
    expected, got = (
        load_file(str(trained / "adapter_model.safetensors")),
        load_file(str(resumed / "adapter_model.safetensors")),
    )
    assert expected.keys() == got.keys()
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) < 1e-3


def test_help_lists_every_training_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "finetune", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for flag in (
        "--qlora",
        "--lora",
        "--data",
        "--eval-data",
        "--base",
        "--output",
        "--epochs",
        "--max-steps",
        "--lr",
        "--rank",
        "--alpha",
        "--dropout",
        "--target-modules",
        "--max-seq-len",
        "--batch-size",
        "--grad-accum",
        "--resume",
        "--seed",
        "--list",
    ):
        assert flag in out.stdout


def test_merge_matches_base_plus_adapter_and_saves_a_plain_model(trained: Path, llm_data_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    assert cli.main(["--merge", "toy", "--data-dir", str(llm_data_dir)]) == 0
    assert "max logit difference vs base + adapter" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(llm_data_dir / "models" / "merged-toy")
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_adapter_of_another_base_is_refused(trained: Path, llm_data_dir: Path) -> None:
    with pytest.raises(adapter.AdapterError, match="was trained on base"):
        adapter.check_base(trained, "some/other-model", "id:some/other-model")


def test_missing_base_model_is_one_clear_line(tmp_path: Path, toy_files: tuple[Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    code = cli.main(["--qlora", "--base", str(tmp_path / "no-model"), "--data-dir", str(tmp_path), "--no-compare"])
    error = capsys.readouterr().err
    assert code == EXIT_ERROR and error.count("\n") == 1
    assert "not found or unreadable" in error


def test_training_that_cannot_fit_in_memory_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, llm_data_dir: Path
) -> None:
    from finetune import train as train_module

    monkeypatch.setattr(train_module, "available_memory", lambda: 512 * 2**20)
    base = str(llm_data_dir / "models" / "smollm2-135m-instruct")
    with pytest.raises(MemoryError, match=r"only 0\.5 GiB are free"):
        train_module.check_memory(base, "lora")


def test_answer_only_loss_equals_the_models_own_loss(llm_data_dir: Path, llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import DataCollatorForSeq2Seq

    from core.methods import attach
    from finetune.data import IGNORE, tokenize
    from finetune.model import answer_loss, load_base

    base = str(llm_data_dir / "models" / "smollm2-135m-instruct")
    model = attach(load_base(base, "qlora"), TrainSettings(), base)
    rows = [
        tokenize([{"role": "user", "content": q}, {"role": "assistant", "content": a}], llm_tokenizer)
        for q, a in [("Where is HQ?", "In Brunnstadt."), ("Who is the CTO of Kestrel?", "Jonas Brenner is our CTO.")]
    ]
    batch = DataCollatorForSeq2Seq(llm_tokenizer, label_pad_token_id=IGNORE, padding=True)(rows)
    with torch.no_grad():
        ours = answer_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        reference = model(**batch).loss
    assert abs(float(ours) - float(reference)) < 1e-3


def test_final_evaluation_runs_only_when_the_last_step_was_not_evaluated() -> None:
    from types import SimpleNamespace

    from finetune.train import final_evaluation

    calls: list[int] = []

    def trainer_at(step: int) -> SimpleNamespace:  # a stand-in with the two Trainer attributes used
        history = [{"loss": 2.0, "step": 3}, {"eval_loss": 1.5, "step": 3}, {"loss": 1.8, "step": 4}]
        state = SimpleNamespace(log_history=history, global_step=step)
        return SimpleNamespace(state=state, evaluate=lambda: calls.append(step) or {"eval_loss": 1.4})

    assert final_evaluation(trainer_at(3)) == {"eval_loss": 1.5, "step": 3} and calls == []
    assert final_evaluation(trainer_at(4)) == {"eval_loss": 1.4} and calls == [4]
