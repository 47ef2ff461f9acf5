"""Fault harness: kill training with SIGKILL at seeded random moments, resume, compare with a run
that was never killed.

    .venv/bin/python bench/faults.py [--stages tokenizer,llm,...] [--kills 10] [--seed 0] [--out runs/faults]

Each stage is a micro run of its real recipe (`child`: every loop of the stage cut to a few steps
with a checkpoint every 2, on 256 scenes — the data sets are built in chunks of 256): the tokenizer
(stages 0, I, II), the de-tokenizer (palette VAE, v2 prior and UNet), the SEED-X de-tokenizers
(prior, stage 1, stage 2), SEED-LLaMA (base LM, LoRA stage 1, full stage 2), SEED-LLaMA-I (VQA
stage, mixture, the adapter), a longer run of one loop (a latent prior, 30 checkpoints), and
`seedmm pretokenize` over exported world shards. The harness runs each
once uninterrupted, then again from an empty directory, killing it `--kills` times — half at random
moments of the run, half the moment a write starts (a temporary checkpoint or model directory
appears) — and resuming after each kill, then lets it finish. It prints one table: kills, kills
inside a write, identical final outputs (every tensor of every safetensors file the run leaves,
saved models and kept checkpoints, or for pretokenize every output file byte for byte), and for
pretokenize the records lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("tokenizer", "detokenizer", "seedx-detokenizer", "llm", "sft", "prior", "pretokenize")


# ---------------------------------------------------------------- the runs being killed

def micro_loop(steps: int = 6):
    """A stage's loop cut to a few steps, checkpointed every 2: kills land between and inside writes."""
    from seedmm.train.loop import LoopConfig

    return LoopConfig(steps=steps, warmup=2, eval_every=steps, save_every=2)


def child(stage: str, out: Path) -> None:
    """One stage's recipe, cut to a micro run (a few steps of each of its loops, 256 scenes); the
    code path is the one `seedmm train STAGE` runs."""
    import torch

    torch.set_num_threads(1)
    from seedmm.checkpoints import shipped

    if stage == "tokenizer":  # stages 0 (CLIP), I (causal Q-Former), II (codebook + heads)
        from seedmm.train.tokenizer import TokenizerRecipe, train_tokenizer

        recipe = TokenizerRecipe(stage0=micro_loop(), stage1=micro_loop(), stage2=micro_loop(), batch0=16,
                                 batch1=16, batch2=32, stage2_scenes=256, dead_code_every=3)
        train_tokenizer(out, recipe, progress=False)
    elif stage == "detokenizer":  # the palette VAE, then the v2 prior and UNet
        from seedmm.models.clip import ShapesClip
        from seedmm.train.detokenizer import DetokenizerRecipe, train_detokenizer

        recipe = DetokenizerRecipe(vae=micro_loop(), prior_v2=micro_loop(), unet_v2=micro_loop(), batch_vae=8,
                                   batch_prior=16, batch_unet=8, prior_scenes=256, unet_scenes=256)
        train_detokenizer(out, ShapesClip.from_pretrained(shipped("clip")), recipe, ("vae", "v2"), progress=False)
    elif stage == "seedx-detokenizer":  # stage 1 (prior, resampler + UNet), stage 2 (editing UNet)
        from diffusers import AutoencoderKL

        from seedmm.models.clip import ShapesClip
        from seedmm.train.seedx_detokenizer import SeedXDetokenizerRecipe, train_seedx_detokenizer

        recipe = SeedXDetokenizerRecipe(prior=micro_loop(), stage1=micro_loop(), stage2=micro_loop(), batch=8,
                                        batch_prior=16, scenes=256, unet_scenes=256, edits=64)
        train_seedx_detokenizer(out, ShapesClip.from_pretrained(shipped("clip")),
                                AutoencoderKL.from_pretrained(shipped("detokenizer/vae")), recipe, progress=False)
    elif stage == "llm":  # base LM, LoRA stage 1, full stage 2
        from seedmm.train.llm import LlmRecipe, train_llm
        from seedmm.train.loop import LoopConfig

        loop = LoopConfig(steps=8, warmup=2, eval_every=4, save_every=2)
        recipe = LlmRecipe(records={"caption": 48, "story": 8, "video": 8}, val_records=8, batch_tokens=256,
                           instruction_corpus=20, base=loop, stage1=loop, stage2=loop)
        train_llm(out, shipped("tokenizer"), shipped("detokenizer"), recipe, progress=False)
    elif stage == "sft":  # VQA first, then the task mixture, over the shipped SEED-LLaMA
        from seedmm.train.sft import SftRecipe, train_sft

        recipe = SftRecipe(records={"caption": 16, "vqa": 16, "edit": 16, "story": 4, "video": 4, "compose": 8},
                           val_records=4, batch_tokens=512, loop=micro_loop(), vqa_first_steps=4)
        train_sft(out, shipped("llm"), recipe=recipe, progress=False)
    elif stage == "prior":  # a longer run of one loop: many checkpoints to be killed between
        from diffusers import AutoencoderKL

        from seedmm.models.clip import ShapesClip
        from seedmm.models.detokenizer import encode_latents
        from seedmm.models.seedx_detokenizer import vit_features
        from seedmm.train.loop import LoopConfig
        from seedmm.train.world_images import fit_latent_prior, world_batch

        clip = ShapesClip.from_pretrained(shipped("clip"))
        vae = AutoencoderKL.from_pretrained(shipped("detokenizer/vae"))
        with torch.no_grad():
            images = world_batch(3, 0, 256)[0]
            features, latents = vit_features(clip, images).flatten(1), encode_latents(vae, images)
        fit_latent_prior("prior", features, latents, LoopConfig(steps=300, warmup=20, save_every=10, eval_every=300),
                         out / "prior", 64, init_seed=1, batch_seed=2, progress=False)
    elif stage == "pretokenize":
        from seedmm.data.codes import pretokenize

        pretokenize(out.parent / "shards", out, shipped("tokenizer"), batch=16, progress=False)
    else:
        raise SystemExit(f"unknown stage {stage}")


