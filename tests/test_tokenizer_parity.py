"""CLIP's tokenizer against two independent references, id for id, on CLIP's real vocabulary.

References: open_clip's SimpleTokenizer (OpenAI's Python code, loaded from its file because
``import open_clip`` needs torchvision) and transformers' CLIPTokenizer (Rust), built from a
vocab.json and merges.txt constructed here from open_clip's tables, not by our writer.
"""

import importlib.util
import json
import random
import unicodedata

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minimodal.tokenizer import CONTEXT_LENGTH, CLIPTokenizer, open_clip_file

transformers = pytest.importorskip("transformers", reason="transformers is the second reference")

CORPUS_SIZE = 10_000
LONG_TEXTS = 20  # texts of 1,000 words; the rest of the corpus is split evenly between categories


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    try:
        path = open_clip_file("tokenizer.py")
    except FileNotFoundError as missing:
        pytest.skip(f"open_clip's SimpleTokenizer is the reference: {missing}")
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def simple_tokenizer(open_clip_tokenizer):
    return open_clip_tokenizer.SimpleTokenizer()


@pytest.fixture(scope="module")
def ours():
    return CLIPTokenizer.from_openai()


@pytest.fixture(scope="module")
def reference_files(simple_tokenizer):
    """vocab.json's dict and merges.txt's pairs, made from open_clip's own tables.

    open_clip names the special tokens <start_of_text> and <end_of_text>; checkpoint
    folders use OpenAI's original names.
    """
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {renamed.get(token, token): i for token, i in simple_tokenizer.encoder.items()}
    merges = sorted(simple_tokenizer.bpe_ranks, key=simple_tokenizer.bpe_ranks.get)
    return vocab, merges


@pytest.fixture(scope="module")
def hf_tokenizer(reference_files):
    vocab, merges = reference_files
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges)


# ---------------------------------------------------------------- the corpus, one maker per category

NOUNS = ("dog cat man woman child bicycle skateboard pizza train bus clock giraffe kite surfboard "
         "umbrella table plate banana sandwich elephant horse boat street kitchen beach field "
         "laptop phone teddy bear zebra sheep cow bird motorcycle airplane truck toilet sink").split()
ADJECTIVES = "red blue green small large old young wooden white black yellow busy empty tall".split()
VERBS = "sitting standing riding holding eating walking playing flying lying looking parked".split()
PLACES = ("on the grass", "in a kitchen", "next to a tree", "near the water", "on a table",
          "down the street", "in the snow", "at the beach", "under an umbrella", "in a field")


def caption(rng):
    text = (f"{rng.choice(['a', 'the', 'two', 'some', 'an old'])} {rng.choice(ADJECTIVES)} "
            f"{rng.choice(NOUNS)} {rng.choice(VERBS)} {rng.choice(PLACES)}")
    text = rng.choice([str.lower, str.capitalize, str.upper, str.title])(text)
    return text + rng.choice([".", "", " .", "!", "..."])


def punctuation(rng):
    marks = "!?.,;:-—–…\"'()[]{}<>/\\|@#$%^*+=~`_«»¿¡§¶•"
    runs = ["".join(rng.choice(marks) for _ in range(rng.randint(1, 5))) for _ in range(4)]
    words = [rng.choice(NOUNS) for _ in range(3)]
    return "".join(rng.choice(["", " "]).join(pair) for pair in zip(runs, words + [""]))


def digits(rng):
    forms = [lambda: str(rng.randint(0, 10**rng.randint(1, 12))),
             lambda: f"{rng.uniform(-1000, 1000):.{rng.randint(1, 5)}f}",
             lambda: f"{rng.randint(1, 999):,}{rng.randint(100, 999)}",
             lambda: f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(1900, 2030)}",
             lambda: f"+1 ({rng.randint(200, 999)}) 555-{rng.randint(0, 9999):04d}",
             lambda: f"{rng.randint(0, 100)}% of {rng.randint(2, 99)} {rng.choice(NOUNS)}s",
             lambda: f"{rng.choice(['²', '½', '٣', '४', '௫', 'Ⅻ', '①'])}{rng.randint(0, 9)}"]
    return " ".join(rng.choice(forms)() for _ in range(rng.randint(1, 4)))


def contractions(rng):
    forms = ["it's", "don't", "they're", "I've", "I'm", "we'll", "he'd", "can't", "y'all",
             "rock 'n' roll", "'tis", "o'clock", "IT'S", "WE'RE", "It’s", "don’t", "’m", "’s"]
    return " ".join(rng.choice(forms + NOUNS) for _ in range(rng.randint(2, 8)))


