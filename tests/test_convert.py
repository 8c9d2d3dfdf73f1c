"""Key maps and loaders: transformers CLIPModel, OpenAI CLIP and open_clip state dicts, the HF cache."""

import importlib
import importlib.util
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel

from clip_reference import SMALL_SHAPES, hf_config_for, mismatch_message, sample_inputs, twins
from minimodal.check import assert_close, assert_close_layers
from minimodal.clip import CLIP, CLIPConfig
from minimodal.clip_api import load_model
from minimodal.convert import (clip_config_from_hf, load_hf_checkpoint, load_hf_state_dict,
                               save_hf_checkpoint, to_hf_state_dict)
from minimodal.convert_openai import (clip_config_from_openai, load_openai_checkpoint, load_openai_state_dict,
                                      to_openai_state_dict)
from minimodal.hub import find_in_hf_cache, hf_cache_dirs
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

TINY = CLIPConfig(*SMALL_SHAPES["tiny"])


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} changed"


def test_vit_b32_shape_matches_transformers_clip(device):
    """One model at the real size (151M parameters; slow on 2 cores): the small shapes test sdpa."""
    config, attn = CLIPConfig(), "eager"
    mine, reference = twins(config, attn, device=device)
    pixels, ids = sample_inputs(config, batch=2, device=device)
    with torch.no_grad():
        out = reference(pixel_values=pixels, input_ids=ids, output_hidden_states=True)
        logits_per_image, logits_per_text = mine(pixels, ids)
        assert_close_layers(mine.visual.hidden_states(pixels), out.vision_model_output.hidden_states,
                            what="ViT-B/32 hidden states", against=f"CLIPVisionModel ({attn})")
        assert_close_layers(mine.text.hidden_states(ids), out.text_model_output.hidden_states,
                            what="ViT-B/32 text hidden states", against=f"CLIPTextModel ({attn})")
        image = reference.get_image_features(pixel_values=pixels).pooler_output
        text = reference.get_text_features(input_ids=ids).pooler_output
        assert_close(mine.encode_image(pixels), image, what="ViT-B/32 image embeddings",
                     against=f"CLIPModel ({attn})", atol=1e-5)
        assert_close(mine.encode_text(ids), text, what="ViT-B/32 text embeddings",
                     against=f"CLIPModel ({attn})", atol=1e-5)
    assert_close(logits_per_image, out.logits_per_image, what="logits per image", against="CLIPModel",
                 atol=1e-4, rtol=1e-5)
    assert_close(logits_per_text, out.logits_per_text, what="logits per text", against="CLIPModel",
                 atol=1e-4, rtol=1e-5)


def test_logit_scale_starts_at_log_1_over_0_07_and_is_capped_at_100():
    model = CLIP(TINY)
    assert model.logit_scale.item() == pytest.approx(2.6592, abs=1e-4)
    pixels, ids = sample_inputs(TINY, batch=2)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
        logits, _ = model(pixels, ids)
    assert logits.abs().max() <= 100.0 + 1e-4
    assert logits.abs().max() > 1.0


@pytest.mark.parametrize("shape", sorted(SMALL_SHAPES))
def test_round_trip_through_transformers_is_bit_exact(shape):
    config = CLIPConfig(*SMALL_SHAPES[shape])
    torch.manual_seed(0)
    original = CLIP(config)
    reference = CLIPModel(hf_config_for(config))
    reference.load_state_dict(to_hf_state_dict(original), strict=True)
    back = load_hf_state_dict(CLIP(config), reference.state_dict())
    assert_same_weights(back, original)


def test_saved_checkpoint_loads_in_transformers_and_back(tmp_path):
    torch.manual_seed(0)
    original = CLIP(TINY).eval()
    save_hf_checkpoint(original, tmp_path / "ckpt")
    reference = CLIPModel.from_pretrained(tmp_path / "ckpt").eval()
    pixels, ids = sample_inputs(TINY)
    with torch.no_grad():
        assert_close(original.encode_image(pixels),
                     reference.get_image_features(pixel_values=pixels).pooler_output,
                     what="exported image embeddings", against="transformers from_pretrained")
        assert_close(original.encode_text(ids), reference.get_text_features(input_ids=ids).pooler_output,
                     what="exported text embeddings", against="transformers from_pretrained")
    assert_same_weights(load_hf_checkpoint(tmp_path / "ckpt"), original)


def test_folder_saved_by_transformers_loads(tmp_path):
    mine, reference = twins(TINY)
    reference.save_pretrained(tmp_path / "hf")
    loaded = load_hf_checkpoint(tmp_path / "hf")
    assert loaded.config == TINY
    assert_same_weights(loaded, mine)


