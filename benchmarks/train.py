"""How fast the course CLIP recipe trains: one process against two under torchrun.

Each run is the shapes-CLIP recipe of lesson 06 (``minimodal.pretrained``), evaluated
every ``--eval-every`` steps on 540 held-out single-shape images. The script prints, per
run, training steps per second and the training seconds until zero-shot accuracy first
reaches the course's 95% target (evaluation time is not counted: ``History.seconds``
measures the steps alone), and the ratio of the two runs measured in the same call.

On a CPU the two processes share the machine's cores (torchrun gives each one thread),
so the comparison asks whether splitting the batch beats threading inside one process.
On CUDA it is one GPU against two, when the machine has two.

    python benchmarks/train.py                      # the whole recipe (1600 steps), CPU here
    python benchmarks/train.py --steps 400          # a shorter run (the target may not be reached)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from minimodal import distributed
from minimodal.device import pick_device
from minimodal.pretrained import Recipe, train_shapes_clip

TARGET = 0.95
MARK = "RESULT "  # the line a worker prints for the parent to read


def worker(steps: int, eval_every: int, device: str | None) -> None:
    """Train once (as one of torchrun's processes, or alone) and print the measurements."""
    device = pick_device(device)
    distributed.start(device)
    recipe = Recipe(steps=steps, warmup_steps=min(Recipe.warmup_steps, steps))
    _, history = train_shapes_clip(recipe, device=device, progress=False, eval_every=eval_every)
    if distributed.is_main():
        reached = [e["step"] for e in history.evals if e["zero-shot accuracy"] >= TARGET]
        print(MARK + json.dumps({
            "processes": distributed.world_size(), "device": device.type, "steps": steps,
            "steps_per_second": steps / history.seconds[-1],
            "seconds_to_target": history.seconds[reached[0]] if reached else None,
            "final_accuracy": history.evals[-1]["zero-shot accuracy"]}))
    distributed.stop()


def launch(processes: int, args) -> dict:
    """Run the worker in a fresh interpreter (under torchrun for more than one process)."""
    command = [sys.executable, __file__, "--worker", "--steps", str(args.steps),
               "--eval-every", str(args.eval_every)]
    if args.device:
        command += ["--device", args.device]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}"] + command[1:]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {processes}-process run failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK):])


def report(result: dict) -> str:
    to_target = (f"{result['seconds_to_target']:.1f} s to {TARGET:.0%}" if result["seconds_to_target"] is not None
                 else f"{TARGET:.0%} not reached")
    return (f"{result['processes']} process(es) on {result['device']}: {result['steps_per_second']:.2f} steps/s, "
            f"{to_target}, final zero-shot accuracy {result['final_accuracy']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=Recipe.steps)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.eval_every, args.device)
        return

    device = pick_device(args.device)
    counts = [1, 2] if device.type == "cpu" or torch.cuda.device_count() >= 2 else [1]
    print(f"shapes-CLIP recipe, {args.steps} steps, batch {Recipe.batch_size}, {device.type}")
    results = []
    for processes in counts:
        results.append(launch(processes, args))
        print(report(results[-1]), flush=True)
    if len(results) == 2:
        one, two = results
        print(f"two processes / one: {two['steps_per_second'] / one['steps_per_second']:.2f}x steps per second")
    else:
        print("one GPU only: the two-process run needs two")


if __name__ == "__main__":
    main()
