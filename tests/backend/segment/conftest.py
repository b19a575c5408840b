"""Tiny random SAM 2 and Depth Anything V2 folders, built and saved by the tests (safetensors)."""

from __future__ import annotations

import json

import pytest

# SAM 2's input side (the released models use 1024); 64 keeps the Hiera backbone at 16x16 tokens.
SAM_SIZE = 64


def build_tiny_sam(folder, seed: int = 0):
    """Save a random Sam2Model with tiny sizes (constraints commented) + its preprocessor config."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    S = SAM_SIZE
    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=8,  # = embed_dim_per_stage[0]
        num_attention_heads=1,
        image_size=[S, S],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],  # doubles per stage (query pooling)
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 4],
        # a global block must not be a stage's first (pooled) block: block 3 is stage 2's second
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    vision = transformers.Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],  # embed_dim_per_stage reversed
        backbone_feature_sizes=[[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]],  # patch stride 4
        fpn_hidden_size=32,  # = the prompt encoder's and mask decoder's hidden size
    )
    prompt = transformers.Sam2PromptEncoderConfig(
        hidden_size=32, image_size=S, patch_size=16, mask_input_channels=4
    )
    decoder = transformers.Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=16
    )
    config = transformers.Sam2Config(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    torch.manual_seed(seed)
    transformers.Sam2Model(config).eval().save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "Sam2ImageProcessor", "size": {"height": S, "width": S}})
    )
    return folder


def build_tiny_depth(folder, seed: int = 0):
    """Save a random DepthAnythingForDepthEstimation (tiny DINOv2 backbone) + preprocessor config."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    backbone = transformers.Dinov2Config(
        hidden_size=16,  # = reassemble_hidden_size
        num_hidden_layers=2,  # one per out_feature
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,  # the input is a multiple of it (ensure_multiple_of)
        image_size=56,
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 16],  # one per backbone output
        reassemble_factors=[2, 1],
        fusion_hidden_size=8,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    torch.manual_seed(seed)
    transformers.DepthAnythingForDepthEstimation(config).eval().save_pretrained(
        folder, safe_serialization=True
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "DPTImageProcessor",
                "size": {"height": 56, "width": 56},
                "keep_aspect_ratio": True,
                "ensure_multiple_of": 14,
            }
        )
    )
    return folder


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    return build_tiny_sam(tmp_path_factory.mktemp("tiny_sam2"))


@pytest.fixture(scope="session")
def tiny_depth(tmp_path_factory):
    return build_tiny_depth(tmp_path_factory.mktemp("tiny_depth_anything"))
