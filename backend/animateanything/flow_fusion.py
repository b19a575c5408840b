"""Flow fusion of AnimateAnything stage 2: ONE input cross-attention block.

The paper fuses the flow with "one input ViT block": video latents (noisy latents + image latent)
are the queries, flow latents the keys and values, and the result continues into the unchanged
CogVideoX I2V DiT. Choices here:

- Where: on the video tokens right after CogVideoX's patch embedding (text tokens split off, learned
  / sinusoidal position embeddings already added), i.e. the input of ``transformer_blocks[0]``.
  These tokens already mix the noisy latents and the image latent (their channels are concatenated
  before the patch embedding), which is what the paper's query is.
- Flow tokens: the flow latents are patchified with the transformer's own patch size (so both
  sequences share one token grid), projected to the transformer width, and given the same 3-D
  sinusoidal position embedding CogVideoX uses; when the transformer uses 3-D RoPE, the same rotary
  embedding is applied to the queries and the keys, so attention knows relative positions.
- Block: pre-norm ViT block, ``h = h + CrossAttn(LN(h), LN(flow))`` then ``h = h + FFN(LN(h))``,
  with the output projection of both sub-layers initialised to ZERO: the block is an exact identity
  at the start of training, so the pretrained video model is untouched until the block learns.
- Classifier-free guidance: when the transformer batch is a multiple of the flow batch (the
  unconditional and conditional halves), the flow is repeated: guidance is on text, not on flow.

Shapes: ``forward(hidden_states (B, N, D), flow_latents (B_f, T, C, h, w), grid=(T', h/p, w/p),
image_rotary_emb=None) -> (B, N, D)`` with ``N = T' * (h/p) * (w/p)``, ``T' = T / patch_size_t``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb, get_3d_sincos_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FlowCrossAttnProcessor:
    """Cross-attention, video tokens -> flow tokens, with the transformer's 3-D RoPE on Q and K.

    Both sequences use the same token grid, so one rotary embedding serves both.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        b = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(b, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(b, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(b, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key = apply_rotary_emb(key, image_rotary_emb)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * head_dim)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class FlowFusionBlock(ModelMixin, ConfigMixin):
    """The input cross-attention block (video tokens query, flow tokens key/value), zero-initialised.

    Args:
        flow_channels: channels of the flow latents (FlowEncoder3D ``out_channels``).
        num_attention_heads, attention_head_dim: as the CogVideoX transformer (48 x 64 for 5B), so the
            transformer's RoPE fits; ``inner_dim = heads * head_dim`` is the transformer width.
        patch_size, patch_size_t: the transformer's patching (2, None for CogVideoX 1.0).
        ff_mult: FFN hidden size / width.
        norm_eps: LayerNorm epsilon.
    """

    @register_to_config
    def __init__(
        self,
        flow_channels: int = 16,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        ff_mult: int = 4,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        if inner_dim % 16:
            raise ValueError("heads x head dim must be divisible by 16 (3-D sincos position embedding)")
        p_t = patch_size_t or 1
        self.flow_proj = nn.Linear(flow_channels * p_t * patch_size * patch_size, inner_dim)
        self.norm_video = nn.LayerNorm(inner_dim, eps=norm_eps)
        self.norm_flow = nn.LayerNorm(inner_dim, eps=norm_eps)
        self.attn = Attention(
            query_dim=inner_dim,
            cross_attention_dim=inner_dim,
            heads=num_attention_heads,
            dim_head=attention_head_dim,
            qk_norm="layer_norm",
            eps=1e-6,
            bias=True,
            out_bias=True,
            processor=FlowCrossAttnProcessor(),
        )
        self.norm_ff = nn.LayerNorm(inner_dim, eps=norm_eps)
        self.ff = FeedForward(inner_dim, mult=ff_mult, activation_fn="gelu-approximate")
        # Zero-initialised outputs: the block starts as an exact identity.
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)
        nn.init.zeros_(self.ff.net[-1].weight)
        nn.init.zeros_(self.ff.net[-1].bias)

    def flow_tokens(self, flow_latents: torch.Tensor) -> torch.Tensor:
        """Patchify ``(B, T, C, h, w)`` flow latents to ``(B, T/p_t * h/p * w/p, D)`` frame-major tokens."""
        b, t, c, h, w = flow_latents.shape
        p = self.config.patch_size
        p_t = self.config.patch_size_t or 1
        if t % p_t or h % p or w % p:
            raise ValueError(f"flow latents {tuple(flow_latents.shape)} do not patchify by ({p_t}, {p}, {p})")
        x = flow_latents.permute(0, 1, 3, 4, 2).reshape(b, t // p_t, p_t, h // p, p, w // p, p, c)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(4, 7).flatten(1, 3)
        x = self.flow_proj(x)
        pos = get_3d_sincos_pos_embed(
            x.shape[-1], (w // p, h // p), t // p_t, device=x.device, output_type="pt"
        ).flatten(0, 1)
        return x + pos.to(dtype=x.dtype).unsqueeze(0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        flow_latents: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        flow = self.flow_tokens(flow_latents.to(hidden_states.dtype))
        if flow.shape[1] != hidden_states.shape[1]:
            raise ValueError(
                f"flow gives {flow.shape[1]} tokens but the video has {hidden_states.shape[1]}: "
                "flow and video must share one latent grid"
            )
        b = hidden_states.shape[0]
        if b != flow.shape[0]:
            if b % flow.shape[0]:
                raise ValueError(f"video batch {b} is not a multiple of the flow batch {flow.shape[0]}")
            flow = flow.repeat(b // flow.shape[0], 1, 1)
        attn_out = self.attn(
            self.norm_video(hidden_states),
            encoder_hidden_states=self.norm_flow(flow),
            image_rotary_emb=image_rotary_emb,
        )
        hidden_states = hidden_states + attn_out
        return hidden_states + self.ff(self.norm_ff(hidden_states))