def accents(rng):
    words = ["café", "naïve", "Ångström", "São Paulo", "Dvořák", "résumé", "façade", "jalapeño",
             "Zürich", "Straße", "cafe\u0301", "e\u0301te\u0301", "Σίσυφος", "ΣΟΦΟΣ", "Москва",
             "Tiếng Việt", "İstanbul", "ǅemal", "ﬁﬂ", "Ŀlorenç", "Đorđe", "Ærøskøbing", "ÇA VA"]
    return " ".join(rng.choice(words + NOUNS) for _ in range(rng.randint(1, 6)))


def cjk(rng):
    blocks = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0xFF01, 0xFF5E)]
    pieces = []
    for _ in range(rng.randint(1, 4)):
        low, high = rng.choice(blocks)
        pieces.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 8))))
        pieces.append(rng.choice(["", " ", "、", "。", " a ", rng.choice(NOUNS)]))
    return "".join(pieces)


def emoji(rng):
    symbols = ["🐶", "🍕", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "🇯🇵", "1️⃣", "❤️", "✨", "🏳️‍🌈", "😀", "🤖"]
    return " ".join(rng.choice(symbols) * rng.randint(1, 3) + rng.choice(["", " ", rng.choice(NOUNS)])
                    for _ in range(rng.randint(1, 5)))


def html_entities(rng):
    forms = ["&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;", "&quot;quoted&quot;", "&nbsp;", "&#x1F600;",
             "&amp;amp;", "&amp;amp;amp;", "&eacute;t&eacute;", "&copy; 2020", "AT&T", "&unknown;",
             "R&amp;D", "&#8220;hi&#8221;", "&lt;", "&gt;", "<b>&amp;</b>", "fish &chips"]
    return " ".join(rng.choice(forms + NOUNS) for _ in range(rng.randint(1, 6)))


def whitespace(rng):
    gaps = [" ", "  ", "\t", "\n", "\r\n", " \t \n ", "\u00a0", "\u3000", "\u2003", "\u200b", "\x0b"]
    words = [rng.choice(NOUNS) for _ in range(rng.randint(1, 6))]
    return rng.choice(gaps) + "".join(w + rng.choice(gaps) for w in words)


def empty(rng):
    return rng.choice(["", " ", "\n", "\t\t", "   \n  ", "\u3000", "\u00a0\u00a0"])


def broken_unicode(rng):
    """Mojibake and stray control characters, which ftfy repairs."""
    forms = ["cafÃ©", "â€œquotedâ€\x9d", "donâ€™t", "Ã¼ber", "\x1b[31mred\x1b[0m", "a\x00b",
             "tab\x07bell", "ﬁnal", "ＬＯＵＤ", "\x9d\x85"]
    return " ".join(rng.choice(forms + NOUNS) for _ in range(rng.randint(1, 5)))


def random_unicode(rng):
    """Assigned code points from all over the map.

    Unassigned ones are left out: the regex module and transformers' Rust regex engine
    follow different Unicode versions, so they disagree on which of those are letters.
    (The hypothesis test below compares unassigned code points with open_clip.)
    """
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x1FFF), (0x2000, 0x2BFF), (0xE000, 0xFFFD),
              (0x10000, 0x1FAFF)]
    text, length = "", rng.randint(1, 30)
    while len(text) < length:
        c = chr(rng.randint(*rng.choice(ranges)))
        if unicodedata.category(c) != "Cn":
            text += c
    return text


def long_text(rng):
    words = []
    while len(words) < 1000:
        words += rng.choice([caption, contractions, accents, digits, emoji, cjk])(rng).split()
    return " ".join(words[:1000])


CATEGORIES = [caption, punctuation, digits, contractions, accents, cjk, emoji, html_entities,
              whitespace, empty, broken_unicode, random_unicode]


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(0)
    texts = [long_text(rng) for _ in range(LONG_TEXTS)]
    per_category = (CORPUS_SIZE - LONG_TEXTS) // len(CATEGORIES)
    texts += [make(rng) for make in CATEGORIES for _ in range(per_category)]
    texts += [caption(rng) for _ in range(CORPUS_SIZE - len(texts))]
    return texts


# ---------------------------------------------------------------- parity


