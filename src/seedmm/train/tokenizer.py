"""Training the SEED tokenizer, one function per stage (`seedmm train tokenizer`).

    stage 0 (tiny only)  ShapesClip: ViT + text tower trained contrastively, then frozen — the
                         stand-in for EVA-CLIP / CLIP-H / the caption text encoder
                         (train/clip.py).                                                  → OUT/clip/
    stage I              causal Q-Former; contrastive loss between the LAST causal query
                         embedding and the caption feature (label smoothing 0.1, learnable
                         temperature) + caption generation from the 32 queries (BLIP-2's ITG,
                         a small cross-attending decoder); ViT frozen.                     → OUT/stage1/
    stage II             codebook + encode/decode task layers + reconstruction blocks (cosine)
                         + v2 generation head (MSE onto the CLIP image embedding) + v1 Reverse
                         Q-Former (MSE onto the 77 caption token features): the paper's
                         5·VQ + 2·(1−cos) + 0.5·MSE(v2) + 0.5·MSE(v1); beyond it, stage I's two
                         losses on the embeddings reconstructed from codes, and the Q-Former
                         trained on (the paper freezes it).                               → OUT/tokenizer/
    stage III            (after the de-tokenizer) the v2 generation head alone, codes frozen: the
                         MSE onto the CLIP embedding + the MSE between the latent the frozen
                         de-tokenizer's prior reads from the embedding and the picture's latent
                         (needs `detokenizer_dir`, a v2 pipeline)                        → OUT/tokenizer/
Each stage resumes from its newest complete checkpoint in OUT/<stage>/checkpoints/ and writes OUT/<stage>/loss.png.
Stages 0 and I draw fresh train-split batches (batch s is a function of (seed, s)). Stage II's
frozen parts (ViT, text tower) run once for a fixed set of scenes and the steps go to the
trainable parts; batches are epoch-wise shuffles, again a function of (seed, s).
With own data (`data`: pairs) every stage learns from its pictures and captions instead, epoch-wise;
stage 0's text tower and the caption decoder speak its byte-level BPE (`stage_text_tokenizer`), and
each stage validates with its loss on the held-out pairs (none held out: no validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ..data.user_training import StageData, stage_text_tokenizer
from ..eval.retrieval import held_out_pairs, retrieval_metrics
from ..eval.tokenizer import caption_exact_rate
from ..models.clip import ShapesClip, contrastive_loss
from ..models.detokenizer import encode_latents
from ..models.tokenizer import SeedTokenizer, preset
from ..world import render
from .clip import train_clip
from .distributed import save_directory_on_main
from .loop import LoopConfig, epoch_batch_indices, train
from .world_images import (
    Pictures,
    frozen_chunks,
    held_out_loss,
    own_pairs,
    prior_read_back_rate,
    validation_pictures,
    world_batch,
)

STAGES = ("0", "1", "2", "3")


@dataclass
class TokenizerRecipe:
    preset: str = "shapes-tiny"
    causal: bool = True
    stage0: LoopConfig = field(default_factory=lambda: LoopConfig(steps=300, lr=1e-3, warmup=40, eval_every=100))
    stage1: LoopConfig = field(default_factory=lambda: LoopConfig(steps=200, lr=5e-4, warmup=50, eval_every=100))
    stage2: LoopConfig = field(default_factory=lambda: LoopConfig(steps=900, lr=1e-3, warmup=50, eval_every=300))
    batch0: int = 128
    batch1: int = 128
    batch2: int = 128
    stage2_scenes: int = 24576  # stage II trains on frozen targets of this many scenes, computed once
    paraphrase_rate: float = 0.3
    dead_code_every: int = 100
    # Beyond the paper: stage I's contrastive loss also on the embedding reconstructed from codes.
    # The mean cosine over 32 tokens reaches 0.99 while retrieval from codes stays near 35%: the
    # last query carries the fine distinctions and this term makes the codes keep them.
    code_contrastive_weight: float = 3.0
    # Beyond the paper's stage I (BLIP-2, which SEED's Q-Former starts from, was trained with it):
    # caption generation from the 32 queries, and in stage II from the embeddings reconstructed from
    # codes. Contrastive losses alone left the codes holding too little of the scene to draw it back
    # (a probe read 1.8% of held-out scenes exactly from them).
    caption_weight: float = 1.0
    code_caption_weight: float = 1.0
    # The paper freezes the Q-Former in stage II. Frozen, its embeddings held far more of the scene
    # than survived quantisation (probe: 16.8% vs 1.8% exact); trained on through the codes (stage I's
    # contrastive loss stays on it), it learns embeddings a per-query codebook keeps.
    stage2_trains_qformer: bool = True
    # The v1 Reverse Q-Former (77 queries) is 2/3 of a stage II step at batch 128; its MSE on the
    # first rows of each batch only makes a step 1.7x cheaper (0 = all rows), and steps are what the
    # 20-minute budget is short of.
    v1_rows: int = 32
    # Stage III. The generation head regressed onto the CLIP embedding alone misses it by cos 0.984,
    # and the de-tokenizer reads the miss as other shapes: its prior drew 20.4% of 500 test scenes
    # exactly from the head's embedding, 62% from the true one. Through the frozen prior, 1,000 steps
    # on 65,536 scenes drew 63.2% (CLIP term alone, same steps: 27%). The codes do not change.
    # 3,000 steps on 49,152 scenes: 78.8% of test scenes drawn exactly from codes, in 10 min on
    # 2026-12-04 (17 min 49 s on a slower machine; 4,000 on 65,536, over an older de-tokenizer: 81.2%
    # in 18 min 25 s). Stage III shares the de-tokenizer's 40-minute budget.
    stage3: LoopConfig = field(default_factory=lambda: LoopConfig(steps=3000, lr=3e-4, warmup=100, eval_every=1000,
                                                                  weight_decay=0.0))
    batch3: int = 256
    stage3_scenes: int = 49152
    seed: int = 0


# ---------------------------------------------------------------- stage I

def new_tokenizer(recipe: TokenizerRecipe, clip: ShapesClip) -> SeedTokenizer:
    """A fresh tokenizer whose frozen ViT is the stage-0 one (its caption decoder speaks the stage-0
    text tokenizer's vocabulary)."""
    config = preset(recipe.preset)
    config.qformer.causal = recipe.causal
    config.caption_vocab_size = clip.config.vocab_size if recipe.caption_weight else 0
    torch.manual_seed(recipe.seed + 1)
    tokenizer = SeedTokenizer(config)
    tokenizer.visual_encoder.load_state_dict(clip.visual_encoder.state_dict())
    return tokenizer


def _freeze(*modules) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)


