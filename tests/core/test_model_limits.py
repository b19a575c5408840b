"""blender_animate/model_limits.py: each family's sizes, frame counts and fps, the same rules the
generator applies (backend/wan/limits.py, backend/guided/limits.py) to the real configs."""

from __future__ import annotations

import pytest

from backend.guided import limits as cog_backend
from backend.runtime import real_configs
from backend.wan import limits as wan_backend
from blender_animate import model_limits as ml

ALL = [(f, v.name) for f in ml.FAMILIES for v in ml.VARIANTS[f]]
# The model_index.json keys that tell the Wan 2.2 checkpoints apart (the real configs dir holds
# transformer and VAE configs only).
WAN_INDEX = {
    "2.1-i2v": {},
    "2.2-i2v-a14b": {"boundary_ratio": 0.9},
    "2.2-ti2v-5b": {"expand_timesteps": True},
}


def _real_limits(family: str, name: str):
    """Limits the generator computes from the real configs of a variant."""
    if family == "wan":
        return wan_backend.checkpoint_limits(
            real_configs.wan_transformer(name), real_configs.wan_vae(name), WAN_INDEX[name]
        )
    transformer = (
        real_configs.cogvideox_5b_i2v_transformer()
        if name == "1.0"
        else real_configs.cogvideox_15_5b_i2v_transformer()
    )
    return cog_backend.checkpoint_limits(transformer, real_configs.cogvideox_vae())


@pytest.mark.parametrize(("family", "name"), ALL)
def test_the_panels_limits_are_the_generators_of_the_real_configs(family, name):
    nominal = ml.variant_limits(family, name)
    assert nominal == _real_limits(family, name)
    assert nominal.variant == name
    # The backend modules hand out the core's classes, not copies.
    assert wan_backend.WanLimits is ml.WanLimits and cog_backend.CheckpointLimits is ml.CheckpointLimits
    # Every size and frame count the panel offers is one the generator accepts without a size warning.
    for w, h in ml.size_choices(nominal):
        warnings = nominal.check(h, w, nominal.trained_frames, nominal.fps)
        assert not [m for m in warnings if "size" in m], (w, h, warnings)
    for frames in ml.frame_choices(nominal):
        w, h = ml.size_choices(nominal)[0]
        nominal.check(h, w, frames)  # raises when the model cannot do it
        assert frames % 4 == 1  # the job schema's 4k+1 for the guided mode
    assert nominal.trained_frames in ml.frame_choices(nominal)


def test_sizes_frames_and_fps_per_variant():
    def offer(family, name):
        lim = ml.variant_limits(family, name)
        return ml.size_choices(lim), ml.frame_choices(lim), lim.fps

    assert offer("cogvideox", "1.0") == ([(720, 480)], [49], 8.0)
    sizes, frames, fps = offer("cogvideox", "1.5")
    assert sizes == [(1360, 768), (768, 1360)] and fps == 16.0
    assert frames == [17, 33, 49, 65, 81, 97, 113, 129, 145, 161]
    wan = [(832, 480), (480, 832), (1280, 720), (720, 1280)]
    assert offer("wan", "2.1-i2v") == (wan, [17, 33, 49, 65, 81], 16.0)
    assert offer("wan", "2.2-i2v-a14b") == (wan, [17, 33, 49, 65, 81], 16.0)
    assert offer("wan", "2.2-ti2v-5b") == ([(1280, 704), (704, 1280)], [25, 49, 73, 97, 121], 24.0)
    assert ml.DEFAULT_VARIANT == {"cogvideox": "1.0", "wan": "2.2-i2v-a14b"}
    assert {f: ml.VARIANTS[f][0].name for f in ml.FAMILIES} == {"cogvideox": "1.0", "wan": "2.2-i2v-a14b"}


