"""What each guided model can generate: sizes, frame counts and fps per family and variant.

Pure rules (stdlib only, no numpy, no torch), shared by the generator (backend/wan/limits.py and
backend/guided/limits.py re-export them and read a checkpoint's real configs) and by the add-on (the
sidebar offers only these sizes and frame counts; the settings check refuses the rest before export).

Conventions: sizes are pixels; a size pair is (height, width) unless a name says `wh`; frames are
frames of the generated video; fps frames per second of the motion the model was trained on.

Families and variants (a variant is told apart by the checkpoint's configs, see `limits_from_configs`):
- "cogvideox": "1.0" (CogVideoX-5b-I2V: exactly 720x480, 49 frames, 8 fps; learned positional
  embeddings) and "1.5" (CogVideoX1.5-5B-I2V: multiples of 16 up to the RoPE grid, 16N+1 frames up to
  161, trained at min side 768 / max side <= 1360, 16 fps).
- "wan": "2.1-i2v" (Wan2.1-I2V-14B-480P/720P and Wan-Move-14B-480P), "2.2-i2v-a14b" (two experts) and
  "2.2-ti2v-5b"; see WanLimits.
The generator reads the variant from the checkpoint; the panel, which loads no model, is told it by
the Model Variant setting (VARIANTS, DEFAULT_VARIANT: the family's default checkpoint), and uses
`variant_limits`, the limits of that variant's real configs (NOMINAL_CONFIGS hold the keys that matter).
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("cogvideox", "wan")

# ------------------------------------------------------------------------------------------------
# Wan 2.x

TRAINED = {
    "2.1-i2v": {"sizes": ((480, 832), (720, 1280)), "frames": 81, "fps": 16.0},
    "2.2-i2v-a14b": {"sizes": ((480, 832), (720, 1280)), "frames": 81, "fps": 16.0},
    "2.2-ti2v-5b": {"sizes": ((704, 1280),), "frames": 121, "fps": 24.0},
}


def wan_variant(transformer_config: dict, model_index: dict | None = None) -> str:
    """'2.1-i2v', '2.2-i2v-a14b' or '2.2-ti2v-5b' from the configs (transformer/config.json and
    model_index.json as dicts)."""
    model_index = model_index or {}
    if model_index.get("expand_timesteps") or transformer_config.get("in_channels") == transformer_config.get(
        "out_channels"
    ):
        return "2.2-ti2v-5b"
    if model_index.get("boundary_ratio") is not None or model_index.get("transformer_2", [None])[0]:
        return "2.2-i2v-a14b"
    return "2.1-i2v"


@dataclass
class WanLimits:
    """Sizes and frame counts a Wan checkpoint can do: sides multiples of `multiple` up to
    `max_side`, `frame_step` N + 1 frames up to `max_frames`; `trained` what it was trained at."""

    variant: str
    multiple: int
    max_side: int
    frame_step: int
    max_frames: int

    @property
    def trained(self) -> dict:
        return TRAINED[self.variant]

    @property
    def fps(self) -> float:
        """The fps of the motion it was trained on."""
        return self.trained["fps"]

    @property
    def trained_frames(self) -> int:
        return self.trained["frames"]

    def valid_sizes(self) -> list[tuple[int, int]]:
        """(height, width) sizes it was trained at, both orientations."""
        sizes = []
        for h, w in self.trained["sizes"]:
            sizes += [(h, w), (w, h)]
        return sizes

    def describe(self) -> str:
        t = self.trained
        sizes = ", ".join(f"{w}x{h}" for h, w in t["sizes"])
        return (
            f"Wan {self.variant}: width and height multiples of {self.multiple} up to {self.max_side}, "
            f"{self.frame_step}N+1 frames up to {self.max_frames}; trained at {sizes} (either orientation), "
            f"{t['frames']} frames at {t['fps']:g} fps"
        )

    def check(self, height: int, width: int, num_frames: int, fps: float | None = None) -> list[str]:
        """ValueError for what it cannot do; warnings for what it was not trained at."""
        what = f"{width}x{height} pixels, {num_frames} frames"
        if height % self.multiple or width % self.multiple or max(height, width) > self.max_side:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        if (num_frames - 1) % self.frame_step or not 1 < num_frames <= self.max_frames:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        t, warnings = self.trained, []
        if (height, width) not in self.valid_sizes():
            warnings.append(
                f"{width}x{height} is not a size Wan {self.variant} was trained at: expect weaker results"
            )
        if num_frames != t["frames"]:
            warnings.append(f"Wan {self.variant} was trained at {t['frames']} frames, not {num_frames}")
        if fps is not None and abs(float(fps) - t["fps"]) > 0.01:
            warnings.append(
                f"Wan {self.variant} makes {t['fps']:g} fps motion; the job plays it at {fps:g} fps"
            )
        return warnings


def wan_checkpoint_limits(
    transformer_config: dict, vae_config: dict, model_index: dict | None = None
) -> WanLimits:
    """Limits from transformer/config.json, vae/config.json and model_index.json (dicts)."""
    variant = wan_variant(transformer_config, model_index)
    patch = transformer_config.get("patch_size", [1, 2, 2])
    spatial = int(vae_config.get("scale_factor_spatial", 8))
    temporal = int(vae_config.get("scale_factor_temporal", 4))
    rope = int(transformer_config.get("rope_max_seq_len", 1024))
    multiple = spatial * int(patch[1])
    return WanLimits(
        variant=variant,
        multiple=multiple,
        max_side=min(rope * multiple, 4096),
        frame_step=temporal,
        max_frames=min(temporal * (rope * int(patch[0]) - 1) + 1, 1024 // temporal * temporal + 1),
    )


# ------------------------------------------------------------------------------------------------
# CogVideoX

# CogVideoX 1.5 model card: trained at min(W, H) = 768, max(W, H) <= 1360, 16N+1 frames (81 or 161).
V15_TRAINED_MIN_SIDE = 768
V15_TRAINED_MAX_SIDE = 1360
V15_MAX_FRAMES = 161
V15_TRAINED_SIZES = ((768, 1360),)  # (height, width), both orientations
COGVIDEOX_FPS = {"1.0": 8.0, "1.5": 16.0}  # the model cards' export fps


@dataclass
class CheckpointLimits:
    """What sizes and frame counts a CogVideoX checkpoint can generate, read from its configs.

    version "1.0": `fixed_size` (height, width) and `fixed_frames` are set (learned positional
    embeddings). version "1.5": sides are multiples of `multiple` up to `max_size` (the RoPE grid),
    frames are `frame_step` * N + 1 up to `max_frames`."""

    version: str
    fixed_size: tuple[int, int] | None = None
    fixed_frames: int | None = None
    multiple: int = 16
    max_size: tuple[int, int] | None = None
    frame_step: int = 8
    max_frames: int | None = None

    @property
    def variant(self) -> str:
        return self.version

    @property
    def fps(self) -> float:
        """The fps of the motion it was trained on (8 for 1.0, 16 for 1.5)."""
        return COGVIDEOX_FPS.get(self.version, 8.0)

    @property
    def trained_frames(self) -> int:
        if self.fixed_frames is not None:
            return self.fixed_frames
        return 81 if self.version == "1.5" else self.max_frames

    def valid_sizes(self) -> list[tuple[int, int]]:
        """(height, width) sizes it was trained at (1.5: both orientations)."""
        if self.fixed_size is not None or self.version != "1.5":
            return [self.fixed_size or self.max_size]
        sizes = []
        for h, w in V15_TRAINED_SIZES:
            sizes += [(h, w), (w, h)]
        return sizes

    def describe(self) -> str:
        if self.fixed_size is not None:
            h, w = self.fixed_size
            return f"CogVideoX {self.version}: exactly {w}x{h} pixels and {self.fixed_frames} frames"
        mh, mw = self.max_size
        return (
            f"CogVideoX {self.version}: width and height multiples of {self.multiple} up to {mw}x{mh} "
            f"pixels (trained at min side {V15_TRAINED_MIN_SIDE}, max side <= {V15_TRAINED_MAX_SIDE}), "
            f"{self.frame_step}N+1 frames up to {self.max_frames} (e.g. 81)"
        )

    def check(self, height: int, width: int, num_frames: int, fps: float | None = None) -> list[str]:
        """Raise ValueError for a size or frame count the checkpoint cannot do; return warnings for
        sizes it can do but was not trained at. `fps` is accepted for symmetry with WanLimits and
        not checked (the generator never warned about it)."""
        what = f"{width}x{height} pixels, {num_frames} frames"
        if self.fixed_size is not None:
            if (height, width) != self.fixed_size or num_frames != self.fixed_frames:
                raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
            return []
        mh, mw = self.max_size
        if height % self.multiple or width % self.multiple or height > mh or width > mw:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        if (num_frames - 1) % self.frame_step or not self.frame_step < num_frames <= self.max_frames:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        warnings = []
        if min(height, width) < V15_TRAINED_MIN_SIDE or max(height, width) > V15_TRAINED_MAX_SIDE:
            warnings.append(
                f"{width}x{height} is outside the size CogVideoX 1.5 was trained at (min side "
                f"{V15_TRAINED_MIN_SIDE}, max side <= {V15_TRAINED_MAX_SIDE}): expect weaker results"
            )
        return warnings


def cogvideox_checkpoint_limits(transformer_config: dict, vae_config: dict) -> CheckpointLimits:
    """Read a checkpoint's size and frame limits from its transformer and VAE configs (dicts as in
    their config.json), without loading any weights."""
    spatial = 2 ** (len(vae_config.get("block_out_channels", (128, 256, 256, 512))) - 1)
    patch = int(transformer_config.get("patch_size", 2))
    sample_h = int(transformer_config.get("sample_height", 60)) * spatial
    sample_w = int(transformer_config.get("sample_width", 90)) * spatial
    sample_frames = int(transformer_config.get("sample_frames", 49))
    if transformer_config.get("patch_size_t") is None:
        if transformer_config.get("use_learned_positional_embeddings", True):
            return CheckpointLimits("1.0", fixed_size=(sample_h, sample_w), fixed_frames=sample_frames)
        # 1.0 without learned embeddings (RoPE only): flexible up to the sample size.
        return CheckpointLimits(
            "1.0",
            multiple=spatial * patch,
            max_size=(sample_h, sample_w),
            frame_step=8,
            max_frames=sample_frames,
        )
    return CheckpointLimits(
        "1.5",
        multiple=spatial * patch,
        max_size=(sample_h, sample_w),
        frame_step=16,
        max_frames=V15_MAX_FRAMES,
    )


# ------------------------------------------------------------------------------------------------
# Families, variants, and what the panel offers

ModelLimits = WanLimits | CheckpointLimits


@dataclass(frozen=True)
class Variant:
    """One variant of a family: `name` as the generator reports it, a UI label, the public
    checkpoint(s) it stands for (the first is the default one)."""

    family: str
    name: str
    label: str
    checkpoints: tuple[str, ...]


VARIANTS = {
    "cogvideox": (
        Variant("cogvideox", "1.0", "CogVideoX 5b-I2V", ("THUDM/CogVideoX-5b-I2V",)),
        Variant("cogvideox", "1.5", "CogVideoX 1.5 5B-I2V", ("THUDM/CogVideoX1.5-5B-I2V",)),
    ),
    "wan": (
        Variant("wan", "2.2-i2v-a14b", "Wan 2.2 I2V-A14B", ("Wan-AI/Wan2.2-I2V-A14B-Diffusers",)),
        Variant(
            "wan",
            "2.1-i2v",
            "Wan 2.1 I2V-14B / Wan-Move",
            (
                "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
                "Ruihang/Wan-Move-14B-480P",
            ),
        ),
        Variant("wan", "2.2-ti2v-5b", "Wan 2.2 TI2V-5B", ("Wan-AI/Wan2.2-TI2V-5B-Diffusers",)),
    ),
}
# The variant of the checkpoint a job without `model` gets (backend: checkpoints.DEFAULT_MODEL for
# CogVideoX, modes/guided.WAN_DEFAULT_MODEL for Wan).
DEFAULT_VARIANT = {"cogvideox": "1.0", "wan": "2.2-i2v-a14b"}

# The keys of each variant's real configs (backend/runtime/configs/*.json) that decide its limits:
# (transformer config, vae config, model_index).
NOMINAL_CONFIGS = {
    ("cogvideox", "1.0"): (
        {"patch_size": 2, "sample_height": 60, "sample_width": 90, "sample_frames": 49,
         "use_learned_positional_embeddings": True},
        {"block_out_channels": [128, 256, 256, 512]},
        None,
    ),
    ("cogvideox", "1.5"): (
        {"patch_size": 2, "patch_size_t": 2, "sample_height": 300, "sample_width": 300, "sample_frames": 81,
         "use_learned_positional_embeddings": False},
        {"block_out_channels": [128, 256, 256, 512]},
        None,
    ),
    ("wan", "2.1-i2v"): (
        {"patch_size": [1, 2, 2], "rope_max_seq_len": 1024, "in_channels": 36, "out_channels": 16},
        {"scale_factor_spatial": 8, "scale_factor_temporal": 4},
        None,
    ),
    ("wan", "2.2-i2v-a14b"): (
        {"patch_size": [1, 2, 2], "rope_max_seq_len": 1024, "in_channels": 36, "out_channels": 16},
        {"scale_factor_spatial": 8, "scale_factor_temporal": 4},
        {"boundary_ratio": 0.9, "transformer_2": ["diffusers", "WanTransformer3DModel"]},
    ),
    ("wan", "2.2-ti2v-5b"): (
        {"patch_size": [1, 2, 2], "rope_max_seq_len": 1024, "in_channels": 48, "out_channels": 48},
        {"scale_factor_spatial": 16, "scale_factor_temporal": 4},
        {"expand_timesteps": True},
    ),
}  # fmt: skip


def variant(family: str, name: str) -> Variant:
    """The Variant `name` of `family`; ValueError naming the known ones otherwise."""
    for v in VARIANTS.get(family, ()):
        if v.name == name:
            return v
    known = ", ".join(v.name for v in VARIANTS.get(family, ()))
    raise ValueError(f"{family!r} has no variant {name!r}; known: {known or 'none (unknown family)'}")


def limits_from_configs(
    family: str, transformer_config: dict, vae_config: dict, model_index: dict | None = None
) -> ModelLimits:
    """A checkpoint's limits from its configs (dicts), for either family."""
    if family == "wan":
        return wan_checkpoint_limits(transformer_config, vae_config, model_index)
    if family == "cogvideox":
        return cogvideox_checkpoint_limits(transformer_config, vae_config)
    raise ValueError(f"model family must be one of {', '.join(FAMILIES)}, got {family!r}")


