"""Tokenizing speed: minimodal's CLIPTokenizer against open_clip and transformers, same run.

Encodes 100,000 synthetic captions into (B, 77) id tensors, in batches of 1,000 as a data
loader would, with a fresh tokenizer per run so word caches start cold. Prints captions
per second, the ratio to open_clip's SimpleTokenizer (the same algorithm in pure Python)
and to transformers' CLIPTokenizer (Rust), and whether the ids are identical. transformers
does not run ftfy, so it keeps curly quotes that CLIP straightens: its ids differ on the
captions that hold them.

    python benchmarks/tokenizer.py [--captions 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import time

import torch

from minimodal.tokenizer import CONTEXT_LENGTH, CLIPTokenizer, open_clip_file

BATCH = 1000
SUBJECTS = ("dog cat man woman boy girl child player skier surfer horse elephant giraffe zebra "
            "bird bus train truck car bicycle motorcycle boat airplane kite pizza sandwich cake "
            "clock laptop umbrella bench cow sheep bear teddy toilet vase").split()
ADJECTIVES = "small large young old red blue green white black yellow brown wooden busy empty".split()
ACTIONS = ("sitting on", "standing next to", "riding", "holding", "eating", "walking along",
           "playing with", "flying over", "lying on", "looking at", "parked beside", "jumping over")
PLACES = ("a table", "the grass", "a city street", "the beach", "a snowy slope", "the water",
          "a kitchen counter", "a field", "the sidewalk", "a plate", "a fence", "the ocean")
NON_ASCII = ("café", "naïve", "Zürich", "jalapeño", "🐶", "👍🏽", "—", "“quoted”", "東京")


def rare_word(rng: random.Random) -> str:
    """A made-up word, so a realistic share of words miss the tokenizers' caches."""
    syllables = "ka lo mi ne su ra te vi do pa bel cor dan fis gor hul"
    return "".join(rng.choice(syllables.split()) for _ in range(rng.randint(2, 4)))


def make_captions(n: int, seed: int = 0) -> list[str]:
    """COCO-like captions: mostly ASCII, some capitals, digits and rare words, 5% non-ASCII."""
    rng = random.Random(seed)
    captions = []
    for _ in range(n):
        words = [rng.choice(["A", "The", "Two", "Three", "An old", "Some"]), rng.choice(ADJECTIVES),
                 rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES)]
        if rng.random() < 0.3:
            words.append(f"with {rng.randint(2, 12)} {rng.choice(SUBJECTS)}s")
        if rng.random() < 0.2:
            words.append(f"near the {rare_word(rng)}")
        if rng.random() < 0.05:
            words.append(rng.choice(NON_ASCII))
        captions.append(" ".join(words) + rng.choice([".", "", " .", "!"]))
    return captions


def load_references():
    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", open_clip_file("tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # open_clip turns off the Rust tokenizer's threads on import; give transformers them back
    if parallelism is None:
        os.environ.pop("TOKENIZERS_PARALLELISM")
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = parallelism
    import transformers

    def open_clip_fresh():
        return module.SimpleTokenizer()

    def transformers_fresh():
        # vocab.json and merges.txt built from open_clip's tables, special tokens renamed
        tokenizer = module.SimpleTokenizer()
        renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
        vocab = {renamed.get(token, token): i for token, i in tokenizer.encoder.items()}
        merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
        hf = transformers.CLIPTokenizer(vocab=vocab, merges=merges)

        def tokenize(texts):
            batch = hf(texts, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
                       return_tensors="pt")
            return batch["input_ids"] * batch["attention_mask"]  # CLIP pads with 0
        return tokenize
    return open_clip_fresh, transformers_fresh


def timed_run(make_tokenizer, captions: list[str]) -> tuple[float, torch.Tensor]:
    tokenize = make_tokenizer()
    start = time.perf_counter()
    ids = torch.cat([tokenize(captions[i:i + BATCH]) for i in range(0, len(captions), BATCH)])
    return time.perf_counter() - start, ids


def benchmark(captions: list[str], repeats: int, title: str) -> None:
    open_clip_fresh, transformers_fresh = load_references()
    contenders = {"minimodal CLIPTokenizer": CLIPTokenizer.from_openai,
                  "open_clip SimpleTokenizer": open_clip_fresh,
                  "transformers CLIPTokenizer": transformers_fresh}
    seconds, ids = {}, {}
    for _ in range(repeats):  # interleaved, so a busy moment on the machine hits all three
        for name, make in contenders.items():
            elapsed, ids[name] = timed_run(make, captions)
            seconds[name] = min(seconds.get(name, float("inf")), elapsed)
    ours = "minimodal CLIPTokenizer"
    print(f"\n{title}: {len(captions):,} captions, best of {repeats}, batches of {BATCH}")
    for name in contenders:
        same = "identical ids" if torch.equal(ids[name], ids[ours]) else \
            f"ids DIFFER in {(ids[name] != ids[ours]).any(1).sum()} rows"
        print(f"  {name:28s} {len(captions) / seconds[name]:>10,.0f} captions/s   "
              f"minimodal is {seconds[name] / seconds[ours]:5.2f}x   {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    captions = make_captions(args.captions)
    benchmark(captions, args.repeats, "all captions")
    unusual = [c for c in captions if not c.isascii()]
    benchmark(unusual, args.repeats, "only the captions with non-ASCII characters")


if __name__ == "__main__":
    main()
