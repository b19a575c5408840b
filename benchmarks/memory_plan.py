"""Print the memory plan of mode `guided` for CogVideoX-5b-I2V (720x480, 49 frames),
CogVideoX1.5-5B-I2V (1360x768, 81 frames) and the Wan 2.x families (backend/runtime/wan_memory.py)
on 24, 48 and 80 GB cards.

Parameter counts come from the real configs built on the meta device (no weights, no GPU); the
activation sizes from backend/runtime/memory.py's model (see its docstring for what is measured).

    .venv/bin/python benchmarks/memory_plan.py [--no-count] [--measure-vae]

--measure-vae re-measures the VAE's activation peak per pixel on the CPU (real VAE config, random
weights, fp32, two small sizes in subprocesses; about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.runtime import memory, real_configs  # noqa: E402
from backend.runtime.memory import GiB  # noqa: E402

CARDS_GB = (24, 48, 80)


def card_free_bytes(gb: int) -> int:
    """Free memory of an idle card sold as `gb` GB: marketing GB are ~GiB; minus ~0.6 GiB the driver
    and CUDA context take before any tensor exists."""
    return int((gb - 0.6) * GiB)


def fmt(n: int) -> str:
    return f"{n / GiB:6.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:6.1f} MiB"


def print_components(counts: dict) -> None:
    print("## Parameter bytes per component (weights + persistent buffers)\n")
    print("| component | parameters | bf16/fp16 | fp32 |")
    print("|---|---:|---:|---:|")
    names = {
        "transformer_1.0": "transformer CogVideoX-5b-I2V",
        "transformer_1.5": "transformer CogVideoX1.5-5B-I2V",
        "vae": "VAE (AutoencoderKLCogVideoX)",
        "text_encoder": "text encoder T5-v1.1-XXL",
    }
    for key, n in counts.items():
        print(f"| {names[key]} | {n / 1e9:.3f} G | {fmt(2 * n)} | {fmt(4 * n)} |")
    print()


def print_sizes(spec: memory.ModelSpec, title: str) -> None:
    b = 2
    tokens = spec.tokens()
    batch = 2 if spec.guidance else 1
    shape = (spec.latent_frames, 16, spec.height // 8, spec.width // 8)
    hidden = batch * tokens * spec.hidden * b
    act = memory.ACT_TRANSFORMER * hidden
    naive = batch * 48 * tokens * tokens * b
    video = 3 * spec.num_frames * spec.height * spec.width * b
    untiled, tiled = memory.vae_peak_bytes(spec, b, False), memory.vae_peak_bytes(spec, b, True)
    print(f"## Latent and activation sizes, {title} (bf16, classifier-free guidance batch {batch})\n")
    print(f"- latent {shape}: {fmt(spec.latent_bytes(b))} (+ the image latent of the same shape on channels)")
    print(f"- transformer tokens: {tokens - spec.text_tokens} video + {spec.text_tokens} text = {tokens}")
    print(f"- one hidden-state tensor (batch {batch} x {tokens} x {spec.hidden}): {fmt(hidden)}")
    print(f"- live activations of one block (~{memory.ACT_TRANSFORMER} such tensors): {fmt(act)}")
    print(f"- an explicit attention matrix would be {fmt(naive)}: memory-efficient SDPA is required")
    print(f"- VAE decode peak untiled: {fmt(untiled)}; tiled: {fmt(tiled)}")
    print(f"- decoded video ({spec.num_frames} x 3 x {spec.height} x {spec.width}): {fmt(video)}")
    print()


def print_phases(spec: memory.ModelSpec, title: str) -> None:
    print(f"## Estimated peak per phase and setting, {title}, bf16\n")
    print("| offload | VAE tiling | text encoder | denoise | encode prior | decode | peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for o in memory.OFFLOADS:
        for t in (False, True):
            p = memory.phase_peaks(spec, "bf16", o, t)
            te = fmt(p["text_encoder"]) if "text_encoder" in p else "CPU"
            print(
                f"| {o} | {'on' if t else 'off'} | {te} | {fmt(p['denoise'])} | "
                f"{fmt(p['encode_prior'])} | {fmt(p['decode'])} | {fmt(max(p.values()))} |"
            )
    print()


def print_plans(spec: memory.ModelSpec, title: str) -> None:
    print(f"## Chosen plan per card, {title}\n")
    print("| card | free | dtype | offload | VAE tiling | slicing | est. peak | fits |")
    print("|---|---:|---|---|---|---|---:|---|")
    for gb in CARDS_GB:
        plan = memory.plan_memory(card_free_bytes(gb), spec, device="cuda")
        print(
            f"| {gb} GB | {fmt(plan.free_bytes)} | {plan.dtype} | {plan.offload} | "
            f"{'on' if plan.vae_tiling else 'off'} | {'on' if plan.vae_slicing else 'off'} | "
            f"{fmt(plan.peak_bytes)} | {'yes' if plan.fits else 'NO'} |"
        )
    print()


def print_wan(title: str, variant: str, h: int, w: int, f: int) -> None:
    """The Wan plan per card, for an Ada/Hopper GPU (cc 9.0) in a machine with 128 or 32 GB of RAM,
    and an Ampere GPU (cc 8.0, no fp8) with 32 GB."""
    from backend.runtime.wan_memory import wan_model_spec

    spec = wan_model_spec(variant, h, w, f)
    print(f"## Chosen plan per card, {title} {w}x{h}x{f} (bf16, guidance, Time-to-Move prior)\n")
    print("| card | cc / RAM | offload | fp8 | VAE tiling | est. peak | CPU RAM for weights | fits |")
    print("|---|---|---|---|---|---:|---:|---|")
    for gb in CARDS_GB:
        for cc, ram in (((9, 0), 128), ((9, 0), 32), ((8, 0), 32)):
            plan = memory.plan_memory(
                card_free_bytes(gb),
                spec,
                device="cuda",
                compute_capability=cc,
                host_free_bytes=int((ram - 2) * GiB),
            )
            print(
                f"| {gb} GB | {cc[0]}.{cc[1]} / {ram} GB | {plan.offload} | {'yes' if plan.fp8 else 'no'} | "
                f"{'on' if plan.vae_tiling else 'off'} | {fmt(plan.peak_bytes)} | {fmt(plan.host_bytes)} | "
                f"{'yes' if plan.fits else 'NO'} |"
            )
    print()


def measure_vae() -> None:
    script = Path(__file__).with_name("_vae_peak.py")
    print("## VAE activation peak measured on the CPU (fp32, real config, random weights)\n")
    rows = []
    for what in ("decode", "encode"):
        for h, w in ((8, 12), (16, 24)):
            out = subprocess.run(
                [sys.executable, str(script), str(h), str(w), "3", what],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            line = out.stdout.strip().splitlines()[-1]
            print(f"- {line}")
            rows.append((what, h * 8 * w * 8, float(line.split("delta_MB=")[1].split()[0])))
    for what in ("decode", "encode"):
        (_, p1, m1), (_, p2, m2) = [r for r in rows if r[0] == what]
        slope = (m2 - m1) * 2**20 / (p2 - p1)
        print(f"- {what}: {slope / 1000:.1f} KB per pixel, {m1 - slope * p1 / 2**20:.0f} MB fixed")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--no-count", action="store_true", help="use the stored counts instead of the meta device"
    )
    ap.add_argument("--measure-vae", action="store_true", help="measure the VAE peak on the CPU (slow)")
    args = ap.parse_args()
    if args.no_count:
        counts = {
            "transformer_1.0": memory.COGVIDEOX_5B_I2V_TRANSFORMER,
            "transformer_1.5": memory.COGVIDEOX_15_5B_I2V_TRANSFORMER,
            "vae": memory.COGVIDEOX_VAE,
            "text_encoder": memory.T5_V1_1_XXL_ENCODER,
        }
    else:
        counts = real_configs.real_parameter_counts()
    print("# Mode guided: memory plan from the real CogVideoX configs\n")
    print_components(counts)
    v10 = memory.ModelSpec.from_configs(
        real_configs.cogvideox_5b_i2v_transformer(),
        480,
        720,
        49,
        transformer_params=counts["transformer_1.0"],
        vae_params=counts["vae"],
        text_encoder_params=counts["text_encoder"],
    )
    v15 = memory.ModelSpec.from_configs(
        real_configs.cogvideox_15_5b_i2v_transformer(),
        768,
        1360,
        81,
        transformer_params=counts["transformer_1.5"],
        vae_params=counts["vae"],
        text_encoder_params=counts["text_encoder"],
    )
    for spec, title in ((v10, "CogVideoX-5b-I2V 720x480x49"), (v15, "CogVideoX1.5-5B-I2V 1360x768x81")):
        print_sizes(spec, title)
        print_phases(spec, title)
        print_plans(spec, title)
    from backend.runtime.wan_memory import WAN_PARAMS

    print("# Mode guided: memory plan from the real Wan configs\n")
    print("| component | parameters | bf16 | fp8 |")
    print("|---|---:|---:|---:|")
    for key, n in WAN_PARAMS.items():
        print(f"| {key} | {n / 1e9:.3f} G | {fmt(2 * n)} | {fmt(n)} |")
    print()
    for title, variant, (h, w, f) in (
        ("Wan2.1-I2V-14B-480P / Wan-Move-14B-480P", "2.1-i2v", (480, 832, 81)),
        ("Wan2.1-I2V-14B-720P", "2.1-i2v", (720, 1280, 81)),
        ("Wan2.2-I2V-A14B", "2.2-i2v-a14b", (480, 832, 81)),
        ("Wan2.2-I2V-A14B", "2.2-i2v-a14b", (720, 1280, 81)),
        ("Wan2.2-TI2V-5B", "2.2-ti2v-5b", (704, 1280, 121)),
    ):
        print_wan(title, variant, h, w, f)
    if args.measure_vae:
        measure_vae()


if __name__ == "__main__":
    main()