def train_stage1(out: Path, recipe: TokenizerRecipe, clip: ShapesClip, progress: bool = True,
                 own: Pictures | None = None, own_val: Pictures | None = None) -> SeedTokenizer:
    tok = new_tokenizer(recipe, clip)
    _freeze(clip, tok)
    trainable = [tok.qformer, tok.vision_proj, tok.text_proj]
    captions = tok.config.has_caption_decoder  # new_tokenizer gives it one when recipe.caption_weight > 0
    if captions:
        trainable.append(tok.caption_decoder)
    for m in trainable:
        for p in m.parameters():
            p.requires_grad_(True)
    tok.temp.requires_grad_(True)
    draw = own.batch if own is not None else \
        lambda seed, step, size: world_batch(seed, step, size, recipe.paraphrase_rate)

    def loss_fn(step: int):
        return losses(*draw(recipe.seed * 10 + 1, step, recipe.batch1))

    def losses(images, texts, keys):
        with torch.no_grad():
            image_tokens = tok.visual_encoder(tok.pixel_values(images))
            text_features = clip.text_features(texts)
        causal = tok.qformer(image_tokens)
        img = tok.contrastive_image_feature(causal)
        txt = tok.contrastive_text_feature(text_features)
        temp = tok.temp.clamp(0.001, 0.5)
        loss = contrastive_loss(img, txt, 1 / temp, keys, label_smoothing=0.1)
        logs = {"itc": float(loss.detach()), "temp": float(temp.detach())}
        if captions:
            itg = tok.caption_loss(causal, clip.tokenize(keys))  # the canonical caption: the whole scene
            loss = loss + recipe.caption_weight * itg
            logs["itg"] = float(itg.detach())
        return loss, logs

    if own is None:
        val_images, val_texts = validation_pictures(256)
        val_pixels = tok.pixel_values(val_images)
        with torch.no_grad():
            val_text_features = clip.text_features(val_texts)
        val_caption_ids = clip.tokenize(val_texts)

        def validate():
            causal = tok.causal_embeddings(val_pixels)
            m = retrieval_metrics(tok.contrastive_image_feature(causal), tok.contrastive_text_feature(val_text_features))
            logs = {"val_i2t_R@1": m["image_to_text"]["R@1"], "val_t2i_R@1": m["text_to_image"]["R@1"]}
            if captions:
                logs["val_caption_exact"] = caption_exact_rate(tok, causal, val_caption_ids)
            return logs
    else:
        def validate():
            return held_out_loss(lambda: losses(*own_val.everything())[0])

    train("stage1-qformer", tok, loss_fn, recipe.stage1, out / "stage1", validate if own is None or own_val else None,
          progress)
    save_directory_on_main(out / "stage1" / "tokenizer", tok.save_pretrained)
    return tok


