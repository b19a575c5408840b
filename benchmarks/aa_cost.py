"""Parameter counts and FLOPs of AnimateAnything at the real sizes, computed on the meta device.

No weights and no memory are needed: every model is built under ``torch.device("meta")`` and run
under ``torch.utils.flop_counter.FlopCounterMode`` with meta inputs of the real shapes (720x480,
49 frames -> 13 x 60 x 90 CogVideoX latents, 226 T5 tokens). FLOPs count matmuls, convolutions and
attention (2 FLOPs per multiply-add); element-wise ops are not counted. The FFTs of the frequency
stabilisation are estimated analytically (``5 N log2 N`` per complex transform of length N, the
usual radix-2 count) and listed on their own line.

The question it answers: how much does the stage-2 conditioning add to one denoising step of the
base CogVideoX-5B-I2V transformer (goal: under 10 %)? The flow encoder runs once per video, not per
step; it is reported once and amortised over 50 steps.

Run: ``python benchmarks/aa_cost.py [--json]`` (seconds on a CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.animateanything import configs  # noqa: E402

META = torch.device("meta")
FRAMES, HEIGHT, WIDTH = 49, 480, 720
LAT_T, LAT_H, LAT_W = 13, 60, 90
TEXT_LEN = 226
STEPS = 50
# Stage 1 runs at the pipeline's default flow size for 720x480 (long side 384, multiples of 64).
FLOW_H, FLOW_W = 256, 384


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients (FlopCounterMode's module tracker trips over leaf tensors needing grad)."""
    return module.eval().requires_grad_(False)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            fn()
    return counter.get_total_flops()


def rotary():
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    cfg = configs.REAL_COGVIDEOX_TRANSFORMER
    p = cfg["patch_size"]
    base_h, base_w = cfg["sample_height"] // p, cfg["sample_width"] // p
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=cfg["attention_head_dim"],
        crops_coords=((0, 0), (base_h, base_w)),
        grid_size=(LAT_H // p, LAT_W // p),
        temporal_size=LAT_T,
        device="cpu",
    )
    return cos.to(META), sin.to(META)


