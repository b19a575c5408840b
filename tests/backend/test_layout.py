"""The generator's layout (docs/interfaces.md), checked on the source like tests/test_import_rules.py
(which also keeps backend/training/ out of the product): the model families guided (CogVideoX),
wan (Wan 2.x) and animateanything are peers on backend/runtime/, which imports none of them;
training is left out of the zip; the runtime's real configs
are data files next to it."""

from __future__ import annotations

import json

import pytest

from tests.test_import_rules import ROOT, ids, imports, sources

FAMILIES = ("animateanything", "guided", "wan")
FAMILY = [p for name in FAMILIES for p in sources(f"backend/{name}")]
RUNTIME = sources("backend/runtime")


def _bad(path, forbidden: tuple[str, ...]) -> list[str]:
    return [f"line {line}: {module}" for line, module, _ in imports(path) if module.startswith(forbidden)]


@pytest.mark.parametrize("path", FAMILY, ids=ids(FAMILY))
def test_model_families_are_peers(path):
    own = next(name for name in FAMILIES if name in path.parts)
    others = tuple(f"backend.{name}" for name in FAMILIES if name != own) + ("backend.modes",)
    assert not _bad(path, others), path


@pytest.mark.parametrize("path", RUNTIME, ids=ids(RUNTIME))
def test_the_runtime_knows_no_model_family(path):
    forbidden = tuple(f"backend.{name}" for name in FAMILIES) + ("backend.modes", "backend.training")
    assert not _bad(path, forbidden), path


def test_training_is_left_out_of_the_extension_zip_and_configs_are_in_it():
    import tomllib

    build = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))["build"]
    assert "/backend/training/" in build["paths_exclude_pattern"]
    assert not any(p.endswith("*.json") or p == "/backend/runtime/" for p in build["paths_exclude_pattern"])


def test_real_configs_are_data():
    from backend.runtime import real_configs

    files = sorted(p.name for p in real_configs.CONFIG_DIR.glob("*.json"))
    assert files == [
        "clip_vit_h_14_vision.json",
        "cogvideox_1.5_5b_i2v_transformer.json",
        "cogvideox_5b_i2v_transformer.json",
        "cogvideox_vae.json",
        "t5_v1_1_xxl_encoder.json",
        "umt5_xxl_encoder.json",
        "wan_2.1_i2v_14b_transformer.json",
        "wan_2.1_vae.json",
        "wan_2.2_i2v_a14b_transformer.json",
        "wan_2.2_ti2v_5b_transformer.json",
        "wan_2.2_vae.json",
    ]
    wan = {v: real_configs.wan_transformer(v) for v in real_configs.WAN_TRANSFORMERS}
    assert (wan["2.1-i2v"]["num_layers"], wan["2.1-i2v"]["num_attention_heads"]) == (40, 40)
    assert {k for k in wan["2.1-i2v"] if wan["2.1-i2v"][k] != wan["2.2-i2v-a14b"][k]} == {
        "image_dim", "added_kv_proj_dim",
    }  # fmt: skip
    assert real_configs.wan_vae("2.2-ti2v-5b")["scale_factor_spatial"] == 16
    v10 = real_configs.cogvideox_5b_i2v_transformer()
    v15 = real_configs.cogvideox_15_5b_i2v_transformer()
    assert (v10["num_layers"], v10["num_attention_heads"], v10["attention_head_dim"]) == (42, 48, 64)
    assert {k for k in v10.keys() | v15.keys() if v10.get(k) != v15.get(k)} == {
        "patch_size_t", "patch_bias", "ofs_embed_dim", "sample_height", "sample_width", "sample_frames",
        "use_learned_positional_embeddings",
    }  # fmt: skip
    v10["num_layers"] = 0  # every call reads a fresh dict
    assert real_configs.cogvideox_5b_i2v_transformer()["num_layers"] == 42
    vae = json.loads((real_configs.CONFIG_DIR / "cogvideox_vae.json").read_text(encoding="utf-8"))
    assert real_configs.cogvideox_vae() == vae and vae["block_out_channels"] == [128, 256, 256, 512]
