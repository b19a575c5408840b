"""``AnimateAnythingPipeline``: stage 1 (unified flow) then stage 2 (flow-guided CogVideoX I2V).

Stage 1 (learned, optional): Plücker embeddings of the camera (``blender_animate.plucker``) and the
sparse flow of the drags (``blender_animate.flow.sparse_flow``, the paper's Eq. 3) at a reduced
"flow size"; the Camera Reference Model turns camera + reference image into reference features once;
the Flow Generation Model denoises Flow-VAE latents with them (``flow_steps`` DDIM steps); the Flow
VAE decodes pixel flow, which is resized to the video size. Any other dense flow can replace it:
pass ``flow=`` (e.g. the analytic unified flow of the ``preview`` mode) and stage 1 is skipped.

Stage 2: the flow is encoded by the flow encoder, then the stock diffusers
``CogVideoXImageToVideoPipeline`` runs with the transformer inside
:meth:`AnimateAnythingTransformer.conditioning` (flow fusion hook + frequency-stabilised attention).
Because stage 2 IS the stock I2V loop, a zero fusion block and W = 1 give exactly the stock output.
``output_type="flow"`` stops after stage 1.

Checkpoints (``save_pretrained``/``from_pretrained``), one folder::

    animateanything_index.json   format, base model reference, component classes and sources
    flow_encoder/ flow_fusion/ frequency_stabilizer/        stage 2, trained (safetensors)
    flow_vae/ flow_generator/ camera_reference/ image_vae/ flow_scheduler/   stage 1 (optional)
    transformer/ vae/ scheduler/ text_encoder/ tokenizer/  only when the base is copied

The unchanged CogVideoX components (transformer, vae, scheduler, text encoder, tokenizer) are
referenced by ``base_model`` (a folder or hub id) rather than copied, whenever the pipeline knows
where they came from; one whose fingerprint changed since loading is copied instead. A folder
with parts missing raises :class:`IncompleteCheckpointError` listing every missing part at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import CogVideoXImageToVideoPipeline, DiffusionPipeline
from PIL import Image

from .camera_reference import CameraReferenceModel
from .checkpoint import (
    BASE,
    FORMAT_VERSION,
    INDEX_FILE,
    STAGE1,
    TRAINED,
    IncompleteCheckpointError,
    plan_checkpoint,
)
from .flow_encoder import FlowEncoder3D
from .flow_fusion import FlowFusionBlock
from .flow_generation import FlowGenerationModel, build_condition
from .flow_vae import FlowVAE
from .frequency_attention import FrequencyStabilizer
from .transformer import AnimateAnythingTransformer

OWN_CLASSES = {
    "FlowEncoder3D": FlowEncoder3D,
    "FlowFusionBlock": FlowFusionBlock,
    "FrequencyStabilizer": FrequencyStabilizer,
    "FlowVAE": FlowVAE,
    "FlowGenerationModel": FlowGenerationModel,
    "CameraReferenceModel": CameraReferenceModel,
}
# Stage-1 flow size: long side at most this many pixels, each side a multiple of the UNet's factor.
DEFAULT_FLOW_LONG_SIDE = 384

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class AnimateAnythingPipelineOutput:
    """frames: (F, H, W, 3) uint8 or None (``output_type="flow"``); flow: (F, H, W, 2) float32 pixels,
    forward flow from frame 0 (flow[0] == 0)."""

    frames: np.ndarray | None
    flow: np.ndarray


class AnimateAnythingPipeline(DiffusionPipeline):
    """The paper's two stages. Stage-1 components may be None (then pass ``flow=``)."""

    model_cpu_offload_seq = (
        "image_vae->camera_reference->flow_generator->flow_vae->text_encoder->flow_encoder->transformer->vae"
    )
    _optional_components = ["tokenizer", "text_encoder", *STAGE1]
    # Read by processors and hooks rather than called as modules: always on the execution device.
    _exclude_from_cpu_offload = ["flow_fusion", "frequency_stabilizer"]

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
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
            flow_encoder=flow_encoder,
            flow_fusion=flow_fusion,
            frequency_stabilizer=frequency_stabilizer,
            flow_vae=flow_vae,
            flow_generator=flow_generator,
            camera_reference=camera_reference,
            image_vae=image_vae,
            flow_scheduler=flow_scheduler,
        )
        self.stage2 = AnimateAnythingTransformer(transformer, flow_encoder, flow_fusion, frequency_stabilizer)
        self.video_pipeline = CogVideoXImageToVideoPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )
        self.video_pipeline.set_progress_bar_config(disable=True)
        # Where the unchanged base components came from (folder or hub id); None = unknown (copied on save).
        self.base_model: str | None = None
        # The local folder the base components were loaded from (set by from_pretrained).
        self.base_path: str | None = None
        # Fingerprints of the base components as loaded: a changed one is copied on save.
        self._base_fingerprints: dict[str, str] = {}

    def set_base_model(self, source: str, base_path: str | None = None) -> None:
        """Declare that the current transformer/vae/scheduler/text parts are those of ``source`` (a
        CogVideoX folder or hub id), unchanged: ``save_pretrained`` then references them and copies
        only a part whose fingerprint has changed since this call."""
        self.base_model = str(source)
        self.base_path = str(base_path or source)
        self._base_fingerprints = {
            name: component_fingerprint(getattr(self, name))
            for name in BASE
            if getattr(self, name, None) is not None
        }

    def changed_base_components(self) -> list[str]:
        """Base components whose fingerprint differs from the one recorded by :meth:`set_base_model`."""
        return [
            name
            for name, fp in self._base_fingerprints.items()
            if getattr(self, name, None) is None or component_fingerprint(getattr(self, name)) != fp
        ]

    # ------------------------------------------------------------------ helpers
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

    def check_inputs(self, height, width, num_frames, flow, c2w, K, tracks, track_visible, output_type):
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

    # ------------------------------------------------------------------ stage 1
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
        callback: ProgressCallback | None = None,
        flow_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Stage 1: dense flow ``(F, H, W, 2)`` float32 pixels (CPU) from camera and drags."""
        from blender_animate.camera import rescale_intrinsics
        from blender_animate.flow import sparse_flow
        from blender_animate.plucker import plucker_embedding

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
        for i, t in enumerate(timesteps):
            model_input = scheduler.scale_model_input(latents, t)
            pred = self.flow_generator(
                model_input, t.reshape(1).to(device), reference_features=features, encoded_condition=encoded
            )
            latents = scheduler.step(pred.float(), t, latents).prev_sample
            if callback is not None:
                callback("flow", i + 1, len(timesteps))
        # 5. Decode per frame, resize to the video size, frame 0 is exactly zero.
        frames = latents[0].transpose(0, 1)  # (F, C, h, w)
        chunk = 8  # frames per VAE call: bounds the decoder's activation memory
        flow = torch.cat(
            [self.flow_vae.decode_flow(frames[i : i + chunk]) for i in range(0, num_frames, chunk)]
        )
        flow = resize_flow(flow, height, width)
        flow[0] = 0
        return flow.permute(0, 2, 3, 1).cpu()

    # ------------------------------------------------------------------ both stages
    @torch.no_grad()
    def __call__(
        self,
        image,
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
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        generator: torch.Generator | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        callback: ProgressCallback | None = None,
        flow_size: tuple[int, int] | None = None,
        max_sequence_length: int = 226,
    ) -> AnimateAnythingPipelineOutput:
        """Generate a video (and its flow) from a reference image and controls.

        Args:
            image: the first frame, PIL or (H, W, 3) uint8; resized to ``width`` x ``height``.
            flow: optional dense flow (F, H, W, 2) pixels; replaces stage 1.
            c2w, K: OpenCV camera-to-world (F, 4, 4) and pixel intrinsics (F, 3, 3) at ``width`` x ``height``.
            tracks, track_visible: drags (P, F, 2) pixels and (P, F) bool.
            flow_steps / num_inference_steps: denoising steps of stage 1 / stage 2.
            callback: ``callback(stage, step, total)`` after every step, stage "flow" or "video"; raise
                from it to cancel (nothing is decoded after that).
            output_type: "np" (frames and flow) or "flow" (stop after stage 1).
        """
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if torch.is_tensor(flow):
            flow = flow.detach().cpu().numpy()
        # 1. Check inputs
        self.check_inputs(height, width, num_frames, flow, c2w, K, tracks, track_visible, output_type)
        image = image.convert("RGB").resize((width, height), Image.BICUBIC)

        # 2. Stage 1: unified flow
        if flow is None:
            flow_t = self.generate_flow(
                image, num_frames, height, width, c2w=c2w, K=K, tracks=tracks, track_visible=track_visible,
                flow_steps=flow_steps, generator=generator, callback=callback, flow_size=flow_size,
            )  # fmt: skip
        else:
            flow_t = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))
        if output_type == "flow":
            return AnimateAnythingPipelineOutput(frames=None, flow=flow_t.numpy())

        # 3. Encode the flow to the CogVideoX latent grid
        device = self._execution_device
        self.stage2.eval()
        flow_latents = self.stage2.encode_flow(flow_t[None].to(device))

        # 4. Stage 2: the stock I2V loop with flow conditioning attached
        def on_step_end(pipe, i, t, kwargs):
            if callback is not None:
                callback("video", i + 1, pipe.num_timesteps)
            return kwargs

        with self.stage2.conditioning(flow_latents.to(self.transformer.dtype)):
            video = self.video_pipeline(
                image=image,
                prompt=None if prompt_embeds is not None else prompt,
                negative_prompt=None if negative_prompt_embeds is not None else negative_prompt,
                height=height,
                width=width,
                num_frames=num_frames,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds,
                output_type="np",
                callback_on_step_end=on_step_end,
                max_sequence_length=max_sequence_length,
            ).frames[0]
        frames = np.clip(np.round(np.asarray(video) * 255.0), 0, 255).astype(np.uint8)
        return AnimateAnythingPipelineOutput(frames=frames, flow=flow_t.numpy())

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, save_directory, copy_base: bool | None = None, **kwargs) -> None:
        """Save the AnimateAnything parts in safetensors; reference the base CogVideoX parts.

        ``copy_base``: None (default) references ``self.base_model`` when it is known and copies the
        base components otherwise; True always copies them; False requires ``self.base_model``.
        A base component that changed since it was loaded (fingerprint, see :meth:`set_base_model`)
        is copied into the folder, never referenced.
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        if copy_base is False and not self.base_model:
            raise ValueError(
                "copy_base=False needs pipe.base_model (the CogVideoX folder or hub id) to reference"
            )
        reference = bool(self.base_model) and not copy_base
        changed = set(self.changed_base_components()) if reference else set()
        components = {}
        for name in TRAINED + STAGE1 + BASE:
            module = getattr(self, name, None)
            if module is None:
                continue
            source = "base" if (name in BASE and reference and name not in changed) else "folder"
            components[name] = {"class": type(module).__name__, "library": _library(module), "source": source}
            if source == "folder":
                _save_component(module, out / name)
        index = {
            "_class_name": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "base_model": self.base_model if reference else None,
            "components": components,
        }
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        base_model: str | None = None,
        torch_dtype: torch.dtype | None = None,
        load_stage1: bool = True,
        load_text_encoder: bool = True,
        local_files_only: bool = True,
        **kwargs,
    ) -> AnimateAnythingPipeline:
        """Load a folder written by :meth:`save_pretrained`.

        ``base_model`` overrides the referenced CogVideoX (folder or hub id; the hub only when
        ``local_files_only=False``). Everything that is missing is listed in one
        :class:`IncompleteCheckpointError`.
        """
        folder = Path(pretrained_model_name_or_path)
        plan = plan_checkpoint(folder, base_model, load_stage1, load_text_encoder, local_files_only)
        if plan.missing:
            raise IncompleteCheckpointError(folder, plan.missing)
        loaded = {
            name: _load_component(path, plan.components[name], torch_dtype)
            for name, path in plan.locations.items()
        }
        pipe = cls(**{n: loaded.get(n) for n in TRAINED + STAGE1 + BASE})
        if plan.base_path is not None:
            pipe.set_base_model(plan.base_model, str(plan.base_path))
        else:
            pipe.base_path = str(folder)
        return pipe


