"""AnimateAnything stage-2 transformer: stock CogVideoX I2V + flow encoder + fusion + frequency attention.

:class:`AnimateAnythingTransformer` composes, without changing the library:

- ``transformer``: a stock ``CogVideoXTransformer3DModel`` (I2V, frozen, its weights untouched);
- ``flow_encoder``: :class:`FlowEncoder3D`, pixel flow -> flow latents on the CogVideoX latent grid;
- ``flow_fusion``: :class:`FlowFusionBlock`, the ONE input cross-attention block, entered through a
  forward pre-hook on ``transformer.transformer_blocks[0]`` (the tokens right after patch embedding;
  ``CogVideoXTransformer3DModel.forward`` has no other way in short of rewriting it);
- ``frequency_stabilizer``: :class:`FrequencyStabilizer`, whose weights the
  :class:`FrequencyStabilizedAttnProcessor` of every block reads (``set_attn_processor``).

Per-call data travels in the transformer's own ``attention_kwargs`` (diffusers hands them to every
block and on to its ``attn1`` processor): ``token_frames`` (the token frame count, for the frequency
filter) and ``flow_latents`` (read by the block-0 hook). :meth:`AnimateAnythingTransformer.forward`
fills both from its arguments, so no state is kept between calls and nothing hooks the transformer
itself. The processors and the block-0 hook are attached only inside
:meth:`~AnimateAnythingTransformer.conditioning` (and therefore :meth:`forward`); outside it the
transformer is the stock model again, with its original processors. Training with gradient
checkpointing keeps them attached after the forward (the blocks are recomputed during backward);
:meth:`~AnimateAnythingTransformer.detach` ends that.

Trained (paper): flow encoder, input block, stabilisation module; everything else frozen
(:meth:`AnimateAnythingTransformer.set_trainable`). Flow noise augmentation (paper: without it FVD
168 -> 474): in training mode with ``flow_noise_std > 0``, Gaussian noise of a per-sample standard
deviation drawn uniformly from ``[0, flow_noise_std]`` is added to the sign-sqrt normalised flow
before the encoder (the errors of stage 1 live in flow space).

Conventions: flow is pixels, ``(B, F, H, W, 2)`` (project layout, frame 0 -> frame f) or
``(B, F, 2, H, W)``; F = 4k + 1 video frames, the same H, W as the video.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_resize_crop_region_for_grid
from torch import nn

from .flow_encoder import FlowEncoder3D
from .flow_fusion import FlowFusionBlock
from .flow_vae import DEFAULT_FLOW_SCALE, flow_to_unit
from .frequency_attention import FrequencyStabilizedAttnProcessor, FrequencyStabilizer


class AnimateAnythingTransformer(nn.Module):
    """Stage-2 model: ``forward(hidden_states, encoder_hidden_states, timestep, flow=...)``.

    Args:
        transformer: stock CogVideoX I2V transformer.
        flow_encoder, flow_fusion, frequency_stabilizer: the trained parts.
        flow_noise_std: training-time flow noise (normalised units); 0 disables it.
        flow_scale: sign-sqrt normalisation of the flow (fractions of width, height).

    Only the trained parts are new; ``transformer.state_dict()`` stays the stock one (processors and
    hooks hold references, they are not submodules of the transformer).
    """

    def __init__(
        self,
        transformer: CogVideoXTransformer3DModel,
        flow_encoder: FlowEncoder3D,
        flow_fusion: FlowFusionBlock,
        frequency_stabilizer: FrequencyStabilizer,
        flow_noise_std: float = 0.0,
        flow_scale: tuple[float, float] = DEFAULT_FLOW_SCALE,
    ):
        super().__init__()
        check_compatible(transformer, flow_encoder, flow_fusion, frequency_stabilizer)
        self.transformer = transformer
        self.flow_encoder = flow_encoder
        self.flow_fusion = flow_fusion
        self.frequency_stabilizer = frequency_stabilizer
        self.flow_noise_std = float(flow_noise_std)
        self.flow_scale = tuple(flow_scale)
        self._depth = 0
        self._handles: list = []
        self._original_processors = None

    # ------------------------------------------------------------------ trained parts
    def trained_modules(self) -> dict[str, nn.Module]:
        return {
            "flow_encoder": self.flow_encoder,
            "flow_fusion": self.flow_fusion,
            "frequency_stabilizer": self.frequency_stabilizer,
        }

    def set_trainable(self) -> None:
        """Freeze the CogVideoX transformer, unfreeze the parts the paper trains."""
        self.transformer.requires_grad_(False)
        for module in self.trained_modules().values():
            module.requires_grad_(True)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        for module in self.trained_modules().values():
            yield from module.parameters()

    # ------------------------------------------------------------------ flow
    def encode_flow(self, flow: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel flow ``(B, F, H, W, 2)`` or ``(B, F, 2, H, W)`` -> flow latents ``(B, T, C, H/8, W/8)``.

        Applies the flow noise augmentation when the module is in training mode.
        """
        if flow.ndim != 5:
            raise ValueError(f"flow must be 5-D (B, F, H, W, 2) or (B, F, 2, H, W), got {tuple(flow.shape)}")
        if flow.shape[-1] == 2 and flow.shape[2] != 2:
            flow = flow.permute(0, 1, 4, 2, 3)
        param = next(self.flow_encoder.parameters())
        unit = flow_to_unit(flow.to(device=param.device, dtype=torch.float32), self.flow_scale)
        if self.training and self.flow_noise_std > 0:
            b = unit.shape[0]
            std = torch.rand(b, 1, 1, 1, 1, generator=generator, device=unit.device) * self.flow_noise_std
            noise = torch.randn(unit.shape, generator=generator, device=unit.device)
            unit = unit + std * noise
        return self.flow_encoder(unit.to(param.dtype))

    # ------------------------------------------------------------------ attention kwargs
    def attention_kwargs(
        self,
        latent_frames: int,
        flow_latents: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The transformer's ``attention_kwargs`` for video latents of ``latent_frames`` frames T
        (padding included): the caller's, plus ``token_frames`` (T / patch_size_t) and ``flow_latents``
        (None: no fusion) padded to T frames. CogVideoX 1.5 (``patch_size_t``) pads the video latents
        at the front with copies of the first frame to a multiple of ``patch_size_t``; the flow
        latents are padded the same way. Valid for every step of a denoising loop."""
        frames = int(latent_frames)
        if flow_latents is not None and frames > flow_latents.shape[1]:
            extra = frames - flow_latents.shape[1]
            flow_latents = torch.cat([flow_latents[:, :1].expand(-1, extra, -1, -1, -1), flow_latents], dim=1)
        kwargs = dict(attention_kwargs or {})
        kwargs["token_frames"] = frames // (self.transformer.config.patch_size_t or 1)
        kwargs["flow_latents"] = flow_latents
        return kwargs

    # ------------------------------------------------------------------ attaching
    @contextmanager
    def conditioning(self):
        """Attach the frequency processors and the fusion hook to ``self.transformer``; detach on exit.
        Inside it, call the transformer through :meth:`forward` (or pass :meth:`attention_kwargs`)."""
        self.attach()
        try:
            yield self
        finally:
            self.detach()

    @property
    def attached(self) -> bool:
        return self._depth > 0

    def attach(self) -> None:
        """Install the frequency processors and the block-0 hook (nested calls are counted)."""
        self._depth += 1
        if self._depth > 1:
            return
        t = self.transformer
        self._original_processors = t.attn_processors
        processors = {
            name: FrequencyStabilizedAttnProcessor(self.frequency_stabilizer, int(name.split(".")[1]))
            for name in self._original_processors
        }
        t.set_attn_processor(processors)
        self._handles = [t.transformer_blocks[0].register_forward_pre_hook(self._fuse_flow, with_kwargs=True)]

    def detach(self) -> None:
        """Undo one :meth:`attach`; the last one restores the stock processors and removes the hook."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.transformer.set_attn_processor(self._original_processors)
        self._original_processors = None

    def _fuse_flow(self, module, args, kwargs):
        """Block-0 pre-hook: the flow fusion on the block's input tokens, with the ``flow_latents`` of
        the block's ``attention_kwargs`` (none there: no fusion)."""
        positional = "hidden_states" not in kwargs
        if positional:
            # Gradient checkpointing calls the block positionally:
            # (hidden_states, encoder_hidden_states, temb, image_rotary_emb, attention_kwargs).
            attention_kwargs = args[4] if len(args) > 4 else kwargs.get("attention_kwargs")
            rotary = args[3] if len(args) > 3 else kwargs.get("image_rotary_emb")
        else:
            attention_kwargs, rotary = kwargs.get("attention_kwargs"), kwargs.get("image_rotary_emb")
        flow = (attention_kwargs or {}).get("flow_latents")
        if flow is None:
            return None
        if positional:
            args = list(args)
            args[0] = self.flow_fusion(args[0], flow, rotary)
            return tuple(args), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = self.flow_fusion(kwargs["hidden_states"], flow, rotary)
        return args, kwargs

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        flow: torch.Tensor | None = None,
        flow_latents: torch.Tensor | None = None,
        ofs: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ):
        """CogVideoX I2V forward with flow guidance.

        Args:
            hidden_states: ``(B, T, 2C, h, w)`` noisy latents concatenated with the image latents.
            encoder_hidden_states: ``(B, L, text_dim)`` T5 embeddings.
            timestep: ``(B,)``.
            flow: pixel flow (see :meth:`encode_flow`), or ``flow_latents`` already encoded; both None
                runs without fusion (frequency attention only).
            attention_kwargs: passed on to the transformer (e.g. ``{"scale": lora_scale}``), with
                ``token_frames`` and ``flow_latents`` added (:meth:`attention_kwargs`).
        Returns what the stock transformer returns (``.sample`` of shape ``(B, T, C_out, h, w)``).
        """
        if flow is not None and flow_latents is not None:
            raise ValueError("pass flow or flow_latents, not both")
        if flow is not None:
            flow_latents = self.encode_flow(flow)
        kwargs = dict(
            hidden_states=hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            timestep=timestep,
            ofs=ofs,
            image_rotary_emb=image_rotary_emb,
            attention_kwargs=self.attention_kwargs(hidden_states.shape[1], flow_latents, attention_kwargs),
            return_dict=return_dict,
        )
        if not self.attached and torch.is_grad_enabled() and self.transformer.gradient_checkpointing:
            # Checkpointed blocks are recomputed during backward, after this call returns: stay
            # attached (call detach() after training to get the stock transformer back).
            self.attach()
        if self.attached:
            return self.transformer(**kwargs)
        with self.conditioning():
            return self.transformer(**kwargs)


