"""The llama-cpp backend (core/llama_llm.py) on the real bundled GGUF and the sample company's adapter:
it streams, honours stop strings, switches adapters without leaking one into the other's answers, lets
go of the model when a reader stops early, and leaves what llama.cpp cannot run to transformers."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from core.gguf_lora import adapter_gguf
from core.llama_llm import answer_penalty
from core.llm import chat_model, runs_on_llama_cpp
from core.settings import Settings
from tests.conftest import ROOT

SAMPLE_ADAPTER = ROOT / "data" / "sample_adapters" / "sample-company"
MESSAGES = [
    SystemMessage("You answer questions about the company's documents. Cite the passage you used like [1]."),
    HumanMessage(
        "[1] (sales.md) The Milan Sales Office covers Italy; it is managed by Luca Bellini.\n\n"
        "Question: Which office covers sales in Italy?"
    ),
]


@pytest.fixture(scope="module")
def settings(llm_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The converted base shared; the sample adapter copied, so its GGUF LoRA is written there, not in the repo."""
    data_dir = tmp_path_factory.mktemp("llama-data")
    (data_dir / "models").symlink_to(llm_data_dir / "models")
    shutil.copytree(SAMPLE_ADAPTER, data_dir / "adapters" / "sample-company")
    return Settings(data_dir=data_dir, llm_backend="llama-cpp", adapter="none")


def text(settings: Settings, adapter: str, **options: object) -> str:
    return str(chat_model(settings, adapter).invoke(MESSAGES, max_new_tokens=24, **options).content)


def test_the_answer_streams_token_by_token(settings: Settings) -> None:
    chunks = [c.content for c in chat_model(settings, "sample-company").stream(MESSAGES, max_new_tokens=24)]
    assert len(chunks) >= 8 and "".join(chunks).strip()


def test_a_stop_string_ends_the_answer_before_it(settings: Settings) -> None:
    whole = text(settings, "sample-company")
    words = whole.split()
    assert len(words) >= 4, whole
    stop = f" {words[2]}"
    assert text(settings, "sample-company", stop=[stop]) == whole[: whole.index(stop)]


def test_adapters_switch_per_call_and_leave_nothing_behind(settings: Settings) -> None:
    base, adapted = text(settings, "none"), text(settings, "sample-company")
    assert base != adapted  # the LoRA is applied ...
    assert text(settings, "none") == base  # ... and taken off again, the kept prompt evaluated anew
    assert text(settings, "sample-company") == adapted
    assert chat_model(settings, "none").loaded is chat_model(settings, "sample-company").loaded  # one base


def test_a_reader_that_stops_early_frees_the_model(settings: Settings) -> None:
    model = chat_model(settings, "sample-company")
    stream = model.stream(MESSAGES, max_new_tokens=64)
    next(stream)
    stream.close()
    assert not model.loaded.lock.locked()
    assert text(settings, "sample-company") == text(settings, "sample-company")


def test_the_repetition_penalty_covers_the_answer_only() -> None:
    scores = np.array([2.0, -2.0, 2.0, 2.0], dtype=np.single)
    prompt_then_answer = np.array([0, 0, 1, 2], dtype=np.intc)  # token 0 only in the prompt
    out = answer_penalty(2, 2.0)(prompt_then_answer, scores.copy())
    assert out.tolist() == [2.0, -4.0, 1.0, 2.0]


def test_a_stale_gguf_lora_is_exported_again(settings: Settings) -> None:
    folder = settings.adapters_dir / "sample-company"
    base = settings.models_dir / "smollm2-135m-instruct"
    first = adapter_gguf(folder, base)
    written = first.stat().st_mtime_ns
    assert adapter_gguf(folder, base).stat().st_mtime_ns == written  # fresh: kept
    later = time.time() + 5
    os.utime(folder / "adapter_model.safetensors", (later, later))
    assert adapter_gguf(folder, base).stat().st_mtime_ns != written


def test_what_llama_cpp_cannot_run_stays_in_transformers(settings: Settings, tmp_path: Path) -> None:
    ia3 = tmp_path / "ia3"
    ia3.mkdir()
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    assert runs_on_llama_cpp(settings, None) and runs_on_llama_cpp(settings, settings.adapters_dir / "sample-company")
    assert not runs_on_llama_cpp(settings, ia3)
    assert not runs_on_llama_cpp(settings.model_copy(update={"llm_base": "HuggingFaceTB/SmolLM2-360M"}), None)


def test_the_base_is_the_nf4_base_in_q8_0_blocks(settings: Settings) -> None:
    """Every layer's weights are the NF4 ones adapters are trained on (not the shipped Q4_1 ones), in Q8_0."""
    import gguf

    from core.llama_llm import nf4_gguf, nf4_weights
    from core.models import llm_model_path, smollm2_gguf

    base = llm_model_path(settings)
    ours = {t.name: t for t in gguf.GGUFReader(str(nf4_gguf(settings.models_dir, base))).tensors}
    shipped = {t.name: t for t in gguf.GGUFReader(str(smollm2_gguf())).tensors}
    assert ours.keys() == shipped.keys()
    layers = [name for name, t in shipped.items() if t.tensor_type == gguf.GGMLQuantizationType.Q4_1]
    assert len(layers) == 210 and all(ours[name].tensor_type == gguf.GGMLQuantizationType.Q8_0 for name in layers)
    name = "blk.3.attn_q.weight"  # q's rows are permuted for llama.cpp: a wrong order would be far off
    nf4 = nf4_weights(base)[name]

    def off(tensor: gguf.ReaderTensor) -> float:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(nf4.shape)
        return float(np.linalg.norm(values - nf4) / np.linalg.norm(nf4))

    assert off(ours[name]) < 0.01 < 0.05 < off(shipped[name])


def test_the_chain_answers_through_llama_cpp_and_the_check_cites_it(chat_data_dir: Path, tmp_path: Path) -> None:
    """The whole chain on the sample documents with the sample adapter on llama.cpp: a checked, cited answer."""
    from core.chain import chain_from_settings

    shutil.copytree(SAMPLE_ADAPTER, tmp_path / "sample-company")
    settings = Settings(data_dir=chat_data_dir, llm_backend="llama-cpp")
    chain = chain_from_settings(settings, adapter=str(tmp_path / "sample-company"), max_new_tokens=64)
    result = chain.invoke({"question": "What's the list price of the ATEX sensor?", "history": []})
    assert not result.refused and "649" in result.answer, result.reason
    assert any("price" in source["source"] for source in result.sources), result.sources
