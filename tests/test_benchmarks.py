"""benchmarks/model.py counts FLOPs as the textbook does and finds the GPU peaks it lists."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "model.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_model", PATH)  # benchmarks/ is no package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_is_two_flops_per_multiply_add(bench):
    m, k, n = 3, 5, 7
    a, b = torch.randn(m, k), torch.randn(k, n)
    assert bench.count_flops(lambda: a @ b) == 2 * m * k * n


def test_linear_backward_costs_twice_its_forward(bench):
    """Forward x @ W.T, then the gradient of the input and that of the weight: one product each."""
    batch, d_in, d_out = 4, 6, 10
    layer = torch.nn.Linear(d_in, d_out)
    x = torch.randn(batch, d_in, requires_grad=True)
    forward = bench.count_flops(lambda: layer(x))
    assert forward == 2 * batch * d_in * d_out
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * forward


def test_cpu_attention_is_counted(bench):
    """Two products, q @ k.T and weights @ v, which FlopCounterMode alone misses on a CPU."""
    b, h, s, d = 2, 3, 5, 4
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    assert bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * (2 * b * h * s * s * d)


def test_no_peak_for_cpu(bench):
    assert bench.peak_flops(torch.device("cpu")) is None


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A10G", 70e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L4", 121e12),
])
def test_peak_lookup_finds_gpus(bench, name, peak):
    assert bench.peak_flops_of(name) == peak


@pytest.mark.parametrize("name", ["NVIDIA GeForce GTX 1080", "NVIDIA L40", "Quadro RTX 6000"])
def test_peak_lookup_knows_no_other(bench, name):
    assert bench.peak_flops_of(name) is None