def variant_limits(family: str, name: str) -> ModelLimits:
    """The limits of a variant's real configs (what the panel offers without reading any folder)."""
    variant(family, name)
    transformer, vae, index = NOMINAL_CONFIGS[(family, name)]
    return limits_from_configs(family, dict(transformer), dict(vae), dict(index) if index else None)


def size_choices(limits: ModelLimits) -> list[tuple[int, int]]:
    """(width, height) sizes to offer, the trained sizes in the order of `valid_sizes`: e.g. Wan 2.1
    832x480, 480x832, 1280x720, 720x1280; CogVideoX 1.0 720x480 only."""
    return [(w, h) for h, w in limits.valid_sizes()]


def frame_choices(limits: ModelLimits) -> list[int]:
    """Frame counts to offer, ascending, ending at the trained count: CogVideoX 1.0 49 only; 1.5 every
    16N+1 up to 161; Wan whole seconds at the trained fps up to the trained count (16 fps: 17 .. 81,
    TI2V-5B at 24 fps: 25 .. 121). Each is one the model can do."""
    if isinstance(limits, CheckpointLimits):
        if limits.fixed_frames is not None:
            return [limits.fixed_frames]
        return list(range(limits.frame_step + 1, limits.max_frames + 1, limits.frame_step))
    step = int(round(limits.fps))
    if step % limits.frame_step:
        step = limits.frame_step
    return list(range(step + 1, limits.trained_frames + 1, step))


