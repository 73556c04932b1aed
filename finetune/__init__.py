"""Adapt the LLM to the company's domain: Q&A data → 4-bit base + LoRA → adapter folder with a manifest."""
