"""Stage 1 of ``AnimateAnythingPipeline``: the unified flow from camera and drags (learned, optional).

Plücker embeddings of the camera (``blender_animate.plucker``) and the sparse flow of the drags
(``blender_animate.flow.sparse_flow``, the paper's Eq. 3) at a reduced "flow size"; the Camera
Reference Model turns camera + reference image into reference features once; the Flow Generation
Model denoises Flow-VAE latents with them (``flow_steps`` steps of ``flow_scheduler``); the Flow VAE
decodes pixel flow, which is resized to the video size. :class:`FlowStageMixin` holds it and the
checks of the control inputs; the pipeline mixes it in.

Convention: flow is ``(F, H, W, 2)`` float32 pixels, forward flow from frame 0 (x right, y down),
``flow[0] == 0``; ``c2w`` OpenCV camera-to-world ``(F, 4, 4)``, ``K`` pixel intrinsics ``(F, 3, 3)``
or ``(3, 3)`` at the video size; ``tracks`` ``(P, F, 2)`` pixels, ``track_visible`` ``(P, F)`` bool.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import STAGE1
from .flow_generation import build_condition

# Stage-1 flow size: long side at most this many pixels, each side a multiple of the UNet's factor.
DEFAULT_FLOW_LONG_SIDE = 384
FLOW_DECODE_CHUNK = 8  # frames per Flow-VAE decode call: bounds the decoder's activation memory


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(F, 2, h, w)`` pixel flow -> ``(F, 2, height, width)``: bilinear, vectors scaled per axis."""
    h, w = flow.shape[-2:]
    if (h, w) == (height, width):
        return flow
    out = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    return out * torch.tensor([width / w, height / h], dtype=out.dtype, device=out.device).reshape(1, 2, 1, 1)


