"""Throughput and model FLOPs utilisation (MFU) of minimodal's CLIP next to transformers'
CLIPModel (sdpa), ViT-B/32 shape.

Both models hold the same weights and see the same batch in the same run; the script
prints image-text pairs per second for a forward pass and for forward + backward, and
the ratio minimodal / transformers (above 1.0: minimodal is faster). On CUDA both run
under bf16 autocast. The two are timed in alternation, so a noisy machine hurts both.

FLOPs are counted, not estimated: torch's FlopCounterMode runs one step of each model on
the timed batch, outside the timed loop, and adds up the matrix products, convolutions and
attention it dispatched. The counts differ on purpose: each of minimodal's towers runs only
the row it reads out (class token, end-of-text token) through its last block, and the text
tower stops at the batch's last end-of-text token, so minimodal does less work than
transformers, which runs every position through every block (about 7% less at batch 256,
where some caption ends at position 77; more at small batches). Achieved FLOP/s is a
model's own count over its median step time; MFU is that over the GPU's dense bf16
tensor-core peak (``PEAK_BF16_FLOPS``). Counting each model's own work gives minimodal no
credit for the work it skips. On a CPU, or a GPU not in the table, no peak is known and
the script prints FLOP/s alone.

Last, it prints the issue's targets with "target met" or "target NOT met": on CUDA the
training step (forward + backward, bf16 autocast, batch 256) at >= 40% MFU and at least as
fast as transformers' CLIPModel; on CPU, in fp32, at least as fast as transformers.

    python benchmarks/model.py                 # CPU here, CUDA when present
    python benchmarks/model.py --batch 64 --steps 20
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from functools import partial

import torch
from torch.utils import flop_counter
from transformers import CLIPConfig as HFCLIPConfig
from transformers import CLIPModel

from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import hf_config, load_hf_state_dict
from minimodal.device import autocast, pick_device, seed_everything

TARGET_BATCH = 256
TARGET_MFU = 0.40
TARGET_SPEEDUP = 1.0

# Dense bf16 tensor-core peaks in FLOP/s, from the vendors' datasheets and architecture
# whitepapers: the figure without sparsity (datasheets print the 2:4-sparse one, twice as
# large, beside it). A key is found in torch.cuda.get_device_name() as a whole word, in
# this order, so "H100 PCIe" comes before "H100" and "A10" does not match "A100".
PEAK_BF16_FLOPS = {
    "H200 NVL": 835e12,   # H200 NVL datasheet
    "H200": 989e12,       # H200 SXM datasheet
    "H100 NVL": 835e12,   # H100 NVL datasheet
    "H100 PCIe": 756e12,  # H100 PCIe datasheet
    "H100": 989e12,       # H100 SXM datasheet ("NVIDIA H100 80GB HBM3")
    "A100": 312e12,       # A100 datasheet, SXM and PCIe alike
    "L40S": 362e12,       # L40S datasheet
    "L4": 121e12,         # L4 datasheet
    "A10G": 70e12,        # AWS's A10G (g5 instances): no public datasheet; the figure commonly quoted
    "A10": 125e12,        # A10 datasheet
    "RTX 4090": 165e12,   # Ada (AD102) whitepaper, FP32 accumulate
    "RTX 3090": 71e12,    # Ampere (GA102) whitepaper, FP32 accumulate
    "V100": 125e12,       # V100 SXM2 datasheet, fp16: Volta has no bf16 tensor cores
    "T4": 65e12,          # T4 datasheet, fp16 (FP32 accumulate): Turing has no bf16 tensor cores
}

# FlopCounterMode counts the CUDA attention kernels but not the CPU one; count it alike.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad, q, k, v, *args, out_shape=None, **kwargs:
            flop_counter.sdpa_backward_flop_count(grad, q, k, v),
}


def make_models(device: torch.device) -> tuple[CLIP, CLIPModel]:
    config = CLIPConfig()
    hf = hf_config(config)
    reference = CLIPModel._from_config(
        HFCLIPConfig(projection_dim=hf["projection_dim"], vision_config=hf["vision_config"],
                     text_config=hf["text_config"]), attn_implementation="sdpa")
    mine = load_hf_state_dict(CLIP(config), reference.state_dict())
    return mine.to(device), reference.to(device)


def make_batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixels and captions of 77 tokens ending in <|endoftext|> at varied positions."""
    pixels = torch.randn(batch, 3, 224, 224, device=device)
    ids = torch.randint(1, 49406, (batch, 77), device=device)
    ends = torch.randint(5, 77, (batch,), device=device)
    ids[torch.arange(batch, device=device), ends] = 49407
    return pixels, ids


def minimodal_step(model: CLIP, pixels, ids) -> torch.Tensor:
    logits_per_image, _ = model(pixels, ids)
    return logits_per_image


def transformers_step(model: CLIPModel, pixels, ids) -> torch.Tensor:
    return model(pixel_values=pixels, input_ids=ids).logits_per_image


def run_step(step, model, pixels, ids, backward: bool, device: torch.device) -> None:
    """One step as timed and as counted, so that the FLOPs are those of the timed work."""
    with torch.set_grad_enabled(backward), autocast(device):
        logits = step(model, pixels, ids)
    if backward:
        logits.float().logsumexp(dim=1).mean().backward()
        model.zero_grad(set_to_none=True)


