"""finetune.gguf_lora: a peft LoRA exported to GGUF shifts llama.cpp's logits (4-bit base) the way peft
shifts HF's (fp32 base); adapters llama.cpp cannot express are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from core.gguf_lora import TARGETS, GgufExportError, export_lora, permute_rows
from core.models import smollm2_gguf
from finetune.gguf_lora import main

PROMPT = "Staff must connect to the VPN before opening the expenses portal, because the"
LAST = 4  # positions compared by cosine (as one vector): they attend over the whole prompt, through q/k
# Random LoRAs (targets, std of B) whose effect dwarfs the Q4_1-vs-fp32 gap (at std 0.02 the two are the same
# size). q/k only isolates the row permutation: without it that LoRA's cosine below is negative.
LORAS = {
    "all": (list(TARGETS), 0.1),
    "qk": (["q_proj", "k_proj"], 0.4),
}
TINY_BASE = {"architectures": ["LlamaForCausalLM"], "num_attention_heads": 2, "num_key_value_heads": 1}


def write_adapter(folder: Path, config: dict[str, Any], tensors: dict[str, np.ndarray] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors or {}, str(folder / "adapter_model.safetensors"))
    return folder


def tiny_base(folder: Path, **config: Any) -> Path:
    """A config-only llama base: 2 query heads, 1 key/value head, head size 4 (hidden 8)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_BASE | config))
    return folder


def lora_key(module: str, half: str) -> str:
    return f"base_model.model.model.layers.0.{module}.lora_{half}.weight"


def tiny_lora(tmp_path: Path) -> Path:
    """Layer 0's q_proj (8 -> 8) and down_proj (16 -> 8) as a rank-2 LoRA on `tiny_base`."""
    rng = np.random.default_rng(0)
    tensors = {
        lora_key("self_attn.q_proj", "A"): rng.normal(size=(2, 8)).astype(np.float32),
        lora_key("self_attn.q_proj", "B"): rng.normal(size=(8, 2)).astype(np.float32),
        lora_key("mlp.down_proj", "A"): rng.normal(size=(2, 16)).astype(np.float32),
        lora_key("mlp.down_proj", "B"): rng.normal(size=(8, 2)).astype(np.float32),
    }
    lora = {"peft_type": "LORA", "lora_alpha": 4, "r": 2, "base_model_name_or_path": str(tiny_base(tmp_path / "base"))}
    return write_adapter(tmp_path / "lora", lora, tensors)


def test_tiny_lora_exports_llama_cpp_names_shapes_and_alpha(tmp_path: Path) -> None:
    source = tiny_lora(tmp_path)
    reader = gguf.GGUFReader(export_lora(source))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    keys = ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]
    assert [fields[key] for key in keys] == ["llama", "adapter", "lora", 4.0]
    written = {t.name: np.array(t.data) for t in reader.tensors}  # numpy shapes: lora_a (r, in), lora_b (out, r)
    original = load_file(str(source / "adapter_model.safetensors"))
    expected = {
        "blk.0.attn_q.weight.lora_a": original[lora_key("self_attn.q_proj", "A")],
        "blk.0.attn_q.weight.lora_b": permute_rows(original[lora_key("self_attn.q_proj", "B")], 2),
        "blk.0.ffn_down.weight.lora_a": original[lora_key("mlp.down_proj", "A")],
        "blk.0.ffn_down.weight.lora_b": original[lora_key("mlp.down_proj", "B")],
    }
    assert written.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(written[name], array, err_msg=name)
    assert [p.name for p in source.parent.rglob("*.tmp")] == []


def test_permute_rows_swaps_half_head_pairs_for_adjacent_ones() -> None:
    head = np.arange(4)[:, None]  # one head of size 4: HF pairs rows (0, 2), (1, 3); llama.cpp (0, 1), (2, 3)
    assert permute_rows(head, 1).ravel().tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"peft_type": "IA3"}, "IA3"),
        ({"askdocs_method": "series-adapter"}, "series-adapter"),
        ({"peft_type": "LORA", "use_rslora": True}, "use_rslora"),
        ({"peft_type": "LORA", "use_dora": True}, "use_dora"),
    ],
)
def test_adapters_llama_cpp_cannot_express_are_refused_in_one_line(
    tmp_path: Path, config: dict[str, Any], named: str
) -> None:
    with pytest.raises(GgufExportError, match=named) as refused:
        export_lora(write_adapter(tmp_path / "adapter", config))
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "adapter" / "adapter.gguf").exists()


@pytest.mark.parametrize(
    ("module", "named"),
    [("self_attn.qkv_proj", "qkv_proj cannot be mapped"), ("embed_tokens", "no LoRA slot")],
)
def test_targets_llama_cpp_cannot_map_are_refused(tmp_path: Path, module: str, named: str) -> None:
    prefix = "base_model.model.model." + ("layers.0." if "." in module else "") + module
    tensors = {f"{prefix}.lora_A.weight": np.zeros((2, 8), np.float32)}
    config = {"peft_type": "LORA", "lora_alpha": 4, "base_model_name_or_path": str(tiny_base(tmp_path / "base"))}
    with pytest.raises(GgufExportError, match=named):
        export_lora(write_adapter(tmp_path / "adapter", config, tensors))


