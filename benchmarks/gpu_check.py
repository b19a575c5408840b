"""GPU check: each guided family's real-size transformer (random weights, no downloads) runs a few
denoising steps at its real size under the memory plan for this card; prints step time, peak memory
and the plan used, next to the planner's estimate (backend/runtime/memory.py).

    .venv/bin/python benchmarks/gpu_check.py [--families F,...] [--steps N] [--vae] [--json OUT]
    .venv/bin/python benchmarks/gpu_check.py --tiny      # CPU, tiny configs (the CI run: tests/wan/)
    --offload none|model|group|sequential and --fp8 on|off force a setting (the planner's is the default).

Families: cogvideox-1.0 (720x480x49), cogvideox-1.5 (1360x768x81), wan-2.1 (Wan2.1-I2V-14B and
Wan-Move, 832x480x81), wan-a14b (one of Wan2.2-I2V-A14B's two experts: they run one at a time;
832x480x81), wan-ti2v (Wan2.2-TI2V-5B, 1280x704x121). A step is what the pipeline does per step:
CogVideoX one batch-2 forward (classifier-free guidance), Wan two batch-1 forwards (cond, uncond).
Weights: the transformer is built on the meta device, materialised where the plan keeps it (the GPU
for offload none/model, pinned CPU memory for group) and filled with N(0, 0.02); fp8 plans store it
as float8_e4m3fn (diffusers' layerwise casting). `--vae` also decodes the latent video once with
the family's real VAE config (random weights) under the plan's tiling. Text encoders are not run
(the mode runs them first and alone; their weights are the only memory then).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backend.runtime import devices, memory, real_configs  # noqa: E402
from backend.runtime.memory import GiB  # noqa: E402
from backend.runtime.wan_memory import wan_model_spec  # noqa: E402

FAMILIES = ("cogvideox-1.0", "cogvideox-1.5", "wan-2.1", "wan-a14b", "wan-ti2v")
REAL = {  # family: (height, width, frames)
    "cogvideox-1.0": (480, 720, 49),
    "cogvideox-1.5": (768, 1360, 81),
    "wan-2.1": (480, 832, 81),
    "wan-a14b": (480, 832, 81),
    "wan-ti2v": (704, 1280, 121),
}
WAN_VARIANT = {"wan-2.1": "2.1-i2v", "wan-a14b": "2.2-i2v-a14b", "wan-ti2v": "2.2-ti2v-5b"}
TINY_WAN = dict(
    num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=32, freq_dim=256
)
TINY_SIZE = {"cogvideox-1.0": (32, 32, 9), "cogvideox-1.5": (64, 64, 17)}


def transformer_config(family: str, tiny: bool) -> dict:
    if family.startswith("cogvideox"):
        if not tiny:
            v10 = family == "cogvideox-1.0"
            return (
                real_configs.cogvideox_5b_i2v_transformer()
                if v10
                else real_configs.cogvideox_15_5b_i2v_transformer()
            )
        from backend.animateanything.configs import TINY_COGVIDEOX_TRANSFORMER

        cfg = dict(TINY_COGVIDEOX_TRANSFORMER)
        if family == "cogvideox-1.5":
            cfg.update(patch_size_t=2, patch_bias=False, ofs_embed_dim=4, time_embed_dim=4, sample_width=32)
            cfg.update(sample_height=32, sample_frames=17, use_learned_positional_embeddings=False)
        return cfg
    cfg = real_configs.wan_transformer(WAN_VARIANT[family])
    if tiny:
        cfg.update(TINY_WAN, added_kv_proj_dim=None, image_dim=4 if family == "wan-2.1" else None)
        cfg.update(rope_max_seq_len=64)
    return cfg


def model_spec(family: str, cfg: dict, h: int, w: int, f: int, params: int) -> memory.ModelSpec:
    if family.startswith("cogvideox"):
        return memory.ModelSpec.from_configs(
            cfg, h, w, f, real_configs.cogvideox_vae(), transformer_params=params
        )
    return wan_model_spec(WAN_VARIANT[family], h, w, f, transformer_config=cfg, transformer_params=params)


def build(family: str, cfg: dict, where: str, dtype: torch.dtype):
    from accelerate import init_empty_weights
    from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

    cls = CogVideoXTransformer3DModel if family.startswith("cogvideox") else WanTransformer3DModel
    with init_empty_weights():
        model = cls(**cfg)
    model = model.to_empty(device=where).to(dtype)
    gen = torch.Generator(device=where).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
        for b in model.buffers():
            b.zero_()
    return model.eval()


def place(model, plan: memory.MemoryPlan, dtype: torch.dtype, device: str) -> None:
    if plan.fp8:
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if plan.offload == "group":
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(
            model,
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.startswith("cuda"),
        )
    elif plan.offload == "sequential":
        from accelerate import cpu_offload

        cpu_offload(model, execution_device=torch.device(device))
    else:
        model.to(device)


def inputs(family: str, model, cfg: dict, h: int, w: int, f: int, device: str, dtype: torch.dtype):
    """The keyword arguments of one forward (CogVideoX: the batch-2 guided forward)."""
    k = (f - 1) // 4 + 1
    if family.startswith("cogvideox"):
        from diffusers import CogVideoXImageToVideoPipeline

        p_t = cfg.get("patch_size_t")
        if p_t and k % p_t:
            k += p_t - k % p_t
        fake = SimpleNamespace(vae_scale_factor_spatial=8, transformer=model)
        rope = CogVideoXImageToVideoPipeline._prepare_rotary_positional_embeddings(fake, h, w, k, device)
        return dict(
            hidden_states=torch.randn(2, k, cfg["in_channels"], h // 8, w // 8, device=device, dtype=dtype),
            encoder_hidden_states=torch.randn(
                2, cfg["max_text_seq_length"], cfg["text_embed_dim"], device=device, dtype=dtype
            ),
            timestep=torch.full((2,), 500, device=device),
            ofs=None if cfg.get("ofs_embed_dim") is None else torch.full((1,), 2.0, device=device),
            image_rotary_emb=rope,
            return_dict=False,
        )
    s = 16 if family == "wan-ti2v" else 8
    kw = dict(
        hidden_states=torch.randn(1, cfg["in_channels"], k, h // s, w // s, device=device, dtype=dtype),
        encoder_hidden_states=torch.randn(
            1, 512 if cfg["text_dim"] == 4096 else 16, cfg["text_dim"], device=device, dtype=dtype
        ),
        timestep=torch.full((1,), 500, device=device),
        return_dict=False,
    )
    if cfg.get("image_dim"):
        kw["encoder_hidden_states_image"] = torch.randn(1, 257, cfg["image_dim"], device=device, dtype=dtype)
    return kw


def decode_once(
    family: str, h: int, w: int, f: int, plan, device: str, dtype: torch.dtype, tiny: bool
) -> float:
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan

    if family.startswith("cogvideox"):
        from backend.animateanything.configs import TINY_COGVIDEOX_VAE

        vae = AutoencoderKLCogVideoX(**(TINY_COGVIDEOX_VAE if tiny else real_configs.cogvideox_vae()))
        z = torch.randn(1, vae.config.latent_channels, (f - 1) // 4 + 1, h // 8, w // 8)
    else:
        cfg = real_configs.wan_vae(WAN_VARIANT[family])
        if tiny:
            cfg.update(base_dim=4, decoder_base_dim=None, num_res_blocks=1, dim_mult=[1, 1, 1, 1])
            cfg.update(latents_mean=[0.0] * cfg["z_dim"], latents_std=[1.0] * cfg["z_dim"])
        vae = AutoencoderKLWan(**cfg)
        s = cfg.get("scale_factor_spatial", 8)
        z = torch.randn(1, cfg["z_dim"], (f - 1) // 4 + 1, h // s, w // s)
    vae = vae.to(device, dtype).eval()
    if plan.vae_tiling:
        vae.enable_tiling()
    t = time.perf_counter()
    with torch.no_grad():
        vae.decode(z.to(device, dtype))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    del vae
    return time.perf_counter() - t


def check(family: str, args) -> dict:
    tiny = args.tiny
    device = "cpu" if tiny else devices.resolve_device("auto")
    h, w, f = (
        (TINY_SIZE.get(family, (64, 64, 9) if family == "wan-ti2v" else (32, 32, 9)))
        if tiny
        else REAL[family]
    )
    cfg = transformer_config(family, tiny)
    from accelerate import init_empty_weights

    with init_empty_weights():
        from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

        cls = CogVideoXTransformer3DModel if family.startswith("cogvideox") else WanTransformer3DModel
        params = sum(p.numel() for p in cls(**cfg).parameters())
    spec = model_spec(family, cfg, h, w, f, params)
    cc = torch.cuda.get_device_capability() if device == "cuda" else None
    bf16 = device != "cuda" or torch.cuda.is_bf16_supported()
    gpu = device == "cuda"
    plan = memory.plan_memory(
        devices.free_memory(device) if gpu else None,
        spec,
        device=device,
        bf16_supported=bf16,
        compute_capability=cc,
        host_free_bytes=devices.host_free_memory() if gpu else None,
        offload=args.offload,
        fp8=args.fp8,
    )
    if tiny and (args.offload != "auto" or args.fp8 == "on"):
        # the CPU planner keeps everything whole and has no fp8: force the placement to exercise it
        from dataclasses import replace

        plan = replace(
            plan, offload=args.offload if args.offload != "auto" else plan.offload, fp8=args.fp8 == "on"
        )
    dtype = devices.torch_dtype(plan.dtype)
    row = {
        "family": family,
        "size": f"{w}x{h}x{f}",
        "params": params,
        "plan": plan.summary(),
        "plan_dict": plan.as_dict(),
    }
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        where = device if plan.offload in ("none", "model") and not plan.fp8 else "cpu"
        t = time.perf_counter()
        model = build(family, cfg, where, dtype)
        place(model, plan, dtype, device)
        row["build_s"] = round(time.perf_counter() - t, 2)
        kw = inputs(family, model, cfg, h, w, f, device, dtype)
        passes = 1 if family.startswith("cogvideox") else 2
        times = []
        with torch.no_grad():
            for _ in range(args.steps + 1):  # the first step warms up (kernels, offload streams)
                t = time.perf_counter()
                for _ in range(passes):
                    out = model(**kw)[0]
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        row["step_s"] = round(sum(times[1:]) / max(len(times) - 1, 1), 3)
        row["first_step_s"] = round(times[0], 3)
        row["out_finite"] = bool(torch.isfinite(out.float()).all())
        row["denoise_peak_gib"] = (
            round(torch.cuda.max_memory_allocated() / GiB, 2) if device == "cuda" else None
        )
        row["denoise_estimate_gib"] = round(
            memory.phase_peaks(spec, plan.dtype, plan.offload, plan.vae_tiling, plan.fp8)["denoise"] / GiB, 2
        )
        del model, kw, out
        gc.collect()
        if args.vae:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            row["vae_decode_s"] = round(decode_once(family, h, w, f, plan, device, dtype, tiny), 2)
            row["vae_peak_gib"] = (
                round(torch.cuda.max_memory_allocated() / GiB, 2) if device == "cuda" else None
            )
            row["vae_estimate_gib"] = round(
                memory.phase_peaks(spec, plan.dtype, plan.offload, plan.vae_tiling, plan.fp8)["decode"] / GiB,
                2,
            )
    except torch.OutOfMemoryError as exc:
        row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - report every family, then go on
        row["error"] = f"{type(exc).__name__}: {exc}"
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU, tiny configs (CI)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--steps", type=int, default=2, help="measured steps after one warm-up step")
    ap.add_argument("--vae", action="store_true", help="also decode once with the family's real VAE")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    ap.add_argument("--offload", default="auto", choices=("auto",) + memory.OFFLOADS, help="force an offload")
    ap.add_argument("--fp8", default="auto", choices=("auto", "on", "off"), help="fp8 weights (cc 8.9+)")
    args = ap.parse_args()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(
            f"# GPU check on {props.name}, {props.total_memory / GiB:.1f} GiB, "
            f"cc {props.major}.{props.minor}\n"
        )
    else:
        print(f"# GPU check on the CPU ({'tiny configs' if args.tiny else 'real configs: slow'})\n")
    rows = [check(f.strip(), args) for f in args.families.split(",") if f.strip()]
    print("| family | size | plan | step s | peak GiB (est.) | VAE s | VAE GiB (est.) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['family']} | {r['size']} | {r['plan']} | ERROR: {r['error']} | | | |")
            continue
        peak = f"{r['denoise_peak_gib']} ({r['denoise_estimate_gib']})"
        vae = f"{r.get('vae_peak_gib')} ({r.get('vae_estimate_gib')})" if "vae_decode_s" in r else ""
        print(
            f"| {r['family']} | {r['size']} | {r['plan']} | {r['step_s']} | {peak} | "
            f"{r.get('vae_decode_s', '')} | {vae} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
