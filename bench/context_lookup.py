"""Can the shipped tiny LLM look a word up in its context? VQA with the scene given as text or codes.

Each question of the SFT run's VQA records is asked with the true caption in the user turn, no
image (`USER: {caption}. {question} Please provide … ASSISTANT:`; `--context image`: the image's 32
codes instead, as `train sft` asks it), and the LLM is tuned on 96 such questions a step (LoRA as
`train sft`, or every weight). Every 100 steps it answers 300 held-out
questions (the first answer token, greedy); the figure per question kind is the share right. A
model that reads its context answers `is there a green circle?` from the caption; one that does not
stays at the rate of the commonest answer, as SEED-LLaMA-I does when it reads the codes.

    .venv/bin/python bench/context_lookup.py --records RUN/codes [--context text|image] [--mode lora|full]
        [--steps 300] [--lr 5e-4]

RUN is a `seedmm train sft --out RUN` directory (its pretokenized records).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

import torch

from seedmm.checkpoints import shipped
from seedmm.data.codes import read_code_records
from seedmm.data.instructions import SHORT_ANSWER, conversation_ids, question_request, with_request
from seedmm.data.sequences import pad_batch
from seedmm.models.llm import SeedLlama
from seedmm.train.mixture import LORA_TARGETS, batch_loss
from seedmm.train.sft import FULL_LOOP, LORA_LOOP, SftRecipe

HELD_OUT, BATCH = 300, 96


def turns(record: dict, qa: dict, answered: bool = True, context: str = "text") -> list:
    asked = [("user", [with_request(f"{record['caption']}. {qa['question']}", SHORT_ANSWER)] if context == "text"
              else question_request(record["codes"][0], qa["question"]))]
    return asked + ([("assistant", [qa["answer"]])] if answered else [])


@torch.no_grad()
def accuracy(model, tok, held: list, context: str) -> tuple[dict, float]:
    model.eval()
    right, n = Counter(), Counter()
    for record, qa in held:
        ids, _ = conversation_ids(tok, turns(record, qa, answered=False, context=context), generation_prompt=True)
        first = tok.encode(qa["answer"], bos=False)[0]
        right[qa["kind"]] += model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item() == first
        n[qa["kind"]] += 1
    model.train()
    return {k: right[k] / n[k] for k in sorted(n)}, sum(right.values()) / len(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True, help="RUN/codes of a `seedmm train sft --out RUN`")
    parser.add_argument("--llm", default=None, help="the LLM (default: shipped llm/)")
    parser.add_argument("--mode", choices=("lora", "full"), default="lora")
    parser.add_argument("--context", choices=("text", "image"), default="text")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=None, help="default: train sft's for the mode")
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    llm = SeedLlama.from_pretrained(args.llm or shipped("llm"))
    tok, model = llm.tokenizer, llm.model
    sft = SftRecipe()  # LoRA as `train sft` has it: rank, alpha, dropout, targets, learning rate
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout,
                                                 target_modules=list(LORA_TARGETS)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=args.lr or (LORA_LOOP if args.mode == "lora" else FULL_LOOP).lr, weight_decay=0.0)
    records = [r for r in read_code_records(Path(args.records)) if r["task"] == "vqa" and r["split"] == "train"]
    items = [(r, qa) for r in records for qa in r["qa"]]
    train, held = items[:-HELD_OUT], items[-HELD_OUT:]
    rng = random.Random(0)

    def report(step: int, note: str = "") -> None:
        kinds, overall = accuracy(model, tok, held, args.context)
        print(f"step {step:>5}{note}: overall {100 * overall:.1f}% | "
              + ", ".join(f"{k} {100 * v:.0f}" for k, v in kinds.items()), flush=True)

    report(0)
    start = time.time()
    for step in range(1, args.steps + 1):
        batch = pad_batch([conversation_ids(tok, turns(*train[rng.randrange(len(train))], context=args.context)) for _ in range(BATCH)],
                          tok.pad_id)
        loss = batch_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            report(step, f" ({time.time() - start:.0f} s, loss {loss.item():.3f})")


if __name__ == "__main__":
    main()
