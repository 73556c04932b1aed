"""One typed settings object for every entry point: defaults < `.env` / environment < CLI flags."""

from __future__ import annotations

import difflib
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_EMBEDDING = "bundled:all-minilm-l6-v2"
BUNDLED_LLM = "bundled:smollm2-135m-instruct"

# Every variable that could make a library reach the network by itself.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TELEMETRY_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    "TOKENIZERS_PARALLELISM": "false",
}


class Strict(BaseModel):
    """A settings group that rejects keys it doesn't know: a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


Method = Literal["lora", "qlora", "prefix", "prompt", "ia3", "series-adapter", "parallel-adapter", "peqa"]
METHODS: tuple[str, ...] = get_args(Method)
# Learning rates per method when --lr is not given: LoRA's usual 2e-4; methods with few parameters
# (IA3's scaling vectors, virtual tokens) need larger steps, PEQA's scales (~1e-3) much smaller ones.
DEFAULT_LR = {
    "lora": 2e-4,
    "qlora": 2e-4,
    "prefix": 1e-2,
    "prompt": 3e-2,
    "ia3": 3e-3,
    "series-adapter": 3e-4,
    "parallel-adapter": 3e-4,
    "peqa": 2e-5,
}


class TrainSettings(Strict):
    """Fine-tuning hyper-parameters; defaults train the bundled SmolLM2 on CPU in minutes."""

    method: Method = "qlora"
    data: Path = Path("data/qa/train.jsonl")
    eval_data: Path | None = Path("data/qa/eval.jsonl")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Held out when there is no eval file.")
    output: str | None = Field(None, description="Adapter name (default: METHOD-YYYYmmdd-HHMMSS).")
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="Overrides epochs when > 0.")
    lr: float | None = Field(None, gt=0, description="Learning rate (default: per method, DEFAULT_LR).")
    # LLM-Adapters: LoRA on attention and MLP projections together works best.
    rank: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    virtual_tokens: int = Field(10, gt=0, description="prefix/prompt tuning: virtual tokens (LLM-Adapters: 10).")
    bottleneck: int | None = Field(
        None, gt=0, description="series/parallel adapters' width (default: hidden size / 16, LLM-Adapters' ratio)."
    )
    peqa_bits: Literal[3, 4] = Field(4, description="PEQA: bits of the frozen integer weights.")
    peqa_group_size: int | None = Field(
        None, gt=0, description="PEQA: one scale per this many inputs of a channel (default: one per channel)."
    )
    peqa_train_zeros: bool = Field(False, description="PEQA: train the zero points too, not only the scales.")
    max_seq_len: int = Field(512, gt=16)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    save_steps: int = Field(25, gt=0, description="Checkpoint (and eval) every N steps.")
    seed: int = 42

    @property
    def learning_rate(self) -> float:
        return self.lr or DEFAULT_LR[self.method]


class ChatSettings(Strict):
    """How the chain retrieves, generates and checks; the chat's sidebar changes some per session."""

    top_k: int = Field(4, gt=0, le=20, description="Chunks retrieved per question.")
    max_new_tokens: int = Field(192, gt=0, le=2048)
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy (reproducible answers).")
    # Below this cosine similarity the best chunk is not about the question: refuse, don't guess.
    min_retrieval_score: float = Field(0.3, ge=-1, le=1)
    # A sentence counts as supported by a chunk that contains every number it states and either
    # this share of its content words or an embedding this close. Calibrated on data/qa/eval.jsonl:
    # reference answers vs their retrieved chunks 86 % supported, vs other questions' chunks 0 %.
    support_overlap: float = Field(0.5, ge=0, le=1)
    support_similarity: float = Field(0.75, ge=-1, le=1)
    # A first sentence backed by a passage, followed mostly by invented ones, is not an answer to show.
    min_supported_share: float = Field(
        0.5, ge=0, le=1, description="Share of the answer's words that must be supported."
    )
    # An answer sharing no word with the question, nor with the sections it rests on, and no yes/no reply to a
    # yes/no question, must be at least this close to it in meaning. Measured on data/qa and the Django,
    # SQLAlchemy and Celery FAQs: 0.2 let the base model's "The SpeakUp platform is ..." answer "Who is the
    # deputy CISO?" (test_chain).
    min_answer_relevance: float = Field(0.35, ge=-1, le=1)
    history_turns: int = Field(3, ge=0, description="Earlier question/answer pairs used to rewrite a follow-up.")
    verifier: str = Field(
        "auto",
        description="Who decides that a passage states a claim: 'auto' (the verifier trained on this collection by "
        "python -m finetune --verifier, else the shipped one), 'none' (word overlap and similarity), or a folder.",
    )
    # 0.5: the verifier's own decision boundary (trained with balanced classes), not fitted to any question set.
    verifier_threshold: float = Field(0.5, gt=0, lt=1)


