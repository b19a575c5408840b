"""Flow Generation Model (FGM) of AnimateAnything stage 1: sparse flow + camera reference -> flow latents.

The paper's explicit path: drags and other point motions become a sparse flow (value ``T_l - T_0`` at
each track's start pixel, mask 1 there), "enhanced" by CMP (a sparse-to-dense motion propagation net)
and given to FGM, a latent diffusion UNet ("Controlled SD1.5") over Flow-VAE latents with temporal
layers; the Camera Reference Model's features enter its reference-attention layers at every step.
Choices here:

- UNet: diffusers' ``UNetMotionModel`` (SD1.5 spatial layout + AnimateDiff motion modules = the temporal
  attention), so it can start from SD1.5 + an AnimateDiff motion adapter (``UNetMotionModel.from_unet2d``,
  then :meth:`FlowGenerationModel.from_unet_motion`, which zero-fills the extra input channels).
- CMP-like densification, in two parts. (1) :func:`densify_sparse_flow`, parameter-free: a
  normalised Gaussian propagation (Nadaraya-Watson) of the sparse flow, ``dense = G*(m f) / G*m``, with
  confidence ``min(1, G*m)`` (a peak-1 Gaussian of ``sigma = densify_sigma * max(H, W)``); exact at the
  track pixels, smooth in between, zero far from all tracks. (2) :class:`ConditionEncoder`, learned:
  a ControlNet-style conv stack that sees [dense flow, confidence, sparse flow, mask] (flow in sign-sqrt
  units) and downsamples 8x to the latent grid. Together they play CMP's role (spread the sparse
  motion) while staying trainable end to end and needing no CMP weights.
- Explicit condition: the encoder output is concatenated to the noisy flow latents on channels
  (``in_channels = latent_channels + condition_channels``), the "explicit" path of the paper.
- Reference attention: every spatial self-attention of FGM attends to ``[x, reference]`` (keys and
  values from its own tokens and from the CRM feature of the same layer and frame), ReferenceNet's
  mechanism; with no reference features it is plain self-attention. No new parameters.
- Frames: FGM models all F frames, frame 0 included (its flow is zero by definition; the pipeline
  zeroes it after decoding), so frame indices of flow, Plücker embeddings and reference features agree.
- Text: learned context tokens (``context``) for SD1.5's cross-attention, as in the CRM.

Shapes: ``forward(sample (B, C, F, h, w), timestep, condition (B, F, 6, H, W) from
:func:`build_condition`, reference_features {layer: (B*F, N_l, C_l)} | None) -> (B, C, F, h, w)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_motion_model import UNetMotionModel
from torch import nn

from .camera_reference import spatial_attn1_names, unet_block_types
from .flow_vae import DEFAULT_FLOW_SCALE, flow_to_unit

CONDITION_CHANNELS = 6  # dense flow (2), confidence (1), sparse flow (2), mask (1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable peak-1 Gaussian (the centre tap is 1, not normalised) over H, W of ``(N, C, H, W)``."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    c = x.shape[1]
    x = F.conv2d(x, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(x, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def densify_sparse_flow(
    flow: torch.Tensor, mask: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised Gaussian propagation of a sparse flow.

    Args:
        flow: ``(N, 2, H, W)`` sparse flow (any units), meaningful where ``mask`` is 1.
        mask: ``(N, 1, H, W)`` in [0, 1].
        sigma: Gaussian standard deviation in pixels.
    Returns ``(dense (N, 2, H, W), confidence (N, 1, H, W))``; ``dense`` is 0 where confidence is 0.
    """
    num = _gaussian_blur(flow * mask, sigma)
    den = _gaussian_blur(mask, sigma)
    dense = num / den.clamp_min(1e-6)
    dense = torch.where(den > 1e-6, dense, torch.zeros_like(dense))
    return dense, den.clamp(max=1.0)