def test_a_base_that_is_not_llama_is_refused(tmp_path: Path) -> None:
    source = tiny_lora(tmp_path)
    tiny_base(tmp_path / "base", architectures=["GPT2LMHeadModel"])
    with pytest.raises(GgufExportError, match="not LlamaForCausalLM"):
        export_lora(source)


def test_cli_writes_the_gguf_where_asked_and_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tiny_lora(tmp_path)), "--output", str(tmp_path / "out.gguf")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out.gguf")
    assert (tmp_path / "out.gguf").stat().st_size > 0
    assert main([str(write_adapter(tmp_path / "ia3", {"peft_type": "IA3"}))]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--output" in capsys.readouterr().out


# The real SmolLM2: its bundled Q4_1 GGUF in llama.cpp against its fp32 HF conversion.


@pytest.fixture(scope="module")
def base_dir(llm_data_dir: Path) -> Path:
    return llm_data_dir / "models" / "smollm2-135m-instruct"


@pytest.mark.slow
def test_permuted_hf_q_and_k_rows_are_the_gguf_base_rows(base_dir: Path) -> None:
    """What makes the q/k lora_b permutation right: it maps HF's q/k weights onto the GGUF's exactly."""
    from safetensors import safe_open

    reader = gguf.GGUFReader(smollm2_gguf())
    gguf_rows = {t.name: gguf.dequantize(t.data, t.tensor_type) for t in reader.tensors if t.name.startswith("blk.0.")}
    with safe_open(str(base_dir / "model.safetensors"), "np") as hf:
        q, k = (hf.get_tensor(f"model.layers.0.self_attn.{m}_proj.weight") for m in "qk")
    np.testing.assert_allclose(permute_rows(q, 9), gguf_rows["blk.0.attn_q.weight"], atol=1e-6)
    np.testing.assert_allclose(permute_rows(k, 3), gguf_rows["blk.0.attn_k.weight"], atol=1e-6)
    assert not np.allclose(q, gguf_rows["blk.0.attn_q.weight"], atol=1e-3)  # the permutation is not a no-op


@pytest.fixture(scope="module", params=list(LORAS))
def logits(
    request: pytest.FixtureRequest, base_dir: Path, llm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """Prompt logits of llama.cpp and HF, each without and with the same random LoRA."""
    tokens = llm_tokenizer(PROMPT)["input_ids"]
    targets, std = LORAS[request.param]
    hf_base, hf_lora, adapter_dir = hf_logits(base_dir, tokens, targets, std, tmp_path_factory.mktemp("lora"))
    cpp_base, cpp_lora = llama_cpp_logits(tokens), llama_cpp_logits(tokens, export_lora(adapter_dir))
    return {"hf_base": hf_base, "hf_lora": hf_lora, "cpp_base": cpp_base, "cpp_lora": cpp_lora}


def hf_logits(
    base_dir: Path, tokens: list[int], targets: list[str], std: float, folder: Path
) -> tuple[np.ndarray, np.ndarray, Path]:
    """fp32 logits of the base and of base + a seeded LoRA on `targets`, saved to `folder`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    ids = torch.tensor([tokens])
    with torch.no_grad():
        before = model(ids).logits[0].numpy()
        lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: a no-op adapter
                parameter.normal_(std=std)
        after = lora(ids).logits[0].numpy()
    lora.save_pretrained(str(folder))
    return before, after, folder


def llama_cpp_logits(tokens: list[int], lora: Path | None = None) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(smollm2_gguf()),
        lora_path=str(lora) if lora else None,
        n_ctx=64,
        n_threads=2,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.slow
def test_exported_lora_shifts_llama_cpp_logits_as_peft_shifts_hf_logits(logits: dict[str, np.ndarray]) -> None:
    cpp_shift = logits["cpp_lora"] - logits["cpp_base"]
    hf_shift = logits["hf_lora"] - logits["hf_base"]
    assert cosine(cpp_shift[-LAST:].ravel(), hf_shift[-LAST:].ravel()) > 0.95


@pytest.mark.slow
def test_exported_lora_clearly_changes_llama_cpp_logits(logits: dict[str, np.ndarray]) -> None:
    shift = np.abs(logits["cpp_lora"] - logits["cpp_base"]).mean()
    quantization_gap = np.abs(logits["cpp_base"] - logits["hf_base"]).mean()
    assert shift > 3 * quantization_gap  # measured about 6x for both LoRAs


@pytest.mark.slow
def test_llama_cpp_with_exported_lora_mostly_predicts_the_tokens_peft_predicts(logits: dict[str, np.ndarray]) -> None:
    agreement = (logits["cpp_lora"].argmax(-1) == logits["hf_lora"].argmax(-1)).mean()
    assert agreement >= 0.75  # measured 12 (all) and 13 (qk) of 14: Q4_1 flips near ties
