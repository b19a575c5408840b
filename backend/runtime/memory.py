"""The memory planner: dtype, offloading and VAE tiling/slicing from the free GPU memory.

`plan_memory(free_bytes, spec)` is a pure function: it estimates the peak memory of each phase
of a guided run (T5 prompt encoding, the denoising loop, the VAE encode of the layout prior and the
final VAE decode) for each candidate setting, from parameter counts and activation sizes, and
picks the fastest setting that fits with a safety margin. Settings the user fixed (dtype, offload,
tiling) are kept; only "auto" ones are chosen.

Estimates (bytes; b = bytes per element of the dtype):
- weights: parameters x b (CogVideoX-5b-I2V: transformer 5.57 G, VAE 215.6 M, T5-XXL 4.89 G).
- denoising: tokens N = latent_frames/patch_t x (h/2) x (w/2) + 226 text tokens, batch 2 with
  classifier-free guidance, hidden D = heads x head_dim; live activations of one block ~
  ACT_TRANSFORMER x 2 x N x D x b (memory-efficient attention: no N x N matrix).
- VAE decode/encode: the CogVideoX VAE works on two latent frames (8 video frames) at a time, so its
  peak grows with the frame area, not the frame count: VAE_BYTES_PER_PIXEL x H x W x b / 4, measured
  on CPU (benchmarks/memory_plan.py --measure-vae); tiling works on 240x360 tiles (+ overlap).
Wan (family "wan", backend/runtime/wan_memory.py builds its ModelSpec from the real configs): the
video tokens alone form the self-attention sequence (text and CLIP tokens enter by cross-attention),
the conditional and unconditional passes run one after another (batch 1), Wan 2.2 A14B has two
experts of which one runs at a time (offload "none" keeps both on the GPU, the others hold one), and
`fp8` stores the transformer weights in float8_e4m3fn, upcast per layer to bf16 for compute
(diffusers' layerwise casting: 1 byte per weight), offered only on compute capability 8.9+.
Offload: "none" keeps transformer and VAE on the GPU; "model" keeps one component at a time
(enable_model_cpu_offload); "group" streams transformer blocks (enable_group_offload, block level);
"sequential" streams every layer (slowest, smallest). Pure: no torch; placing a pipeline as
a plan says is backend/runtime/placement.py, the real configs are backend/runtime/configs/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .devices import pick_dtype

GiB = 1024**3
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# Parameter (+ persistent buffer) counts of the public checkpoints, counted on the meta device from
# their real configs (backend/runtime/configs/, counted by real_configs.real_parameter_counts;
# benchmarks/memory_plan.py prints them; tests/guided/test_memory.py checks them).
# The 5b-I2V transformer holds 5_570_479_680 parameters + a 54_607_872-value learned positional table.
COGVIDEOX_5B_I2V_TRANSFORMER = 5_625_087_552
COGVIDEOX_15_5B_I2V_TRANSFORMER = 5_571_594_880
COGVIDEOX_VAE = 215_583_907
T5_V1_1_XXL_ENCODER = 4_893_906_944
# Live activations of one transformer block, in units of (batch x tokens x hidden x bytes):
# input, two norms, q/k/v, attention output, the 4x feed-forward hidden and its gelu (~12), plus the
# float32 copies of q and k that diffusers' RoPE makes (~4 more at bf16).
ACT_TRANSFORMER = 16
# VAE activation peak per output pixel at 4 bytes/element, measured on the CPU with the real VAE
# config: decode of 3 latent frames (its largest frame batch) at 96x64 -> 530 MB, 192x128 -> 1746 MB
# above the weights: ~66 KB per pixel + ~124 MB; encode about half of that (34 KB per pixel).
VAE_BYTES_PER_PIXEL_FP32 = 66_000
VAE_FIXED_BYTES_FP32 = 124 * 1024**2
VAE_ENCODE_FRACTION = 0.55
VAE_TILE = (240, 360)  # AutoencoderKLCogVideoX tile_sample_min_height/width for the 480x720 VAE
# Wan VAEs (AutoencoderKLWan; decode one latent frame = 4 video frames at a time with a causal
# cache): activation peak per output pixel and fixed part at fp32, measured on the CPU with the real
# configs and random weights (decode of 3 latent frames at 64x64 and 128x128 pixels: 2.1 207 / 516
# MB, 2.2 285 / 534 MB above the weights; a 2.1 encode at 128x128: 473 MB, ~0.9 of the decode);
# tiles are 256x256 pixels.
WAN_VAE_PEAK = {"wan2.1": (26_400, 104 * 1024**2), "wan2.2": (21_200, 202 * 1024**2)}
WAN_VAE_ENCODE_FRACTION = 0.9
WAN_VAE_TILE = (256, 256)
FP8_MIN_CAPABILITY = (8, 9)
# Kept free for the CUDA context, allocator fragmentation and cuDNN workspaces.
RESERVE_BYTES = int(1.5 * GiB)
RESERVE_FRACTION = 0.08
OFFLOADS = ("none", "model", "group", "sequential")


@dataclass(frozen=True)
class ModelSpec:
    """What the plan needs to know about a checkpoint and the requested video."""

    transformer_params: int = COGVIDEOX_5B_I2V_TRANSFORMER
    vae_params: int = COGVIDEOX_VAE
    text_encoder_params: int = T5_V1_1_XXL_ENCODER
    num_layers: int = 42
    hidden: int = 48 * 64
    patch_size: int = 2
    patch_size_t: int | None = None
    text_tokens: int = 226
    height: int = 480
    width: int = 720
    num_frames: int = 49
    guidance: bool = True
    encode_prior: bool = True  # SDEdit encodes the layout prior (strength < 1)
    text_encoder_needed: bool = True  # False when the prompt embeddings are cached
    vae_channels: int = 128  # the VAE's full-resolution channels (block_out_channels[0])
    family: str = "cogvideox"  # "cogvideox" | "wan"
    latent_channels: int = 16
    spatial: int = 8  # VAE spatial compression
    experts: int = 1  # Wan 2.2 A14B: 2 transformers of transformer_params each, one runs at a time
    image_encoder_params: int = 0  # Wan 2.1: CLIP ViT-H/14, run once before the loop
    vae_kind: str = "cogvideox"  # "cogvideox" | "wan2.1" | "wan2.2"

    @classmethod
    def from_configs(
        cls,
        transformer_config: dict,
        height: int,
        width: int,
        num_frames: int,
        vae_config: dict | None = None,
        **kw,
    ) -> ModelSpec:
        """Activation-relevant sizes from the transformer's (and VAE's) config.json; parameter counts
        stay the 5B ones unless given."""
        if vae_config is not None:
            kw.setdefault("vae_channels", int(vae_config.get("block_out_channels", [128])[0]))
        return cls(
            num_layers=int(transformer_config.get("num_layers", 42)),
            hidden=int(transformer_config.get("num_attention_heads", 48))
            * int(transformer_config.get("attention_head_dim", 64)),
            patch_size=int(transformer_config.get("patch_size", 2)),
            patch_size_t=transformer_config.get("patch_size_t"),
            text_tokens=int(transformer_config.get("max_text_seq_length", 226)),
            height=height,
            width=width,
            num_frames=num_frames,
            **kw,
        )

    @property
    def latent_frames(self) -> int:
        n = (self.num_frames - 1) // 4 + 1
        if self.patch_size_t:
            n += n % self.patch_size_t
        return n

    def latent_bytes(self, b: int) -> int:
        s = self.spatial
        return self.latent_frames * self.latent_channels * (self.height // s) * (self.width // s) * b

    def tokens(self) -> int:
        """Self-attention sequence length: video tokens (+ the text tokens for CogVideoX's joint
        attention)."""
        frames = self.latent_frames // (self.patch_size_t or 1)
        s = self.spatial
        grid = (self.height // s // self.patch_size) * (self.width // s // self.patch_size)
        return frames * grid + (self.text_tokens if self.family == "cogvideox" else 0)

    @property
    def cfg_batch(self) -> int:
        """CogVideoX batches the guided passes (2); Wan runs them one after another (1)."""
        return 2 if self.guidance and self.family == "cogvideox" else 1


@dataclass
class MemoryPlan:
    """A chosen setting and its estimated peaks (bytes on the accelerator)."""

    device: str
    dtype: str
    offload: str
    vae_tiling: bool
    vae_slicing: bool
    peak_bytes: int
    phases: dict = field(default_factory=dict)
    free_bytes: int | None = None
    fits: bool = True
    reasons: list[str] = field(default_factory=list)
    fp8: bool = False  # transformer weights stored in float8 (layerwise casting)
    host_bytes: int = 0  # weights held in CPU RAM by the offloading

    def summary(self) -> str:
        gb = self.peak_bytes / GiB
        free = f" of {self.free_bytes / GiB:.1f} GiB free" if self.free_bytes is not None else ""
        return (
            f"{self.device} {self.dtype}{' + fp8 weights' if self.fp8 else ''}, offload {self.offload}, "
            f"VAE tiling {'on' if self.vae_tiling else 'off'}, "
            f"slicing {'on' if self.vae_slicing else 'off'}: peak ~{gb:.1f} GiB{free}"
        )

    def as_dict(self) -> dict:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "offload": self.offload,
            "vae_tiling": self.vae_tiling,
            "vae_slicing": self.vae_slicing,
            "peak_gib": round(self.peak_bytes / GiB, 2),
            "phases_gib": {k: round(v / GiB, 2) for k, v in self.phases.items()},
            "free_gib": None if self.free_bytes is None else round(self.free_bytes / GiB, 2),
            "fits": self.fits,
            "fp8": self.fp8,
            "host_gib": round(self.host_bytes / GiB, 2),
            "reasons": list(self.reasons),
        }


def vae_peak_bytes(spec: ModelSpec, b: int, tiling: bool) -> int:
    """Activation peak of a VAE decode (or encode) of the whole video."""
    h, w = spec.height, spec.width
    if spec.vae_kind in WAN_VAE_PEAK:
        per_pixel, fixed = WAN_VAE_PEAK[spec.vae_kind]
        if tiling:
            h, w = min(h, WAN_VAE_TILE[0]), min(w, WAN_VAE_TILE[1])
        frames_out = 3 * spec.num_frames * spec.height * spec.width * b
        return int((per_pixel * h * w + fixed) * b / 4) + frames_out
    if tiling:
        th, tw = VAE_TILE
        h, w = min(h, int(th * 1.25)), min(w, int(tw * 1.25))  # one tile plus its overlap
    frames_out = 3 * spec.num_frames * spec.height * spec.width * b  # the decoded video itself
    per_pixel = VAE_BYTES_PER_PIXEL_FP32 * spec.vae_channels / 128  # activations scale with the width
    return int((per_pixel * h * w + VAE_FIXED_BYTES_FP32) * b / 4) + frames_out


def phase_peaks(spec: ModelSpec, dtype: str, offload: str, tiling: bool, fp8: bool = False) -> dict:
    """Estimated accelerator peak (bytes) of each phase for one setting (`fp8`: 1-byte transformer
    weights, one layer upcast at a time)."""
    b = DTYPE_BYTES[dtype]
    w_t = spec.transformer_params * (1 if fp8 else b)
    w_v, w_te = spec.vae_params * b, spec.text_encoder_params * b
    batch = spec.cfg_batch
    act_t = ACT_TRANSFORMER * batch * spec.tokens() * spec.hidden * b + 4 * batch * spec.latent_bytes(4)
    act_v = vae_peak_bytes(spec, b, tiling)
    block = w_t // max(spec.num_layers, 1)
    if fp8:
        act_t += 2 * block * b  # one block upcast to the compute dtype
    if offload == "none":
        resident_t = resident_v = spec.experts * w_t + w_v
    elif offload == "model":
        # the VAE encoded the image before the loop and stays until the decode offloads the transformer
        resident_t, resident_v = w_t + w_v, w_v
    elif offload == "group":
        # two blocks in flight (prefetch) plus the non-block layers (~3% of the transformer); the VAE
        # is excluded from group offloading and stays on the device
        resident_t, resident_v = 2 * block + int(0.03 * w_t) + w_v, w_v
    elif offload == "sequential":
        resident_t, resident_v = block // 4, w_v // 16
    else:
        raise ValueError(f"unknown offload {offload!r}; expected one of {OFFLOADS}")
    phases = {"denoise": resident_t + act_t, "decode": resident_v + act_v}
    if spec.image_encoder_params and offload in ("none", "model"):
        phases["image_encoder"] = spec.image_encoder_params * b + (resident_v if offload == "none" else 0)
    if spec.encode_prior:
        fraction = WAN_VAE_ENCODE_FRACTION if spec.vae_kind in WAN_VAE_PEAK else VAE_ENCODE_FRACTION
        phases["encode_prior"] = resident_v + int(fraction * act_v)
    if spec.text_encoder_needed:
        # The text encoder runs alone, first, and is freed before the transformer is loaded; with
        # group/sequential offload it runs on the CPU (backend/modes/guided.py).
        if offload in ("none", "model"):
            phases["text_encoder"] = w_te + int(0.25 * GiB)
    return phases


def _host_bytes(spec: ModelSpec, dtype: str, offload: str, fp8: bool, device: str) -> int:
    """Transformer weights an offloading setting keeps in CPU RAM."""
    if offload == "none" or device == "cpu":
        return 0
    return spec.transformer_params * (1 if fp8 else DTYPE_BYTES[dtype]) * spec.experts


def plan_memory(
    free_bytes: int | None,
    spec: ModelSpec | None = None,
    *,
    device: str = "cuda",
    dtype: str = "auto",
    offload: str = "auto",
    vae_tiling: str = "auto",
    bf16_supported: bool = True,
    fp8: str = "auto",
    compute_capability: tuple[int, int] | None = None,
    host_free_bytes: int | None = None,
) -> MemoryPlan:
    """Pick dtype, offload and VAE tiling/slicing for `free_bytes` of accelerator memory.

    Fixed choices are kept; "auto" ones are chosen as the first candidate, fastest first, whose
    largest phase fits in free_bytes minus a reserve (1.5 GiB + 8%). On the CPU nothing is
    offloaded. If nothing fits, the smallest candidate is returned with fits=False."""
    spec = spec or ModelSpec()
    reasons = []
    dt = pick_dtype(device, dtype, bf16_supported)
    if dtype == "auto":
        no_bf16 = device == "cuda" and not bf16_supported
        reasons.append(f"dtype {dt} chosen for {device}" + (" (this GPU has no bf16)" if no_bf16 else ""))
    if device == "cpu":
        offloads = ["none"]
        if offload not in ("auto", "none"):
            reasons.append(f"offload {offload} ignored on the CPU")
    else:
        offloads = list(OFFLOADS) if offload == "auto" else [offload]
    tilings = [False, True] if vae_tiling == "auto" else [vae_tiling == "on"]
    fp8_ok = (
        device == "cuda"
        and compute_capability is not None
        and tuple(compute_capability) >= FP8_MIN_CAPABILITY
    )
    fp8s = [False]
    if spec.family == "wan" and fp8 != "off":
        if fp8_ok:
            fp8s = [True] if fp8 == "on" else [False, True]
        elif device == "cuda":
            cc = "unknown" if compute_capability is None else "{}.{}".format(*compute_capability)
            reasons.append(
                f"fp8 weights need compute capability {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+ "
                f"(this GPU: {cc}): bf16 weights with offloading instead"
            )
    if len(fp8s) == 2:  # lossless settings first, then fp8, sequential last
        lossless = [o for o in offloads if o != "sequential"]
        order = [(o, False) for o in lossless] + [(o, True) for o in lossless]
        order += [(o, False) for o in offloads if o == "sequential"]
    else:
        order = [(o, fp8s[0]) for o in offloads]
    candidates = [(o, t, q) for o, q in order for t in tilings]
    budget = None if free_bytes is None else int(free_bytes * (1 - RESERVE_FRACTION)) - RESERVE_BYTES
    chosen = None
    for o, t, q in candidates:
        phases = phase_peaks(spec, dt, o, t, q)
        if host_free_bytes is not None and _host_bytes(spec, dt, o, q, device) > 0.9 * host_free_bytes:
            continue
        if budget is None or max(phases.values()) <= budget:
            chosen = (o, t, q, phases)
            break
    fits = chosen is not None
    if chosen is None:
        o, t, q = candidates[-1]
        chosen = (o, t, q, phase_peaks(spec, dt, o, t, q))
    o, t, q, phases = chosen
    if q and fits:
        reasons.append("fp8 weights (layerwise casting): no bf16 setting fits")
    if offload == "auto" and device != "cpu" and fits:
        reasons.append(f"offload {o} is the fastest setting that fits")
    if vae_tiling == "auto" and t and fits:
        reasons.append("VAE tiling on: the untiled VAE decode would not fit")
    if not fits:
        need = max(phases.values())
        held = _host_bytes(spec, dt, o, q, device)
        if budget is not None and need <= budget and host_free_bytes is not None:
            reasons.append(
                f"offload {o} fits the GPU but keeps ~{held / GiB:.1f} GiB of weights in CPU RAM, more than "
                f"the {host_free_bytes / GiB:.1f} GiB free: expect the machine to swap or run out of "
                "memory; add RAM, use a GPU with compute capability 8.9+ (fp8 weights), or a smaller model"
            )
        else:
            reasons.append(
                f"even offload {o} with VAE tiling {'on' if t else 'off'} needs ~{need / GiB:.1f} GiB, "
                f"more than the {free_bytes / GiB:.1f} GiB free: expect an out-of-memory error; "
                "lower the resolution or frames"
            )
    slicing = t or o in ("group", "sequential")
    host = _host_bytes(spec, dt, o, q, device)
    if host and spec.experts > 1:
        reasons.append(f"offload {o} keeps ~{host / GiB:.0f} GiB of expert weights in CPU RAM")
    return MemoryPlan(
        device=device,
        dtype=dt,
        offload=o,
        vae_tiling=t,
        vae_slicing=slicing,
        peak_bytes=max(phases.values()),
        phases=phases,
        free_bytes=free_bytes,
        fits=fits,
        reasons=reasons,
        fp8=q,
        host_bytes=host,
    )
