"""The PEFT family behind --method, on the real SmolLM2 on CPU: each method lowers the loss with the
base frozen, trains exactly its own parameters, saves, reloads and generates; PEQA keeps its
integers and trains only scales; merge, resume, the chat and --compare work for every method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from core import adapter, methods
from core.settings import METHODS, Settings, TrainSettings
from finetune.model import answer_loss, load_base
from finetune.train import train
from tests.conftest import ROOT, write_office_qa

pytestmark = pytest.mark.slow
# What a trainable parameter's name says about the method that owns it.
OWN_PARAMETERS = {
    "lora": "lora_",
    "qlora": "lora_",
    "ia3": "ia3_l",
    "prefix": "prompt_encoder",
    "prompt": "prompt_encoder",
    "series-adapter": ".mlp.adapter.",
    "parallel-adapter": ".mlp.adapter.",
    "peqa": ".scale",
}


@pytest.fixture(scope="module")
def base_path(llm_data_dir: Path) -> str:
    return str(llm_data_dir / "models" / "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def batch(llm_tokenizer):  # type: ignore[no-untyped-def]
    from transformers import DataCollatorForSeq2Seq

    from finetune.data import IGNORE, tokenize

    pairs = [("Where is the head office?", "In Brunnstadt, Hafenweg 4."), ("Who approves travel?", "Your manager.")]
    rows = [
        tokenize([{"role": "user", "content": q}, {"role": "assistant", "content": a}], llm_tokenizer) for q, a in pairs
    ]
    return DataCollatorForSeq2Seq(llm_tokenizer, label_pad_token_id=IGNORE, padding=True)(rows)


def loss_of(model, batch) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return answer_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])


def train_steps(model, batch, lr: float, steps: int = 3) -> list[float]:  # type: ignore[no-untyped-def]
    """A few AdamW steps on the same batch; the loss before each."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_only_its_parameters_then_saves_reloads_and_generates(
    method: str,
    base_path: str,
    batch,
    llm_tokenizer,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    torch.manual_seed(0)
    cfg = TrainSettings(method=method)
    model = methods.attach(load_base(base_path, method), cfg, base_path)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(OWN_PARAMETERS[method] in name for name in trainable), sorted(trainable)[:3]
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}

    losses = train_steps(model, batch, cfg.learning_rate)
    assert losses[-1] < losses[0], losses
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen)

    methods.save(model, tmp_path)
    assert set(load_file(str(tmp_path / methods.WEIGHTS))) == set(methods.adapter_state(model))
    assert methods.method_of(tmp_path) == ("lora" if method == "qlora" else method)  # without its manifest
    # The base as loaded for training, so that both run the same 4-bit kernels: inference's packed bf16
    # ones (AVX512-BF16 CPUs) move the loss by about 0.2%, more than the tolerance below.
    reloaded = methods.load(load_base(base_path, method), tmp_path)
    model.eval()
    with torch.no_grad():
        assert abs(float(loss_of(reloaded, batch)) - float(loss_of(model, batch))) < 1e-3
        prompt = llm_tokenizer.apply_chat_template(
            [{"role": "user", "content": "Where is the head office?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = methods.serving(reloaded).generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def text_loss(model, input_ids) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return float(model(input_ids=input_ids, labels=input_ids).loss)


def test_peqa_before_training_stays_close_to_the_base(base_path: str, llm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Next-token loss on a real document: b-bit integers x scales reproduce the base closely at
    4 bits, closer with per-group scales, less closely at 3 bits (a 135M model has little slack)."""
    text = (ROOT / "data" / "sample_docs" / "policies" / "expense_policy.md").read_text()
    input_ids = llm_tokenizer(text, return_tensors="pt").input_ids[:, :512]
    base_loss = text_loss(load_base(base_path, "peqa"), input_ids)
    loss = {}
    for bits, group in [(4, None), (4, 64), (3, None)]:
        cfg = TrainSettings(method="peqa", peqa_bits=bits, peqa_group_size=group)
        model = methods.attach(load_base(base_path, "peqa"), cfg, base_path)
        assert all(int(m.q.max()) <= 2**bits - 1 for m in model.modules() if isinstance(m, methods.PeqaLinear))
        loss[bits, group] = text_loss(model, input_ids)
    assert loss[4, None] < 1.3 * base_loss, (base_loss, loss)
    assert base_loss < loss[4, 64] < loss[4, None] < loss[3, None], (base_loss, loss)


@pytest.mark.parametrize("bits", [4, 3])
def test_peqa_trains_only_the_scales_and_keeps_its_integers(bits: int, base_path: str, batch) -> None:  # type: ignore[no-untyped-def]
    model = methods.attach(load_base(base_path, "peqa"), TrainSettings(method="peqa", peqa_bits=bits), base_path)
    layers = [m for m in model.modules() if isinstance(m, methods.PeqaLinear)]
    assert len(layers) == 7 * model.config.num_hidden_layers  # q k v o gate up down in every block
    integers = [layer.q.clone() for layer in layers]
    zeros = [layer.zero.detach().clone() for layer in layers]
    scales = [layer.scale.detach().clone() for layer in layers]
    losses = train_steps(model, batch, TrainSettings(method="peqa").learning_rate)
    assert losses[-1] < losses[0], losses
    assert all(torch.equal(layer.q, q) for layer, q in zip(layers, integers, strict=True))
    assert all(torch.equal(layer.zero, z) for layer, z in zip(layers, zeros, strict=True))
    assert all(not torch.equal(layer.scale, s) for layer, s in zip(layers, scales, strict=True))


def test_peqa_can_train_zero_points_too(base_path: str) -> None:
    model = methods.attach(load_base(base_path, "peqa"), TrainSettings(method="peqa", peqa_train_zeros=True), base_path)
    names = {name.rsplit(".", 1)[1] for name, p in model.named_parameters() if p.requires_grad}
    assert names == {"scale", "zero"}


def test_peqa_adapter_is_far_smaller_than_a_lora_adapter(base_path: str, tmp_path: Path) -> None:
    sizes = {}
    for method in ("lora", "peqa"):
        model = methods.attach(load_base(base_path, method), TrainSettings(method=method), base_path)
        methods.save(model, tmp_path / method)
        sizes[method] = (tmp_path / method / methods.WEIGHTS).stat().st_size
    assert sizes["peqa"] * 5 < sizes["lora"], sizes


# Through the Trainer: the adapter folder + manifest, merge, resume, the chat.


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_office_qa(tmp_path_factory.mktemp("qa-methods"), 12, 9)


def settings_for(data_dir: Path, files: tuple[Path, Path], method: str, output: str, steps: int = 4) -> Settings:
    cfg = TrainSettings(
        method=method, data=files[0], eval_data=files[1], output=output, max_steps=steps, save_steps=2, batch_size=3
    )
    return Settings(data_dir=data_dir, train=cfg)


@pytest.fixture(scope="module")
def trained(llm_data_dir: Path, qa_files: tuple[Path, Path]) -> dict[str, Path]:
    """prefix (peft, no merge) and peqa (ours, merges) adapters, completed with manifests."""
    return {m: train(settings_for(llm_data_dir, qa_files, m, f"methods-{m}")) for m in ("prefix", "peqa")}


@pytest.mark.parametrize("method", ["prefix", "peqa"])
def test_trained_adapter_folder_has_the_manifest_and_only_the_methods_tensors(
    method: str, trained: dict[str, Path]
) -> None:
    folder = trained[method]
    manifest = adapter.read_manifest(folder)
    assert manifest["completed"] and manifest["method"] == method and manifest["steps"] == 4
    assert 0 < manifest["trainable_params"] < manifest["base_params"] / 100
    assert manifest["eval_loss"] and manifest["train_seconds"] > 0
    saved = OWN_PARAMETERS[method] if method != "prefix" else "prompt_embeddings"  # peft's name in the file
    assert all(saved in name for name in load_file(str(folder / methods.WEIGHTS)))


def test_merge_folds_peqa_scales_and_refuses_prefix_with_the_reason(
    trained: dict[str, Path], llm_data_dir: Path
) -> None:
    from finetune.merge import merge

    settings = Settings(data_dir=llm_data_dir)
    target, difference = merge(settings, trained["peqa"].name)
    assert difference < 1e-3 and (target / "model.safetensors").is_file()
    with pytest.raises(adapter.AdapterError, match="cannot be merged: prefix tuning adds learned keys/values"):
        merge(settings, trained["prefix"].name)


class Cut(Exception):
    pass


class CutAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        raise Cut


@pytest.mark.parametrize("method", ["prefix", "peqa"])
def test_cut_run_resumes_to_the_same_adapter(
    method: str, trained: dict[str, Path], llm_data_dir: Path, qa_files: tuple[Path, Path]
) -> None:
    settings = settings_for(llm_data_dir, qa_files, method, f"cut-{method}")
    with pytest.raises(Cut):
        train(settings, callbacks=[CutAfterFirstCheckpoint()])
    resumed = train(settings, resume=True)
    expected, got = load_file(str(trained[method] / methods.WEIGHTS)), load_file(str(resumed / methods.WEIGHTS))
    assert expected.keys() == got.keys()
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) < 1e-3


@pytest.mark.parametrize("method", ["prefix", "peqa"])
def test_chat_model_answers_with_any_methods_adapter(method: str, trained: dict[str, Path], llm_data_dir: Path) -> None:
    from langchain_core.messages import HumanMessage

    from core.llm import chat_model
    from core.settings import ChatSettings

    llm = chat_model(Settings(data_dir=llm_data_dir), trained[method].name, ChatSettings(max_new_tokens=12))
    chunks = list(llm.stream([HumanMessage("What is the code of office 3?")]))
    assert len(chunks) > 1 and "".join(c.text for c in chunks).strip()


def test_only_the_last_used_base_copies_stay_in_memory(
    trained: dict[str, Path], llm_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import llm
    from core.settings import ChatSettings

    def answer(method: str) -> str:
        model = llm.chat_model(Settings(data_dir=llm_data_dir), trained[method].name, ChatSettings(max_new_tokens=8))
        return str(model.invoke("What is the code of office 3?").content)

    copies = llm.shared_model(Settings(data_dir=llm_data_dir)).own_copies
    copies.clear()  # whatever earlier tests loaded
    monkeypatch.setattr(llm, "MAX_OWN_COPIES", 1)
    first = answer("prefix")
    answer("peqa")  # evicts prefix's copy
    assert list(copies) == [str(trained["peqa"].resolve())]
    assert answer("prefix") == first  # reloaded, the same answer


def test_compare_trains_each_method_and_writes_the_table_and_plot(
    llm_data_dir: Path,
    qa_files: tuple[Path, Path],
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    from finetune import cli

    report = tmp_path / "compare.md"
    files = ["--data", str(qa_files[0]), "--eval-data", str(qa_files[1])]
    steps = ["--max-steps", "2", "--save-steps", "1", "--batch-size", "3"]
    code = cli.main(["--compare", "ia3,peqa", "--data-dir", str(llm_data_dir), *files, *steps, "--report", str(report)])
    assert code == 0
    table = report.read_text()
    for heading in ("trainable params", "adapter MB", "peak RSS MB", "s/step", "eval loss", "answer F1", "tokens/s"):
        assert heading in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| base (no adapter)", "| ia3", "| peqa"]
    assert report.with_suffix(".png").stat().st_size > 5000
    assert "| ia3 |" in capsys.readouterr().out
