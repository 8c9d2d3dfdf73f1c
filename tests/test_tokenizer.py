"""The trainable byte-level BPE and the behaviour of CLIP's tokenizer (its parity is in
test_tokenizer_parity.py). Expected values here are worked out by hand."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minimodal.tokenizer as clip_tokenizer
from minimodal.bpe import BPE, apply_merges, merge_pair, pair_counts
from minimodal.tokenizer import CLIPTokenizer, clean_text, pre_split

a, b, c, d = b"abcd"  # 97, 98, 99, 100

# ---------------------------------------------------------------- the trainable BPE


def test_pair_counts_counts_overlapping_pairs():
    assert pair_counts([a, a, a, b]) == {(a, a): 2, (a, b): 1}
    assert pair_counts([a]) == {}
    assert pair_counts([a, b], pair_counts([a, b]), weight=3) == {(a, b): 4}


def test_merge_pair_replaces_left_to_right_without_overlap():
    assert merge_pair([a, a, a], (a, a), 256) == [256, a]
    assert merge_pair([a, b, c, a, b], (a, b), 256) == [256, c, 256]
    assert merge_pair([b, a], (a, b), 256) == [b, a]


def test_apply_merges_follows_the_order_merges_were_learned():
    # "abc" with (b, c) learned before (a, b): b and c join first, then nothing joins a
    merges = {(b, c): 256, (a, b): 257}
    assert apply_merges([a, b, c], merges) == [a, 256]
    assert apply_merges([a, b, c], {(a, b): 256, (b, c): 257}) == [256, c]
    assert apply_merges([], merges) == []


def test_training_on_the_classic_example():
    # aaabdaaabac: "aa" occurs 4 times (overlaps count); then ties go to the pair seen first
    tokenizer = BPE.train("aaabdaaabac", vocab_size=260)
    assert tokenizer.merges == {(a, a): 256, (256, a): 257, (257, b): 258, (258, d): 259}
    assert tokenizer.encode("aaabdaaabac") == [259, 258, a, c]
    assert tokenizer.vocab[259] == b"aaabd"


def test_training_stops_when_every_word_is_one_token():
    tokenizer = BPE.train("ab ab", vocab_size=1000)
    assert tokenizer.vocab_size == 258  # "ab" and " ab"


def test_merges_never_cross_words():
    tokenizer = BPE.train("ab ab ab cd cd", vocab_size=300)
    assert all(b" " not in token[1:] for token in tokenizer.vocab.values())


@pytest.fixture(scope="module")
def trained():
    text = ("A dog runs on the grass. Two cats sleep on a red sofa! Le café est très bon; "
            "一只猫坐在桌子上。 Emoji 🐶🐱👍🏽 and numbers 3.14, 1999, 42%. ") * 20
    return BPE.train(text, vocab_size=400)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_decode_inverts_encode_on_any_unicode(trained, text):
    assert trained.decode(trained.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_round_trip_holds_for_the_text_trained_on(text):
    tokenizer = BPE.train(text, vocab_size=300)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_save_and_load(trained, tmp_path):
    trained.save(tmp_path / "bpe.json")
    loaded = BPE.load(tmp_path / "bpe.json")
    assert loaded.merges == trained.merges
    assert loaded.encode("two cats on the grass") == trained.encode("two cats on the grass")


def test_bpe_errors_say_what_was_wrong(trained):
    with pytest.raises(ValueError, match="at least 256"):
        BPE.train("abc", vocab_size=10)
    with pytest.raises(TypeError, match="got bytes"):
        trained.encode(b"bytes")
    with pytest.raises(ValueError, match="id 400 is not in the vocabulary"):
        trained.decode([97, 400])
    with pytest.raises(ValueError, match="makes id 300"):
        BPE({(a, b): 300})
    with pytest.raises(ValueError, match="uses an id that no earlier merge made"):
        BPE({(a, 257): 256})


# ---------------------------------------------------------------- CLIP's cleaning and pre-split


def test_clean_text():
    assert clean_text("  A  Photo\tOF\n\n a CAT  ") == "a photo of a cat"
    assert clean_text("R&amp;amp;D &lt;b&gt;") == "r&d <b>"  # unescaped twice
    assert clean_text("cafÃ© donâ€™t") == "café don't"  # ftfy repairs mojibake and quotes
    assert clean_text("") == ""


def test_clean_text_without_ftfy(monkeypatch):
    monkeypatch.setattr(clip_tokenizer, "ftfy", None)
    assert clean_text("cafÃ© R&amp;amp;D") == "cafã© r&d"


PLAIN_ASCII = "".join(map(chr, [9, 10, *range(0x20, 0x7F)])).replace("&", "")


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=PLAIN_ASCII))
def test_ftfy_leaves_plain_ascii_alone(text):
    # the premise of clean_text's shortcut past ftfy, checked against ftfy itself
    ftfy = pytest.importorskip("ftfy", reason="the shortcut only matters when ftfy is installed")
    assert clip_tokenizer._FTFY_CANNOT_CHANGE.fullmatch(text)
    assert ftfy.fix_text(text) == text


@pytest.mark.parametrize("text", ["a &amp; b", "a\r\nb", "a\x00b", "\x1b[31mred", "café", "a\x7f"])
def test_text_ftfy_may_change_takes_no_shortcut(text):
    assert not clip_tokenizer._FTFY_CANNOT_CHANGE.fullmatch(text)


def test_pre_split():
    assert pre_split("it's 1999!! ok?") == ["it", "'s", "1", "9", "9", "9", "!!", "ok", "?"]
    assert pre_split("we'll café 一只猫 🐶🐱") == ["we", "'ll", "café", "一只猫", "🐶🐱"]
    assert pre_split("") == []


# ---------------------------------------------------------------- CLIP's tokenizer


@pytest.fixture(scope="module")
def clip():
    return CLIPTokenizer.from_openai()


def test_vocabulary_layout(clip):
    assert clip.vocab_size == 49_408
    assert clip.tokens[:3] == ["!", '"', "#"] and clip.tokens[256] == "!</w>"
    assert (clip.start_id, clip.end_id) == (49_406, 49_407)
    assert clip.ids["i"] + 256 == clip.ids["i</w>"]


def test_a_batch_is_start_ids_end_zeros(clip):
    batch = clip(["a photo of a cat", ""])
    assert batch.dtype == torch.long and batch.shape == (2, 77)
    assert batch[0, :7].tolist() == [49_406, *clip.encode("a photo of a cat"), 49_407]
    assert batch[0, 7:].eq(0).all()
    assert batch[1, :3].tolist() == [49_406, 49_407, 0]
    assert clip([]).shape == (0, 77)


def test_word_ends(clip):
    # "cat" ending a word is one token; inside "category" it is not followed by </w>
    assert clip.tokens[clip.encode("cat")[0]] == "cat</w>"
    assert all(not clip.tokens[i].endswith("</w>") for i in clip.encode("category")[:-1])


def test_the_context_holds_exactly_75_ids_of_text(clip):
    fits, too_long = "a " * 75, "a " * 76
    assert clip(fits)[0, -1] == clip.end_id
    with pytest.raises(ValueError, match=r"texts\[0\] is 78 tokens long .* holds 77; pass truncate=True"):
        clip(too_long)


def test_truncation_keeps_the_end_token_last(clip):
    text = " ".join(f"word{i}" for i in range(100))
    row = clip(text, truncate=True)[0]
    assert row[:76].tolist() == [clip.start_id, *clip.encode(text)[:75]]
    assert row[76] == clip.end_id


def test_non_string_input_is_a_clear_error(clip):
    with pytest.raises(TypeError, match="expected a str or a list of str, got int"):
        clip(3)
    with pytest.raises(TypeError, match=r"texts\[1\] is a NoneType"):
        clip(["fine", None])
    with pytest.raises(TypeError, match="expected text as a str, got bytes"):
        clip.encode(b"a cat")
    with pytest.raises(ValueError, match="at least 2"):
        CLIPTokenizer([], context_length=1)


def test_decode(clip):
    assert clip.decode(clip.encode("A photo of  a CAT!")) == "a photo of a cat ! "
    assert clip.decode(torch.tensor([49_406, 320, 49_407])) == "<|startoftext|>a <|endoftext|>"
    with pytest.raises(ValueError, match="id 49408 is not in the vocabulary"):
        clip.decode([49_408])


# ---------------------------------------------------------------- vocabulary files, on a tiny vocabulary

TINY_MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]


def test_tiny_vocabulary_encodes_with_its_merges():
    tiny = CLIPTokenizer(TINY_MERGES)
    assert tiny.vocab_size == 512 + 4 + 2
    assert [tiny.tokens[i] for i in tiny.encode("cat dogs")] == ["cat</w>", "do", "g", "s</w>"]


def test_pretrained_folder_round_trip(tmp_path):
    CLIPTokenizer(TINY_MERGES).save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.tokens == CLIPTokenizer(TINY_MERGES).tokens


def test_a_vocab_json_that_disagrees_is_named(tmp_path):
    CLIPTokenizer(TINY_MERGES).save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    vocab["cat</w>"], vocab["dog</w>"] = vocab["dog</w>"], vocab["cat</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="gives 'cat</w>' the id 515, but merges.txt makes it 513"):
        CLIPTokenizer.from_pretrained(tmp_path)

    del vocab["cat</w>"], vocab["dog</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps({**vocab, "cat</w>": 513, "dog</w>": 515,
                                                     "extra": 518}), encoding="utf-8")
    with pytest.raises(ValueError, match="1 tokens that merges.txt does not make, first 'extra'"):
        CLIPTokenizer.from_pretrained(tmp_path)


def test_bad_merges_are_named(tmp_path):
    with pytest.raises(ValueError, match="merge 0 .* uses a token that is neither"):
        CLIPTokenizer([("ca", "t")])
    with pytest.raises(ValueError, match="the token 'ca' is made twice"):
        CLIPTokenizer([("c", "a"), ("c", "a")])
    CLIPTokenizer(TINY_MERGES).save_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nc a\nca t</w> extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match="should be two tokens"):
        CLIPTokenizer.from_pretrained(tmp_path)
