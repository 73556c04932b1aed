"""Settings layer correctly; bundled models resolve offline; the LLM cache is rebuilt when corrupt;
the embedder's ONNX export gives sentence-transformers' vectors and is made again when stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core import models
from core.settings import BUNDLED_EMBEDDING, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_environment_overrides_defaults_and_flags_override_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASKDOCS_CHUNK_SIZE", "120")
    monkeypatch.setenv("ASKDOCS_COLLECTION", "from-env")
    loaded = load_settings(collection="from-flag", chunk_overlap=None)
    assert (loaded.chunk_size, loaded.chunk_overlap, loaded.collection) == (120, 40, "from-flag")


def test_dotenv_file_is_read(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ASKDOCS_CHUNK_SIZE=90\nASKDOCS_CHAT__TOP_K=9\n")
    assert (Settings().chunk_size, Settings().chat.top_k) == (90, 9)


def test_invalid_setting_names_the_field(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="collection"):
        Settings(collection="a/b")


def test_bundled_embedding_model_resolves_to_the_packaged_folder() -> None:
    path = Path(models.embedding_model_path(BUNDLED_EMBEDDING))
    assert (path / "model.safetensors").is_file()
    assert models.embedding_model_path("some-org/some-model") == "some-org/some-model"


def test_half_written_or_damaged_llm_cache_is_not_taken_as_complete(tmp_path: Path) -> None:
    gguf = models.smollm2_gguf()
    target = tmp_path / "llm"
    target.mkdir()
    assert not models._is_complete(target, gguf)
    (target / "model.safetensors").write_bytes(b"x" * 10)
    marker = {"source": str(gguf), "source_size": gguf.stat().st_size, "files": {"model.safetensors": 10}}
    (target / models.COMPLETE_MARKER).write_text(json.dumps(marker))
    assert models._is_complete(target, gguf)
    (target / "model.safetensors").write_bytes(b"x" * 5)  # truncated
    assert not models._is_complete(target, gguf)


@pytest.mark.slow
def test_bundled_llm_is_converted_once_into_a_loadable_folder(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    target = models.bundled_llm_dir(tmp_path / "smollm2")
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert models.bundled_llm_dir(tmp_path / "smollm2") == target
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp, "second call reuses the cache"
    assert AutoConfig.from_pretrained(target).model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(target)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user" in prompt


@pytest.mark.parametrize("module", ["ingestion", "ingestion.search"])
def test_every_command_has_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m" in result.stdout
    for flag in (
        ["--chunk-size", "--rebuild", "--dry-run", "--json", "--collection"] if module == "ingestion" else ["-k"]
    ):
        assert flag in result.stdout


def test_bf16_embeddings_stay_in_the_fp32_vector_space(settings: Settings) -> None:
    import numpy as np

    texts = [f"Runbook step {i}: restart the VPN concentrator vpn-{i}.kestrel.internal if it stops." for i in range(16)]
    model = models.load_embedder(settings)
    fp32 = models.encode(settings.model_copy(update={"embedding_precision": "fp32"}), model, texts)
    bf16 = models.encode(settings.model_copy(update={"embedding_precision": "bf16"}), model, texts)
    assert np.min(np.sum(fp32 * bf16, axis=1)) > 0.999


def test_llm_precision_auto_takes_4bit_only_where_it_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import models
    from core.llm import llm_precision

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for native_bf16, expected in [(True, "nf4"), (False, "fp32")]:
        monkeypatch.setattr(models, "cpu_has_bf16", lambda native_bf16=native_bf16: native_bf16)
        assert llm_precision(Settings()) == expected
        assert llm_precision(Settings(llm_precision="nf4")) == "nf4"
        assert llm_precision(Settings(llm_precision="fp32")) == "fp32"


@pytest.mark.slow
def test_questions_embedded_by_onnx_runtime_match_sentence_transformers(settings: Settings) -> None:
    import numpy as np

    questions = ["Does Django scale?", "Who approves travel expenses above 1,150 EUR for the Kraków office?", "VPN"]
    fp32 = settings.model_copy(update={"embedding_precision": "fp32"})
    expected = models.encode(fp32, models.load_embedder(settings), questions)
    together = models.onnx_encoder(settings)(questions)  # padded to the longest
    assert np.min(np.sum(together * expected, axis=1)) > 0.99999
    alone = models.QuestionEmbeddings(settings).embed_query(questions[1])
    assert np.allclose(alone, expected[1], atol=1e-5)


@pytest.mark.slow
def test_a_broken_or_stale_onnx_export_is_made_again(settings: Settings, tmp_path: Path) -> None:
    import numpy as np
    import onnx

    path, question = models.embedding_model_path(BUNDLED_EMBEDDING), ["Who is the office manager in Milan?"]
    expected = models.load_embedder(settings).encode(question, normalize_embeddings=True)

    def token_embeddings(exported: onnx.ModelProto) -> onnx.TensorProto:
        return max(exported.graph.initializer, key=lambda t: len(t.raw_data))

    models.open_onnx(path, tmp_path)
    (target,) = tmp_path.glob("*.onnx")
    stale = onnx.load(target)
    token_embeddings(stale).raw_data = bytes(len(token_embeddings(stale).raw_data))
    onnx.save(stale, target)  # a valid file that no longer matches the model
    assert np.allclose(models.open_onnx(path, tmp_path)(question), expected, atol=1e-5)
    assert any(token_embeddings(onnx.load(target)).raw_data), "exported again"
    target.write_bytes(b"not an onnx file")
    assert np.allclose(models.open_onnx(path, tmp_path)(question), expected, atol=1e-5)


def test_only_bitsandbytes_hub_kernel_warning_is_silenced(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    load_settings()  # every entry point does, before anything imports bitsandbytes
    name = "bitsandbytes.backends.cpu.ops"
    logger = logging.getLogger(name)
    # The logger's own level: an earlier test's quiet_libraries() leaves "bitsandbytes" at ERROR.
    with caplog.at_level(logging.WARNING, logger=name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'")
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]