def test_refusal_names_what_the_model_can_do():
    ti2v = ml.variant_limits("wan", "2.2-ti2v-5b")
    assert ml.refusal(ti2v, "Wan 2.2 TI2V-5B", 1280, 704, 121) == ""
    text = ml.refusal(ti2v, "Wan 2.2 TI2V-5B", 1280, 720, 121)  # 720 is not a multiple of 32
    assert text.startswith("Wan 2.2 TI2V-5B cannot make 1280x720 with 121 frames")
    assert "multiples of 32" in text and "1280x704" in text and "25-121" in text
    cog = ml.variant_limits("cogvideox", "1.0")
    text = ml.refusal(cog, "CogVideoX", 832, 480, 81)
    assert "exactly 720x480 pixels and 49 frames" in text and "Frames (49)" in text
    assert ml.refusal(ml.variant_limits("cogvideox", "1.5"), "1.5", 1360, 768, 57)  # not 16N+1
    # Possible but not trained at: not refused (the generator warns).
    assert ml.refusal(ml.variant_limits("wan", "2.1-i2v"), "Wan", 720, 480, 49) == ""


def test_variant_lookup_and_unknown_family():
    assert ml.variant("wan", "2.1-i2v").checkpoints[-1] == "Ruihang/Wan-Move-14B-480P"
    with pytest.raises(ValueError, match="known: 1.0, 1.5"):
        ml.variant("cogvideox", "2.0")
    with pytest.raises(ValueError, match="model family must be one of cogvideox, wan"):
        ml.limits_from_configs("svd", {}, {})


def test_variant_detection_from_configs_matches_the_backend():
    for name, index in WAN_INDEX.items():
        cfg = real_configs.wan_transformer(name)
        assert ml.wan_variant(cfg, index) == wan_backend.wan_variant(cfg, index) == name


def test_ttm_indices_scale_the_authors_defaults_and_refuse_bad_pairs():
    assert ml.ttm_indices("wan", 50) == (3, 7) and ml.ttm_indices("cogvideox", 50) == (4, 9)
    assert ml.ttm_indices("cogvideox", 25) == (2, 4) and ml.ttm_indices("wan", 100) == (6, 14)
    assert ml.ttm_indices("wan", 50, 2, 5) == (2, 5)  # the authors' camera-control setting
    assert ml.ttm_indices("wan", 4) == (0, 1)
    with pytest.raises(ValueError, match="tweak_index \\(8\\) <= tstrong_index \\(5\\)"):
        ml.ttm_indices("wan", 50, 8, 5)
    with pytest.raises(ValueError):
        ml.ttm_indices("wan", 10, 10, 10)  # tweak must leave a step to denoise


def test_default_variants_are_the_generators_default_checkpoints():
    from backend.modes.guided import WAN_DEFAULT_MODEL
    from backend.runtime.checkpoints import DEFAULT_MODEL

    defaults = {f: ml.variant(f, ml.DEFAULT_VARIANT[f]).checkpoints[0] for f in ml.FAMILIES}
    assert defaults == {"cogvideox": DEFAULT_MODEL, "wan": WAN_DEFAULT_MODEL}


@pytest.mark.parametrize(("family", "name"), ALL)
def test_a_folders_variant_comes_from_its_real_configs(tmp_path, family, name):
    import json

    transformer = _real_transformer(family, name)
    vae = real_configs.wan_vae(name) if family == "wan" else real_configs.cogvideox_vae()
    for part, cfg in (("transformer", transformer), ("vae", vae)):
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model_index.json").write_text(json.dumps(WAN_INDEX.get(name, {})))
    assert ml.folder_variant(family, tmp_path) == name
    (tmp_path / "vae" / "config.json").write_text("{not json")
    assert ml.folder_variant(family, tmp_path) is None
    assert ml.folder_variant(family, tmp_path / "missing") is None


def _real_transformer(family: str, name: str) -> dict:
    if family == "wan":
        return real_configs.wan_transformer(name)
    if name == "1.0":
        return real_configs.cogvideox_5b_i2v_transformer()
    return real_configs.cogvideox_15_5b_i2v_transformer()
