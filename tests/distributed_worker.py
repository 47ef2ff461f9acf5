"""A tiny LLaMA stage for tests/test_distributed.py and bench/train_scaling.py, run as one process or
under `torchrun --nproc_per_node N`: the shared loop (train/loop.py) on a Mixture of two kinds of
sequences of varying length (mixed batches, so loss weights and rows of unequal length are split by
rank). Writes OUT/result.json (the per-step losses; samples/s) and OUT/final.safetensors (rank 0)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from seedmm.train.distributed import current
from seedmm.train.loop import LoopConfig, RunConfig, train
from seedmm.train.mixture import Mixture, batch_loss

VOCAB = 64


class Stop(Exception):
    """Raised inside step --stop-at: the process ends there, as a killed run would after its checkpoint."""


def make(kind: str, index: int, rng):
    n = 6 + (index * 7) % 13 if kind == "short" else 16 + (index * 5) % 17
    ids = [1 + (index * 3 + j * (2 if kind == "short" else 5)) % (VOCAB - 1) for j in range(n)]
    labels = [-100] * 2 + ids[2:] if kind == "long" else ids  # some unlabelled tokens
    return ids, labels


def tiny_llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False, attention_dropout=0.0)
    return LlamaForCausalLM(config)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--save-every", type=int, default=3)
    p.add_argument("--stop-at", type=int, help="end the process inside this step (after the checkpoint before it)")
    p.add_argument("--batch-tokens", type=int, default=160)
    p.add_argument("--fsdp", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)

    out = Path(args.out)
    model = tiny_llama(args.seed)
    mixture = Mixture(make, {"short": 50, "long": 50}, {"short": 0.6, "long": 0.4}, args.batch_tokens, 0,
                      "test/distributed", mixed=True)
    samples = []

    def loss_fn(step: int):
        if step == args.stop_at:
            raise Stop
        batch = mixture(step)
        samples.append(len(mixture.draw(step)[0]))  # rows of the global batch
        return batch_loss(model, batch), {}

    cfg = LoopConfig(steps=args.steps, lr=3e-3, warmup=2, save_every=args.save_every, eval_every=10**9, seed=args.seed)
    run = RunConfig(fsdp=args.fsdp, bf16=args.bf16, grad_checkpointing=args.grad_checkpointing)
    t0 = time.perf_counter()
    try:
        history = train("toy", model, loss_fn, cfg, out, progress=False, run=run)
    except Stop:
        current().teardown()
        return
    seconds = time.perf_counter() - t0
    d = current()
    plain = all(type(t) is torch.nn.Parameter for t in model.parameters())  # FSDP2 undone
    layer = type(model.model.layers[0]).__name__
    with torch.no_grad():  # the model still runs as a plain module after the loop
        model(input_ids=torch.tensor([[1, 2, 3]]))
    if d.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "final.safetensors"))
        (out / "result.json").write_text(json.dumps({
            "losses": [h["loss"] for h in history if "loss" in h], "processes": d.world_size,
            "samples_per_s": sum(samples) / seconds, "plain": plain, "layer": layer}))
    d.teardown()


if __name__ == "__main__":
    main()
