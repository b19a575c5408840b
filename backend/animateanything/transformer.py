"""AnimateAnything stage-2 transformer: stock CogVideoX I2V + flow encoder + fusion + frequency attention.

:class:`AnimateAnythingTransformer` composes, without changing the library:

- ``transformer``: a stock ``CogVideoXTransformer3DModel`` (I2V, frozen, its weights untouched);
- ``flow_encoder``: :class:`FlowEncoder3D`, pixel flow -> flow latents on the CogVideoX latent grid;
- ``flow_fusion``: :class:`FlowFusionBlock`, the ONE input cross-attention block, entered through a
  forward pre-hook on ``transformer.transformer_blocks[0]`` (the tokens right after patch embedding);
- ``frequency_stabilizer``: :class:`FrequencyStabilizer`, whose weights the
  :class:`FrequencyStabilizedAttnProcessor` of every block reads (``set_attn_processor``).

Hooks and processors are attached only inside :meth:`AnimateAnythingTransformer.conditioning` (and
therefore :meth:`forward`); outside it the transformer is the stock model again, with its original
processors. Training with gradient checkpointing keeps them attached after the forward (the blocks
are recomputed during backward); :meth:`~AnimateAnythingTransformer.detach` ends that. A forward
pre-hook on the transformer records the token grid of every call (frames, rows, columns) for the
frequency processors, so the stock diffusers I2V pipeline can drive it.

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

import torch
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel
from torch import nn

from .flow_encoder import FlowEncoder3D
from .flow_fusion import FlowFusionBlock
from .flow_vae import DEFAULT_FLOW_SCALE, flow_to_unit
from .frequency_attention import FrequencyStabilizedAttnProcessor, FrequencyStabilizer, TokenGrid


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
        self._grid = TokenGrid()
        self._flow_latents: torch.Tensor | None = None
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

    # ------------------------------------------------------------------ attaching
    @contextmanager
    def conditioning(self, flow_latents: torch.Tensor | None):
        """Attach the fusion hook and frequency processors to ``self.transformer`` with these flow
        latents ``(B_f, T, C, h, w)`` (None: no fusion, frequency attention only); detach on exit."""
        previous = self._flow_latents
        self._flow_latents = flow_latents
        self.attach()
        try:
            yield self
        finally:
            self.detach()
            self._flow_latents = previous

    @property
    def attached(self) -> bool:
        return self._depth > 0

    def attach(self) -> None:
        """Install the frequency processors and the hooks (nested calls are counted)."""
        self._depth += 1
        if self._depth > 1:
            return
        t = self.transformer
        self._original_processors = t.attn_processors
        processors = {}
        for name in self._original_processors:
            layer = int(name.split(".")[1])
            processors[name] = FrequencyStabilizedAttnProcessor(self.frequency_stabilizer, layer, self._grid)
        t.set_attn_processor(processors)
        self._handles = [
            t.register_forward_pre_hook(self._record_grid, with_kwargs=True),
            t.transformer_blocks[0].register_forward_pre_hook(self._fuse_flow, with_kwargs=True),
        ]

    def detach(self) -> None:
        """Undo one :meth:`attach`; the last one restores the stock processors and removes the hooks."""
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
        self._grid.frames = 0

    def _record_grid(self, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        _, frames, _, height, width = hidden.shape
        cfg = self.transformer.config
        p_t = cfg.patch_size_t or 1
        self._grid.frames = frames // p_t
        self._grid.height = height // cfg.patch_size
        self._grid.width = width // cfg.patch_size
        return None

    def _padded_flow_latents(self) -> torch.Tensor:
        """Flow latents with the video's latent frame count. CogVideoX 1.5 (``patch_size_t``) pads the
        video latents at the front with copies of the first frame to a multiple of ``patch_size_t``;
        the flow latents are padded the same way."""
        flow = self._flow_latents
        frames = self._grid.frames * (self.transformer.config.patch_size_t or 1)
        extra = frames - flow.shape[1]
        if extra > 0:
            flow = torch.cat([flow[:, :1].expand(-1, extra, -1, -1, -1), flow], dim=1)
        return flow

    def _fuse_flow(self, module, args, kwargs):
        if self._flow_latents is None:
            return None
        flow = self._padded_flow_latents()
        if "hidden_states" in kwargs:
            rotary = kwargs.get("image_rotary_emb")
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = self.flow_fusion(kwargs["hidden_states"], flow, rotary)
            return args, kwargs
        # Gradient checkpointing calls the block positionally:
        # (hidden_states, encoder_hidden_states, temb, image_rotary_emb, attention_kwargs).
        args = list(args)
        rotary = args[3] if len(args) > 3 else kwargs.get("image_rotary_emb")
        args[0] = self.flow_fusion(args[0], flow, rotary)
        return tuple(args), kwargs

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
        return_dict: bool = True,
    ):
        """CogVideoX I2V forward with flow guidance.

        Args:
            hidden_states: ``(B, T, 2C, h, w)`` noisy latents concatenated with the image latents.
            encoder_hidden_states: ``(B, L, text_dim)`` T5 embeddings.
            timestep: ``(B,)``.
            flow: pixel flow (see :meth:`encode_flow`), or ``flow_latents`` already encoded; both None
                runs without fusion (frequency attention only).
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
            return_dict=return_dict,
        )
        if not self.attached and torch.is_grad_enabled() and self.transformer.gradient_checkpointing:
            # Checkpointed blocks are recomputed during backward, after this call returns: stay
            # attached (call detach() after training to get the stock transformer back).
            self.attach()
        if self.attached:
            self._flow_latents = flow_latents
            return self.transformer(**kwargs)
        with self.conditioning(flow_latents):
            return self.transformer(**kwargs)


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