SearchMode = Literal["hybrid", "dense", "bm25"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
Fusion = Literal["scores", "rrf"]


class RetrievalSettings(Strict):
    """How chunks are found: dense (embeddings), bm25 (keywords) or hybrid (both, fused)."""

    # Chosen by `python -m evaluation` (benchmarks/RESULTS.md, "Retrieval quality").
    mode: SearchMode = "hybrid"
    # 100: Django recall@5 0.405 -> 0.440, MRR 0.376 -> 0.447 over 20; the sample set loses one question at @10.
    candidates: int = Field(100, gt=0, description="Results taken from each search before fusing.")
    # rrf: the chain's answers are better with it (5-epoch adapter via llama.cpp's server: unanswerable
    # refused 0.667 vs 0.417, false refusals 0.410 vs 0.508, F1 0.205 vs 0.185; in process about even),
    # though scores ranks the gold source first more often (sample recall@1 0.902 vs 0.836, MRR 0.951
    # vs 0.908; Django MRR 0.524 vs 0.497) with the same recall@5.
    fusion: Fusion = Field(
        "rrf",
        description="How hybrid merges the searches: 'scores' adds each one's scores as a share of its best, "
        "weighted; 'rrf' adds weight / (rrf_k + rank).",
    )
    rrf_k: int = Field(60, gt=0, description="Reciprocal-rank fusion constant: 1 / (rrf_k + rank).")
    # 1.5 once vectors carried title > section (chunker 3): Django hybrid recall@5 0.393 -> 0.476, MRR
    # 0.452 -> 0.461; sample recall@5 stays 1.000. (2.0: sample recall@5 0.984.)
    dense_weight: float = Field(1.5, ge=0)
    bm25_weight: float = Field(1.0, ge=0)
    # 1: Django hybrid recall@5 0.458 -> 0.512, but sample reference answers refused 6 -> 13 of 61
    # (their facts sit in a file's next chunks), so 0 is the default. With 1, files go in the order of
    # their best three chunks (2026-12-06: SQLAlchemy / Celery / Django hit@5 0.683 / 0.522 / 0.643).
    per_source: int = Field(
        0, ge=0, description="At most this many chunks of one file before every other file found (0: no limit)."
    )
    neighbours: int = Field(
        0, ge=0, le=3, description="Small-to-big: each chunk found comes with this many chunks that follow it."
    )
    # 0.4, each linking file's vote shared among its links: hybrid hit@5 with per_source 1, Celery / SQLAlchemy /
    # Django / Python 0.522 / 0.683 / 0.643 / 0.563 -> 0.609 / 0.732 / 0.643 / 0.632, MRR up on all four; higher
    # weights lose Django questions. The sample set's files do not link to each other: it ranks as before
    # (benchmarks/RESULTS.md, "Retrieval quality").
    link_prior: float = Field(
        0.4,
        ge=0,
        description="A chunk's score times 1 + this * ln(1 + the votes of the files that link to its file) (0: off).",
    )


class StoreSettings(Strict):
    """Where Chroma lives: in this process on CHROMA_DIR (embedded) or a Chroma server (`chroma run`)."""

    mode: Literal["embedded", "server"] = "embedded"
    host: str = Field("127.0.0.1", description="Server mode: the Chroma server's host.")
    port: int = Field(8000, gt=0, lt=65536, description="Server mode: the Chroma server's port.")
    ssl: bool = Field(False, description="Server mode: connect over https.")

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"


class LlmServerSettings(Strict):
    """`llm_backend = openai-compatible`: the chain's prompt goes to this server (vLLM, llama.cpp's server, ...)."""

    url: str = Field("http://127.0.0.1:8000/v1", description="The server's OpenAI API base URL.")
    model: str | None = Field(None, description="Model name to ask for (default: the first the server lists).")
    api_key: SecretStr = Field(SecretStr("none"), description="Sent as the bearer token; local servers ignore it.")
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for an answer.")


class AccessSettings(Strict):
    """Optional: collections only named users may search in the chat (see core/access.py for what it is)."""

    users: dict[str, SecretStr] = Field(default_factory=dict, description="User name → token (a password).")
    collections: dict[str, list[str]] = Field(
        default_factory=dict, description="Collection → the users who may read it; unlisted collections are open."
    )

    @field_validator("users")
    @classmethod
    def _tokens_given(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if empty := sorted(name for name, token in users.items() if not token.get_secret_value().strip()):
            raise ValueError(f"empty token for user(s) {', '.join(empty)}: nobody could sign in as them")
        return users

    @model_validator(mode="after")
    def _users_known(self) -> AccessSettings:
        for name, users in self.collections.items():
            if unknown := sorted(set(users) - set(self.users)):
                raise ValueError(f"access.collections.{name}: unknown user(s) {', '.join(unknown)}")
        return self


class Settings(BaseSettings):
    """Everything a user can change; set via ASKDOCS_* variables, a `.env` file or CLI flags."""

    model_config = SettingsConfigDict(env_prefix="ASKDOCS_", env_file=".env", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("data"), description="Where the store, caches and adapters live.")
    offline: bool = Field(True, description="Forbid model hub downloads (set false to use HF ids).")

    embedding_model: str = Field(BUNDLED_EMBEDDING, description="Sentence-transformers model: id or path.")
    embedding_batch_size: int = Field(32, gt=0)
    # bf16 autocast roughly halves embedding time on CPUs with native bf16 (AVX512-BF16, AMX) and
    # keeps vectors within cosine 0.9999 of fp32, so queries embedded in fp32 still match.
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"
    # A question is embedded alone, where PyTorch's per-call overhead dominates: the same model
    # exported to ONNX Runtime takes about a third of the time, same vectors (benchmarks/RESULTS.md).
    embedding_query_runtime: Literal["onnx", "torch"] = "onnx"
    # Counted in tokens of the embedding model: all-MiniLM-L6-v2 silently truncates past 256
    # word pieces, so a chunk must stay well inside that window to be embedded whole.
    chunk_size: int = Field(200, gt=8, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(40, ge=0, description="Overlap between chunks in tokens.")
    max_file_mb: float = Field(25.0, gt=0, description="Larger files are reported, not ingested.")

    store_dir: Path | None = Field(
        None, description="Chroma directory (default: DATA_DIR/chroma); in server mode it keeps the BM25 index only."
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    collection: str = Field("docs", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")

    llm_base: str = Field(BUNDLED_LLM, description="Base LLM: HF id or path.")
    # Measured (benchmarks/RESULTS.md, "Generation"): on CPUs without native bf16 bitsandbytes'
    # 4-bit kernels decode at half the speed of plain fp32 and save no resident memory for a
    # 135M model; with native bf16 (or a GPU) 4-bit is as fast and 5x smaller.
    llm_precision: Literal["auto", "nf4", "fp32"] = Field(
        "auto", description="Chat model weights: nf4 (4-bit bitsandbytes), fp32, or auto (nf4 where bf16 is native)."
    )
    adapter: str | None = Field(
        None,
        description="Adapter name under DATA_DIR/adapters or a path; 'none' = base alone; unset = newest. "
        "With an openai-compatible backend: a model name the server serves (vLLM: a --lora-modules name).",
    )
    llm_backend: Literal["llama-cpp", "local", "openai-compatible"] = Field(
        "local",
        description="llama-cpp: the bundled base on llama.cpp in this process (LoRA adapters as GGUF LoRA); "
        "local: transformers in this process; openai-compatible: llm_server (see README).",
    )
    llm_server: LlmServerSettings = Field(default_factory=LlmServerSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)

    @field_validator("data_dir", "store_dir")
    @classmethod
    def _folder(cls, path: Path | None) -> Path | None:
        if path is not None and path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file, not a folder")
        return path

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self

    @property
    def chroma_dir(self) -> Path:
        return self.store_dir or self.data_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"


class UnknownVariable(ValueError):
    """An ASKDOCS_ environment variable that names no setting."""


ENV_PREFIX = "ASKDOCS_"
NOT_SETTINGS = {"ASKDOCS_TOKEN"}  # the command-line sign-in's token (core/access.py), never stored in settings


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI overrides on top; `None` means "flag not given"."""
    check_variables(os.environ)
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    apply_environment(settings)
    return settings


def apply_environment(settings: Settings) -> None:
    """Telemetry always off; hub access off unless the user allowed it. Must run before HF imports."""
    silence_hub_kernel_warning()
    for key, value in TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)
    if settings.offline:
        os.environ.update(OFFLINE_ENV)


def check_variables(environ: Mapping[str, str]) -> None:
    """UnknownVariable for an ASKDOCS_ variable whose first part names no setting (pydantic-settings
    ignores those; nested ones, ASKDOCS_CHAT__TOP_KK, are rejected by the groups themselves)."""
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for variable in environ:
        if variable.startswith(ENV_PREFIX) and variable not in NOT_SETTINGS and variable.split("__")[0] not in fields:
            raise UnknownVariable(f"unknown variable {variable}{closest(variable, sorted(fields))}")


def closest(name: str, known: list[str]) -> str:
    """'; did you mean X?' for the most similar known name, or ''."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


@functools.cache  # one filter per process
def silence_hub_kernel_warning() -> None:
    """bitsandbytes on AVX512-BF16 CPUs warns when it is imported that it could not fetch a faster 4-bit
    kernel from the Hugging Face Hub (the `kernels` package). We run offline, on its built-in kernel."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    logger.addFilter(lambda record: "kernels-community" not in str(record.msg))