def refusal(limits: ModelLimits, label: str, width: int, height: int, num_frames: int) -> str:
    """ "" when the model can generate width x height x num_frames, else a sentence naming what it
    can do, for the settings check (`label`: the model as the panel names it)."""
    try:
        limits.check(height, width, num_frames)
    except ValueError:
        sizes = ", ".join(f"{w}x{h}" for w, h in size_choices(limits))
        frames = frame_choices(limits)
        shown = str(frames[0]) if len(frames) == 1 else f"{frames[0]}-{frames[-1]}, e.g. {frames[-1]}"
        return (
            f"{label} cannot make {width}x{height} with {num_frames} frames: it can do {limits.describe()}; "
            f"pick a Size ({sizes}) and Frames ({shown})"
        )
    return ""


# ------------------------------------------------------------------------------------------------
# Time-to-Move defaults and the transformer file rule (the panel shows and checks them)

TTM_DEFAULTS = {"wan": (3, 7), "cogvideox": (4, 9)}  # (tweak_index, tstrong_index) of 50 steps
TTM_REFERENCE_STEPS = 50


def ttm_indices(family: str, steps: int, tweak_index: int = -1, tstrong_index: int = -1) -> tuple[int, int]:
    """(tweak, tstrong) step indices; -1 = the family's default scaled from 50 steps to `steps`.
    Raises ValueError unless 0 <= tweak <= tstrong <= steps and tweak < steps."""
    d_tweak, d_strong = TTM_DEFAULTS[family]
    scale = steps / TTM_REFERENCE_STEPS
    tweak = round(d_tweak * scale) if tweak_index < 0 else int(tweak_index)
    strong = max(tweak, round(d_strong * scale)) if tstrong_index < 0 else int(tstrong_index)
    if not 0 <= tweak <= strong <= steps or tweak >= steps:
        raise ValueError(
            f"Time-to-Move needs 0 <= tweak_index ({tweak}) <= tstrong_index ({strong}) <= steps ({steps}) "
            "and tweak_index < steps"
        )
    return tweak, strong


PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
CONVERT_HINT = (
    "Convert it to safetensors first (pickled .pth files can run code when loaded), e.g. `python -c "
    "\"import torch, safetensors.torch as st; st.save_file(torch.load('in.pth', weights_only=True), "
    "'out.safetensors')\"`, and point the job at the .safetensors file."
)


# ------------------------------------------------------------------------------------------------
# A local checkpoint folder's variant (the add-on's check before Generate; the generator reads the same)


def folder_variant(family: str, folder) -> str | None:
    """The variant of a diffusers-layout checkpoint folder from its transformer/config.json,
    vae/config.json and model_index.json; None when they cannot be read (the generator says why)."""
    import json
    from pathlib import Path

    def read(*parts):
        path = Path(folder, *parts)
        try:
            if path.stat().st_size > 1 << 20:
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    transformer, vae = read("transformer", "config.json"), read("vae", "config.json")
    if transformer is None or vae is None:
        return None
    try:
        return limits_from_configs(family, transformer, vae, read("model_index.json")).variant
    except (TypeError, ValueError, IndexError, KeyError):
        return None
