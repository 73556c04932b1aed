"""The chat LLM on llama.cpp, in this process (`llm_backend = llama-cpp`): the NF4 base the adapters are
trained on, in a Q8_0 GGUF; each LoRA adapter exported to a GGUF LoRA beside it and switched per call, not
merged.

The prompt is the base's own chat template, rendered by its tokenizer: the same tokens as the local backend
gets. llama.cpp keeps the evaluated prompt, so the part a question shares with the one before (the system
prompt and the few-shot examples) is not evaluated again, unless the adapter changed in between.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import SkipValidation

from core.llm import InProcessChatModel, chat_dicts
from core.models import smollm2_gguf

CONTEXT_TOKENS = 4096  # the chain's prompt is about 850 tokens; follow-ups and long passages stay inside
LOADING = threading.Lock()
LAYER = re.compile(r"model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)")  # a quantized Linear's name


@dataclass
class LlamaModel:
    """One llama.cpp model and context, with every adapter asked for so far; one generation at a time."""

    llm: Any  # llama_cpp.Llama
    tokenizer: Any  # the base's transformers tokenizer: its chat template renders the prompt
    base_hash: str  # of the base's weights, which an adapter's manifest must name (core/adapter.py)
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: dict[Path, Any] = field(default_factory=dict)  # GGUF LoRA -> llama.cpp adapter handle
    active: Path | None = None

    def use(self, adapter: Path | None) -> None:
        """Generate with `adapter` (a GGUF LoRA; None: the base alone) from now on. Hold the lock."""
        import llama_cpp

        if adapter == self.active:
            return
        if adapter is not None and adapter not in self.adapters:
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(adapter).encode())
            if not handle:
                raise ValueError(f"llama.cpp could not load the LoRA {adapter}")
            self.adapters[adapter] = handle
        handles = [self.adapters[adapter]] if adapter is not None else []
        array = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
        scales = (ctypes.c_float * len(handles))(*[1.0] * len(handles))
        if llama_cpp.llama_set_adapters_lora(self.llm.ctx, array, len(handles), scales):
            raise ValueError(f"llama.cpp could not apply the LoRA {adapter}")
        self.llm.reset()  # the kept prompt was evaluated with the other adapter
        self.active = adapter


@functools.cache  # once per process, whatever number of sessions or chains ask for it
def load_llama(gguf: Path, tokenizer_path: str) -> LlamaModel:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from core.adapter import base_hash

    print(f"Loading the chat model {gguf.name} (llama.cpp) for this process ...", file=sys.stderr)
    threads = len(os.sched_getaffinity(0))
    llm = Llama(
        model_path=str(gguf),
        n_ctx=CONTEXT_TOKENS,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,  # measured: 2.55 s against 2.85 s for an 832-token prompt on 2 cores
        verbose=False,
    )
    return LlamaModel(llm, AutoTokenizer.from_pretrained(tokenizer_path), base_hash(tokenizer_path))


def shared_llama(gguf: Path, tokenizer_path: str) -> LlamaModel:
    with LOADING:  # functools.cache alone would let two sessions asking at once load two copies
        return load_llama(gguf, tokenizer_path)


def answer_penalty(prompt_length: int, penalty: float) -> Any:
    """transformers' RepetitionPenaltyLogitsProcessor over the answer's tokens only (core.llm's
    answer_repetition_penalty), for llama.cpp: its own repeat_penalty also covers the prompt's last tokens."""
    import numpy as np

    def penalise(input_ids: Any, scores: Any) -> Any:
        seen = np.unique(input_ids[prompt_length:])
        if seen.size:
            picked = scores[seen]
            scores[seen] = np.where(picked < 0, picked * penalty, picked / penalty)
        return scores

    return penalise


class LlamaCppChatModel(InProcessChatModel):
    """Streams tokens from the shared llama.cpp model with `adapter` (a GGUF LoRA) applied."""

    loaded: SkipValidation[LlamaModel]  # shared, never copied

    @property
    def _llm_type(self) -> str:
        return "askdocs-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.loaded.llm.model_path, "adapter": str(self.adapter), "temperature": self.temperature}

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from llama_cpp import LogitsProcessorList

        template = self.loaded.tokenizer.apply_chat_template
        prompt = list(template(chat_dicts(messages), add_generation_prompt=True, return_dict=True)["input_ids"])
        with self.loaded.lock:
            self.loaded.use(self.adapter)
            pieces = self.loaded.llm.create_completion(
                prompt,
                max_tokens=kwargs.get("max_new_tokens", self.max_new_tokens),
                temperature=kwargs.get("temperature", self.temperature),
                repeat_penalty=1.0,
                logits_processor=LogitsProcessorList([answer_penalty(len(prompt), self.repetition_penalty)]),
                stream=True,
            )
            with closing(pieces):  # a reader that stops early (closed page) ends the generation here
                yield from self.chunks((piece["choices"][0]["text"] for piece in pieces), stop, run_manager)


def nf4_gguf(models_dir: Path, base_path: str) -> Path:
    """The bundled base for llama.cpp: the shipped GGUF with each layer's weights replaced by the 4-bit NF4
    weights that QLoRA trains adapters on and the transformers backend runs (bitsandbytes, dequantized),
    stored in Q8_0 blocks, whose int8 kernels evaluate a prompt twice as fast as the shipped Q4_1's.
    Made once, in about 20 s (benchmarks/RESULTS.md, "Answer latency")."""
    target = models_dir / "smollm2-135m-instruct.nf4.Q8_0.gguf"
    if not target.is_file():
        print(f"Preparing the bundled LLM for llama.cpp once: {target} (about 20 s)...", file=sys.stderr)
        write_gguf_like(smollm2_gguf(), nf4_weights(base_path), target)
    return target


def nf4_weights(base_path: str) -> dict[str, Any]:
    """llama.cpp tensor name -> the NF4 base's weight (dequantized, float32, llama.cpp's q/k row order)."""
    import bitsandbytes.functional as bnb
    import gguf
    import numpy as np

    from core.gguf_lora import TARGETS, permute_rows
    from core.models import load_causal_lm

    model = load_causal_lm(base_path, quantize=True)
    heads = {"q_proj": model.config.num_attention_heads, "k_proj": model.config.num_key_value_heads}
    weights = {}
    for name, module in model.named_modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None:
            continue
        layer, target = LAYER.fullmatch(name).groups()  # type: ignore[union-attr]
        weight = bnb.dequantize_4bit(module.weight.data, state).float().numpy()
        if target in heads:
            weight = permute_rows(weight, heads[target])
        tensor = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[TARGETS[target]]].format(bid=int(layer))
        weights[f"{tensor}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
    return weights


def write_gguf_like(source: Path, weights: dict[str, Any], target: Path) -> None:
    """A copy of `source` (its metadata, the other tensors as they are) with `weights` in Q8_0, atomically."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    tmp = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(tmp, "llama")  # writes general.architecture itself
    try:
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        q8 = gguf.GGMLQuantizationType.Q8_0
        for tensor in reader.tensors:
            if tensor.name in weights:
                writer.add_tensor(tensor.name, gguf.quants.quantize(weights[tensor.name], q8), raw_dtype=q8)
            else:
                writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(target)
