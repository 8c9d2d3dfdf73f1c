"""Throughput of minimodal's CLIP next to transformers' CLIPModel (sdpa), ViT-B/32 shape.

Both models hold the same weights and see the same batch in the same run; the script
prints image-text pairs per second for a forward pass and for forward + backward, and
the ratio minimodal / transformers (above 1.0: minimodal is faster). On CUDA both run
under bf16 autocast. The two are timed in alternation, so a noisy machine hurts both.

    python benchmarks/model.py                 # CPU here, CUDA when present
    python benchmarks/model.py --batch 64 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import CLIPConfig as HFCLIPConfig
from transformers import CLIPModel

from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import hf_config, load_hf_state_dict
from minimodal.device import autocast, pick_device, seed_everything


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


def time_once(step, model, pixels, ids, backward: bool, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast(device):
        logits = step(model, pixels, ids)
    if backward:
        logits.float().logsumexp(dim=1).mean().backward()
        model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(models, pixels, ids, backward: bool, steps: int, warmup: int, device) -> dict[str, float]:
    """Median seconds per step of each model, timed in alternation."""
    times = {name: [] for name in models}
    context = torch.enable_grad() if backward else torch.no_grad()
    with context:
        for i in range(warmup + steps):
            for name, (step, model) in models.items():
                seconds = time_once(step, model, pixels, ids, backward, device)
                if i >= warmup:
                    times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--batch", type=int, default=None, help="pairs per step (default: 8 CPU, 128 CUDA)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    device = pick_device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 8)
    seed_everything(0)
    mine, reference = make_models(device)
    pixels, ids = make_batch(batch, device)
    models = {"minimodal": (minimodal_step, mine), "transformers": (transformers_step, reference)}
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"CLIP ViT-B/32 shape, batch {batch}, {device.type}, {precision}, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    for label, backward in (("forward", False), ("forward+backward", True)):
        seconds = compare(models, pixels, ids, backward, args.steps, args.warmup, device)
        ours, theirs = batch / seconds["minimodal"], batch / seconds["transformers"]
        print(f"{label:>17}: minimodal {ours:8.1f} pairs/s   transformers {theirs:8.1f} pairs/s   "
              f"ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
