"""The generator's layout (docs/interfaces.md), checked on the source like tests/test_import_rules.py
(which also keeps backend/training/ out of the product): guided and animateanything are peers on
backend/runtime/, which imports neither; training is left out of the zip; the runtime's real configs
are data files next to it."""

from __future__ import annotations

import json

import pytest

from tests.test_import_rules import ROOT, ids, imports, sources

FAMILY = sources("backend/animateanything") + sources("backend/guided")
RUNTIME = sources("backend/runtime")


def _bad(path, forbidden: tuple[str, ...]) -> list[str]:
    return [f"line {line}: {module}" for line, module, _ in imports(path) if module.startswith(forbidden)]


@pytest.mark.parametrize("path", FAMILY, ids=ids(FAMILY))
def test_model_families_are_peers(path):
    other = "backend.guided" if "animateanything" in path.parts else "backend.animateanything"
    assert not _bad(path, (other,)), path


@pytest.mark.parametrize("path", RUNTIME, ids=ids(RUNTIME))
def test_the_runtime_knows_no_model_family(path):
    forbidden = ("backend.guided", "backend.animateanything", "backend.modes", "backend.training")
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
        "cogvideox_1.5_5b_i2v_transformer.json",
        "cogvideox_5b_i2v_transformer.json",
        "cogvideox_vae.json",
        "t5_v1_1_xxl_encoder.json",
    ]
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
