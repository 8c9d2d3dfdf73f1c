"""The training loop under torchrun: two gloo processes on half-batches equal one process.

Each run is the shapes-CLIP recipe (its model, batches and distributed InfoNCE) for 20
steps in float64. Two processes and one do the same arithmetic except for the order of
some additions (DDP adds the two half-batch gradients; the loss gathers features), so the
weights differ only by rounding: about 1e-12 after 20 AdamW steps, checked at 1e-10.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minimodal.distributed import shard

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from distributed_training import RECIPE, short_run  # noqa: E402

WEIGHTS_ATOL, LOSS_ATOL = 1e-10, 1e-12


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """The folder where two gloo processes running tests/distributed_training.py left their runs."""
    out = tmp_path_factory.mktemp("torchrun")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(TESTS / "distributed_training.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one_process():
    model, history = short_run()
    return model, history.loss


def assert_same_run(one_process, saved: dict) -> None:
    model, losses = one_process
    assert saved["world"] == 2
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(saved["model"][name], tensor, atol=WEIGHTS_ATOL, rtol=0, msg=name)
    torch.testing.assert_close(saved["loss"], torch.tensor(losses, dtype=torch.float64), atol=LOSS_ATOL, rtol=0)


def test_two_processes_on_half_batches_train_the_weights_of_one_on_the_whole_batch(two_processes, one_process):
    losses = one_process[1]
    assert len(losses) == RECIPE.steps and losses[-1] < losses[0] - 0.1
    assert_same_run(one_process, torch.load(two_processes / "straight.pt", weights_only=True))


def test_a_run_stopped_and_resumed_under_torchrun_ends_where_the_one_process_run_does(two_processes, one_process):
    assert len(torch.load(two_processes / "first.pt", weights_only=True)["loss"]) == 8
    assert_same_run(one_process, torch.load(two_processes / "resumed.pt", weights_only=True))
    with pytest.raises(ValueError, match="written by a run of 2 process"):
        short_run(two_processes / "state.pt")  # one process cannot restore two processes' random states


def test_shard_takes_equal_slices_of_every_tensor_in_order():
    ids, mask = torch.arange(12).view(6, 2), torch.ones(6, 3)
    parts = [shard({"ids": ids, "mask": mask}, rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat([p["ids"] for p in parts]), ids)
    assert all(p["mask"].shape == (2, 3) for p in parts)
    assert shard((ids, mask), 0, 1) == (ids, mask)


def test_shard_refuses_a_batch_that_does_not_split_evenly():
    with pytest.raises(ValueError, match="batch of 5 does not split evenly over 2 processes"):
        shard(torch.zeros(5, 3), 1, 2)
    with pytest.raises(TypeError, match="cannot split a batch of type str"):
        shard("captions", 0, 2)