# ---------------------------------------------------------------------- functions


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(F, 2, h, w)`` pixel flow -> ``(F, 2, height, width)``: bilinear, vectors scaled per axis."""
    h, w = flow.shape[-2:]
    if (h, w) == (height, width):
        return flow
    out = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    return out * torch.tensor([width / w, height / h], dtype=out.dtype, device=out.device).reshape(1, 2, 1, 1)


def component_fingerprint(component) -> str:
    """sha256 of a component's state, strided: ~4096 values per tensor (any fine-tune or merged LoRA
    changes them), plus names and shapes; for schedulers the config, for tokenizers the vocabulary size."""
    h = hashlib.sha256()
    if isinstance(component, torch.nn.Module):
        for name, t in component.state_dict().items():
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if t.device.type == "meta":
                continue
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            h.update(flat[::step].float().cpu().numpy().tobytes())
    elif hasattr(component, "config"):
        h.update(json.dumps(dict(component.config), sort_keys=True, default=str).encode())
    else:
        h.update(
            f"{type(component).__name__}{len(component) if hasattr(component, '__len__') else ''}".encode()
        )
    return h.hexdigest()


def _library(module) -> str:
    return (
        "animateanything" if type(module).__name__ in OWN_CLASSES else type(module).__module__.split(".")[0]
    )


def _save_component(module, path: Path) -> None:
    if hasattr(module, "save_pretrained"):
        try:
            module.save_pretrained(path, safe_serialization=True)
        except TypeError:  # schedulers and tokenizers take no safe_serialization
            module.save_pretrained(path)
    elif hasattr(module, "save_config"):
        module.save_config(path)
    else:
        raise TypeError(f"cannot save component {type(module).__name__}")


def _load_component(path: Path, entry: dict, torch_dtype):
    class_name = entry["class"]
    common = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    if class_name in OWN_CLASSES:
        return OWN_CLASSES[class_name].from_pretrained(path, use_safetensors=True, **common).eval()
    if entry.get("library") == "transformers":
        import transformers

        if "Tokenizer" in class_name:
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        cls = getattr(transformers, class_name)
        kw = {"dtype": torch_dtype} if torch_dtype is not None else {}
        return cls.from_pretrained(path, use_safetensors=True, local_files_only=True, **kw).eval()
    import diffusers

    cls = getattr(diffusers, class_name)
    if "Scheduler" in class_name:
        return cls.from_pretrained(path)
    return cls.from_pretrained(path, use_safetensors=True, local_files_only=True, **common).eval()
