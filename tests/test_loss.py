"""InfoNCE equals open_clip's ClipLoss; two processes with gloo equal one big batch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minimodal.loss import clip_loss, distributed_clip_loss

sys.path.insert(0, str(Path(__file__).parent))
from distributed_infonce import global_batch  # noqa: E402


@pytest.fixture(scope="module")
def open_clip_loss():
    spec = importlib.util.find_spec("open_clip")  # locating the package does not import it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed (make installs it with --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "loss.py"
    module_spec = importlib.util.spec_from_file_location("open_clip_loss_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # loss.py alone: `import open_clip` fails without torchvision
    return module.ClipLoss()


@pytest.mark.parametrize("batch, dim, scale", [(1, 8, 1.0), (5, 16, 14.3), (64, 512, 100.0)])
def test_equals_open_clip_clip_loss(open_clip_loss, batch, dim, scale, device):
    g = torch.Generator().manual_seed(batch)
    images = F.normalize(torch.randn(batch, dim, generator=g).to(device), dim=-1)
    texts = F.normalize(torch.randn(batch, dim, generator=g).to(device), dim=-1)
    ours = clip_loss(images, texts, torch.tensor(scale, device=device))
    theirs = open_clip_loss(images, texts, torch.tensor(scale, device=device))
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-6), (ours, theirs)


def test_gradients_equal_open_clip(open_clip_loss, device):
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 6, 32, generator=g).to(device)
    grads = []
    for loss_fn in (clip_loss, open_clip_loss):
        features = raw.clone().requires_grad_()
        scale = torch.tensor(10.0, device=device, requires_grad=True)
        loss_fn(F.normalize(features[0], dim=-1), F.normalize(features[1], dim=-1), scale).backward()
        grads.append((features.grad, scale.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_matching_pairs_give_a_lower_loss_than_shuffled_ones():
    features = F.normalize(torch.randn(16, 32), dim=-1)
    matched = clip_loss(features, features, torch.tensor(20.0))
    shuffled = clip_loss(features, features.roll(1, dims=0), torch.tensor(20.0))
    assert matched < shuffled


def test_bad_batches_are_errors():
    with pytest.raises(ValueError, match="empty batch"):
        clip_loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 4\)"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))


def test_without_a_process_group_it_is_the_plain_loss():
    images, texts, scale = global_batch()
    assert torch.equal(distributed_clip_loss(images, texts, scale), clip_loss(images, texts, scale))


def test_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path):
    script = Path(__file__).parent / "distributed_infonce.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    images, texts, scale = global_batch()
    images.requires_grad_(), texts.requires_grad_(), scale.requires_grad_()
    whole = clip_loss(images, texts, scale)
    whole.backward()

    # The mean of the processes' losses is the loss on the whole batch...
    assert torch.allclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, whole.detach(), atol=1e-12)
    # ...and so are the gradients, once averaged over processes as DDP does.
    world = len(ranks)
    assert torch.allclose(torch.cat([r["image_grad"] for r in ranks]) / world, images.grad, atol=1e-12)
    assert torch.allclose(torch.cat([r["text_grad"] for r in ranks]) / world, texts.grad, atol=1e-12)
    assert torch.allclose(sum(r["scale_grad"] for r in ranks) / world, scale.grad, atol=1e-12)
