"""Greedy generation speed: minimodal's ``generate`` next to transformers' LlamaForCausalLM.generate.

Both models hold the same random weights (the course LM's shape, a vocabulary of 512) and
write the same number of tokens from the same prompts: greedy, with the KV cache, no stop
token (minimodal is given none; transformers gets eos_token_id=None and min_new_tokens).
The script prints

1. tokens per second of each, the median of a few runs timed in alternation, and the ratio
   minimodal / transformers (above 1.0x: minimodal is faster), at batch 1 and batch 8. It
   checks on the way that both wrote the same tokens (in fp32; see ``check_same_tokens``).
2. the time of one decoding step of minimodal, with the cache and without it, once the
   sequence is L tokens long. With the cache a step feeds one new token, which attends to
   the L cached keys: about flat in L. Without, a step runs all L tokens again: linear in L
   (and more, once the L x L attention scores weigh). Writing a whole sequence of L tokens is
   the sum of its steps, so it costs time linear in L with the cache, quadratic without.

Timings are ratios within one run, never held against a fixed number: a busy machine slows
both sides. The output says how many CPU threads torch used; the default is one, because
the matrices of this model are so small that a second thread costs more in handing work
over than it saves, and far more when other jobs share the cores.

    python benchmarks/generate.py                        # CPU, fp32, under two minutes on 2 cores
    python benchmarks/generate.py --device cuda --dtype bf16
    python benchmarks/generate.py --new-tokens 32 --repeats 3 --csv generate.csv
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from minimodal.convert_llama import save_lm_checkpoint
from minimodal.device import pick_device
from minimodal.generate import generate
from minimodal.lm import LanguageModel, LMConfig

VOCAB = 512
PROMPT_LENGTH = 16
STEPS_PER_LENGTH = 16  # decoding steps timed at each length of part 2
PAD_ID = 0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_lm(max_length: int, seed: int = 0) -> LanguageModel:
    """The course LM's shape (LMConfig's defaults) with random weights, spread wider than training's init.

    At std 0.02 an untrained model's logits are all near zero and greedy decoding repeats
    one token; at 0.1, with norm gains around one, the tokens it writes vary.
    """
    torch.manual_seed(seed)
    model = LanguageModel(LMConfig(vocab_size=VOCAB, max_length=max_length))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(1.0, 0.2) if p.dim() == 1 else p.normal_(0.0, 0.1)
    return model.eval()


def reference_of(model: LanguageModel, folder: Path) -> LlamaForCausalLM:
    """LlamaForCausalLM with the same weights, through the course's export and transformers' own loader."""
    save_lm_checkpoint(model, folder)
    return LlamaForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()


def make_prompts(batch: int, length: int = PROMPT_LENGTH, seed: int = 1) -> list[list[int]]:
    """``batch`` random prompts: one alone is ``length`` tokens; a batch mixes length - 4 to length
    tokens, so that it is left-padded as real prompts would be."""
    rng = random.Random(seed)
    lengths = [length] if batch == 1 else [rng.randint(length - 4, length) for _ in range(batch)]
    return [[rng.randrange(1, VOCAB) for _ in range(n)] for n in lengths]


def minimodal_generate(model: LanguageModel, prompts, new_tokens: int, use_cache: bool = True) -> list[list[int]]:
    return generate(model, prompts, new_tokens, pad_id=PAD_ID, use_cache=use_cache)  # no stop tokens


def transformers_generate(model: LlamaForCausalLM, prompts, new_tokens: int) -> list[list[int]]:
    """The same left padding as minimodal's; transformers derives positions from the attention mask too."""
    device, width = model.device, max(len(p) for p in prompts)
    ids = torch.tensor([[PAD_ID] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=PAD_ID)
    return out[:, width:].tolist()


def timed(run, device: torch.device) -> tuple[float, list[list[int]]]:
    """Seconds one call of ``run()`` takes, waiting for the GPU to finish, and what it returned."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


# Part 1: minimodal against transformers, tokens per second

def compare_throughput(mine, reference, batch: int, new_tokens: int, repeats: int, device) -> dict[str, float]:
    """Median tokens/s of both, timed in alternation after a warm-up each, and the tokens they wrote."""
    prompts = make_prompts(batch)
    runs = {"minimodal": lambda: minimodal_generate(mine, prompts, new_tokens),
            "transformers": lambda: transformers_generate(reference, prompts, new_tokens)}
    seconds, tokens = {name: [] for name in runs}, {}
    for i in range(repeats + 1):
        for name, run in runs.items():
            elapsed, tokens[name] = timed(run, device)
            if i > 0:  # the first round is the warm-up
                seconds[name].append(elapsed)
    written = batch * new_tokens
    return {name: written / statistics.median(s) for name, s in seconds.items()}, tokens


def check_same_tokens(ours: list[list[int]], theirs: list[list[int]], new_tokens: int, exact: bool) -> str:
    """A correctness guard, not a timing: the same weights and greedy decoding write the same tokens.

    In fp32 they must agree exactly. In bf16 the two round differently (minimodal turns
    queries and keys by float32 angles, transformers first casts the angles to bf16), so
    two nearly tied logits can swap and the rows part ways from there: it is reported only.
    """
    assert all(len(row) == new_tokens for row in ours + theirs), "a generation stopped early"
    distinct = len({t for row in ours for t in row})
    assert distinct > 4, f"only {distinct} distinct tokens written: the weights make a degenerate model"
    same = sum(a == b for x, y in zip(ours, theirs) for a, b in zip(x, y))
    if exact:
        differ = [i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y]
        assert not differ, f"minimodal and transformers wrote different tokens in rows {differ}"
    return f"{same}/{len(ours) * new_tokens} tokens identical" + ("" if exact else ", bf16: not asserted")


# Part 2: minimodal with and without the cache, as the sequence grows

def step_seconds(model, length: int, use_cache: bool, repeats: int, device) -> float:
    """Seconds of one decoding step once the sequence is about ``length`` tokens long.

    A prompt of length - STEPS_PER_LENGTH tokens is continued by STEPS_PER_LENGTH tokens,
    and by one token: both run the same prefill, so the difference of the two times is
    STEPS_PER_LENGTH - 1 decoding steps. Each time is the best of ``repeats``: a difference
    of two times doubles the noise, and other jobs only ever add time.
    """
    prompts = make_prompts(1, length - STEPS_PER_LENGTH)
    times = {1: [], STEPS_PER_LENGTH: []}
    for i in range(repeats + 1):
        for new_tokens in times:
            elapsed, _ = timed(lambda: minimodal_generate(model, prompts, new_tokens, use_cache), device)
            if i > 0:
                times[new_tokens].append(elapsed)
    steps = min(times[STEPS_PER_LENGTH]) - min(times[1])
    return steps / (STEPS_PER_LENGTH - 1)


def cache_growth(lengths: list[int], repeats: int, device, dtype) -> list[dict]:
    """Milliseconds per decoding step with and without the cache, batch 1, at each sequence length."""
    rows = []
    for length in lengths:
        model = make_lm(max_length=length).to(device, dtype)
        cached = step_seconds(model, length, True, repeats, device)
        uncached = step_seconds(model, length, False, repeats, device)
        rows.append({"length": length, "cached_ms": 1e3 * cached, "uncached_ms": 1e3 * uncached})
    return rows


def write_csv(path: str, throughput: list[dict], growth: list[dict]) -> None:
    """One long-format file, the two parts told apart by the ``part`` column, ready to plot."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["part", "x_name", "x", "series", "value", "unit"])
        for row in throughput:
            for name in ("minimodal", "transformers"):
                writer.writerow(["throughput", "batch", row["batch"], name, f"{row[name]:.2f}", "tokens/s"])
        for row in growth:
            for series in ("cached", "uncached"):
                writer.writerow(["cache", "length", row["length"], series, f"{row[f'{series}_ms']:.4f}",
                                 "ms/step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32", help="fp32, or bf16 (for cuda)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens written per prompt in part 1")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement, after 1 warm-up")
    parser.add_argument("--lengths", default="32,64,128,256,512", help="sequence lengths of part 2")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--csv", default=None, help="also write both parts' numbers to this CSV file")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = pick_device(args.device), DTYPES[args.dtype]
    lengths = [int(n) for n in args.lengths.split(",")]
    if min(lengths) <= STEPS_PER_LENGTH:
        parser.error(f"every length must exceed the {STEPS_PER_LENGTH} steps timed at it")
    mine = make_lm(max_length=PROMPT_LENGTH + args.new_tokens).to(device, dtype)
    c = mine.config
    print(f"course LM shape (width {c.width}, {c.layers} layers, {c.heads} heads, {c.kv_heads} kv heads, "
          f"SwiGLU {c.mlp_width}, tied), vocab {VOCAB}, random weights; {device.type}, {args.dtype}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    with tempfile.TemporaryDirectory() as folder:
        reference = reference_of(mine, Path(folder)).to(device, dtype)
    print(f"\n1. greedy with the KV cache, prompts of ~{PROMPT_LENGTH} tokens, {args.new_tokens} new tokens, "
          f"median of {args.repeats} after a warm-up; transformers on sdpa attention")
    throughput = []
    for batch in (1, 8):
        speed, tokens = compare_throughput(mine, reference, batch, args.new_tokens, args.repeats, device)
        same = check_same_tokens(tokens["minimodal"], tokens["transformers"], args.new_tokens,
                                 exact=dtype == torch.float32)
        throughput.append({"batch": batch, **speed})
        print(f"   batch {batch}: minimodal {speed['minimodal']:8.1f} tokens/s   transformers "
              f"{speed['transformers']:8.1f} tokens/s   ratio {speed['minimodal'] / speed['transformers']:.2f}x"
              f"   ({same})")

    print(f"\n2. one decoding step of minimodal at sequence length L, batch 1, with and without the cache, "
          f"best of {args.repeats}")
    print(f"   {'L':>5}  {'cached ms/step':>14}  {'uncached ms/step':>16}  {'uncached / cached':>17}")
    growth = cache_growth(lengths, args.repeats, device, dtype)
    for row in growth:
        print(f"   {row['length']:>5}  {row['cached_ms']:>14.2f}  {row['uncached_ms']:>16.2f}  "
              f"{row['uncached_ms'] / row['cached_ms']:>16.1f}x")
    if args.csv:
        write_csv(args.csv, throughput, growth)
        print(f"\nwrote {args.csv}")


if __name__ == "__main__":
    main()