def test_corpus_covers_every_category(corpus):
    assert len(corpus) == CORPUS_SIZE
    assert sum(len(t.split()) == 1000 for t in corpus) == LONG_TEXTS
    assert "" in corpus
    assert any("&amp;" in t for t in corpus) and any("\u3000" in t for t in corpus)
    assert any("👍🏽" in t for t in corpus) and any("'s" in t for t in corpus)


def test_ids_equal_open_clip(ours, simple_tokenizer, corpus):
    mismatches = [t for t in corpus if ours.encode(t) != simple_tokenizer.encode(t)]
    assert not mismatches, f"{len(mismatches)} texts differ from open_clip, first {mismatches[0]!r}"


def test_context_rows_equal_open_clip(ours, simple_tokenizer, corpus):
    # open_clip always truncates and keeps the end token last, as truncate=True does.
    expected = simple_tokenizer(corpus)
    actual = ours(corpus, truncate=True)
    assert actual.dtype == torch.long and actual.shape == (CORPUS_SIZE, CONTEXT_LENGTH)
    differ = (actual != expected).any(dim=1).nonzero().flatten().tolist()
    assert not differ, f"{len(differ)} rows differ from open_clip, first for {corpus[differ[0]]!r}"


def test_ids_equal_transformers(ours, hf_tokenizer, open_clip_tokenizer, corpus):
    # transformers' CLIPTokenizer replaces ftfy and HTML unescaping with NFC, so it is given
    # the text already cleaned by open_clip's own function; the rest is transformers' doing.
    cleaned = [open_clip_tokenizer._clean_lower(t) for t in corpus]
    expected = hf_tokenizer(cleaned, add_special_tokens=False)["input_ids"]
    mismatches = [t for t, e in zip(corpus, expected) if ours.encode(t) != e]
    assert not mismatches, f"{len(mismatches)} texts differ from transformers, first {mismatches[0]!r}"


def test_context_rows_equal_transformers(ours, hf_tokenizer, open_clip_tokenizer, corpus):
    cleaned = [open_clip_tokenizer._clean_lower(t) for t in corpus]
    batch = hf_tokenizer(cleaned, padding="max_length", max_length=CONTEXT_LENGTH,
                         truncation=True, return_tensors="pt")
    expected = batch["input_ids"] * batch["attention_mask"]  # transformers pads with the end token, CLIP with 0
    assert torch.equal(ours(corpus, truncate=True), expected)


def test_long_texts_are_an_error_without_truncate(ours, corpus):
    long_text = next(t for t in corpus if len(t.split()) >= 1000)
    with pytest.raises(ValueError, match=r"texts\[0\] is \d+ tokens long.*truncate=True"):
        ours(long_text)


def test_decode_equals_open_clip(ours, simple_tokenizer, corpus):
    # open_clip turns every '</w>' in the decoded text into a space, even one the text spelled
    for text in corpus[:2000]:
        if "</w>" not in text:
            ids = ours.encode(text)
            assert ours.decode(ids) == simple_tokenizer.decode(ids), text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_unicode_equals_open_clip(ours, simple_tokenizer, text):
    # open_clip turns its own special-token names found in a text into special ids; we do not
    assume(not any(name in text.lower() for name in ("<start_of_text>", "<end_of_text>")))
    assert ours.encode(text) == simple_tokenizer.encode(text)


def test_special_token_names_in_text_are_plain_text(ours, simple_tokenizer):
    # CLIP's original names are ordinary text for open_clip, and for us
    text = "<|endoftext|> a <|startoftext|>"
    assert ours.encode(text) == simple_tokenizer.encode(text)


# ---------------------------------------------------------------- vocabulary files


def test_written_files_equal_an_independent_construction(ours, reference_files, tmp_path):
    vocab, merges = reference_files
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == vocab
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2"
    assert lines[1:] == [f"{left} {right}" for left, right in merges] + [""]


def test_transformers_reads_our_files(ours, hf_tokenizer, corpus, tmp_path):
    ours.save_pretrained(tmp_path)
    loaded = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    sample = corpus[::50]
    assert (loaded(sample, add_special_tokens=False)["input_ids"]
            == hf_tokenizer(sample, add_special_tokens=False)["input_ids"])


def test_we_read_transformers_files(simple_tokenizer, reference_files, corpus, tmp_path):
    # transformers 5 saves only tokenizer.json, so the two files are written here by hand
    vocab, merges = reference_files
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8")
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.vocab_size == 49_408
    assert all(loaded.encode(t) == simple_tokenizer.encode(t) for t in corpus[::20])