def test_old_configs_with_eos_token_id_2_pool_at_the_last_vocabulary_id():
    config = clip_config_from_hf({"text_config": {"eos_token_id": 2}, "projection_dim": 512})
    assert config.text.eot_token_id == 49407
    assert config == CLIPConfig()


def test_model_id_is_found_in_the_hub_cache(tmp_path, monkeypatch):
    mine, reference = twins(TINY)
    repo = tmp_path / "hub" / "models--openai--clip-vit-base-patch32"
    reference.save_pretrained(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_in_hf_cache("openai/clip-vit-base-patch32") == repo / "snapshots" / "abc123"
    assert_same_weights(load_model("openai/clip-vit-base-patch32"), mine)


def test_hf_home_is_searched_and_a_missing_model_says_where_it_looked(tmp_path, monkeypatch):
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as error:
        load_model("openai/clip-vit-base-patch32")
    where = tmp_path / "home" / "hub" / "models--openai--clip-vit-base-patch32" / "snapshots"
    assert str(where) in str(error.value)


@pytest.mark.parametrize("environment", [
    {}, {"HF_HOME": "/data/hf"}, {"XDG_CACHE_HOME": "/data/xdg"}, {"HF_HUB_CACHE": "/data/hub"},
    {"HUGGINGFACE_HUB_CACHE": "/data/old-hub", "HF_HOME": "/data/hf"},
    {"HF_HUB_CACHE": "/data/hub", "HF_HOME": "/data/hf", "XDG_CACHE_HOME": "/data/xdg"},
])
def test_cache_folder_is_where_huggingface_hub_puts_it(environment, monkeypatch):
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    hub = subprocess.run([sys.executable, "-c", "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert hf_cache_dirs() == [Path(hub)]


def test_transformers_loader_names_missing_unexpected_and_misshapen_tensors():
    _, reference = twins(TINY)
    state = reference.state_dict()
    del state["vision_model.encoder.layers.1.mlp.fc2.bias"]
    state["text_model.encoder.layers.7.self_attn.q_proj.weight"] = torch.zeros(3)
    state["text_projection.weight"] = torch.zeros(5, 48)
    message = mismatch_message(load_hf_state_dict, CLIP(TINY), state)
    assert "missing (1): vision_model.encoder.layers.1.mlp.fc2.bias" in message
    assert "unexpected (1): text_model.encoder.layers.7.self_attn.q_proj.weight" in message
    assert "text_projection.weight (5, 48) (expected (32, 48))" in message


# ------------------------------------------------------------ OpenAI CLIP / open_clip format

@pytest.fixture(scope="module")
def open_clip_model():
    """open_clip's own model.py, imported by file path.

    ``import open_clip`` fails here: its utils.py imports torchvision, which is not installed
    (and must not be). utils.py only needs torchvision for FrozenBatchNorm2d, used by ResNet
    towers we never build, so it is loaded with that one import replaced by None.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open_clip_torch is not installed (pip install --no-deps open_clip_torch)")
    folder = Path(spec.submodule_search_locations[0])
    name = "open_clip_reference"
    package = types.ModuleType(name)
    package.__path__ = [str(folder)]
    sys.modules[name] = package
    source = (folder / "utils.py").read_text().replace(
        "from torchvision.ops.misc import FrozenBatchNorm2d", "FrozenBatchNorm2d = None")
    utils = types.ModuleType(f"{name}.utils")
    utils.__package__ = name
    exec(compile(source, str(folder / "utils.py"), "exec"), utils.__dict__)
    sys.modules[f"{name}.utils"] = utils
    return importlib.import_module(f"{name}.model")


def open_clip_twin(open_clip_model, config: CLIPConfig, head_width: int):
    """open_clip's CLIP of the same shape (OpenAI's architecture: QuickGELU, argmax pooling)."""
    v, t = config.vision, config.text
    torch.manual_seed(0)
    model = open_clip_model.CLIP(
        embed_dim=config.embed_dim, quick_gelu=True,
        vision_cfg=open_clip_model.CLIPVisionCfg(layers=v.layers, width=v.width, head_width=head_width,
                                                 mlp_ratio=v.mlp_width / v.width,
                                                 patch_size=v.patch_size, image_size=v.image_size),
        text_cfg=open_clip_model.CLIPTextCfg(context_length=t.context_length, vocab_size=t.vocab_size,
                                             width=t.width, heads=t.width // head_width, layers=t.layers,
                                             mlp_ratio=t.mlp_width / t.width))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # open_clip zero-inits some tensors; make all distinct
    return model.eval()


def test_openai_state_dict_loads_and_matches_open_clip(open_clip_model, device):
    vision, text = SMALL_SHAPES["tiny"]  # head width 16 in both towers
    config = CLIPConfig(vision, text)
    reference = open_clip_twin(open_clip_model, config, head_width=16)
    state = reference.state_dict()
    assert clip_config_from_openai(state, head_width=16) == config
    mine = load_openai_state_dict(CLIP(config), state).eval()
    exported = to_openai_state_dict(mine)
    assert exported.keys() == state.keys()
    for key in state:
        assert torch.equal(exported[key], state[key]), f"{key} changed in the round trip"
    assert_same_embeddings(mine.to(device), reference.to(device), config, "from an OpenAI state dict")


def assert_same_embeddings(mine: CLIP, reference, config: CLIPConfig, source: str) -> None:
    """minimodal's CLIP and an open_clip CLIP embed the same sample images and captions alike,
    on the device that holds minimodal's model."""
    pixels, ids = sample_inputs(config, device=next(mine.parameters()).device)
    with torch.no_grad():
        assert_close(mine.encode_image(pixels), reference.encode_image(pixels),
                     what=f"image embeddings {source}", against="open_clip CLIP")
        assert_close(mine.encode_text(ids), reference.encode_text(ids),
                     what=f"text embeddings {source}", against="open_clip CLIP")


def test_openai_export_loads_in_open_clips_own_openai_loader(open_clip_model):
    """open_clip's build_model_from_openai_state_dict reads the architecture off the names and
    shapes (heads of width 64) and loads strictly: our export must be a real OpenAI state dict."""
    config = CLIPConfig(VisionConfig(image_size=32, patch_size=8, width=128, layers=2, heads=2, embed_dim=32),
                        TextConfig(vocab_size=100, context_length=16, width=64, layers=2, heads=1, embed_dim=32,
                                   eot_token_id=99))
    torch.manual_seed(0)
    mine = CLIP(config).eval()
    with torch.no_grad():
        for p in mine.parameters():
            p.add_(0.05 * torch.randn_like(p))  # LayerNorms away from (1, 0): a swap would show
    state = to_openai_state_dict(mine)
    reference = open_clip_model.build_model_from_openai_state_dict(dict(state), cast_dtype=None)
    reference.float().load_state_dict(state)  # it keeps OpenAI's fp16 weights; compare in fp32
    assert_same_embeddings(mine, reference, config, "exported in OpenAI's format")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_openai_torchscript_release_file_loads(open_clip_model, tmp_path):
    """OpenAI released TorchScript archives holding three integers among the weights."""
    config = TINY  # head width 16
    reference = open_clip_twin(open_clip_model, config, head_width=16)
    for name, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 100)):
        vars(reference).pop(name, None)  # open_clip keeps two of them as plain int attributes
        reference.register_buffer(name, torch.tensor(value))
    pixels, ids = sample_inputs(config)
    traced = torch.jit.trace_module(reference, {"encode_image": (pixels,), "encode_text": (ids,)},
                                    check_trace=False)
    torch.jit.save(traced, tmp_path / "ViT-tiny.pt")
    mine = load_openai_checkpoint(tmp_path / "ViT-tiny.pt", head_width=16).eval()
    assert mine.config == config
    assert_same_embeddings(mine, reference, config, "from a TorchScript archive")


def test_open_clip_training_checkpoint_file_loads(open_clip_model, tmp_path):
    vision, text = SMALL_SHAPES["wide-shallow"]  # head width 32, an MLP of 2x width
    config = CLIPConfig(replace(vision, heads=3, mlp_width=192), replace(text, heads=3, mlp_width=192))
    reference = open_clip_twin(open_clip_model, config, head_width=32)
    checkpoint = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    torch.save(checkpoint, tmp_path / "epoch_3.pt")
    mine = load_openai_checkpoint(tmp_path / "epoch_3.pt", head_width=32).eval()
    assert_same_embeddings(mine, reference, config, "from an open_clip checkpoint")


def test_openai_loader_names_bad_tensors():
    state = to_openai_state_dict(CLIP(TINY))
    del state["visual.transformer.resblocks.0.attn.in_proj_weight"]
    state["visual.proj"] = torch.zeros(32, 64)
    message = mismatch_message(load_openai_state_dict, CLIP(TINY), state)
    assert "missing (1): visual.transformer.resblocks.0.attn.in_proj_weight" in message
    assert "visual.proj (32, 64) (expected (64, 32))" in message