class FlowStageMixin:
    """Stage 1 for a pipeline with ``flow_vae``, ``flow_generator``, ``camera_reference``,
    ``image_vae`` and ``flow_scheduler`` components (any may be None: then pass ``flow=``)."""

    @property
    def has_learned_stage1(self) -> bool:
        return not self.missing_stage1()

    def missing_stage1(self) -> list[str]:
        return [name for name in STAGE1 if getattr(self, name, None) is None]

    def flow_size(self, height: int, width: int) -> tuple[int, int]:
        """Stage-1 (height, width): long side <= 384, multiples of the UNet's total downsampling."""
        fgm = self.flow_generator
        factor = 8 * 2 ** (len(fgm.config.block_out_channels) - 1) if fgm is not None else 64
        scale = min(1.0, DEFAULT_FLOW_LONG_SIDE / max(height, width))
        fh = max(factor, int(round(height * scale / factor)) * factor)
        fw = max(factor, int(round(width * scale / factor)) * factor)
        return fh, fw

    def check_controls(self, height, width, num_frames, flow, c2w, K, tracks, track_visible, output_type):
        """ValueError for sizes and controls the pipeline cannot take (before anything runs)."""
        if height % 8 or width % 8:
            raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")
        ratio = self.vae.config.temporal_compression_ratio if self.vae is not None else 4
        if (num_frames - 1) % ratio:
            raise ValueError(f"num_frames must be {ratio}k + 1 (CogVideoX), got {num_frames}")
        if output_type not in ("np", "flow"):
            raise ValueError(f"output_type must be 'np' or 'flow', got {output_type!r}")
        if flow is not None:
            if tuple(flow.shape) != (num_frames, height, width, 2):
                raise ValueError(
                    f"flow must be ({num_frames}, {height}, {width}, 2) pixels, got {tuple(flow.shape)}"
                )
            return
        missing = self.missing_stage1()
        if missing:
            raise ValueError(
                "this pipeline has no learned stage 1 (missing: " + ", ".join(missing) + "); pass flow= "
                "(a dense (F, H, W, 2) flow, e.g. blender_animate.flow.unified_flow)"
            )
        max_frames = self.flow_generator.config.motion_max_seq_length
        if num_frames > max_frames:
            raise ValueError(
                f"the Flow Generation Model's temporal layers take at most {max_frames} frames, got "
                f"{num_frames}; pass flow= instead, or use a checkpoint trained with a larger "
                "motion_max_seq_length"
            )
        if (c2w is None) != (K is None):
            raise ValueError("pass both c2w and K, or neither (static camera)")
        if c2w is not None and (np.shape(c2w) != (num_frames, 4, 4) or np.shape(K)[-2:] != (3, 3)):
            raise ValueError(f"c2w must be ({num_frames}, 4, 4) and K (F, 3, 3) or (3, 3)")
        if tracks is not None and (np.ndim(tracks) != 3 or np.shape(tracks)[1:] != (num_frames, 2)):
            raise ValueError(f"tracks must be (P, {num_frames}, 2) pixels, got {np.shape(tracks)}")
        if (
            track_visible is not None
            and tracks is not None
            and np.shape(track_visible) != np.shape(tracks)[:2]
        ):
            raise ValueError("track_visible must be (P, F) like tracks")

    @torch.no_grad()
    def generate_flow(
        self,
        image: Image.Image,
        num_frames: int,
        height: int,
        width: int,
        c2w=None,
        K=None,
        tracks=None,
        track_visible=None,
        flow_steps: int = 25,
        generator: torch.Generator | None = None,
        flow_size: tuple[int, int] | None = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ) -> torch.Tensor | None:
        """Stage 1: dense flow ``(F, H, W, 2)`` float32 pixels (CPU) from camera and drags.

        ``callback_on_step_end(pipe, i, t, {"latents": flow_latents})`` runs after every step with
        ``pipe.stage == "flow"``; it may return replacement ``latents``. Returns None, with nothing
        decoded, when ``pipe._interrupt`` was set."""
        from blender_animate.camera import rescale_intrinsics
        from blender_animate.flow import sparse_flow
        from blender_animate.plucker import plucker_embedding

        self._stage = "flow"
        device = self._execution_device
        fh, fw = flow_size or self.flow_size(height, width)
        # 1. Camera: Plücker embeddings at the flow size (identity camera when none is given).
        if c2w is None:
            c2w = np.broadcast_to(np.eye(4), (num_frames, 4, 4)).copy()
            f = float(max(width, height))
            K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)
        K_small = rescale_intrinsics(np.asarray(K, np.float64), (width, height), (fw, fh), mode="stretch")
        plucker = torch.from_numpy(plucker_embedding(np.asarray(c2w, np.float64), K_small, fh, fw))
        # 2. Drags: sparse flow (Eq. 3) at the flow size.
        if tracks is None or len(tracks) == 0:
            sflow = np.zeros((num_frames, fh, fw, 2), np.float32)
            smask = np.zeros((num_frames, fh, fw), bool)
        else:
            scale = np.array([fw / width, fh / height], np.float32)
            sflow, smask = sparse_flow(np.asarray(tracks, np.float32) * scale, track_visible, fh, fw)
        condition = build_condition(
            torch.from_numpy(sflow)[None],
            torch.from_numpy(smask.astype(np.float32))[None],
            self.flow_generator.config.densify_sigma,
            self.flow_vae.config.flow_scale,
        )
        # 3. Reference features (once).
        pixels = torch.from_numpy(np.array(image.convert("RGB").resize((fw, fh), Image.BICUBIC)))
        pixels = (pixels.permute(2, 0, 1)[None].float() / 127.5 - 1.0).to(device, self.image_vae.dtype)
        ref_latents = self.image_vae.encode(pixels).latent_dist.mode() * self.image_vae.config.scaling_factor
        features = self.camera_reference(ref_latents, plucker[None].to(device))
        encoded = self.flow_generator.encode_condition(condition.to(device))
        # 4. Denoising loop over flow latents (B, C, F, h, w).
        scheduler = self.flow_scheduler
        scheduler.set_timesteps(flow_steps, device=device)
        shape = (1, self.flow_vae.config.latent_channels, num_frames, fh // 8, fw // 8)
        latents = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32).to(device)
        latents = latents * scheduler.init_noise_sigma
        timesteps = scheduler.timesteps
        self._num_timesteps = len(timesteps)
        for i, t in enumerate(timesteps):
            if self.interrupt:
                continue
            self._current_timestep = t
            model_input = scheduler.scale_model_input(latents, t)
            pred = self.flow_generator(
                model_input, t.reshape(1).to(device), reference_features=features, encoded_condition=encoded
            )
            latents = scheduler.step(pred.float(), t, latents).prev_sample
            if callback_on_step_end is not None:
                inputs = {"latents": latents} if "latents" in callback_on_step_end_tensor_inputs else {}
                latents = callback_on_step_end(self, i, t, inputs).pop("latents", latents)
        self._current_timestep = None
        if self.interrupt:
            return None
        # 5. Decode per frame chunk, resize to the video size, frame 0 is exactly zero.
        frames = latents[0].transpose(0, 1)  # (F, C, h, w)
        flow = torch.cat(
            [
                self.flow_vae.decode_flow(frames[i : i + FLOW_DECODE_CHUNK])
                for i in range(0, num_frames, FLOW_DECODE_CHUNK)
            ]
        )
        flow = resize_flow(flow, height, width)
        flow[0] = 0
        return flow.permute(0, 2, 3, 1).cpu()