def rotary_embeddings(
    transformer: CogVideoXTransformer3DModel,
    height: int,
    width: int,
    latent_frames: int,
    device,
    vae_scale_factor_spatial: int = 8,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The 3-D RoPE ``(cos, sin)`` the stock CogVideoX I2V pipeline gives the transformer for a
    ``height`` x ``width`` video of ``latent_frames`` latent frames (None when the transformer uses
    none). The same computation as the pipeline's ``_prepare_rotary_positional_embeddings``, from
    diffusers' public embedding functions, for callers that have no pipeline (training)."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    p, p_t = cfg.patch_size, cfg.patch_size_t
    grid_height = height // (vae_scale_factor_spatial * p)
    grid_width = width // (vae_scale_factor_spatial * p)
    base_width, base_height = cfg.sample_width // p, cfg.sample_height // p
    if p_t is None:  # CogVideoX 1.0
        crops = get_resize_crop_region_for_grid((grid_height, grid_width), base_width, base_height)
        return get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim,
            crops_coords=crops,
            grid_size=(grid_height, grid_width),
            temporal_size=latent_frames,
            device=device,
        )
    return get_3d_rotary_pos_embed(  # CogVideoX 1.5
        embed_dim=cfg.attention_head_dim,
        crops_coords=None,
        grid_size=(grid_height, grid_width),
        temporal_size=(latent_frames + p_t - 1) // p_t,
        grid_type="slice",
        max_size=(base_height, base_width),
        device=device,
    )


