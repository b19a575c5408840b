"""GuidedWanPipeline: Wan 2.x image-to-video steered by the preview (Time-to-Move, SDEdit), by
flow-warped noise, and by Wan-Move point tracks.

A subclass of diffusers' `WanImageToVideoPipeline` (same components: Wan 2.1 I2V with its CLIP image
encoder, Wan 2.2 I2V-A14B with `transformer_2` and `boundary_ratio`, Wan 2.2 TI2V-5B with
`expand_timesteps`). `guidance="none"` with no tracks and no noise warp is the stock pipeline, bit for
bit (same random draws in the same order).

- guidance "ttm" (backend/runtime/guidance.py): start at step `tweak_index` from the preview latents
  noised to that step; after each step before `tstrong_index`, the cells inside `ttm_mask` are reset
  to the preview noised to the next step's level. "sdedit": the same with no mask phase, starting at
  steps - int(steps x strength).
- noise_warp (backend/runtime/noise.py): latent frame 0's noise carried along `flow` at pixel
  resolution.
- tracks (backend/wan/tracks.py, Wan-Move): the conditional pass sees the image latent with frame 0's
  features copied along the tracks; the unconditional pass the stock one.
Noising on the flow-matching schedule: x_i = (1 - sigma_i) x0 + sigma_i eps (sigma_i =
scheduler.sigmas[i], the sigma of timesteps[i]).

Conventions:
    video (preview): (F, H, W, 3) uint8 or float in [0, 1]; flow (F, H, W, 2) pixels from frame 0;
    ttm_mask (F, H, W) bool (True = follow the preview there); tracks (N, F, 2) pixels + visible (N, F).
    latents (B, C, K, h, w) as in diffusers' Wan pipelines, K = (F - 1) // 4 + 1, h = H / spatial.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.utils.torch_utils import get_module_execution_device

from ..runtime.guidance import latent_mask
from ..runtime.noise import warp_noise_pixels
from .limits import WanLimits, checkpoint_limits
from .tracks import track_condition

__all__ = ["GuidedWanPipeline"]


class GuidedWanPipeline(WanImageToVideoPipeline):
    r"""Wan image-to-video with Time-to-Move / SDEdit guidance, warped noise and Wan-Move tracks.
    `tokenizer`, `text_encoder` may be None when `prompt_embeds` are passed (and
    `negative_prompt_embeds` with guidance)."""

    _optional_components = [
        "transformer",
        "transformer_2",
        "image_encoder",
        "image_processor",
        "tokenizer",
        "text_encoder",
    ]

    def limits(self) -> WanLimits:
        index = {
            "boundary_ratio": self.config.boundary_ratio,
            "expand_timesteps": self.config.expand_timesteps,
        }
        return checkpoint_limits(dict(self.transformer.config), dict(self.vae.config), index)

    def _normalize(self, z: torch.Tensor) -> torch.Tensor:
        c = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, c, 1, 1, 1).to(z.device, z.dtype)
        inv_std = 1.0 / torch.tensor(self.vae.config.latents_std).view(1, c, 1, 1, 1).to(z.device, z.dtype)
        return (z - mean) * inv_std

    def prepare_prior_latents(self, video, height: int, width: int, device) -> torch.Tensor:
        """VAE-encode the preview to normalised latents (B, C, K, h, w) float32 (distribution mode:
        no random numbers)."""
        if isinstance(video, np.ndarray) and video.dtype == np.uint8:
            video = video.astype(np.float32) / 255.0
        frames = self.video_processor.preprocess_video(video, height=height, width=width)  # (B, 3, F, H, W)
        vae_device = get_module_execution_device(self.vae)
        frames = frames.to(vae_device, self.vae.dtype)
        z = torch.cat([self.vae.encode(v.unsqueeze(0)).latent_dist.mode() for v in frames])
        return self._normalize(z.to(device, torch.float32))

    def _noised(self, x0: torch.Tensor, noise: torch.Tensor, index: int) -> torch.Tensor:
        sigma = self.scheduler.sigmas[index].to(x0.device, torch.float32)
        return (1.0 - sigma) * x0 + sigma * noise

    @torch.no_grad()
    def __call__(
        self,
        image,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance_scale_2: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        video: np.ndarray | None = None,
        guidance: str = "none",
        strength: float = 1.0,
        ttm_mask: np.ndarray | None = None,
        tweak_index: int = 3,
        tstrong_index: int = 7,
        flow: np.ndarray | None = None,
        noise_warp: bool = False,
        noise_degradation: float = 0.0,
        tracks: np.ndarray | None = None,
        track_visible: np.ndarray | None = None,
        keep_first_frame: bool = False,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_sequence_length: int = 512,
    ) -> WanPipelineOutput | tuple:
        """Generate a video; see the module docstring for the arguments beyond the stock pipeline's.
        `keep_first_frame` replaces the decoded frame 0 with the input image."""
        # 1. Check inputs (refusing what the stock pipeline would silently round)
        self.size_warnings = self.limits().check(height, width, num_frames)
        self.check_inputs(
            prompt,
            negative_prompt,
            image,
            height,
            width,
            prompt_embeds,
            negative_prompt_embeds,
            image_embeds,
            callback_on_step_end_tensor_inputs,
            guidance_scale_2,
        )
        if guidance not in ("none", "sdedit", "ttm"):
            raise ValueError(f"`guidance` must be 'none', 'sdedit' or 'ttm', got {guidance!r}")
        if guidance != "none" and video is None:
            raise ValueError(f"guidance {guidance!r} needs the preview `video`")
        if guidance == "ttm" and (
            ttm_mask is None or not 0 <= tweak_index <= tstrong_index <= num_inference_steps
        ):
            raise ValueError("guidance 'ttm' needs `ttm_mask` and 0 <= tweak_index <= tstrong_index <= steps")
        if guidance == "sdedit" and int(num_inference_steps * strength) < 1:
            raise ValueError(
                f"`strength` {strength} with {num_inference_steps} steps leaves no denoising step"
            )
        if noise_warp and flow is None:
            raise ValueError("`noise_warp=True` needs a `flow`")
        if tracks is not None and (track_visible is None or self.config.expand_timesteps):
            raise ValueError(
                "Wan-Move `tracks` need `track_visible` and a Wan 2.1/2.2 I2V (not TI2V) checkpoint"
            )
        if self.text_encoder is None and prompt_embeds is None:
            raise ValueError("this pipeline has no text encoder: pass `prompt_embeds` instead of `prompt`")
        if self.config.boundary_ratio is not None and guidance_scale_2 is None:
            guidance_scale_2 = guidance_scale
        self._guidance_scale = guidance_scale
        self._guidance_scale_2 = guidance_scale_2
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        batch_size = (
            1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        )

        try:
            # 2. Prompt and image embeddings (as the stock pipeline)
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt=prompt,
                negative_prompt=negative_prompt,
                do_classifier_free_guidance=self.do_classifier_free_guidance,
                num_videos_per_prompt=1,
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds,
                max_sequence_length=max_sequence_length,
                device=device,
            )
            transformer_dtype = (
                self.transformer.dtype if self.transformer is not None else self.transformer_2.dtype
            )
            prompt_embeds = prompt_embeds.to(transformer_dtype)
            if negative_prompt_embeds is not None:
                negative_prompt_embeds = negative_prompt_embeds.to(transformer_dtype)
            if self.transformer is not None and self.transformer.config.image_dim is not None:
                if image_embeds is None:
                    image_embeds = self.encode_image(image, device)
                image_embeds = image_embeds.repeat(batch_size, 1, 1).to(transformer_dtype)

            # 3. Timesteps: the full schedule; guided runs start at index `start`
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            timesteps = self.scheduler.timesteps
            start, strong = 0, 0
            if guidance == "ttm":
                start, strong = tweak_index, tstrong_index
            elif guidance == "sdedit":
                start = strong = num_inference_steps - int(num_inference_steps * strength)
            if start:
                timesteps = timesteps[start:]
                self.scheduler.set_begin_index(start)
            self._num_timesteps = len(timesteps)

            # 4. Noise and image condition (the stock random draws)
            image_t = self.video_processor.preprocess(image, height=height, width=width).to(
                device, torch.float32
            )
            outputs = self.prepare_latents(
                image_t,
                batch_size,
                self.vae.config.z_dim,
                height,
                width,
                num_frames,
                torch.float32,
                device,
                generator,
                latents,
                None,
            )
            if self.config.expand_timesteps:
                noise, condition, first_frame_mask = outputs
            else:
                (noise, condition), first_frame_mask = outputs, None
            K, h, w = noise.shape[2:]

            # 5. Warped noise, preview latents, Wan-Move condition
            if noise_warp:
                fill = noise.permute(0, 2, 1, 3, 4)  # (B, K, C, h, w)
                warped = warp_noise_pixels(
                    noise[:, :, 0],
                    torch.as_tensor(np.asarray(flow)),
                    fill,
                    temporal=self.vae_scale_factor_temporal,
                    degradation=noise_degradation,
                )
                noise = warped.permute(0, 2, 1, 3, 4).contiguous()
            prior = mask = None
            if guidance != "none":
                prior = self.prepare_prior_latents(video, height, width, device)
                if prior.shape != noise.shape:
                    raise ValueError(f"preview latents {tuple(prior.shape)} != noise {tuple(noise.shape)}")
                if guidance == "ttm":
                    m = latent_mask(np.asarray(ttm_mask, bool), K, h, w, self.vae_scale_factor_temporal)
                    mask = torch.as_tensor(m, device=device).view(1, 1, K, h, w)
                latents = self._noised(prior, noise, start) if start else noise
            else:
                latents = noise
            cond_condition = condition
            if tracks is not None:
                cond_condition = torch.cat(
                    [
                        condition[:, :4],
                        track_condition(
                            condition[:, 4:],
                            tracks,
                            track_visible,
                            spatial=self.vae_scale_factor_spatial,
                            temporal=self.vae_scale_factor_temporal,
                        ),
                    ],
                    dim=1,
                )
            self.track_conditioning = cond_condition  # for tests and inspection

            # 6. Denoising loop
            boundary = None
            if self.config.boundary_ratio is not None:
                boundary = self.config.boundary_ratio * self.scheduler.config.num_train_timesteps
            with self.progress_bar(total=len(timesteps)) as progress_bar:
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    self._current_timestep = t
                    if boundary is None or t >= boundary:
                        model, scale = self.transformer, guidance_scale
                    else:
                        model, scale = self.transformer_2, guidance_scale_2
                    if self.config.expand_timesteps:
                        cond_input = (1 - first_frame_mask) * condition + first_frame_mask * latents
                        cond_input = uncond_input = cond_input.to(transformer_dtype)
                        timestep = (first_frame_mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0)
                        timestep = timestep.expand(latents.shape[0], -1)
                    else:
                        cond_input = torch.cat([latents, cond_condition], dim=1).to(transformer_dtype)
                        uncond_input = (
                            cond_input
                            if tracks is None
                            else torch.cat([latents, condition], dim=1).to(transformer_dtype)
                        )
                        timestep = t.expand(latents.shape[0])
                    with model.cache_context("cond"):
                        noise_pred = model(
                            hidden_states=cond_input,
                            timestep=timestep,
                            encoder_hidden_states=prompt_embeds,
                            encoder_hidden_states_image=image_embeds,
                            attention_kwargs=attention_kwargs,
                            return_dict=False,
                        )[0]
                    if self.do_classifier_free_guidance:
                        with model.cache_context("uncond"):
                            noise_uncond = model(
                                hidden_states=uncond_input,
                                timestep=timestep,
                                encoder_hidden_states=negative_prompt_embeds,
                                encoder_hidden_states_image=image_embeds,
                                attention_kwargs=attention_kwargs,
                                return_dict=False,
                            )[0]
                            noise_pred = noise_uncond + scale * (noise_pred - noise_uncond)
                    latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

                    # Time-to-Move: inside the mask, back to the preview at the next step's noise level
                    step = start + i + 1
                    if mask is not None and step < strong:
                        latents = mask * self._noised(prior, noise, step) + (1 - mask) * latents

                    # A callback may raise to stop for good: no VAE decode runs then.
                    if callback_on_step_end is not None:
                        kw = {
                            k: {
                                "latents": latents,
                                "prompt_embeds": prompt_embeds,
                                "negative_prompt_embeds": negative_prompt_embeds,
                            }[k]
                            for k in callback_on_step_end_tensor_inputs
                        }
                        out = callback_on_step_end(self, i, t, kw)
                        latents = out.pop("latents", latents)
                        prompt_embeds = out.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = out.pop("negative_prompt_embeds", negative_prompt_embeds)
                    progress_bar.update()
            self._current_timestep = None
            if self.config.expand_timesteps:
                latents = (1 - first_frame_mask) * condition + first_frame_mask * latents

            # 7. Decode (as the stock pipeline); frame 0 back to the input image when asked
            if output_type == "latent":
                frames = latents
            else:
                z = latents.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
                c = self.vae.config.z_dim
                mean = torch.tensor(self.vae.config.latents_mean).view(1, c, 1, 1, 1).to(z.device, z.dtype)
                inv_std = 1.0 / torch.tensor(self.vae.config.latents_std).view(1, c, 1, 1, 1).to(
                    z.device, z.dtype
                )
                decoded = self.vae.decode(z / inv_std + mean, return_dict=False)[0]
                if keep_first_frame:
                    decoded[:, :, 0] = image_t.to(decoded.device, decoded.dtype)
                frames = self.video_processor.postprocess_video(decoded, output_type=output_type)
        finally:
            self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return WanPipelineOutput(frames=frames)