# ---------------------------------------------------------------- stage II

def codebook_health(ids: torch.Tensor, num_codes: int) -> dict[str, float]:
    counts = torch.bincount(ids.flatten(), minlength=num_codes).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"codes_in_use": int((counts > 0).sum()), "perplexity": float(entropy.exp())}


@torch.no_grad()
def frozen_targets(tok: SeedTokenizer, clip: ShapesClip, recipe: TokenizerRecipe, chunks) -> dict:
    """Stage II's inputs and targets for a fixed set of train scenes (`chunks` of (images, texts,
    keys)), computed once: the ViT, text tower (and, as in the paper, the Q-Former) are frozen, so
    recomputing them every step (most of a step's cost) buys nothing. When stage II trains the
    Q-Former, the ViT tokens are kept instead of its outputs."""
    parts = {"causal": [], "image_tokens": [], "conditioning": [], "text_features": [], "text_tokens": [], "keys": []}
    for images, texts, keys in chunks:
        pixels = tok.pixel_values(images)
        tokens = tok.visual_encoder(pixels)
        text = clip.text_outputs(texts)
        if recipe.stage2_trains_qformer:
            parts["image_tokens"].append(tokens)
        else:
            parts["causal"].append(tok.qformer(tokens))
        parts["conditioning"].append(clip.conditioning(pixels))  # CLIP's own ViT: the tokenizer's may be region-masked
        parts["text_features"].append(text.pooler_output)
        parts["text_tokens"].append(text.last_hidden_state)
        parts["keys"] += keys
    parts["caption_ids"] = [clip.tokenize(parts["keys"])]
    return {k: v if k == "keys" else torch.cat(v) for k, v in parts.items() if v}


