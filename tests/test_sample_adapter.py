"""The adapter `make demo` installs (data/sample_adapters/): it matches the base converted on this
machine, and the chain with it answers held-out questions the base model refuses."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import pytest

from core.chain import chain_from_settings
from core.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SAMPLE_ADAPTER = ROOT / "data" / "sample_adapters" / "sample-company"
# Of scripts/chain_held_out.py's 16 key facts, measured 2026-12-03 (benchmarks/RESULTS.md, "The sample
# company's adapter"): 3 in nf4, 4 in fp32 with this adapter; 1 with the base model alone. Close calls
# flip between CPUs, hence one below the lower.
AT_LEAST = 2

spec = importlib.util.spec_from_file_location("chain_held_out", ROOT / "scripts" / "chain_held_out.py")
assert spec and spec.loader
held_out = importlib.util.module_from_spec(spec)
spec.loader.exec_module(held_out)


def test_the_sample_adapter_was_trained_on_the_base_converted_here(chat_data_dir: Path) -> None:
    from core.adapter import base_hash, check_base
    from core.models import llm_model_path

    settings = Settings(data_dir=chat_data_dir)
    check_base(SAMPLE_ADAPTER, settings.llm_base, base_hash(llm_model_path(settings)))


def test_the_chain_with_the_sample_adapter_answers_held_out_questions(chat_data_dir: Path) -> None:
    """scripts/chain_held_out.py's 16 key facts, in the chat's precision on this CPU (`auto`)."""
    chain = chain_from_settings(
        Settings(data_dir=chat_data_dir, embedding_precision="fp32"), adapter=str(SAMPLE_ADAPTER)
    )
    right = [question for question, _, ok, _ in held_out.graded(partial(held_out.ask_chain, chain)) if ok]
    assert len(right) >= AT_LEAST, right
