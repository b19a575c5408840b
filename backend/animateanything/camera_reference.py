"""Camera Reference Model (CRM) of AnimateAnything stage 1: camera + reference image -> reference features.

The paper's implicit path: per-frame Plücker embeddings of the camera (relative to frame 0) go
through a CameraCtrl-style camera encoder into multi-scale features; a reference UNet (SD1.5-sized,
initialised from SD1.5, ReferenceNet-style) fuses them with the reference image through "camera
motion attention" (image latents query, camera features key/value), and its multi-scale features
enter the Flow Generation Model's reference attention at every denoising step. Choices here:

- :class:`CameraEncoder` (CameraCtrl's layout): ``PixelUnshuffle(8)`` of the 6-channel Plücker map
  to the latent grid, then one scale per UNet level: (stride-2 conv from the second scale on),
  ResNet blocks, and a temporal self-attention across frames with sinusoidal frame positions. Scale
  ``i`` has the spatial size of UNet level ``i``.
- Reference UNet: diffusers' ``UNet2DConditionModel`` with SD1.5's layout (so
  :meth:`CameraReferenceModel.from_unet` loads SD1.5's UNet unchanged). It runs once per generation,
  on the clean reference-image latent repeated for every frame (batch ``B * F``), at timestep 0 (as
  ReferenceNet); its output is unused, only the features of its self-attention layers matter.
- Camera motion attention: in front of every spatial self-attention of the UNet, ``x <- x +
  CrossAttn(x, LN(camera features of that level and frame))``, output projection initialised to zero
  (so the CRM starts as SD1.5's ReferenceNet). The modules live in ``camera_attentions``; attention
  processors (plain objects, :class:`CameraMotionReferenceProcessor`) run them and record ``x``, the
  reference feature of that layer, which is what the CRM returns.
- Text: SD1.5's cross-attention is kept and given learned context tokens (``context``, start them
  from the CLIP embedding of the empty prompt when porting SD1.5); no text encoder in stage 1.

Shapes: ``forward(reference_latents (B, C, h, w), plucker (B, F, 6, H, W)) -> {layer name: (B*F, h_l*w_l,
C_l)}`` with ``H = 8h``, ``W = 8w`` and layer names as in ``unet.attn_processors`` (e.g.
``"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"``).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn


def spatial_attn1_names(processor_names) -> list[str]:
    """Names of the spatial self-attention processors (not motion modules), in module order."""
    return [n for n in processor_names if n.endswith("attn1.processor") and ".attentions." in n]


def level_of(name: str, num_levels: int) -> int:
    """UNet resolution level (0 = full latent size) of an attention layer from its name."""
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return num_levels - 1 - int(parts[1])
    return num_levels - 1  # mid_block


class TemporalSelfAttention(nn.Module):
    """Self-attention across frames at every pixel: ``(B*F, C, h, w) -> same``, residual."""

    def __init__(self, channels: int, heads: int, norm_num_groups: int, max_frames: int = 128):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels)
        self.pos = SinusoidalPositionalEmbedding(channels, max_seq_length=max_frames)
        self.attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=True)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        y = (
            self.norm(x)
            .reshape(b, num_frames, c, h * w)
            .permute(0, 3, 1, 2)
            .reshape(b * h * w, num_frames, c)
        )
        y = self.attn(self.pos(y))
        y = y.reshape(b, h * w, num_frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x + y


class CameraEncoder(nn.Module):
    """CameraCtrl-style encoder: ``(B, F, 6, H, W)`` Plücker -> ``[(B*F, C_i, h_i, w_i)]``, one per scale."""

    def __init__(
        self,
        in_channels: int = 6,
        downscale_factor: int = 8,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        temporal_attention_heads: int = 8,
        norm_num_groups: int = 32,
    ):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(downscale_factor)
        self.conv_in = nn.Conv2d(in_channels * downscale_factor**2, block_out_channels[0], 3, padding=1)
        self.downsamplers = nn.ModuleList()
        self.resnets = nn.ModuleList()
        self.temporal = nn.ModuleList()
        prev = block_out_channels[0]
        for i, ch in enumerate(block_out_channels):
            self.downsamplers.append(
                nn.Identity() if i == 0 else nn.Conv2d(prev, prev, 3, stride=2, padding=1)
            )
            blocks = nn.ModuleList()
            for _ in range(layers_per_block):
                blocks.append(
                    ResnetBlock2D(
                        in_channels=prev, out_channels=ch, temb_channels=None, groups=norm_num_groups
                    )
                )
                prev = ch
            self.resnets.append(blocks)
            self.temporal.append(TemporalSelfAttention(ch, temporal_attention_heads, norm_num_groups))

    def forward(self, plucker: torch.Tensor) -> list[torch.Tensor]:
        b, f = plucker.shape[:2]
        x = self.conv_in(self.unshuffle(plucker.flatten(0, 1)))
        features = []
        for down, blocks, temporal in zip(self.downsamplers, self.resnets, self.temporal):
            x = down(x)
            for block in blocks:
                x = block(x, None)
            x = temporal(x, f)
            features.append(x)
        return features


class CameraMotionAttention(nn.Module):
    """Camera motion attention: image tokens ``(N, L, dim)`` query camera features ``(N, C_cam, h, w)``.

    Output projection initialised to zero.
    """

    def __init__(self, dim: int, camera_dim: int, heads: int):
        super().__init__()
        self.norm_camera = nn.LayerNorm(camera_dim)
        self.attn = Attention(
            query_dim=dim, cross_attention_dim=camera_dim, heads=heads, dim_head=dim // heads, out_bias=True
        )
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, x: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        tokens = self.norm_camera(camera.flatten(2).transpose(1, 2).to(x.dtype))
        return self.attn(x, encoder_hidden_states=tokens)


class _CRMState:
    def __init__(self):
        self.camera_features: list[torch.Tensor] | None = None
        self.bank: dict[str, torch.Tensor] = {}


class CameraMotionReferenceProcessor:
    """Self-attention processor of the reference UNet: camera motion attention, record, self-attention."""

    def __init__(self, name: str, camera_attention: CameraMotionAttention, level: int, state: _CRMState):
        self.name = name
        self.camera_attention = camera_attention
        self.level = level
        self.state = state
        self.inner = AttnProcessor2_0()

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs
    ):
        if self.state.camera_features is not None:
            hidden_states = hidden_states + self.camera_attention(
                hidden_states, self.state.camera_features[self.level]
            )
        self.state.bank[self.name] = hidden_states
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def unet_block_types(num_levels: int, motion: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SD1.5's block layout for ``num_levels`` levels: cross-attention everywhere but the lowest level."""
    suffix = "Motion" if motion else "2D"
    down = tuple([f"CrossAttnDownBlock{suffix}"] * (num_levels - 1) + [f"DownBlock{suffix}"])
    up = tuple([f"UpBlock{suffix}"] + [f"CrossAttnUpBlock{suffix}"] * (num_levels - 1))
    return down, up