def build_condition(
    sparse_flow: torch.Tensor,
    sparse_mask: torch.Tensor,
    densify_sigma: float = 0.05,
    flow_scale=DEFAULT_FLOW_SCALE,
) -> torch.Tensor:
    """Pixel sparse flow ``(B, F, H, W, 2)`` + mask ``(B, F, H, W)`` -> FGM condition ``(B, F, 6, H, W)``.

    Channels: dense flow (sign-sqrt units), confidence, sparse flow (sign-sqrt units), mask.
    ``densify_sigma`` is a fraction of ``max(H, W)``.
    """
    b, f, h, w, _ = sparse_flow.shape
    flow = sparse_flow.permute(0, 1, 4, 2, 3).reshape(b * f, 2, h, w).float()
    mask = sparse_mask.reshape(b * f, 1, h, w).float()
    dense, conf = densify_sparse_flow(flow, mask, densify_sigma * max(h, w))
    cond = torch.cat(
        [flow_to_unit(dense, flow_scale), conf, flow_to_unit(flow * mask, flow_scale), mask], dim=1
    )
    return cond.reshape(b, f, CONDITION_CHANNELS, h, w)


class ConditionEncoder(nn.Module):
    """ControlNet-style condition embedding: ``(N, 6, H, W) -> (N, out_channels, H/8, W/8)``."""

    def __init__(self, out_channels: int, channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        layers = [nn.Conv2d(CONDITION_CHANNELS, channels[0], 3, padding=1), nn.SiLU()]
        for i in range(len(channels) - 1):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 3, padding=1, stride=2), nn.SiLU()]
        layers.append(nn.Conv2d(channels[-1], out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ReferenceState:
    def __init__(self):
        self.features: dict[str, torch.Tensor] | None = None


class ReferenceAttnProcessor:
    """Self-attention whose keys/values also see the reference feature of the same layer and frame."""

    def __init__(self, name: str, state: _ReferenceState):
        self.name = name
        self.state = state
        self.inner = AttnProcessor2_0()

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs
    ):
        features = self.state.features
        if features is not None and encoder_hidden_states is None:
            ref = features[self.name].to(hidden_states.dtype)
            if ref.shape[0] != hidden_states.shape[0]:
                ref = ref.repeat(hidden_states.shape[0] // ref.shape[0], 1, 1)
            encoder_hidden_states = torch.cat([hidden_states, ref], dim=1)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class FlowGenerationModel(ModelMixin, ConfigMixin):
    """FGM: condition encoder + ``UNetMotionModel`` with reference attention.

    Args:
        latent_channels: Flow VAE latent channels (4).
        condition_channels: channels of the encoded condition concatenated to the latents.
        block_out_channels, layers_per_block, cross_attention_dim, num_attention_heads, norm_num_groups,
            sample_size: SD1.5's UNet (must equal the CRM's).
        motion_num_attention_heads, motion_max_seq_length: AnimateDiff motion modules (max frames).
        num_context_tokens: learned context tokens for the cross-attention.
        densify_sigma: Gaussian of the densification, fraction of ``max(H, W)``.
        condition_encoder_channels: widths of the condition encoder (three stride-2 steps).
    """

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        condition_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        cross_attention_dim: int = 768,
        num_attention_heads: int = 8,
        norm_num_groups: int = 32,
        sample_size: int = 64,
        motion_num_attention_heads: int = 8,
        motion_max_seq_length: int = 64,
        num_context_tokens: int = 77,
        densify_sigma: float = 0.05,
        condition_encoder_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__()
        down, up = unet_block_types(len(block_out_channels), motion=True)
        self.unet = UNetMotionModel(
            sample_size=sample_size,
            in_channels=latent_channels + condition_channels,
            out_channels=latent_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            num_attention_heads=num_attention_heads,
            norm_num_groups=norm_num_groups,
            motion_num_attention_heads=motion_num_attention_heads,
            motion_max_seq_length=motion_max_seq_length,
        )
        self.condition_encoder = ConditionEncoder(condition_channels, tuple(condition_encoder_channels))
        self.context = nn.Parameter(torch.zeros(1, num_context_tokens, cross_attention_dim))
        self._state = _ReferenceState()
        processors = dict(self.unet.attn_processors)
        self.reference_layer_names = spatial_attn1_names(processors)
        for name in self.reference_layer_names:
            processors[name] = ReferenceAttnProcessor(name, self._state)
        self.unet.set_attn_processor(processors)

    @classmethod
    def from_unet_motion(cls, unet: UNetMotionModel, **config) -> FlowGenerationModel:
        """An FGM started from an SD1.5 + AnimateDiff ``UNetMotionModel`` (``UNetMotionModel.from_unet2d``).

        ``conv_in`` gets zero weights for the condition channels (the UNet starts as the pretrained
        one); the condition encoder and context are new. ``config`` overrides any argument, e.g.
        ``motion_max_seq_length=64`` for 49 frames from AnimateDiff's 32: the motion modules'
        positions are fixed sinusoids, so the longer table extends the pretrained one exactly.
        """
        c = unet.config
        heads = c.num_attention_heads if isinstance(c.num_attention_heads, int) else c.num_attention_heads[0]
        motion_heads = c.motion_num_attention_heads
        kwargs = dict(
            latent_channels=c.out_channels,
            block_out_channels=tuple(c.block_out_channels),
            layers_per_block=c.layers_per_block,
            cross_attention_dim=c.cross_attention_dim,
            num_attention_heads=heads,
            norm_num_groups=c.norm_num_groups,
            sample_size=c.sample_size,
            motion_num_attention_heads=motion_heads if isinstance(motion_heads, int) else motion_heads[0],
            motion_max_seq_length=c.motion_max_seq_length,
        )
        kwargs.update(config)
        model = cls(**kwargs)
        state = dict(unet.state_dict())
        own = model.unet.state_dict()
        w = state["conv_in.weight"]
        extra = own["conv_in.weight"].shape[1] - w.shape[1]
        state["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
        # Sinusoidal position tables of another length: keep the model's own (same formula).
        resized = [k for k in state if k.endswith("pos_embed.pe") and state[k].shape != own[k].shape]
        for k in resized:
            del state[k]
        missing, unexpected = model.unet.load_state_dict(state, strict=False)
        if unexpected or set(missing) != set(resized):
            raise ValueError(
                f"the UNet does not fit FlowGenerationModel: unexpected {unexpected[:3]}, "
                f"missing {sorted(set(missing) - set(resized))[:3]}"
            )
        return model

    def encode_condition(self, condition: torch.Tensor) -> torch.Tensor:
        """``(B, F, 6, H, W)`` -> ``(B, condition_channels, F, H/8, W/8)``."""
        b, f = condition.shape[:2]
        x = self.condition_encoder(condition.flatten(0, 1).to(self.dtype))
        return x.reshape(b, f, *x.shape[1:]).transpose(1, 2)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        condition: torch.Tensor | None = None,
        reference_features: dict[str, torch.Tensor] | None = None,
        encoded_condition: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or v) for noisy flow latents ``sample (B, C, F, h, w)``.

        ``condition`` from :func:`build_condition`, or ``encoded_condition`` from :meth:`encode_condition`
        (computed once per generation by the pipeline). ``reference_features`` from the CRM.
        """
        b, _, f, h, w = sample.shape
        if encoded_condition is None:
            if condition is None:
                raise ValueError("FlowGenerationModel needs condition or encoded_condition")
            encoded_condition = self.encode_condition(condition)
        if encoded_condition.shape[0] != b:
            encoded_condition = encoded_condition.repeat(b // encoded_condition.shape[0], 1, 1, 1, 1)
        if encoded_condition.shape[2:] != (f, h, w):
            raise ValueError(
                f"condition grid {tuple(encoded_condition.shape[2:])} does not match the latents {(f, h, w)}"
            )
        if reference_features is not None:
            missing = [n for n in self.reference_layer_names if n not in reference_features]
            if missing:
                raise ValueError(f"reference features missing for {len(missing)} layers, e.g. {missing[0]}")
        if encoder_hidden_states is None:
            encoder_hidden_states = self.context.expand(b, -1, -1)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(f, dim=0)
        x = torch.cat([sample.to(self.dtype), encoded_condition.to(self.dtype)], dim=1)
        if torch.is_tensor(timestep) and timestep.ndim == 0:
            timestep = timestep.expand(b)
        self._state.features = reference_features
        try:
            return self.unet(x, timestep, encoder_hidden_states.to(self.dtype)).sample
        finally:
            self._state.features = None
