"""Frequency-stabilised attention for the CogVideoX transformer (AnimateAnything, stage 2).

The paper (arXiv 2411.10836, "frequency stabilisation") takes the FFT of the attention features,
multiplies the spectrum by a learnable weight W, inverts the FFT and then runs scaled dot-product
attention. It leaves the FFT axis, the shape of W and the layers open. Choices made here:

- Axis: the frame (time) axis of the video tokens. Flicker is a temporal artefact, and a filter along
  time is what "stabilising" across frames means. Text tokens are never touched.
- Transform: real FFT (``torch.fft.rfft``) over the ``T`` token frames, so there are ``T // 2 + 1``
  frequency bins (7 for the 13 latent frames of 49 video frames).
- W: real-valued, one weight per (layer, {query, key, value}, frequency bin, channel): shape
  ``(num_layers, 3, num_frequency_bins, inner_dim)``. Real weights are zero-phase filters: they can
  damp or boost a temporal frequency of a channel but never shift features in time. All ones at
  initialisation, so the pretrained model is unchanged at the start of training.
- Where: after the per-head QK normalisation, before the rotary embedding (RoPE rotates each frame
  differently; filtering across frames after it would mix unrelated rotations).
- Computed as ``x + irfft((W - 1) * rfft(x))``: mathematically the same as ``irfft(W * rfft(x))``,
  but with W = 1 it adds an exact zero, so the identity start is exact to the bit, not only to
  rounding. The FFT runs in float32 whatever the model dtype (half-precision FFTs need power-of-two
  lengths on CUDA).
- Other frame counts: W is resampled linearly over the normalised frequency axis [0, Nyquist]
  (a W of ones stays exactly ones).

Token layout (CogVideoX patch embedding): the video part of the sequence is frame-major,
``(T, H / p, W / p)`` flattened, where ``T`` is the number of latent frames (divided by
``patch_size_t`` for CogVideoX 1.5). The processor cannot see ``T`` in its tensors, so it takes it as
an attention kwarg, ``token_frames``, which the transformer's ``attention_kwargs`` hand to every
block's ``attn1`` (diffusers' route for per-call processor arguments); ``AnimateAnythingTransformer``
fills it from the latents of each forward. No state is shared between calls.

The learnable weights live in :class:`FrequencyStabilizer` (a ``ModelMixin``, saved on its own); the
processors installed on the transformer hold only a reference to it, so the transformer's own
state dict stays exactly the stock CogVideoX one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FrequencyStabilizer(ModelMixin, ConfigMixin):
    """Learnable temporal-frequency weights for every attention layer of a CogVideoX transformer.

    Args:
        num_layers: transformer blocks (42 for CogVideoX-5B).
        inner_dim: heads x head dim of the attention (3072 for CogVideoX-5B).
        num_frequency_bins: ``T // 2 + 1`` for the token frame count T it is trained at
            (13 latent frames -> 7 bins).

    Parameters: ``weight`` of shape ``(num_layers, 3, num_frequency_bins, inner_dim)``; index 1 is
    (query, key, value). Initialised to ones (identity).
    """

    @register_to_config
    def __init__(self, num_layers: int = 42, inner_dim: int = 3072, num_frequency_bins: int = 7):
        super().__init__()
        if num_layers < 1 or inner_dim < 1 or num_frequency_bins < 1:
            raise ValueError("num_layers, inner_dim and num_frequency_bins must all be >= 1")
        self.weight = nn.Parameter(torch.ones(num_layers, 3, num_frequency_bins, inner_dim))

    def layer_weight(self, layer: int, num_bins: int) -> torch.Tensor:
        """``(3, num_bins, inner_dim)`` weights of one layer, resampled if ``num_bins`` differs."""
        w = self.weight[layer]
        if w.shape[1] == num_bins:
            return w
        if w.shape[1] == 1:
            return w.expand(-1, num_bins, -1)
        if num_bins == 1:
            return w[:, :1]
        # (3, bins, C) -> (3, C, bins) for 1-D linear interpolation over the frequency axis.
        w = F.interpolate(w.transpose(1, 2), size=num_bins, mode="linear", align_corners=True)
        return w.transpose(1, 2)

    def is_identity(self) -> bool:
        return bool(torch.all(self.weight == 1).item())


def frequency_filter(x: torch.Tensor, weight_minus_one: torch.Tensor, frames: int) -> torch.Tensor:
    """Filter video tokens along the frame axis: ``x + irfft((W - 1) * rfft(x))``.

    Args:
        x: ``(B, heads, T * S, head_dim)`` video tokens of one of Q/K/V, frame-major.
        weight_minus_one: ``(T // 2 + 1, heads * head_dim)`` real, ``W - 1``.
        frames: T.
    Returns the same shape and dtype as ``x``.
    """
    b, heads, n, d = x.shape
    if n % frames != 0:
        raise ValueError(f"{n} video tokens do not split into {frames} frames")
    xf = x.reshape(b, heads, frames, n // frames, d).float()
    spec = torch.fft.rfft(xf, dim=2)
    # (bins, heads * d) -> (1, heads, bins, 1, d)
    w = weight_minus_one.to(device=x.device, dtype=torch.float32).reshape(-1, heads, d)
    w = w.permute(1, 0, 2).unsqueeze(0).unsqueeze(3)
    delta = torch.fft.irfft(spec * w, n=frames, dim=2)
    return x + delta.reshape(b, heads, n, d).to(x.dtype)


class FrequencyStabilizedAttnProcessor:
    """CogVideoX joint attention with frequency stabilisation of the video Q/K/V.

    Same computation as diffusers' ``CogVideoXAttnProcessor2_0`` (text and video tokens concatenated,
    QK norm, RoPE on the video tokens, SDPA, output projection, split back) with one step added after
    the QK norm: :func:`frequency_filter` on the video part of Q, K and V. Not an ``nn.Module``: the
    weights stay in ``stabilizer`` (a :class:`FrequencyStabilizer`), ``layer`` picks its row.

    Attention kwargs (``transformer(..., attention_kwargs={...})``): ``token_frames``, the token frame
    count T of this forward (required); ``flow_latents`` is accepted and ignored here (the fusion hook
    on block 0 reads it from the same dict), so diffusers does not warn about it on every call.
    """

    def __init__(self, stabilizer: FrequencyStabilizer, layer: int):
        self.stabilizer = stabilizer
        self.layer = layer

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        token_frames: int | None = None,
        flow_latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch_size, sequence_length, _ = hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # Frequency stabilisation of the video tokens (text tokens untouched).
        frames = int(token_frames or 0)
        video_tokens = sequence_length - text_seq_length
        if frames <= 0 or video_tokens % frames:
            raise RuntimeError(
                f"FrequencyStabilizedAttnProcessor: token grid unknown ({video_tokens} video tokens, "
                f"token_frames={token_frames!r}); pass attention_kwargs={{'token_frames': T}}, as "
                "AnimateAnythingTransformer does"
            )
        w1 = self.stabilizer.layer_weight(self.layer, frames // 2 + 1) - 1.0
        query = torch.cat(
            [query[:, :, :text_seq_length], frequency_filter(query[:, :, text_seq_length:], w1[0], frames)],
            dim=2,
        )
        key = torch.cat(
            [key[:, :, :text_seq_length], frequency_filter(key[:, :, text_seq_length:], w1[1], frames)], dim=2
        )
        value = torch.cat(
            [value[:, :, :text_seq_length], frequency_filter(value[:, :, text_seq_length:], w1[2], frames)],
            dim=2,
        )

        if image_rotary_emb is not None:
            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states