class CameraReferenceModel(ModelMixin, ConfigMixin):
    """Camera encoder + SD1.5-layout reference UNet with camera motion attention.

    Args:
        in_channels: reference image latent channels (4: SD VAE).
        block_out_channels, layers_per_block, cross_attention_dim, num_attention_heads, norm_num_groups,
            sample_size: the UNet (SD1.5: (320, 640, 1280, 1280), 2, 768, 8, 32, 64); must equal the
            Flow Generation Model's so that their self-attention layers pair up.
        num_context_tokens: learned context tokens for the UNet's cross-attention (77 for SD1.5).
        camera_block_out_channels, camera_layers_per_block, camera_temporal_attention_heads,
            camera_downscale_factor: the camera encoder (CameraCtrl: (320, 640, 1280, 1280), 2, 8, 8).
        camera_attention_heads: heads of the camera motion attention.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        cross_attention_dim: int = 768,
        num_attention_heads: int = 8,
        norm_num_groups: int = 32,
        sample_size: int = 64,
        num_context_tokens: int = 77,
        camera_block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        camera_layers_per_block: int = 2,
        camera_temporal_attention_heads: int = 8,
        camera_downscale_factor: int = 8,
        camera_attention_heads: int = 8,
    ):
        super().__init__()
        if len(camera_block_out_channels) != len(block_out_channels):
            raise ValueError(
                "the camera encoder needs one scale per UNet level (same number of channels entries)"
            )
        down, up = unet_block_types(len(block_out_channels))
        self.unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=num_attention_heads,  # SD1.5's legacy name: it is the number of heads
            norm_num_groups=norm_num_groups,
        )
        self.camera_encoder = CameraEncoder(
            in_channels=6,
            downscale_factor=camera_downscale_factor,
            block_out_channels=camera_block_out_channels,
            layers_per_block=camera_layers_per_block,
            temporal_attention_heads=camera_temporal_attention_heads,
            norm_num_groups=norm_num_groups,
        )
        self.context = nn.Parameter(torch.zeros(1, num_context_tokens, cross_attention_dim))
        self._state = _CRMState()
        names = spatial_attn1_names(self.unet.attn_processors)
        n = len(block_out_channels)
        self.reference_layer_names = names
        self.camera_attentions = nn.ModuleList()
        processors = dict(self.unet.attn_processors)
        for name in names:
            level = level_of(name, n)
            module = CameraMotionAttention(
                block_out_channels[level], camera_block_out_channels[level], camera_attention_heads
            )
            self.camera_attentions.append(module)
            processors[name] = CameraMotionReferenceProcessor(name, module, level, self._state)
        self.unet.set_attn_processor(processors)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, **camera_config) -> CameraReferenceModel:
        """A CRM whose reference UNet is a copy of ``unet`` (e.g. SD1.5's); camera parts new."""
        c = unet.config
        heads = c.attention_head_dim if isinstance(c.attention_head_dim, int) else c.attention_head_dim[0]
        model = cls(
            in_channels=c.in_channels,
            block_out_channels=tuple(c.block_out_channels),
            layers_per_block=c.layers_per_block,
            cross_attention_dim=c.cross_attention_dim,
            num_attention_heads=heads,
            norm_num_groups=c.norm_num_groups,
            sample_size=c.sample_size,
            **camera_config,
        )
        model.unet.load_state_dict(unet.state_dict(), strict=True)
        return model

    def forward(
        self,
        reference_latents: torch.Tensor,
        plucker: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Reference features of every spatial self-attention layer (see module docstring for shapes)."""
        if reference_latents.ndim != 4 or plucker.ndim != 5 or plucker.shape[2] != 6:
            raise ValueError(
                f"need reference_latents (B, C, h, w) and plucker (B, F, 6, H, W), got "
                f"{tuple(reference_latents.shape)} and {tuple(plucker.shape)}"
            )
        b, f = plucker.shape[:2]
        factor = self.config.camera_downscale_factor
        if plucker.shape[-2:] != (reference_latents.shape[-2] * factor, reference_latents.shape[-1] * factor):
            raise ValueError(
                f"plucker {tuple(plucker.shape[-2:])} must be {factor}x the latent size "
                f"{tuple(reference_latents.shape[-2:])}"
            )
        latents = reference_latents.repeat_interleave(f, dim=0)
        if encoder_hidden_states is None:
            encoder_hidden_states = self.context.expand(b * f, -1, -1)
        elif encoder_hidden_states.shape[0] == b:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(f, dim=0)
        self._state.camera_features = self.camera_encoder(plucker.to(self.dtype))
        self._state.bank = {}
        try:
            timestep = torch.zeros(b * f, device=latents.device)
            self.unet(latents.to(self.dtype), timestep, encoder_hidden_states.to(self.dtype))
            return dict(self._state.bank)
        finally:
            self._state.camera_features = None
            self._state.bank = {}
