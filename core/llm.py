"""The chat LLM: the base loaded once per process (4-bit NF4 or fp32, `llm_precision`), LoRA
adapters on top, as a LangChain chat model that streams tokens.

langchain-huggingface's ChatHuggingFace cannot switch adapters per request or keep two sessions
from generating through one model at once, so this is a small `BaseChatModel` of our own.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks
from pydantic import ConfigDict, SkipValidation

from core.settings import ChatSettings, Settings

ROLES = {"system": "system", "human": "user", "ai": "assistant"}
NO_ADAPTER = "none"  # the settings value that means "the base model alone"
LOADING = threading.Lock()
# Adapters that change the base (prefix, IA3, PEQA, ...) each get a whole copy of it: keep the most recent few.
MAX_OWN_COPIES = 2
# Small models fall into loops easily; a mild penalty keeps answers from repeating themselves.
REPETITION_PENALTY = 1.1


def answer_repetition_penalty(prompt_length: int, penalty: float = REPETITION_PENALTY) -> Any:
    """A logits processor that penalises repeats within the answer only. transformers' `repetition_penalty=`
    (and vLLM's) also covers every prompt token: the passages' words an answer must copy. llama.cpp's
    `repeat_penalty` looks at the last 64 generated tokens."""
    from transformers import RepetitionPenaltyLogitsProcessor

    return RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_length)


def chat_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the {"role", "content"} dicts chat templates (and training data) use."""
    return [{"role": ROLES.get(m.type, m.type), "content": m.text} for m in messages]


@dataclass
class LoadedModel:
    """One base model in memory (4-bit or fp32) with every adapter asked for so far; one generation at a time.

    LoRA/QLoRA adapters share the base (peft switches between them). Other methods change the base
    itself (virtual tokens, bottleneck modules, PEQA's integer weights): each gets its own copy, and
    only the MAX_OWN_COPIES used last stay in memory.
    """

    base: str
    base_hash: str
    base_path: str
    precision: str
    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: dict[str, str] = field(default_factory=dict)  # LoRA adapter folder -> peft adapter name
    own_copies: OrderedDict[str, Any] = field(default_factory=OrderedDict)  # other adapter folder -> its model

    @contextmanager
    def using(self, adapter: Path | None) -> Iterator[Any]:
        """The model that generates with `adapter` (None: the base alone). Hold the lock."""
        from core.methods import method_of

        if adapter is None:
            with self.model.disable_adapter() if self.adapters else nullcontext():
                yield self.model
            return
        key = str(adapter.resolve())
        if key not in self.adapters and key not in self.own_copies:  # first use: read its method once
            if method_of(adapter) in ("lora", "qlora"):
                self.adapters[key] = self.load_adapter(adapter)
            else:
                while len(self.own_copies) >= MAX_OWN_COPIES:
                    self.own_copies.popitem(last=False)  # the least recently used, before loading another
                self.own_copies[key] = self.load_copy(adapter)
        if key in self.own_copies:
            self.own_copies.move_to_end(key)
            yield self.own_copies[key]
            return
        self.model.set_adapter(self.adapters[key])
        yield self.model

    def load_adapter(self, folder: Path) -> str:
        from peft import PeftModel

        from core.adapter import check_base

        check_base(folder, self.base, self.base_hash)
        name = re.sub(r"\W", "_", folder.name) + f"_{len(self.adapters)}"
        if self.adapters:
            self.model.load_adapter(str(folder), adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
        self.model.eval()
        return name

    def load_copy(self, folder: Path) -> Any:
        """A base of its own with the adapter on it; PEQA's scales folded into fp32 weights (same outputs)."""
        from core import methods
        from core.adapter import check_base
        from core.models import load_causal_lm

        check_base(folder, self.base, self.base_hash)
        peqa = methods.method_of(folder) == "peqa"
        base = load_causal_lm(self.base_path, quantize=self.precision == "nf4" and not peqa)
        return methods.serving(methods.load(base, folder))


@functools.cache  # once per process, whatever number of sessions or chains ask for it
def load_model(base: str, base_path: str, precision: str) -> LoadedModel:
    from transformers import AutoTokenizer

    from core.adapter import base_hash
    from core.models import load_causal_lm

    print(f"Loading the chat model {base} ({precision}) for this process ...", file=sys.stderr)
    model = load_causal_lm(base_path, quantize=precision == "nf4").eval()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    return LoadedModel(base, base_hash(base_path), base_path, precision, model, tokenizer)


def shared_model(settings: Settings) -> LoadedModel:
    """The settings' base model, loaded once per process and shared by every caller."""
    from core.models import llm_model_path

    with LOADING:  # functools.cache alone would let two sessions asking at once load two copies
        return load_model(settings.llm_base, llm_model_path(settings), llm_precision(settings))


def llm_precision(settings: Settings) -> str:
    """nf4 or fp32: `auto` picks 4-bit where the hardware computes it fast (a GPU, or native CPU bf16)."""
    if settings.llm_precision != "auto":
        return settings.llm_precision
    import torch

    from core.models import cpu_has_bf16

    return "nf4" if torch.cuda.is_available() or cpu_has_bf16() else "fp32"


def resolve_adapter(settings: Settings, name: str | None = None) -> Path | None:
    """The adapter folder to use: a name, a path, "none", or (unset) the newest completed adapter."""
    from core.adapter import AdapterError, newest_completed

    name = name if name is not None else settings.adapter
    if name == NO_ADAPTER:
        return None
    if name is None:
        return newest_completed(settings.adapters_dir)
    folder = Path(name) if Path(name).is_dir() else settings.adapters_dir / name
    if not folder.is_dir():
        raise AdapterError(f"adapter {name!r} not found in {settings.adapters_dir}: see python -m finetune --list")
    return folder


def chat_model(settings: Settings, adapter: str | None = None, chat: ChatSettings | None = None) -> BaseChatModel:
    """The chat model the settings ask for: local (base weights shared by every caller) or a server's."""
    chat = chat or settings.chat
    if settings.llm_backend == "openai-compatible":
        from core.served_llm import server_chat_model

        return server_chat_model(settings, adapter, chat)
    folder = resolve_adapter(settings, adapter)
    if settings.llm_backend == "llama-cpp" and runs_on_llama_cpp(settings, folder):
        return llama_chat_model(settings, folder, chat)
    loaded = shared_model(settings)
    if folder is not None:
        with loaded.lock, loaded.using(folder):  # load and check it now: a wrong base fails before the first question
            pass
    return LocalChatModel(
        loaded=loaded, adapter=folder, max_new_tokens=chat.max_new_tokens, temperature=chat.temperature
    )


def runs_on_llama_cpp(settings: Settings, adapter: Path | None) -> bool:
    """llama.cpp runs the bundled base with a LoRA adapter it can express, or none; the rest runs in transformers."""
    if why := llama_cpp_cannot_run(settings, adapter):
        print(f"{why}: it runs in transformers, not llama.cpp.", file=sys.stderr)
    return not why


def llama_cpp_cannot_run(settings: Settings, adapter: Path | None) -> str:
    from core.gguf_lora import GgufExportError, lora_config
    from core.methods import method_of
    from core.settings import BUNDLED_LLM

    if settings.llm_base != BUNDLED_LLM:
        return f"base {settings.llm_base} is not the bundled one"
    if adapter is None:
        return ""
    if (method := method_of(adapter)) not in ("lora", "qlora"):
        return f"{adapter.name} is a {method} adapter"
    try:
        lora_config(adapter)
    except GgufExportError as exc:
        return str(exc)
    return ""


def llama_chat_model(settings: Settings, adapter: Path | None, chat: ChatSettings) -> BaseChatModel:
    """The bundled base on llama.cpp with the adapter as a GGUF LoRA, checked against the base first."""
    from core.adapter import check_base
    from core.gguf_lora import adapter_gguf
    from core.llama_llm import LlamaCppChatModel, nf4_gguf, shared_llama
    from core.models import ModelError, llm_model_path

    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelError("llm_backend llama-cpp needs llama-cpp-python: run `make install` (it compiles llama.cpp)")
    base_path = llm_model_path(settings)
    loaded = shared_llama(nf4_gguf(settings.models_dir, base_path).resolve(), base_path)
    lora = None
    if adapter is not None:
        check_base(adapter, settings.llm_base, loaded.base_hash)
        lora = adapter_gguf(adapter, Path(base_path)).resolve()
        with loaded.lock:  # load it now: a broken file fails before the first question
            loaded.use(lora)
    return LlamaCppChatModel(
        loaded=loaded, adapter=lora, max_new_tokens=chat.max_new_tokens, temperature=chat.temperature
    )


def until_stop(pieces: Iterable[str], stop: list[str]) -> Iterator[str]:
    """The streamed text up to (not including) the first stop string, which may span pieces: the
    last len(longest stop) - 1 characters are held back until they cannot start one."""
    held, keep = "", max(map(len, stop), default=1) - 1
    for piece in pieces:
        held += piece
        cuts = [i for i in (held.find(s) for s in stop) if i >= 0]
        if cuts:
            if held[: min(cuts)]:
                yield held[: min(cuts)]
            return
        if len(held) > keep:
            yield held[: len(held) - keep]
            held = held[len(held) - keep :]
    if held:
        yield held


class InProcessChatModel(BaseChatModel):
    """What the chat models in this process share (transformers' and llama.cpp's): an adapter, generation
    options (`max_new_tokens` and `temperature` can also be given per call: `invoke(..., max_new_tokens=8)`),
    and whole answers made from the stream."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    adapter: Path | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    repetition_penalty: float = REPETITION_PENALTY

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        empty = ChatGenerationChunk(message=AIMessageChunk(content=""))
        return ChatResult(generations=[merge_chat_generation_chunks(chunks) or empty])

    @staticmethod
    def chunks(
        texts: Iterable[str], stop: list[str] | None, run_manager: CallbackManagerForLLMRun | None
    ) -> Iterator[ChatGenerationChunk]:
        """The generated texts up to the first stop string, as chunks the callbacks hear of."""
        for text in until_stop(texts, stop or []):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk


# Not langchain-huggingface's ChatHuggingFace: it wraps a HuggingFacePipeline bound to one model, while
# the chat shares one copy of the 4-bit base between sessions and switches the LoRA adapter per call under
# a lock (LoadedModel.using), with stop strings and a repetition penalty on the answer only.
class LocalChatModel(InProcessChatModel):
    """Streams tokens from the shared model, rendering messages with the model's own chat template."""

    loaded: SkipValidation[LoadedModel]  # shared, never copied

    @property
    def _llm_type(self) -> str:
        return "askdocs-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base": self.loaded.base, "adapter": str(self.adapter), "temperature": self.temperature}

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from transformers import TextIteratorStreamer

        tokenizer = self.loaded.tokenizer
        inputs = tokenizer.apply_chat_template(
            chat_dicts(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled, failure = threading.Event(), list[BaseException]()
        temperature = kwargs.get("temperature", self.temperature)
        options = {
            "max_new_tokens": kwargs.get("max_new_tokens", self.max_new_tokens),
            **({"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}),
        }
        with self.loaded.lock, self.loaded.using(self.adapter) as model:
            args = (model, inputs.to(model.device), options, streamer, cancelled, failure)
            thread = threading.Thread(target=self._run, args=args, daemon=True)
            thread.start()
            try:
                yield from self.chunks(streamer, stop, run_manager)
            finally:  # a reader that stops early (closed page) must not leave the model busy
                cancelled.set()
                thread.join()
        if failure:
            raise failure[0]

    def _run(
        self,
        model: Any,
        inputs: dict,
        options: dict[str, Any],  # for generate: max_new_tokens, sampling
        streamer: Any,
        cancelled: threading.Event,
        failure: list[BaseException],
    ) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, *args: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        repeats_in_answer = answer_repetition_penalty(inputs["input_ids"].shape[-1], self.repetition_penalty)
        try:
            with torch.no_grad():
                model.generate(
                    **inputs,
                    streamer=streamer,
                    logits_processor=LogitsProcessorList([repeats_in_answer]),
                    pad_token_id=self.loaded.tokenizer.pad_token_id,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    **options,
                )
        except Exception as exc:  # re-raised in the reader's thread
            failure.append(exc)
            streamer.end()
