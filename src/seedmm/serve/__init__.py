"""Serving SEED-LLaMA-I: the terminal chat (`seedmm chat`) and the JSONL batch interface (`seedmm batch`)."""
