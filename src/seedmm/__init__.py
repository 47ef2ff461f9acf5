"""seedmm: the SEED family of multimodal models (SEED tokenizer v1/v2, SEED-LLaMA, SEED-X)."""

__version__ = "0.1.0"
