"""Flow VAE of AnimateAnything stage 1: a per-frame 2-channel optical-flow autoencoder.

The paper trains "a Flow VAE" to compress optical flow into the latent space of its flow diffusion
model (FGM, an SD1.5-class UNet). Choices here:

- Architecture: diffusers' ``AutoencoderKL`` (the SD VAE) with 2 input and 2 output channels, 4 latent
  channels, 8x8 spatial compression, per frame. Everything except ``conv_in``/``conv_out`` can be
  initialised from the SD1.5 VAE (:meth:`FlowVAE.from_image_vae`), which is how flow VAEs of
  Motion-I2V-like models are commonly started.
- Normalisation (FloVD's sign-sqrt): ``u = sign(f) * sqrt(|f| / s)`` per axis, with
  ``s = flow_scale * (width, height)``; the default ``flow_scale = (1/12, 3/40)`` gives FloVD's
  ``s = (60, 36)`` pixels at 720x480 and scales with the resolution, so the same physical motion maps
  to the same value at any size. The square root compresses large motions and keeps resolution for
  the small ones; ``|u| = 1`` is a motion of 1/12 of the width. Inverse: ``f = sign(u) * u^2 * s``.

Layouts: flow in the project's convention is ``(..., H, W, 2)`` pixels, ``(dx, dy)``, from frame 0 to
frame f. The VAE works channels-first: ``encode_flow(flow (N, 2, H, W) pixels) -> latents (N, 4, H/8,
W/8)`` already multiplied by ``scaling_factor``; ``decode_flow`` is the inverse.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

DEFAULT_FLOW_SCALE = (1.0 / 12.0, 3.0 / 40.0)


def flow_to_unit(flow: torch.Tensor, scale=DEFAULT_FLOW_SCALE, channel_dim: int = -3) -> torch.Tensor:
    """Pixel flow -> sign-sqrt normalised flow (see module docstring).

    Args:
        flow: pixels, ``(dx, dy)`` on ``channel_dim`` (size 2); the last two dims are ``(H, W)``.
        scale: fractions of (width, height).
    """
    h, w = flow.shape[-2], flow.shape[-1]
    s = _scale_tensor(flow, scale, w, h, channel_dim)
    return torch.sign(flow) * torch.sqrt(flow.abs() / s)


def unit_to_flow(unit: torch.Tensor, scale=DEFAULT_FLOW_SCALE, channel_dim: int = -3) -> torch.Tensor:
    """Inverse of :func:`flow_to_unit`: normalised flow -> pixels."""
    h, w = unit.shape[-2], unit.shape[-1]
    s = _scale_tensor(unit, scale, w, h, channel_dim)
    return torch.sign(unit) * unit.square() * s


def _scale_tensor(x: torch.Tensor, scale, width: int, height: int, channel_dim: int) -> torch.Tensor:
    if x.shape[channel_dim] != 2:
        raise ValueError(f"flow needs 2 channels (dx, dy) on dim {channel_dim}, got shape {tuple(x.shape)}")
    shape = [1] * x.ndim
    shape[channel_dim] = 2
    s = torch.tensor([scale[0] * width, scale[1] * height], dtype=x.dtype, device=x.device)
    return s.reshape(shape)


class FlowVAE(AutoencoderKL):
    """``AutoencoderKL`` for 2-channel flow, with the sign-sqrt normalisation built in.

    Extra config: ``flow_scale`` (fractions of width, height; see module docstring). Everything else is
    ``AutoencoderKL``'s config, with flow defaults (2 channels in and out, 4 latent channels).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 512,
        scaling_factor: float = 0.18215,
        force_upcast: bool = True,
        flow_scale: tuple[float, float] = DEFAULT_FLOW_SCALE,
    ):
        if in_channels != 2 or out_channels != 2:
            raise ValueError("FlowVAE encodes 2-channel flow (dx, dy): in_channels = out_channels = 2")
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            force_upcast=force_upcast,
        )

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode_flow(self, flow: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        """``(N, 2, H, W)`` pixel flow -> ``(N, latent_channels, H/8, W/8)`` scaled latents.

        ``sample=False`` takes the posterior mode (deterministic, for conditioning); True samples it.
        """
        unit = flow_to_unit(flow, self.config.flow_scale).to(self.dtype)
        dist = self.encode(unit).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return z * self.config.scaling_factor

    def decode_flow(self, latents: torch.Tensor) -> torch.Tensor:
        """``(N, latent_channels, h, w)`` scaled latents -> ``(N, 2, 8h, 8w)`` pixel flow (float32)."""
        unit = self.decode(latents.to(self.dtype) / self.config.scaling_factor).sample
        return unit_to_flow(unit.float(), self.config.flow_scale)

    @classmethod
    def from_image_vae(cls, image_vae: AutoencoderKL, **overrides) -> FlowVAE:
        """A FlowVAE with the weights of an RGB ``AutoencoderKL`` (e.g. SD1.5's), except the 2-channel
        ``conv_in``/``conv_out``, which start from the mean of the RGB filters (dx, dy get the same)."""
        cfg = {k: v for k, v in image_vae.config.items() if k in cls._init_keys()}
        cfg.update(in_channels=2, out_channels=2, **overrides)
        vae = cls(**cfg)
        state = dict(image_vae.state_dict())
        w_in = state.pop("encoder.conv_in.weight")
        state["encoder.conv_in.weight"] = w_in.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1).clone()
        w_out, b_out = state.pop("decoder.conv_out.weight"), state.pop("decoder.conv_out.bias")
        state["decoder.conv_out.weight"] = w_out.mean(dim=0, keepdim=True).expand(2, -1, -1, -1).clone()
        state["decoder.conv_out.bias"] = b_out.mean().expand(2).clone()
        vae.load_state_dict(state, strict=True)
        return vae

    @classmethod
    def _init_keys(cls) -> set[str]:
        import inspect

        return set(inspect.signature(cls.__init__).parameters) - {"self"}
