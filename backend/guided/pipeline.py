"""GuidedCogVideoXPipeline: training-free camera and drag control for CogVideoX image-to-video.

The stock CogVideoX I2V model is steered by a *layout prior*, the `preview` mode's video (the
reference image carried along the unified flow), in two ways that need no training:

- guidance "ttm", Time-to-Move (backend/runtime/guidance.py): the prior is VAE-encoded, the whole
  video starts from it noised to step `tweak_index` of the full schedule, and inside `ttm_mask` the
  prior noised to the next step's level is written back after every step until `tstrong_index`.
- guidance "sdedit" (SDEdit / CamTrol): the prior noised to `strength` on the scheduler's own
  timesteps; denoising starts there. `strength=1.0` (or guidance "none") starts from pure noise:
  exactly the stock I2V pipeline.
- Go-with-the-Flow: the initial noise of latent frame 0 is carried along the flow to every latent
  frame at pixel resolution and pooled back with a variance correction (backend/runtime/noise.py),
  so every latent frame stays a unit Gaussian while the noise moves, also by less than a cell.

The first output frame is the reference image (`keep_first_frame=True`, pixel exact).

Conventions:
    video (layout prior): (F, H, W, 3) uint8 or float in [0, 1], or (B, F, H, W, 3); F = num_frames,
        H x W = height x width (no silent resizing).
    flow: (F, H, W, 2) float, pixels, forward flow from frame 0 to frame f (x right, y down),
        flow[0] == 0, at the output size. Latent frame k stands for pixel frame 4k (causal VAE).
    latents: (B, F_lat, C, h, w) as in diffusers' CogVideoX pipelines, F_lat = (F - 1) // 4 + 1 (plus a
        leading padding frame for CogVideoX 1.5 when F_lat is odd).

Checkpoints: 1.0 (CogVideoX-5b-I2V: learned positional embeddings, fixed 720x480, 49 frames) and 1.5
(CogVideoX1.5-5B-I2V: `patch_size_t`, `ofs`, flexible size, 16N+1 frames); `checkpoint_limits`
reads what a checkpoint can do from its configs and `check_inputs` refuses the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import CogVideoXImageToVideoPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.cogvideo.pipeline_output import CogVideoXPipelineOutput
from diffusers.schedulers import CogVideoXDPMScheduler

from ..runtime.guidance import latent_mask
from ..runtime.noise import warp_noise_pixels
from .limits import CheckpointLimits, checkpoint_limits

__all__ = ["CheckpointLimits", "GuidedCogVideoXPipeline", "checkpoint_limits"]


class GuidedCogVideoXPipeline(CogVideoXImageToVideoPipeline):
    r"""CogVideoX image-to-video guided by a layout prior video and flow-warped noise.

    Same components and conventions as [`CogVideoXImageToVideoPipeline`] (`from_pretrained`,
    generators, `output_type`, `callback_on_step_end`); `tokenizer` and `text_encoder` may be None
    when `prompt_embeds` (and `negative_prompt_embeds` with guidance) are passed.
    """

    _optional_components = ["tokenizer", "text_encoder"]

    def limits(self) -> CheckpointLimits:
        return checkpoint_limits(dict(self.transformer.config), dict(self.vae.config))

    def check_guided_inputs(
        self,
        height,
        width,
        num_frames,
        num_inference_steps,
        strength,
        video,
        flow,
        noise_warp,
        prompt_embeds,
        negative_prompt_embeds,
        guidance_scale,
    ) -> list[str]:
        """Checks of the guided inputs; returns warnings (sizes the checkpoint was not trained at)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"`strength` must be in [0, 1], got {strength}")
        if strength < 1.0 and video is None:
            raise ValueError("`strength` < 1 needs a layout prior `video` to start from")
        if strength < 1.0 and int(num_inference_steps * strength) < 1:
            raise ValueError(
                f"`strength` {strength} with {num_inference_steps} steps leaves no denoising step: use a "
                f"strength of at least {1.0 / num_inference_steps:.3g} or more steps"
            )
        if noise_warp and flow is None:
            raise ValueError("`noise_warp=True` needs a `flow`")
        if self.text_encoder is None and prompt_embeds is None:
            raise ValueError("this pipeline has no text encoder: pass `prompt_embeds` instead of `prompt`")
        if self.text_encoder is None and guidance_scale > 1.0 and negative_prompt_embeds is None:
            raise ValueError(
                "this pipeline has no text encoder: with guidance_scale > 1 pass `negative_prompt_embeds` too"
            )
        if video is not None:
            shape = tuple(np.shape(video)) if not isinstance(video, list) else (len(video),)
            frames = shape[-4] if len(shape) >= 4 else shape[0]
            if frames != num_frames:
                raise ValueError(f"`video` has {frames} frames, expected num_frames={num_frames}")
            if len(shape) >= 4 and tuple(shape[-3:-1]) != (height, width):
                raise ValueError(f"`video` frames are {shape[-2]}x{shape[-3]}, expected {width}x{height}")
        if flow is not None and tuple(flow.shape) != (num_frames, height, width, 2):
            raise ValueError(
                f"`flow` has shape {tuple(flow.shape)}, expected ({num_frames}, {height}, {width}, 2)"
            )
        return self.limits().check(height, width, num_frames)

    def prepare_layout_latents(
        self, video, height: int, width: int, pad_frames: int, dtype, device
    ) -> torch.Tensor:
        """VAE-encode the layout prior to (B, F_lat + pad_frames, C, h, w), in the scaled latent space
        that `decode_latents` reads (times scaling_factor for 1.0 and 1.5 alike). The distribution's
        mode is used, so no random numbers are drawn."""
        if isinstance(video, np.ndarray) and video.dtype == np.uint8:
            video = video.astype(np.float32) / 255.0
        frames = self.video_processor.preprocess_video(video, height=height, width=width)  # (B, C, F, H, W)
        frames = frames.to(device=device, dtype=self.vae.dtype)
        encoded = [self.vae.encode(v.unsqueeze(0)).latent_dist.mode() for v in frames]
        latents = torch.cat(encoded).permute(0, 2, 1, 3, 4).to(dtype)  # (B, F_lat, C, h, w)
        latents = self.vae_scaling_factor_image * latents
        if pad_frames:
            latents = torch.cat([latents[:, :pad_frames], latents], dim=1)
        return latents

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | torch.Tensor | list,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        video: np.ndarray | list | None = None,
        strength: float = 1.0,
        flow: np.ndarray | torch.Tensor | None = None,
        noise_warp: bool = False,
        noise_degradation: float = 0.0,
        guidance: str | None = None,
        ttm_mask: np.ndarray | None = None,
        tweak_index: int = 4,
        tstrong_index: int = 9,
        keep_first_frame: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_sequence_length: int = 226,
    ) -> CogVideoXPipelineOutput | tuple:
        r"""Generate a video from `image`, optionally guided by a layout prior.

        Args beyond [`CogVideoXImageToVideoPipeline.__call__`]:
            video: the layout prior (see the module docstring); needed when `strength` < 1.
            strength: 1.0 = plain image-to-video from pure noise; lower starts denoising from the
                prior noised to that fraction of the schedule (fewer steps run: int(steps * strength)).
            flow: (F, H, W, 2) pixel flow from frame 0, used by `noise_warp`.
            noise_warp: carry frame 0's initial noise along `flow` (Go-with-the-Flow style);
                `noise_degradation` mixes in fresh noise (gamma, 0 = none).
            guidance: "ttm", "sdedit" or "none"; None = "sdedit" when strength < 1, else "none".
            ttm_mask, tweak_index, tstrong_index: Time-to-Move's mask (F, H, W) bool (True = follow
                the prior) and its two step indices of the full schedule.
            keep_first_frame: replace the decoded frame 0 with the reference image.
        Returns: `CogVideoXPipelineOutput` (or a tuple) as the stock pipeline; frames are latents
            when `output_type="latent"`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        height = height or self.transformer.config.sample_height * self.vae_scale_factor_spatial
        width = width or self.transformer.config.sample_width * self.vae_scale_factor_spatial
        num_frames = num_frames or self.transformer.config.sample_frames
        if flow is not None:
            flow = torch.as_tensor(
                np.asarray(flow) if not torch.is_tensor(flow) else flow, dtype=torch.float32
            )

        if guidance is None:
            guidance = "sdedit" if strength < 1.0 else "none"
        if guidance not in ("none", "sdedit", "ttm"):
            raise ValueError(f"`guidance` must be 'none', 'sdedit' or 'ttm', got {guidance!r}")
        if guidance == "ttm":
            if video is None or ttm_mask is None:
                raise ValueError("guidance 'ttm' needs the layout prior `video` and `ttm_mask`")
            if (
                not 0 <= tweak_index <= tstrong_index <= num_inference_steps
                or tweak_index >= num_inference_steps
            ):
                raise ValueError(
                    f"Time-to-Move needs 0 <= tweak_index ({tweak_index}) <= tstrong_index ({tstrong_index}) "
                    f"<= steps ({num_inference_steps}) and tweak_index < steps"
                )
            strength = 1.0  # the start is tweak_index; strength is SDEdit's
        elif guidance == "none":
            strength = 1.0

        # 1. Check inputs
        self.check_inputs(
            image=image,
            prompt=prompt,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        self.size_warnings = self.check_guided_inputs(
            height,
            width,
            num_frames,
            num_inference_steps,
            strength,
            video,
            flow,
            noise_warp,
            prompt_embeds,
            negative_prompt_embeds,
            guidance_scale,
        )
        self._guidance_scale = guidance_scale
        self._current_timestep = None
        self._attention_kwargs = attention_kwargs
        self._interrupt = False

        # 2. Batch size and device
        if isinstance(prompt, str):
            batch_size = 1
        elif isinstance(prompt, list):
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        device = self._execution_device
        do_classifier_free_guidance = guidance_scale > 1.0

        try:
            # 3. Encode the prompt (skipped by the caller passing cached embeddings)
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt=prompt,
                negative_prompt=negative_prompt,
                do_classifier_free_guidance=do_classifier_free_guidance,
                num_videos_per_prompt=1,
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds,
                max_sequence_length=max_sequence_length,
                device=device,
            )
            if do_classifier_free_guidance:
                prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
            dtype = prompt_embeds.dtype

            # 4. Timesteps: the full schedule, cut to its last int(steps * strength) for SDEdit
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            timesteps = self.scheduler.timesteps
            full_timesteps = timesteps
            if strength < 1.0:
                timesteps, num_inference_steps = self.get_timesteps(
                    num_inference_steps, timesteps, strength, device
                )
            elif guidance == "ttm" and tweak_index:
                timesteps = timesteps[tweak_index:]
            self._num_timesteps = len(timesteps)

            # 5. Latent frame layout (CogVideoX 1.5 pads odd latent frame counts at the front)
            latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
            patch_size_t = self.transformer.config.patch_size_t
            pad_frames = 0
            if patch_size_t is not None and latent_frames % patch_size_t:
                pad_frames = patch_size_t - latent_frames % patch_size_t

            # 6. Image latents and initial noise (same random draws, in the same order, as the stock pipeline)
            image = self.video_processor.preprocess(image, height=height, width=width).to(device, dtype=dtype)
            latent_channels = self.transformer.config.in_channels // 2
            noise, image_latents = self.prepare_latents(
                image,
                batch_size,
                latent_channels,
                num_frames + pad_frames * self.vae_scale_factor_temporal,
                height,
                width,
                dtype,
                device,
                generator,
                latents,
            )
            noise = noise / self.scheduler.init_noise_sigma

            # 7. Flow-warped noise: frame 0's noise carried along the flow; the other frames' own
            #    noise fills disocclusions
            if noise_warp:
                warped = warp_noise_pixels(
                    noise[:, pad_frames],
                    flow,
                    noise[:, pad_frames:],
                    temporal=self.vae_scale_factor_temporal,
                    degradation=noise_degradation,
                )
                noise = torch.cat([noise[:, :pad_frames], warped.to(noise.dtype)], dim=1)

            # 8. Layout prior: encode and noise to the first timestep kept (SDEdit, Time-to-Move)
            ttm = None
            if guidance == "ttm":
                prior = self.prepare_layout_latents(video, height, width, pad_frames, dtype, device)
                h, w = noise.shape[-2:]
                m = latent_mask(
                    np.asarray(ttm_mask, bool), latent_frames, h, w, self.vae_scale_factor_temporal
                )
                m = torch.as_tensor(np.concatenate([m[:pad_frames], m]), device=device, dtype=dtype)
                ttm = (prior, m.view(1, -1, 1, h, w))
                t0 = timesteps[:1].repeat(batch_size)
                if tweak_index:
                    latents = self.scheduler.add_noise(prior, noise, t0).to(dtype)
                else:
                    latents = noise * self.scheduler.init_noise_sigma
            elif strength < 1.0:
                prior = self.prepare_layout_latents(video, height, width, pad_frames, dtype, device)
                if prior.shape != noise.shape:
                    raise ValueError(
                        f"layout prior latents {tuple(prior.shape)} != noise {tuple(noise.shape)}"
                    )
                latent_timestep = timesteps[:1].repeat(batch_size)
                latents = self.scheduler.add_noise(prior, noise, latent_timestep).to(dtype)
            else:
                latents = noise * self.scheduler.init_noise_sigma

            # 9. Extra step kwargs, rotary and ofs embeddings
            extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
            image_rotary_emb = (
                self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
                if self.transformer.config.use_rotary_positional_embeddings
                else None
            )
            ofs_emb = None if self.transformer.config.ofs_embed_dim is None else latents.new_full((1,), 2.0)

            # 10. Denoising loop
            with self.progress_bar(total=len(timesteps)) as progress_bar:
                old_pred_original_sample = None
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    self._current_timestep = t
                    model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
                    model_input = self.scheduler.scale_model_input(model_input, t)
                    image_input = (
                        torch.cat([image_latents] * 2) if do_classifier_free_guidance else image_latents
                    )
                    model_input = torch.cat([model_input, image_input], dim=2)
                    timestep = t.expand(model_input.shape[0])

                    with self.transformer.cache_context("cond_uncond"):
                        noise_pred = self.transformer(
                            hidden_states=model_input,
                            encoder_hidden_states=prompt_embeds,
                            timestep=timestep,
                            ofs=ofs_emb,
                            image_rotary_emb=image_rotary_emb,
                            attention_kwargs=attention_kwargs,
                            return_dict=False,
                        )[0]
                    noise_pred = noise_pred.float()

                    if use_dynamic_cfg:
                        ramp = (num_inference_steps - t.item()) / num_inference_steps
                        self._guidance_scale = 1 + guidance_scale * (1 - math.cos(math.pi * ramp**5.0)) / 2
                    if do_classifier_free_guidance:
                        noise_uncond, noise_text = noise_pred.chunk(2)
                        noise_pred = noise_uncond + self.guidance_scale * (noise_text - noise_uncond)

                    if not isinstance(self.scheduler, CogVideoXDPMScheduler):
                        latents = self.scheduler.step(
                            noise_pred, t, latents, **extra_step_kwargs, return_dict=False
                        )[0]
                    else:
                        latents, old_pred_original_sample = self.scheduler.step(
                            noise_pred,
                            old_pred_original_sample,
                            t,
                            timesteps[i - 1] if i > 0 else None,
                            latents,
                            **extra_step_kwargs,
                            return_dict=False,
                        )
                    latents = latents.to(dtype)

                    # Time-to-Move: inside the mask, back to the prior at the next step's noise level
                    step = tweak_index + i + 1 if ttm is not None else None
                    if ttm is not None and step < tstrong_index:
                        prior, m = ttm
                        again = self.scheduler.add_noise(prior, noise, full_timesteps[step : step + 1])
                        latents = (m * again + (1 - m) * latents).to(dtype)

                    # A callback may raise to stop for good: nothing below (no VAE decode) runs then.
                    if callback_on_step_end is not None:
                        callback_kwargs = {}
                        for name in callback_on_step_end_tensor_inputs:
                            callback_kwargs[name] = {
                                "latents": latents,
                                "prompt_embeds": prompt_embeds,
                                "negative_prompt_embeds": negative_prompt_embeds,
                            }[name]
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                        latents = callback_outputs.pop("latents", latents)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop(
                            "negative_prompt_embeds", negative_prompt_embeds
                        )
                    progress_bar.update()
            self._current_timestep = None

            # 11. Decode (dropping 1.5's padding frames); frame 0 back to the reference image
            if output_type == "latent":
                frames = latents
            else:
                video_out = self.decode_latents(latents[:, pad_frames:])
                if keep_first_frame:
                    video_out[:, :, 0] = image.to(video_out.dtype)
                frames = self.video_processor.postprocess_video(video=video_out, output_type=output_type)
        finally:
            # Also on an exception raised by a callback (cancellation): offloaded models go back.
            self.maybe_free_model_hooks()

        if not return_dict:
            return (frames,)
        return CogVideoXPipelineOutput(frames=frames)
