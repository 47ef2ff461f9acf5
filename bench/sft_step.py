"""What a `train sft` step costs, and what grouping a batch's rows by length saves.

`batch_loss(model, batch, length_groups)` sorts a batch's rows by length and runs them in that many
groups, each cut to its longest row, so most of the padding is never computed; the loss and its
gradients are the whole padded batch's (tests/test_sft.py). For the VQA stage's batches and the
mixture's (the first 30 of each, the shipped recipe's), this prints the share of a padded batch that
is real tokens and the forward + backward seconds a step at 1, 2, 4 and 8 groups (the optimizer's
step, the same for all, is left out).

    .venv/bin/python bench/sft_step.py --records RUN/codes

RUN is a `seedmm train sft --out RUN` directory (its pretokenized records).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from seedmm.checkpoints import shipped
from seedmm.data.codes import code_records_by_split
from seedmm.models.llm import SeedLlama
from seedmm.train.mixture import batch_loss, train_all_but_embedding
from seedmm.train.sft import SftRecipe, sft_mixture

BATCHES = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True, help="RUN/codes of a `seedmm train sft --out RUN`")
    args = parser.parse_args()
    torch.set_num_threads(2)
    llm = SeedLlama.from_pretrained(shipped("llm"))
    model = llm.model.train()
    train_all_but_embedding(model)
    records = code_records_by_split(args.records)["train"]
    recipe = SftRecipe()
    for stage, stage_recipe in (("VQA stage", replace(recipe, weights={"vqa": 1.0})), ("mixture", recipe)):
        mixture = sft_mixture(llm.tokenizer, records, stage_recipe)
        batches = [mixture(step) for step in range(BATCHES)]
        real = sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel() for b in batches)
        print(f"{stage}: {real:.1%} of the padded batches are real tokens")
        for groups in (1, 2, 4, 8):
            start = time.perf_counter()
            for batch in batches:
                batch_loss(model, batch, groups).backward()
            model.zero_grad()
            print(f"  {groups} length group(s): {(time.perf_counter() - start) / BATCHES:.3f} s a step", flush=True)


if __name__ == "__main__":
    main()