def train_stage2(out: Path, recipe: TokenizerRecipe, clip: ShapesClip, tok: SeedTokenizer,
                 progress: bool = True, own: Pictures | None = None, own_val: Pictures | None = None) -> SeedTokenizer:
    cfg = tok.config
    _freeze(clip, tok)
    trainable = [tok.encode_task_layer, tok.quantize, tok.decode_task_layer, tok.blocks]
    if recipe.stage2_trains_qformer:
        trainable += [tok.qformer, tok.vision_proj, tok.text_proj]
        if cfg.has_caption_decoder:
            trainable.append(tok.caption_decoder)
    if cfg.v2_head:
        trainable += [tok.blocks_image, tok.image_down, tok.distill_image_proj]
    if cfg.v1_head:
        trainable += [tok.reverse_qformer, tok.reverse_proj]
    for m in trainable:
        for p in m.parameters():
            p.requires_grad_(True)
    tok.pos_embed.requires_grad_(True)
    if cfg.v2_head:
        tok.pos_embed_image.requires_grad_(True)
    if own is None:
        val_images, val_texts = validation_pictures(256)
        val_caption_ids = clip.tokenize(val_texts)
    data = frozen_targets(tok, clip, recipe, frozen_chunks(own, recipe.seed * 10 + 2, recipe.stage2_scenes,
                                                           recipe.paraphrase_rate))
    n = len(data["keys"])
    batch = min(recipe.batch2, n)

    def causal_embeddings(rows: torch.Tensor, d: dict = data) -> torch.Tensor:
        return tok.qformer(d["image_tokens"][rows]) if recipe.stage2_trains_qformer else d["causal"][rows]

    def restart_dead_codes(step: int) -> None:
        """Codes no encoder output of a 2,048-token sample picks restart at random encoder outputs
        (a common VQ fix: without it most of the codebook never gets used)."""
        with torch.no_grad():
            rows = epoch_batch_indices(recipe.seed + 1, step, min(64, n), n)
            z = tok.encode_task_layer(causal_embeddings(rows)).flatten(0, 1)
            ids = torch.cdist(z, tok.quantize.embedding.weight).argmin(1)
            dead = torch.bincount(ids, minlength=cfg.num_codes) == 0
            if dead.any():
                pick = torch.randint(0, len(z), (int(dead.sum()),))
                tok.quantize.embedding.weight[dead] = z[pick] + 0.01 * torch.randn_like(z[pick])

    def loss_fn(step: int):
        rows = epoch_batch_indices(recipe.seed, step, batch, n)
        causal = causal_embeddings(rows)
        if step == 0:  # data-dependent codebook init: rows start at encoder outputs (repeated if fewer)
            with torch.no_grad():
                z = tok.encode_task_layer(causal).flatten(0, 1)
                pick = torch.randperm(len(z)).repeat(-(-cfg.num_codes // len(z)))[: cfg.num_codes]
                tok.quantize.embedding.weight.copy_(z[pick])
        elif recipe.dead_code_every and step % recipe.dead_code_every == 0 and step <= 0.5 * recipe.stage2.steps:
            restart_dead_codes(step)
        return losses(rows, causal)

    def losses(rows: torch.Tensor, causal: torch.Tensor, d: dict = data):
        keys = [d["keys"][i] for i in rows.tolist()]
        _, quantized, vq_loss = tok.quantize_embeddings(causal)
        decoded = tok.decode_task_layer(quantized)
        recon = tok.reconstruct(decoded)
        cos = F.cosine_similarity(recon, causal.detach(), dim=-1).mean()
        loss = 5 * vq_loss + 2 * (1 - cos)
        logs = {"vq": float(vq_loss.detach()), "cos": float(cos.detach())}
        text = tok.contrastive_text_feature(d["text_features"][rows])
        scale = 1 / tok.temp.clamp(0.001, 0.5)
        if recipe.code_contrastive_weight:
            itc = contrastive_loss(tok.contrastive_image_feature(recon), text, scale, keys)
            loss = loss + recipe.code_contrastive_weight * itc
            logs["itc"] = float(itc.detach())
        if recipe.stage2_trains_qformer:  # stage I's loss, so the embeddings stay aligned with text
            itc_causal = contrastive_loss(tok.contrastive_image_feature(causal), text, scale, keys, label_smoothing=0.1)
            loss = loss + itc_causal
            logs["itc_causal"] = float(itc_causal.detach())
        if recipe.code_caption_weight and cfg.has_caption_decoder:
            itg = tok.caption_loss(recon, d["caption_ids"][rows])
            loss = loss + recipe.code_caption_weight * itg
            logs["itg"] = float(itg.detach())
        if cfg.v2_head:
            mse2 = F.mse_loss(tok.generation_from_decoded(decoded), d["conditioning"][rows])
            loss = loss + 0.5 * mse2
            logs["mse_v2"] = float(mse2.detach())
        if cfg.v1_head:
            k = recipe.v1_rows or len(rows)
            mse1 = F.mse_loss(tok.reverse_from_decoded(decoded[:k]), d["text_tokens"][rows[:k]])
            loss = loss + 0.5 * mse1
            logs["mse_v1"] = float(mse1.detach())
        return loss, logs

    val = frozen_targets(tok, clip, recipe, frozen_chunks(own_val, 0, 0)) if own is not None and own_val else None

    def validate_own():
        rows = torch.arange(len(val["keys"]))
        return held_out_loss(lambda: losses(rows, causal_embeddings(rows, val), val)[0])

    def validate():
        pixels = tok.pixel_values(val_images)
        causal = tok.causal_embeddings(pixels)
        ids, _, _ = tok.quantize_embeddings(causal)
        text = tok.contrastive_text_feature(clip.text_features(val_texts))
        recon = tok.embed_codes(ids)
        from_codes = retrieval_metrics(tok.contrastive_image_feature(recon), text)
        logs = {"val_code_i2t_R@1": from_codes["image_to_text"]["R@1"], **codebook_health(ids, cfg.num_codes)}
        if cfg.has_caption_decoder:
            logs["val_code_caption_exact"] = caption_exact_rate(tok, recon, val_caption_ids)
        return logs

    train("stage2-codebook", tok, loss_fn, recipe.stage2, out / "stage2",
          validate if own is None else validate_own if own_val else None, progress)
    save_directory_on_main(out / "tokenizer", tok.save_pretrained)
    return tok


# ---------------------------------------------------------------- stage III

@torch.no_grad()
def generation_targets(tok: SeedTokenizer, clip: ShapesClip, vae, recipe: TokenizerRecipe) -> dict:
    """Stage III's data for a fixed set of train scenes, computed once: the decoded codes (the head's
    input), the CLIP conditioning and the de-tokenizer's latent of each picture."""
    parts = {"decoded": [], "conditioning": [], "latents": []}
    chunk = 256
    for k in range(recipe.stage3_scenes // chunk):
        images, _, _ = world_batch(recipe.seed * 10 + 3, k, chunk)
        pixels = tok.pixel_values(images)
        parts["decoded"].append(tok.decode_codes(tok.encode(pixels)))
        parts["conditioning"].append(clip.conditioning(pixels))
        parts["latents"].append(encode_latents(vae, images))
    return {k: torch.cat(v) for k, v in parts.items()}


def train_stage3(out: Path, recipe: TokenizerRecipe, clip: ShapesClip, tok: SeedTokenizer, detokenizer_dir,
                 progress: bool = True) -> SeedTokenizer:
    from ..models.detokenizer import SeedDetokenizerPipeline

    if not tok.config.v2_head:
        raise ValueError("stage III fits the v2 generation head; this tokenizer has none")
    pipe = SeedDetokenizerPipeline.from_pretrained(detokenizer_dir)
    if pipe.condition != "image" or pipe.conditioner is None:
        raise ValueError(f"{detokenizer_dir} is not a v2 de-tokenizer with a latent prior")
    prior, vae = pipe.conditioner.float().requires_grad_(False), pipe.vae.float().requires_grad_(False)
    _freeze(clip, tok)
    head = [tok.blocks_image, tok.image_down, tok.distill_image_proj]
    for m in head:
        m.requires_grad_(True)
    tok.pos_embed_image.requires_grad_(True)
    data = generation_targets(tok, clip, vae, recipe)
    val_scenes = [s for s, _ in held_out_pairs(256, split="val")]
    val_codes = tok.encode([render(s) for s in val_scenes])

    def loss_fn(step: int):
        rows = epoch_batch_indices(recipe.seed + 3, step, recipe.batch3, len(data["decoded"]))
        embedding = tok.generation_from_decoded(data["decoded"][rows])
        clip_mse = F.mse_loss(embedding, data["conditioning"][rows])
        latent_mse = F.mse_loss(prior(embedding), data["latents"][rows])
        return clip_mse + latent_mse, {"mse_v2": float(clip_mse.detach()), "latent": float(latent_mse.detach())}

    def validate():
        return {"val_prior_read_back": prior_read_back_rate(vae, prior, tok.generation_embedding(val_codes), val_scenes)}

    train("stage3-generation", tok, loss_fn, recipe.stage3, out / "stage3", validate, progress)
    save_directory_on_main(out / "tokenizer", tok.save_pretrained)
    return tok


def train_tokenizer(out: str | Path, recipe: TokenizerRecipe | None = None, stages=STAGES[:3],
                    detokenizer_dir=None, progress: bool = True, data: StageData | None = None,
                    text_tokenizer: str | None = None) -> Path:
    """Run the requested stages in order; each later stage loads what the earlier ones saved in OUT.
    Stage III needs `detokenizer_dir` (a v2 de-tokenizer trained with OUT/clip). With `data` (own
    pairs) stages 0–II learn from it; stage 0's text tokenizer is `text_tokenizer` (a directory) or
    a byte-level BPE of its captions (OUT/text_tokenizer)."""
    recipe = recipe or TokenizerRecipe()
    out = Path(out)
    if "3" in stages and detokenizer_dir is None:
        raise ValueError("stage 3 fits the generation head to a v2 de-tokenizer: pass its directory "
                         "(seedmm train tokenizer --detokenizer DIR)")
    if "3" in stages and data is not None:
        raise ValueError("stage 3 learns from world scenes through a de-tokenizer; run it without --data")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    own = {}
    if data is not None:
        size = preset(recipe.preset).vision.image_size
        own = {"own": own_pairs(data, "train", size), "own_val": own_pairs(data, "val", size)}
    if "0" in stages:
        words = stage_text_tokenizer(data, out, text_tokenizer) if data is not None else None
        clip = train_clip(out, recipe, progress, text_tokenizer=words, **own)
    else:
        clip = ShapesClip.from_pretrained(out / "clip")
    if "1" in stages:
        tok = train_stage1(out, recipe, clip, progress, **own)
    elif "2" in stages:
        tok = SeedTokenizer.from_pretrained(out / "stage1" / "tokenizer")
    if "2" in stages:
        train_stage2(out, recipe, clip, tok, progress, **own)
    if "3" in stages:
        tok = tok if "2" in stages else SeedTokenizer.from_pretrained(out / "tokenizer")
        train_stage3(out, recipe, clip, tok, detokenizer_dir, progress)
    return out / "tokenizer"
