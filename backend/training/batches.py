"""Training batches: what the frozen encoders make of a data-loader batch, for both stages.

`stage2_batch` encodes the clip with the CogVideoX VAE at every step; `stage2_cached_batch` samples
the same latents from the distributions `latent_cache.py` stored once per clip (the same draws from
the same generator, so a cached run trains exactly as an uncached one). `encode_prompts` embeds
every distinct caption once.
"""

from __future__ import annotations


class TrainingSetupError(RuntimeError):
    """A problem with the arguments, the data or the models, reported as one line."""


def encode_prompts(pipe, prompts: list[str], device) -> dict:
    """T5 embeddings of every distinct prompt, computed once (the text encoder is frozen)."""
    import torch

    from ..runtime.text import encode_prompts as t5

    unique = sorted(set(prompts))
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise TrainingSetupError("stage 2 needs the base's text_encoder/ and tokenizer/ to embed the prompts")
    length = pipe.transformer.config.max_text_seq_length
    pipe.text_encoder.to(device)
    out = {}
    with torch.no_grad():
        for i in range(0, len(unique), 8):
            chunk = unique[i : i + 8]
            emb = t5(pipe.tokenizer, pipe.text_encoder, chunk, length, device=device)
            out.update({p: e.cpu() for p, e in zip(chunk, emb)})
    pipe.text_encoder.to("cpu")
    return out


def stage2_batch(pipe, batch: dict, prompt_cache: dict, device, generator):
    """Video latents, I2V image latents (frame 0 in slot 0, zeros after), T5 embeddings and flow."""
    import torch

    from .losses import Stage2Batch

    vae = pipe.vae
    sf = vae.config.scaling_factor
    frames = batch["frames"].to(device, vae.dtype)  # (B, F, 3, H, W)
    with torch.no_grad():
        video = frames.permute(0, 2, 1, 3, 4)  # (B, 3, F, H, W)
        latents = vae.encode(video).latent_dist.sample(generator) * sf
        image = vae.encode(video[:, :, :1]).latent_dist.sample(generator) * sf
    latents = latents.permute(0, 2, 1, 3, 4).float()  # (B, T, C, h, w)
    image = image.permute(0, 2, 1, 3, 4).float()
    image_latents = torch.cat(
        [image, image.new_zeros(image.shape[0], latents.shape[1] - 1, *image.shape[2:])], 1
    )
    prompt_embeds = torch.stack([prompt_cache[p] for p in batch["prompt"]]).to(device)
    return Stage2Batch(latents, image_latents, prompt_embeds, batch["flow"].to(device))


def stage1_batch(pipe, batch: dict, device):
    """Flow-VAE latents of the GT flow, image-VAE latent of frame 0, Plücker, FGM condition."""
    import torch

    from ..animateanything.flow_generation import build_condition
    from .losses import Stage1Batch

    flow = batch["flow"].to(device)  # (B, F, H, W, 2)
    b, f, h, w, _ = flow.shape
    with torch.no_grad():
        z = pipe.flow_vae.encode_flow(flow.permute(0, 1, 4, 2, 3).reshape(b * f, 2, h, w))
        flow_latents = z.reshape(b, f, *z.shape[1:]).transpose(1, 2).float()  # (B, C, F, h, w)
        frame0 = batch["frames"][:, 0].to(device, pipe.image_vae.dtype)
        ref = pipe.image_vae.encode(frame0).latent_dist.mode() * pipe.image_vae.config.scaling_factor
        condition = build_condition(
            batch["sparse_flow"].to(device), batch["sparse_mask"].to(device),
            pipe.flow_generator.config.densify_sigma, pipe.flow_vae.config.flow_scale,
        )  # fmt: skip
    return Stage1Batch(flow_latents, ref.float(), batch["plucker"].to(device), condition)


def stage2_cached_batch(pipe, batch: dict, prompt_cache: dict, device, generator):
    """As `stage2_batch`, from a batch of `latent_cache.CachedClips` (no VAE call): the video and
    frame-0 latents are sampled from the stored VAE distributions with `generator`, in the order
    `stage2_batch` samples them."""
    import torch
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from .losses import Stage2Batch

    sf = pipe.vae.config.scaling_factor
    video = DiagonalGaussianDistribution(batch["video_dist"].to(device))
    latents = video.sample(generator) * sf
    image = DiagonalGaussianDistribution(batch["image_dist"].to(device)).sample(generator) * sf
    latents = latents.permute(0, 2, 1, 3, 4).float()
    image = image.permute(0, 2, 1, 3, 4).float()
    image_latents = torch.cat(
        [image, image.new_zeros(image.shape[0], latents.shape[1] - 1, *image.shape[2:])], 1
    )
    prompt_embeds = torch.stack([prompt_cache[p] for p in batch["prompt"]]).to(device)
    return Stage2Batch(latents, image_latents, prompt_embeds, batch["flow"].to(device))