def stage2() -> dict:
    from diffusers import CogVideoXTransformer3DModel

    from backend.animateanything.flow_encoder import FlowEncoder3D
    from backend.animateanything.flow_fusion import FlowFusionBlock
    from backend.animateanything.frequency_attention import FrequencyStabilizer
    from backend.animateanything.transformer import AnimateAnythingTransformer

    with META:
        transformer = frozen(CogVideoXTransformer3DModel(**configs.REAL_COGVIDEOX_TRANSFORMER))
        encoder = frozen(FlowEncoder3D(**configs.REAL_FLOW_ENCODER))
        fusion = frozen(FlowFusionBlock(**configs.REAL_FLOW_FUSION))
        stabilizer = frozen(FrequencyStabilizer(**configs.REAL_FREQUENCY_STABILIZER))
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    hidden = torch.empty(1, LAT_T, 32, LAT_H, LAT_W, device=META)
    text = torch.empty(1, TEXT_LEN, 4096, device=META)
    t = torch.ones(1, dtype=torch.long, device=META)
    flow = torch.empty(1, FRAMES, 2, HEIGHT, WIDTH, device=META)
    flow_latents = torch.empty(1, LAT_T, configs.REAL_FLOW_ENCODER["out_channels"], LAT_H, LAT_W, device=META)
    rope = rotary()

    base = flops(lambda: transformer(hidden, text, t, image_rotary_emb=rope))
    guided = flops(lambda: model(hidden, text, t, flow_latents=flow_latents, image_rotary_emb=rope))
    fusion_only = flops(lambda: model(hidden, text, t, flow_latents=None, image_rotary_emb=rope))
    enc = flops(lambda: encoder(flow))
    # FFT estimate: per layer, rfft + irfft of Q, K, V over T frames for every (token, channel).
    tokens_per_frame = (LAT_H // 2) * (LAT_W // 2)
    inner = configs.REAL_FREQUENCY_STABILIZER["inner_dim"]
    per_transform = 5 * LAT_T * math.log2(LAT_T) / 2  # a real FFT costs about half a complex one
    fft = int(
        configs.REAL_FREQUENCY_STABILIZER["num_layers"] * 3 * 2 * tokens_per_frame * inner * per_transform
    )
    return {
        "params": {
            "cogvideox_transformer": params(transformer),
            "flow_encoder": params(encoder),
            "flow_fusion": params(fusion),
            "frequency_stabilizer": params(stabilizer),
        },
        "flops": {
            "base_step": base,
            "guided_step": guided,
            "fusion_block_step": guided - fusion_only,
            "frequency_matmul_step": fusion_only - base,
            "frequency_fft_step_estimate": fft,
            "flow_encoder_once": enc,
        },
    }


def stage1() -> dict:
    from diffusers import AutoencoderKL

    from backend.animateanything.camera_reference import CameraReferenceModel
    from backend.animateanything.flow_generation import FlowGenerationModel
    from backend.animateanything.flow_vae import FlowVAE

    unet = dict(configs.REAL_SD15_UNET)
    cam = configs.REAL_CAMERA_ENCODER
    with META:
        vae = frozen(FlowVAE(**configs.REAL_FLOW_VAE))
        image_vae = frozen(AutoencoderKL(  # SD1.5's VAE
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        ))  # fmt: skip
        crm = frozen(CameraReferenceModel(
            camera_block_out_channels=cam["block_out_channels"],
            camera_layers_per_block=cam["layers_per_block"],
            camera_temporal_attention_heads=cam["temporal_attention_heads"],
            **unet,
        ))  # fmt: skip
        fgm = frozen(FlowGenerationModel(**unet))
    h, w = FLOW_H // 8, FLOW_W // 8
    ref = torch.empty(1, 4, h, w, device=META)
    plucker = torch.empty(1, FRAMES, 6, FLOW_H, FLOW_W, device=META)
    crm_flops = flops(lambda: crm(ref, plucker))
    feats = {}

    def run_crm():
        feats.update(crm(ref, plucker))

    run_crm()
    sample = torch.empty(1, 4, FRAMES, h, w, device=META)
    cond = torch.empty(1, FRAMES, 6, FLOW_H, FLOW_W, device=META)
    encoded = fgm.encode_condition(cond)
    t = torch.ones(1, device=META)
    fgm_step = flops(lambda: fgm(sample, t, reference_features=feats, encoded_condition=encoded))
    cond_once = flops(lambda: fgm.encode_condition(cond))
    decode = flops(lambda: vae.decode(torch.empty(1, 4, h, w, device=META))) * FRAMES
    return {
        "params": {
            "flow_vae": params(vae),
            "image_vae": params(image_vae),
            "camera_reference_model": params(crm),
            "camera_encoder": params(crm.camera_encoder),
            "flow_generation_model": params(fgm),
        },
        "flops": {
            "crm_once": crm_flops,
            "fgm_condition_once": cond_once,
            "fgm_step": fgm_step,
            "flow_vae_decode_once": decode,
        },
    }


def table(result: dict) -> str:
    s2, s1 = result["stage2"], result["stage1"]
    p2, f = s2["params"], s2["flops"]
    p1, f1 = s1["params"], s1["flops"]
    base = f["base_step"]
    freq = f["frequency_matmul_step"] + f["frequency_fft_step_estimate"]
    extra_step = f["guided_step"] - base + f["frequency_fft_step_estimate"]
    amortised = extra_step + f["flow_encoder_once"] / STEPS
    trained = sum(v for k, v in p2.items() if k != "cogvideox_transformer")

    def pct(x: float) -> str:
        return f"{100 * x / base:.2f} %"

    rows = [
        ("part", "parameters", "FLOPs"),
        ("CogVideoX-5B-I2V transformer, one step (B=1)", f"{p2['cogvideox_transformer'] / 1e9:.3f} B",
         f"{base / 1e12:.1f} T"),
        ("flow fusion block, per step", f"{p2['flow_fusion'] / 1e6:.1f} M",
         f"{f['fusion_block_step'] / 1e12:.2f} T ({pct(f['fusion_block_step'])})"),
        ("frequency stabilisation, per step (FFT estimate)", f"{p2['frequency_stabilizer'] / 1e6:.2f} M",
         f"{freq / 1e12:.3f} T ({pct(freq)})"),
        ("flow encoder, once per video", f"{p2['flow_encoder'] / 1e6:.1f} M",
         f"{f['flow_encoder_once'] / 1e12:.2f} T"),
        ("**stage-2 conditioning, per step**", f"{trained / 1e6:.1f} M trained",
         f"**+{pct(extra_step)}** (+{pct(amortised)} with the encoder spread over {STEPS} steps)"),
        ("Flow VAE (stage 1)", f"{p1['flow_vae'] / 1e6:.1f} M",
         f"{f1['flow_vae_decode_once'] / 1e12:.2f} T to decode {FRAMES} frames"),
        ("image VAE (SD, reference latent)", f"{p1['image_vae'] / 1e6:.1f} M", "-"),
        (f"Camera Reference Model (camera encoder {p1['camera_encoder'] / 1e6:.0f} M), once per video",
         f"{p1['camera_reference_model'] / 1e6:.0f} M", f"{f1['crm_once'] / 1e12:.1f} T"),
        (f"Flow Generation Model, per step at {FLOW_W}x{FLOW_H}x{FRAMES}",
         f"{p1['flow_generation_model'] / 1e6:.0f} M", f"{f1['fgm_step'] / 1e12:.1f} T"),
    ]  # fmt: skip
    lines = [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.insert(1, "|---|---:|---:|")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args(argv)
    result = {"stage2": stage2(), "stage1": stage1()}
    f = result["stage2"]["flops"]
    extra = f["guided_step"] - f["base_step"] + f["frequency_fft_step_estimate"]
    result["stage2_extra_fraction_per_step"] = extra / f["base_step"]
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
