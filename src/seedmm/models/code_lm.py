"""What every LLM that reads and writes images as SEED codes shares (SEED-LLaMA, SEED-OPT): its image
tokenizer and de-tokenizer, loaded on first use; drawing codes; and CogView's self-reranking of
text-to-image candidates by the model's own caption likelihood, whole and region by region.

A subclass provides `generate_codes(prompts, options)` (with `options.rerank == 1`) and
`caption_log_likelihood(codes, captions)`, each in its own sequence layout.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from ..checkpoints import DRAWINGS_PER_IMAGE
from .generation import GenerationOptions


def find_part(directory: Path, recorded: str | None, sibling: str) -> Path | None:
    """`../sibling` beside `directory` (the layout of checkpoints/shapes-tiny), else the path recorded
    at training time (relative to `directory`); None if neither is a model directory."""
    for candidate in [directory.parent / sibling] + ([directory / recorded] if recorded else []):
        if (candidate / "config.json").is_file() or (candidate / "model_index.json").is_file():
            return candidate.resolve()
    return None


class CodeLM:
    """The image side of an LLM over SEED codes. `image_tokenizer` / `detokenizer`: loaded models, or
    None to load them from `_sources` (directories, set by `locate_parts`) on first use."""

    def __init__(self, model, tokenizer, image_tokenizer=None, detokenizer=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_tokenizer = image_tokenizer
        self.detokenizer = detokenizer

    def save_with_parts(self, target: str | Path, image_tokenizer_dir: str | Path,
                        detokenizer_dir: str | Path | None = None) -> None:
        """`save_pretrained` into `target`, swapped in whole (`save_directory_atomically`), naming the
        image tokenizer and de-tokenizer by their paths relative to `target` (which also hold for the
        temporary sibling it is written as) and the tokenizer by its fingerprint."""
        from ..atomic import save_directory_atomically
        from ..data.codes import tokenizer_fingerprint

        target = Path(target)

        def relative(path):
            return None if path is None else os.path.relpath(Path(path).resolve(), target.resolve())

        save_directory_atomically(target, lambda d: self.save_pretrained(
            d, image_tokenizer=relative(image_tokenizer_dir), detokenizer=relative(detokenizer_dir),
            image_tokenizer_blake2b=tokenizer_fingerprint(image_tokenizer_dir)))

    def locate_parts(self, directory: Path, meta: dict, image_tokenizer=None, detokenizer=None,
                     detokenizer_sibling: str = "detokenizer") -> None:
        """Where the image tokenizer and de-tokenizer come from: as given (a directory or a model), else
        `../tokenizer` and `../{detokenizer_sibling}` beside `directory`, else the paths `meta` (the
        directory's seedmm.json) recorded, with the tokenizer's fingerprint checked on load."""
        self._sources = {
            "image_tokenizer": image_tokenizer or find_part(directory, meta.get("image_tokenizer"), "tokenizer"),
            "detokenizer": detokenizer or find_part(directory, meta.get("detokenizer"), detokenizer_sibling),
            "image_tokenizer_blake2b": meta.get("image_tokenizer_blake2b")}

    def source(self, name: str) -> Path:
        """The directory "image_tokenizer" or "detokenizer" is (or will be) loaded from."""
        where = getattr(self, "_sources", {}).get(name)
        if not isinstance(where, (str, Path)):
            # a ValueError: the command line reports those in one line (cli.main)
            raise ValueError(f"this model's {name.replace('_', ' ')} was given as a model, not a directory")  # noqa: TRY004
        return Path(where)

    def component(self, name: str):
        """"image_tokenizer" or "detokenizer", loaded on first use."""
        if getattr(self, name) is None:
            sources = getattr(self, "_sources", {})
            where = sources.get(name)
            if where is None:
                raise ValueError(f"this model has no {name.replace('_', ' ')}: pass {name}= to from_pretrained")
            if isinstance(where, (str, Path)):
                if name == "image_tokenizer":
                    from ..data.codes import tokenizer_fingerprint
                    from .tokenizer import SeedTokenizer

                    expected = sources.get("image_tokenizer_blake2b")
                    if expected and tokenizer_fingerprint(where) != expected:
                        raise ValueError(f"the image tokenizer at {str(where)!r} is not the one this LLM was "
                                         "trained on (its codes index another codebook)")
                    where = SeedTokenizer.from_pretrained(where)
                else:
                    from .detokenizer import SeedDetokenizerPipeline

                    where = SeedDetokenizerPipeline.from_pretrained(where)
                    where.set_progress_bar_config(disable=True)
            setattr(self, name, where)
        return getattr(self, name)

    # ------------------------------------------------------------ self-reranked text-to-image
    def generate_codes(self, prompts: list[str], options: GenerationOptions | None = None) -> list[list[int] | None]:
        raise NotImplementedError

    def caption_log_likelihood(self, codes: list[list[int]], captions: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def self_reranked_codes(self, prompts: list[str], options: GenerationOptions) -> list[list[int] | None]:
        """CogView's self-reranking: `options.rerank` candidates per prompt — the first generated as
        `options` say (greedy by default), the others sampled at `options.temperature` from the
        nucleus `options.candidate_top_p` (seeded by `options.seed`, 0 if unset) — and the one whose
        prompt, read as its caption, the model finds likeliest (`caption_log_likelihood`). The model
        reads pictures better than it draws them (captions 87% exact, drawings 32%), so its reading
        picks among its drawings. With `options.rerank_regions` and a query-grid tokenizer, then region
        by region (`region_reranked`)."""
        k = options.rerank
        first = self.generate_codes(prompts, replace(options, rerank=1))
        sampled = self.generate_codes([p for p in prompts for _ in range(k - 1)],
                                      replace(options, rerank=1, do_sample=True, num_beams=1,
                                              top_p=options.candidate_top_p,
                                              seed=0 if options.seed is None else options.seed))
        candidates = [[first[i], *sampled[i * (k - 1):(i + 1) * (k - 1)]] for i in range(len(prompts))]
        pairs = [(i, c) for i, row in enumerate(candidates) for c in row if c is not None]
        scores = self.caption_log_likelihood([c for _, c in pairs], [prompts[i] for i, _ in pairs]).tolist()
        best: dict[int, tuple[float, list[int]]] = {}
        for (i, c), score in zip(pairs, scores):
            if i not in best or score > best[i][0]:
                best[i] = (score, c)
        regions = self.code_regions() if options.rerank_regions else None
        if regions is not None:
            best = self.region_reranked(prompts, candidates, best, regions)
        return [best[i][1] if i in best else None for i in range(len(prompts))]

    def code_regions(self) -> list[int] | None:
        """The image region of each code position if the image tokenizer's codes factor into regions
        (`SeedTokenizer.code_regions`); None without one or without an image tokenizer."""
        if self.image_tokenizer is None and getattr(self, "_sources", {}).get("image_tokenizer") is None:
            return None
        return self.component("image_tokenizer").code_regions()

    def region_reranked(self, prompts: list[str], candidates: list[list], best: dict, regions: list[int]) -> dict:
        """Self-reranking region by region (beyond the papers): with a query-grid tokenizer the codes of a
        region describe only that region, so a region's codes from any candidate make a valid picture with
        the rest of another. One sweep over the regions: in the kept sequence, try every other
        candidate's codes for the region and keep the variant whose prompt the model finds likeliest as
        its caption. A prompt's candidates often each get one object right; this combines them (on 200
        held-out scenes, 16 candidates: exact drawings 50.0 -> 54.0%, a second sweep 54.5%).
        `best`: prompt index -> (score, codes), updated and returned."""
        for region in sorted(set(regions)):
            at = [p for p, r in enumerate(regions) if r == region]
            trials = []
            for i, (_, kept) in best.items():
                seen = {tuple(kept[p] for p in at)}
                for c in candidates[i]:
                    part = tuple(c[p] for p in at) if c is not None else None
                    if part is not None and part not in seen:
                        seen.add(part)
                        variant = list(kept)
                        for p, code in zip(at, part):
                            variant[p] = code
                        trials.append((i, variant))
            scores = self.caption_log_likelihood([v for _, v in trials], [prompts[i] for i, _ in trials]).tolist()
            for (i, variant), score in zip(trials, scores):
                if score > best[i][0]:
                    best[i] = (score, variant)
        return best

    # ------------------------------------------------------------ drawing
    def draw(self, codes, steps: int = 25, guidance_scale: float = 1.0, seed: int | None = 0,
             drawings: int = DRAWINGS_PER_IMAGE, detokenizer=None):
        """Codes (B, 32) → PIL images through the SEED tokenizer's generation head and a de-tokenizer
        (`detokenizer`, else this model's own); each the best of `drawings` by the tokenizer's
        reading (`SeedTokenizer.decode`). A v2 pipeline draws through the generation embedding, a v1
        pipeline through the Reverse Q-Former: the two paths read the same codes."""
        return self.component("image_tokenizer").decode(codes, detokenizer=detokenizer or self.component("detokenizer"),
                                                    num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed,
                                                    drawings=drawings)

    def draw_optional(self, codes: list, steps: int = 25, seed: int | None = 0,
                      drawings: int = DRAWINGS_PER_IMAGE, detokenizer=None) -> list:
        """Draw the valid code lists of `codes` in one batch; None stays None."""
        valid = [c for c in codes if c is not None]
        drawn = iter(self.draw(valid, steps=steps, seed=seed, drawings=drawings, detokenizer=detokenizer)
                     if valid else [])
        return [next(drawn) if c is not None else None for c in codes]

    def generate_images(self, prompts: list[str], options: GenerationOptions | None = None, steps: int = 25,
                        seed: int | None = 0):
        """Text → images (None where the LLM produced no valid image)."""
        return self.draw_optional(self.generate_codes(prompts, options), steps=steps, seed=seed)
