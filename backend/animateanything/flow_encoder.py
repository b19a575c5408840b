"""Flow encoder of AnimateAnything stage 2: dense flow video -> flow latents on the CogVideoX grid.

The paper encodes the unified optical flow with "4x temporal, 8x8 spatial" compression, the geometry
of the CogVideoX 3D VAE, so that flow latents and video latents share one grid. Choices here (the
paper gives no architecture):

- Temporal: CogVideoX's causal rule. ``F = 4k + 1`` frames become ``k + 1`` latent frames: latent 0
  sees frame 0 only, latent ``j >= 1`` sees frames ``4j - 3 .. 4j``. Implemented as a causal
  space-to-depth in time: frame 0 is repeated three times in front (``F + 3 = 4 (k + 1)`` frames) and
  every group of 4 frames is stacked on the channel axis. Nothing is lost, and it costs nothing.
- Spatial: a light 2-D ResNet per latent frame with three stride-2 downsamples (8x8), plus a causal
  temporal convolution (kernel 3 over latent frames, left-padded) after each stage, so neighbouring
  latent frames exchange motion information.
- Input: flow normalised by :func:`backend.animateanything.flow_vae.flow_to_unit` (sign-sqrt), in
  CogVideoX's video layout ``(B, F, 2, H, W)`` with channels ``(dx, dy)``.
- Output: ``(B, (F - 1) // 4 + 1, out_channels, H / 8, W / 8)``, the layout of CogVideoX latents.

Trained from scratch (it is small: ~5 M parameters at the default sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


class CausalTemporalConv(nn.Module):
    """Residual causal convolution over the frame axis of ``(B, T, C, H, W)``: ``x + conv(silu(norm(x)))``."""

    def __init__(self, channels: int, norm_num_groups: int, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size
        self.norm = nn.GroupNorm(norm_num_groups, channels)
        self.conv = nn.Conv3d(channels, channels, kernel_size=(kernel_size, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        y = F.silu(self.norm(x.reshape(b * t, c, h, w))).reshape(b, t, c, h, w).transpose(1, 2)
        # Causal: pad the past with copies of the first frame.
        y = torch.cat([y[:, :, :1].expand(-1, -1, self.kernel_size - 1, -1, -1), y], dim=2)
        return x + self.conv(y).transpose(1, 2)


class FlowEncoder3D(ModelMixin, ConfigMixin):
    """Causal 4x temporal, 8x8 spatial flow encoder.

    Args:
        in_channels: flow channels (2: dx, dy).
        out_channels: flow latent channels (the fusion block patch-embeds them, any value works).
        block_out_channels: widths of the four resolution stages (full, 1/2, 1/4, 1/8).
        layers_per_block: ResNet blocks per stage.
        norm_num_groups: GroupNorm groups; must divide every entry of ``block_out_channels``.
        temporal_compression_ratio: frames per latent frame (4 for CogVideoX).

    Shapes: ``forward(flow (B, F, in_channels, H, W)) -> (B, (F - 1) // r + 1, out_channels, H / 8, W / 8)``
    with ``r = temporal_compression_ratio``; ``(F - 1) % r == 0`` and ``H % 8 == W % 8 == 0`` required.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 16,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 512),
        layers_per_block: int = 1,
        norm_num_groups: int = 32,
        temporal_compression_ratio: int = 4,
    ):
        super().__init__()
        if len(block_out_channels) != 4:
            raise ValueError("block_out_channels needs 4 entries: three 2x downsamples make 8x8")
        r = temporal_compression_ratio
        self.conv_in = nn.Conv2d(in_channels * r, block_out_channels[0], kernel_size=3, padding=1)
        self.stages = nn.ModuleList()
        self.temporal = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        prev = block_out_channels[0]
        for i, ch in enumerate(block_out_channels):
            blocks = nn.ModuleList()
            for _ in range(layers_per_block):
                blocks.append(
                    ResnetBlock2D(
                        in_channels=prev, out_channels=ch, temb_channels=None, groups=norm_num_groups
                    )
                )
                prev = ch
            self.stages.append(blocks)
            self.temporal.append(CausalTemporalConv(ch, norm_num_groups))
            if i < len(block_out_channels) - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, kernel_size=3, stride=2, padding=1))
        self.norm_out = nn.GroupNorm(norm_num_groups, prev)
        self.conv_out = nn.Conv2d(prev, out_channels, kernel_size=3, padding=1)

    @staticmethod
    def latent_frames(num_frames: int, ratio: int = 4) -> int:
        return (num_frames - 1) // ratio + 1

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        if flow.ndim != 5 or flow.shape[2] != self.config.in_channels:
            raise ValueError(f"flow must be (B, F, {self.config.in_channels}, H, W), got {tuple(flow.shape)}")
        b, f, c, h, w = flow.shape
        r = self.config.temporal_compression_ratio
        if (f - 1) % r != 0:
            raise ValueError(f"the flow encoder needs {r}k+1 frames, got {f}")
        if h % 8 or w % 8:
            raise ValueError(f"flow height and width must be multiples of 8, got {h}x{w}")
        t = (f - 1) // r + 1
        # Causal space-to-depth in time: (B, F, C, H, W) -> (B, T, r*C, H, W).
        x = torch.cat([flow[:, :1].expand(-1, r - 1, -1, -1, -1), flow], dim=1)
        x = x.reshape(b * t, r * c, h, w)
        x = self.conv_in(x)
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, None)
            x = self.temporal[i](x.reshape(b, t, *x.shape[1:])).flatten(0, 1)
            if i < len(self.downsamplers):
                x = self.downsamplers[i](x)
        x = self.conv_out(F.silu(self.norm_out(x)))
        return x.reshape(b, t, *x.shape[1:])
