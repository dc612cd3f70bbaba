"""Every defense runs where its batch lives and gives the CPU result there."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses import DEFENSES, UpdateBatch, build_pipeline

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PARAMS = {
    "krum": {"f": 2},
    "multi-krum": {"f": 2},
    "bulyan": {"f": 2},
    "dnc": {"f": 2, "subsample_dim": 20},
}


def batch_on(device: str) -> UpdateBatch:
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(12, 60, generator=gen) + 2.0
    rows[-2:] *= 40.0
    return UpdateBatch.of(
        rows.to(device),
        torch.arange(1.0, 13.0).to(device),
        torch.randn(60, generator=gen).to(device),
        server_update=rows[:10].mean(0).to(device),
        generator=torch.Generator().manual_seed(5),  # CPU generator: same draws on every device
        senders=torch.arange(12).to(device),
    )


@cuda
@pytest.mark.parametrize("name", DEFENSES.names())
def test_same_result_on_cuda(name: str) -> None:
    spec = [{"name": name, **PARAMS.get(name, {})}]
    on_cpu = build_pipeline(spec)(batch_on("cpu"))
    on_gpu = build_pipeline(spec)(batch_on("cuda"))
    assert on_gpu.aggregate is not None and on_cpu.aggregate is not None
    assert on_gpu.aggregate.device.type == "cuda" and on_gpu.accepted.device.type == "cuda"
    assert torch.equal(on_gpu.accepted.cpu(), on_cpu.accepted)
    torch.testing.assert_close(on_gpu.aggregate.cpu(), on_cpu.aggregate, atol=1e-4, rtol=1e-4)
    for key, score in on_cpu.scores.items():
        gpu_score = on_gpu.scores[key].cpu()
        torch.testing.assert_close(gpu_score, score, atol=1e-4, rtol=1e-4, equal_nan=True)


@cuda
def test_cuda_generator_is_accepted() -> None:
    generator = torch.Generator("cuda").manual_seed(0)
    batch = UpdateBatch.of(torch.zeros(3, 1000, device="cuda"), generator=generator)
    out = build_pipeline([{"name": "dp-noise", "sigma": 1.0}])(batch)
    assert out.aggregate is not None and out.aggregate.device.type == "cuda"
    assert 0.9 < out.aggregate.std().item() < 1.1