def check_compatible(
    transformer: CogVideoXTransformer3DModel,
    flow_encoder: FlowEncoder3D,
    flow_fusion: FlowFusionBlock,
    frequency_stabilizer: FrequencyStabilizer,
) -> None:
    """Raise ValueError naming the first size that does not fit the transformer."""
    t = transformer.config
    inner = t.num_attention_heads * t.attention_head_dim
    checks = [
        ("flow_fusion.num_attention_heads", flow_fusion.config.num_attention_heads, t.num_attention_heads),
        ("flow_fusion.attention_head_dim", flow_fusion.config.attention_head_dim, t.attention_head_dim),
        ("flow_fusion.patch_size", flow_fusion.config.patch_size, t.patch_size),
        ("flow_fusion.patch_size_t", flow_fusion.config.patch_size_t, t.patch_size_t),
        ("flow_fusion.flow_channels", flow_fusion.config.flow_channels, flow_encoder.config.out_channels),
        (
            "flow_encoder.temporal_compression_ratio",
            flow_encoder.config.temporal_compression_ratio,
            t.temporal_compression_ratio,
        ),
        ("frequency_stabilizer.num_layers", frequency_stabilizer.config.num_layers, t.num_layers),
        ("frequency_stabilizer.inner_dim", frequency_stabilizer.config.inner_dim, inner),
    ]
    for name, got, want in checks:
        if got != want:
            raise ValueError(f"{name} is {got} but the CogVideoX transformer needs {want}")
