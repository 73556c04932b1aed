"""Export a peft LoRA adapter as a GGUF LoRA, so llama.cpp runs it on top of a (quantized) GGUF base.

    python -m finetune.gguf_lora data/adapters/qlora-rag                 # -> data/adapters/qlora-rag/adapter.gguf
    python -m finetune.gguf_lora data/adapters/qlora-rag --output rag.gguf --base data/models/smollm2-135m-instruct

The chat's llama-cpp backend does this itself the first time it uses an adapter (core/gguf_lora.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.gguf_lora import GgufExportError, export_lora


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune.gguf_lora", description=__doc__.splitlines()[0])
    parser.add_argument("adapter_dir", type=Path, help="peft LoRA folder (adapter_config.json + safetensors)")
    parser.add_argument("--output", type=Path, help="GGUF file to write (default: ADAPTER_DIR/adapter.gguf)")
    parser.add_argument("--base", type=Path, help="base model's HF folder (default: the adapter config's base)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(export_lora(args.adapter_dir, args.output, base=args.base))
    except (GgufExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
