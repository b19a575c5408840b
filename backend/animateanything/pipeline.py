"""``AnimateAnythingPipeline``: stage 1 (unified flow) then stage 2 (flow-guided CogVideoX I2V).

Stage 1 (learned, optional; :mod:`.stage1`): camera and drags to a dense flow through the Camera
Reference Model, the Flow Generation Model and the Flow VAE. Any other dense flow can replace it:
pass ``flow=`` (e.g. the analytic unified flow of the ``preview`` mode) and stage 1 is skipped.
``output_type="flow"`` stops after stage 1.

Stage 2: the flow is encoded by the flow encoder, then the stock ``CogVideoXImageToVideoPipeline``
loop (this class's parent, ``super().__call__``) runs with the transformer inside
:meth:`AnimateAnythingTransformer.conditioning` (flow fusion on the input of block 0,
frequency-stabilised attention) and the flow latents and the token frame count in the transformer's
``attention_kwargs``. Because stage 2 IS the stock I2V loop, a zero fusion block and W = 1 give
exactly the stock output.

Conventions of diffusers: ``callback_on_step_end(pipe, i, t, callback_kwargs) -> dict`` after every
step of both stages (``pipe.stage`` is "flow" or "video", ``pipe.num_timesteps`` the stage's step
count); a callback may raise to stop (nothing is decoded, offload hooks are freed) or set
``pipe._interrupt = True``: the remaining steps are skipped and, unlike the stock pipeline, nothing is
decoded either (``frames`` None; ``flow`` None when it happened in stage 1).
``maybe_free_model_hooks()`` runs on every exit.

Checkpoints (``save_pretrained``/``from_pretrained``), one folder::

    animateanything_index.json   format, base model reference, component classes and sources
    flow_encoder/ flow_fusion/ frequency_stabilizer/        stage 2, trained (safetensors)
    flow_vae/ flow_generator/ camera_reference/ image_vae/ flow_scheduler/   stage 1 (optional)
    transformer/ vae/ scheduler/ text_encoder/ tokenizer/  only when the base is copied

The unchanged CogVideoX components are referenced by ``base_model`` (a folder or hub id) rather than
copied, whenever the pipeline knows where they came from; one whose fingerprint changed since loading
is copied instead. The layout and its check are :mod:`.checkpoint`, the I/O (``save_pretrained``,
``from_pretrained``, ``set_base_model``) :mod:`.checkpoint_io`; a folder with parts missing raises
:class:`IncompleteCheckpointError` listing every missing part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import CogVideoXImageToVideoPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from PIL import Image

from .camera_reference import CameraReferenceModel
from .checkpoint import INDEX_FILE, STAGE1, IncompleteCheckpointError
from .checkpoint_io import CheckpointMixin, component_fingerprint
from .flow_encoder import FlowEncoder3D
from .flow_fusion import FlowFusionBlock
from .flow_generation import FlowGenerationModel
from .flow_vae import FlowVAE
from .frequency_attention import FrequencyStabilizer
from .stage1 import FlowStageMixin, resize_flow
from .transformer import AnimateAnythingTransformer

__all__ = [
    "INDEX_FILE",
    "AnimateAnythingPipeline",
    "AnimateAnythingPipelineOutput",
    "IncompleteCheckpointError",
    "component_fingerprint",
    "resize_flow",
]


@dataclass
class AnimateAnythingPipelineOutput:
    """frames: (F, H, W, 3) uint8, or None (``output_type="flow"``, or interrupted); flow: (F, H, W, 2)
    float32 pixels, forward flow from frame 0 (flow[0] == 0), or None (interrupted in stage 1)."""

    frames: np.ndarray | None
    flow: np.ndarray | None


class AnimateAnythingPipeline(CheckpointMixin, FlowStageMixin, CogVideoXImageToVideoPipeline):
    """The paper's two stages. Stage-1 components may be None (then pass ``flow=``); so may the
    tokenizer and text encoder (then pass ``prompt_embeds``)."""

    model_cpu_offload_seq = (
        "image_vae->camera_reference->flow_generator->flow_vae->text_encoder->flow_encoder->transformer->vae"
    )
    _optional_components = ["tokenizer", "text_encoder", *STAGE1]
    # Read by processors and hooks rather than called as modules: always on the execution device.
    _exclude_from_cpu_offload = ["flow_fusion", "frequency_stabilizer"]
    # Kept whole on the device under group offload: modules used through methods other than
    # forward (encode, decode_flow, encode_condition, processor weights), which block-level group
    # offload would leave on the CPU, and the small stage-2 parts.
    _exclude_from_group_offload = ["flow_encoder", "flow_fusion", "frequency_stabilizer", *STAGE1]

    def __init__(
        self,
        tokenizer,
        text_encoder,
        vae,
        transformer,
        scheduler,
        flow_encoder: FlowEncoder3D,
        flow_fusion: FlowFusionBlock,
        frequency_stabilizer: FrequencyStabilizer,
        flow_vae: FlowVAE | None = None,
        flow_generator: FlowGenerationModel | None = None,
        camera_reference: CameraReferenceModel | None = None,
        image_vae=None,
        flow_scheduler=None,
    ):
        super().__init__(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )
        self.register_modules(
            flow_encoder=flow_encoder,
            flow_fusion=flow_fusion,
            frequency_stabilizer=frequency_stabilizer,
            flow_vae=flow_vae,
            flow_generator=flow_generator,
            camera_reference=camera_reference,
            image_vae=image_vae,
            flow_scheduler=flow_scheduler,
        )
        # The stage-2 model: references to the components above, no weights of its own.
        self.stage2 = AnimateAnythingTransformer(transformer, flow_encoder, flow_fusion, frequency_stabilizer)
        self._stage: str | None = None
        self._interrupt = False
        # Where the unchanged base components came from (folder or hub id); None = unknown (copied on save).
        self.base_model: str | None = None
        # The local folder the base components were loaded from (set by from_pretrained).
        self.base_path: str | None = None
        # Fingerprints of the base components as loaded: a changed one is copied on save.
        self._base_fingerprints: dict[str, str] = {}

    @property
    def stage(self) -> str | None:
        """The stage being denoised: "flow" (stage 1), "video" (stage 2) or None."""
        return self._stage

    def enable_group_offload(self, onload_device, *args, exclude_modules=None, **kwargs) -> None:
        """diffusers' group offload, with :attr:`_exclude_from_group_offload` kept whole on
        ``onload_device`` as well (block-level groups load on ``forward`` only)."""
        if isinstance(exclude_modules, str):
            exclude_modules = [exclude_modules]
        exclude = list(dict.fromkeys([*(exclude_modules or []), *self._exclude_from_group_offload]))
        super().enable_group_offload(onload_device, *args, exclude_modules=exclude, **kwargs)

    # ------------------------------------------------------------------ both stages
    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | np.ndarray,
        prompt: str | None = "",
        negative_prompt: str | None = "",
        height: int = 480,
        width: int = 720,
        num_frames: int = 49,
        flow: np.ndarray | torch.Tensor | None = None,
        c2w: np.ndarray | None = None,
        K: np.ndarray | None = None,
        tracks: np.ndarray | None = None,
        track_visible: np.ndarray | None = None,
        flow_steps: int = 25,
        flow_size: tuple[int, int] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_sequence_length: int = 226,
    ) -> AnimateAnythingPipelineOutput | tuple:
        """Generate a video (and its flow) from a reference image and controls.

        Args:
            image: the first frame, PIL or (H, W, 3) uint8; resized to ``width`` x ``height``.
            flow: optional dense flow (F, H, W, 2) pixels; replaces stage 1.
            c2w, K: OpenCV camera-to-world (F, 4, 4) and pixel intrinsics (F, 3, 3) at ``width`` x ``height``.
            tracks, track_visible: drags (P, F, 2) pixels and (P, F) bool.
            flow_steps / num_inference_steps: denoising steps of stage 1 / stage 2.
            attention_kwargs: passed to the transformer (``token_frames`` and ``flow_latents`` are added).
            callback_on_step_end: ``callback(pipe, i, t, callback_kwargs) -> dict`` after every step of
                both stages (see the module docstring); stage 1 offers only "latents".
            output_type: "np" (frames and flow) or "flow" (stop after stage 1).
        Returns: :class:`AnimateAnythingPipelineOutput`, or ``(frames, flow)`` with ``return_dict=False``.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if torch.is_tensor(flow):
            flow = flow.detach().cpu().numpy()
        prompt = None if prompt_embeds is not None else prompt
        negative_prompt = None if negative_prompt_embeds is not None else negative_prompt

        # 1. Check inputs
        self.check_controls(height, width, num_frames, flow, c2w, K, tracks, track_visible, output_type)
        if output_type != "flow":
            self.check_inputs(
                image=image,
                prompt=prompt,
                height=height,
                width=width,
                negative_prompt=negative_prompt,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds,
            )
        image = image.convert("RGB").resize((width, height), Image.BICUBIC)
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        self.stage2.eval()

        try:
            # 2. Stage 1: unified flow
            if flow is None:
                flow_t = self.generate_flow(
                    image, num_frames, height, width, c2w=c2w, K=K, tracks=tracks,
                    track_visible=track_visible, flow_steps=flow_steps, generator=generator,
                    flow_size=flow_size,
                    callback_on_step_end=callback_on_step_end,
                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                )  # fmt: skip
                if flow_t is None:  # interrupted
                    return self._output(None, None, return_dict)
            else:
                flow_t = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))
            if output_type == "flow":
                return self._output(None, flow_t.numpy(), return_dict)

            # 3. Encode the flow to the CogVideoX latent grid
            self._stage = "video"
            device = self._execution_device
            flow_latents = self.stage2.encode_flow(flow_t[None].to(device)).to(self.transformer.dtype)
            latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
            patch_size_t = self.transformer.config.patch_size_t
            pad_frames = 0  # CogVideoX 1.5 pads odd latent frame counts at the front
            if patch_size_t is not None and latent_frames % patch_size_t:
                pad_frames = patch_size_t - latent_frames % patch_size_t
            attention_kwargs = self.stage2.attention_kwargs(
                latent_frames + pad_frames, flow_latents, attention_kwargs
            )

            # 4. Stage 2: the stock I2V loop, the conditioning attached, the flow in attention_kwargs
            with self.stage2.conditioning():
                (latents,) = super().__call__(
                    image=image,
                    prompt=prompt,
                    negative_prompt=negative_prompt,
                    height=height,
                    width=width,
                    num_frames=num_frames,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    use_dynamic_cfg=use_dynamic_cfg,
                    eta=eta,
                    generator=generator,
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_prompt_embeds,
                    output_type="latent",
                    return_dict=False,
                    attention_kwargs=attention_kwargs,
                    callback_on_step_end=callback_on_step_end,
                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                    max_sequence_length=max_sequence_length,
                )
            if self.interrupt:  # the stock pipeline would decode here; a stopped run does not
                return self._output(None, flow_t.numpy(), return_dict)

            # 5. Decode (dropping 1.5's padding frames), as the stock pipeline does
            video = self.decode_latents(latents[:, pad_frames:])
            video = self.video_processor.postprocess_video(video=video, output_type="np")[0]
            frames = np.clip(np.round(np.asarray(video) * 255.0), 0, 255).astype(np.uint8)
            return self._output(frames, flow_t.numpy(), return_dict)
        finally:
            # Also on an exception raised by a callback (cancellation): offloaded models go back.
            self._stage = None
            self.maybe_free_model_hooks()

    @staticmethod
    def _output(frames, flow, return_dict: bool):
        return AnimateAnythingPipelineOutput(frames=frames, flow=flow) if return_dict else (frames, flow)
