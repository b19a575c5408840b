"""The shipped FSDP config for stage 2 (backend/training/accelerate_fsdp_stage2.yaml), checked
without GPUs: accelerate's own launcher reads it into the FSDP environment its workers get, and
the class it wraps is the block the stage-2 transformer is made of. (No FSDP run: FSDP needs GPUs,
and no GPU machine was available; the two-process DDP path is what tests/training runs.)"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("diffusers")

pytestmark = [pytest.mark.torch]

CONFIG = Path(__file__).resolve().parents[2] / "backend" / "training" / "accelerate_fsdp_stage2.yaml"


def test_accelerate_reads_the_config_into_an_fsdp_launch():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(CONFIG), "-m", "backend.training.train"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_fsdp and args.mixed_precision == "bf16" and not args.cpu
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "1"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"  # frozen and trained parameters share units
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "CogVideoXBlock"


def test_the_wrapped_class_is_the_stage2_transformer_block():
    import functools

    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from tests.animateanything.conftest import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0, stage1=False, text=False)
    blocks = {type(m) for m in pipe.stage2.modules() if type(m).__name__ == "CogVideoXBlock"}
    assert len(blocks) == 1
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=blocks)
    wrapped = [m for m in pipe.stage2.modules() if policy(m, recurse=False, nonwrapped_numel=0)]
    assert len(wrapped) == pipe.transformer.config.num_layers > 0
    trained = {id(p) for p in pipe.stage2.trainable_parameters()}
    inside = {id(p) for m in wrapped for p in m.parameters()}
    assert trained and not trained & inside  # the trained parts are in the root unit, not the blocks