# ---------------------------------------------------------------- the harness

def run_child(stage: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", stage, str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


def writing(out: Path) -> bool:
    return any(out.rglob(".*.tmp-*")) or any(out.rglob("*.partial"))


def startup_seconds() -> float:
    """What a child spends importing before it trains: random kills are spread after it."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import seedmm.train.llm, seedmm.train.world_images, seedmm.data.codes"],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def killed_run(stage: str, out: Path, kills: int, duration: float, startup: float, rng: random.Random) -> dict:
    """Kill, resume, …, `kills` times, then let the run finish. The random moments are spread over the
    work so that every kill lands before the run is done (each resume has less left to do)."""
    done = {"kills": 0, "in_write": 0, "resumes": 0}
    work = max(1.0, duration - startup)
    while True:
        proc = run_child(stage, out)
        if done["kills"] < kills:
            in_write = done["kills"] % 2 == 1
            deadline = time.perf_counter() + (duration * 1.5 if in_write else
                                              startup + rng.uniform(0.1, 1.0) * work / (kills + 1))
            while proc.poll() is None and time.perf_counter() < deadline:
                if in_write and writing(out):
                    break
                time.sleep(0.002 if in_write else 0.05)
            if proc.poll() is None:
                caught = writing(out)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done["kills"] += 1
                done["in_write"] += int(caught)
                done["resumes"] += 1
                continue
        if proc.wait() != 0:
            raise SystemExit(f"{stage}: the resumed run failed (exit {proc.returncode})")
        return done


def outputs(stage: str, out: Path) -> dict[str, bytes]:
    """What the stage produces for its user (not its checkpoints), as comparable bytes."""
    if stage == "pretokenize":
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
                and not p.name.startswith(".")}
    from safetensors.torch import load_file

    # every weight file the run leaves — the saved models and the kept checkpoints — but not the
    # temporary leftovers of a killed write (hidden names), which the next run clears
    files = sorted(p for p in out.rglob("*.safetensors")
                   if not any(part.startswith(".") for part in p.relative_to(out).parts))
    found = {}
    for f in files:
        for key, tensor in load_file(str(f)).items():
            found[f"{f.relative_to(out)}:{key}"] = tensor.float().numpy().tobytes()
    return found


def pretokenize_records(out: Path) -> list[str]:
    keys = []
    for f in sorted(out.rglob("*.tar")):
        import tarfile

        with tarfile.open(f) as tar:
            keys += [m.name.rsplit(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".json")]
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/faults")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(args.seed)
    startup = startup_seconds()
    rows = []
    for stage in args.stages.split(","):
        base = root / stage
        if stage == "pretokenize":
            from seedmm.cli import main as seedmm

            seedmm(["world", "export", "--tasks", "caption", "--n", "3000", "--shard-size", "100", "--out",
                    str(base / "shards"), "--quiet"])
        start = time.perf_counter()
        if run_child(stage, base / "clean").wait() != 0:
            raise SystemExit(f"{stage}: the uninterrupted run failed")
        duration = time.perf_counter() - start
        counts = killed_run(stage, base / "killed", args.kills, duration, startup, rng)
        same = outputs(stage, base / "clean") == outputs(stage, base / "killed")
        lost = duplicated = "—"
        if stage == "pretokenize":
            clean, killed = pretokenize_records(base / "clean"), pretokenize_records(base / "killed")
            lost, duplicated = len(set(clean) - set(killed)), len(killed) - len(set(killed))
        rows.append((stage, counts["kills"], counts["in_write"], counts["resumes"], "yes" if same else "NO", lost,
                     duplicated, duration))
        print(json.dumps({"stage": stage, **counts, "identical": same}), file=sys.stderr, flush=True)
    print(f"{'stage':18s} {'kills':>5s} {'in a write':>10s} {'resumes':>7s} {'identical':>9s} {'lost':>5s} "
          f"{'duplicated':>10s} {'clean run s':>11s}")
    for stage, kills, in_write, resumes, same, lost, dup, duration in rows:
        print(f"{stage:18s} {kills:5d} {in_write:10d} {resumes:7d} {same:>9s} {lost!s:>5s} {dup!s:>10s} {duration:11.0f}")


if __name__ == "__main__":
    main()