def count_flops(fn) -> int:
    """FLOPs of the operators fn() dispatches, as FlopCounterMode counts them (2 per multiply-add)."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def peak_flops_of(name: str) -> float | None:
    """Dense bf16 peak of the GPU called name (as torch.cuda.get_device_name() spells it), if known."""
    for key, peak in PEAK_BF16_FLOPS.items():
        if re.search(rf"\b{re.escape(key)}\b", name, re.IGNORECASE):
            return peak
    return None


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a CUDA device; None for a CPU, whose peak depends on too much to tabulate."""
    if device.type != "cuda":
        return None
    return peak_flops_of(torch.cuda.get_device_name(device))


def time_once(step, model, pixels, ids, backward: bool, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run_step(step, model, pixels, ids, backward, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(models, pixels, ids, backward: bool, steps: int, warmup: int, device) -> dict[str, float]:
    """Median seconds per step of each model, timed in alternation."""
    times = {name: [] for name in models}
    for i in range(warmup + steps):
        for name, (step, model) in models.items():
            seconds = time_once(step, model, pixels, ids, backward, device)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def si(value: float) -> str:
    """G or T prefix: a CPU step runs at GFLOP/s, a GPU step at TFLOP/s."""
    return f"{value / 1e12:8.2f} T" if value >= 1e12 else f"{value / 1e9:8.2f} G"


def verdict(met: bool) -> str:
    return "target met" if met else "target NOT met"


def print_peak(device: torch.device, peak: float | None) -> None:
    if device.type != "cuda":
        print("no peak FLOP/s is known for a CPU: FLOP/s only, no MFU")
    elif peak is None:
        print(f"no peak FLOP/s is known for {torch.cuda.get_device_name(device)}: FLOP/s only, no MFU")
    else:
        print(f"peak {si(peak).strip()}FLOP/s, dense bf16 ({torch.cuda.get_device_name(device)})")


def print_flops(flops: dict[str, int], seconds: dict[str, float], peak: float | None) -> dict[str, float]:
    """Counted FLOPs per step, achieved FLOP/s and, with a known peak, MFU; returns the FLOP/s."""
    rate = {name: flops[name] / seconds[name] for name in flops}
    ours, theirs = "minimodal", "transformers"
    print(f"{'':>17}  minimodal {si(flops[ours])}FLOP/step   transformers {si(flops[theirs])}FLOP/step   "
          f"ratio {flops[ours] / flops[theirs]:.3f} (counted)")
    print(f"{'':>17}  minimodal {si(rate[ours])}FLOP/s      transformers {si(rate[theirs])}FLOP/s")
    if peak is not None:
        print(f"{'':>17}  minimodal MFU {rate[ours] / peak:6.1%}      transformers MFU {rate[theirs] / peak:6.1%}")
    return rate


def print_targets(device: torch.device, batch: int, rate: float, speedup: float, peak: float | None) -> None:
    """The issue's targets for the training step, judged on this run's numbers."""
    if device.type != "cuda":
        print(f"target (CPU, fp32): training step >= {TARGET_SPEEDUP:.1f}x transformers: "
              f"{speedup:.2f}x, {verdict(speedup >= TARGET_SPEEDUP)}")
        return
    scope = f"batch {TARGET_BATCH}" if batch == TARGET_BATCH else f"set at batch {TARGET_BATCH}, this run {batch}"
    if peak is None:
        print(f"target (training step, bf16, {scope}): MFU >= {TARGET_MFU:.0%}: cannot be judged, "
              f"no peak known for {torch.cuda.get_device_name(device)}")
    else:
        print(f"target (training step, bf16, {scope}): MFU >= {TARGET_MFU:.0%}: "
              f"{rate / peak:.1%}, {verdict(rate / peak >= TARGET_MFU)}")
    print(f"target (training step, bf16, {scope}): >= {TARGET_SPEEDUP:.1f}x transformers CLIPModel (sdpa): "
          f"{speedup:.2f}x, {verdict(speedup >= TARGET_SPEEDUP)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"pairs per step (default: 8 CPU, {TARGET_BATCH} CUDA)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    device = pick_device(args.device)
    batch = args.batch or (TARGET_BATCH if device.type == "cuda" else 8)
    seed_everything(0)
    mine, reference = make_models(device)
    pixels, ids = make_batch(batch, device)
    models = {"minimodal": (minimodal_step, mine), "transformers": (transformers_step, reference)}
    peak = peak_flops(device)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"CLIP ViT-B/32 shape, batch {batch}, {device.type}, {precision}, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print_peak(device, peak)
    for label, backward in (("forward", False), ("forward+backward", True)):
        flops = {name: count_flops(partial(run_step, step, model, pixels, ids, backward, device))
                 for name, (step, model) in models.items()}
        seconds = compare(models, pixels, ids, backward, args.steps, args.warmup, device)
        ours, theirs = batch / seconds["minimodal"], batch / seconds["transformers"]
        print(f"{label:>17}: minimodal {ours:8.1f} pairs/s   transformers {theirs:8.1f} pairs/s   "
              f"ratio {ours / theirs:.2f}x")
        rate = print_flops(flops, seconds, peak)
    # The targets are about the training step: the last row.
    print_targets(device, batch, rate["minimodal"], ours / theirs, peak)


if __name__ == "__main__":
    main()
