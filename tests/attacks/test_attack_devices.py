"""Attacks run where the tensors are (skipped without CUDA)."""

import pytest
import torch

from fedsec.attacks import DATA_ATTACKS, MODEL_ATTACKS, ModelAttackContext, build_data_attack, build_model_attack

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("name", [n for n in DATA_ATTACKS.names() if build_data_attack({"name": n}).surrogate_models() == 0])
def test_data_attacks_on_cuda_match_cpu(name: str) -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    y = torch.arange(16) % 10
    a = build_data_attack({"name": name, "poison_fraction": 0.5})
    cpu = a.poison(x, y, torch.Generator().manual_seed(1))
    gpu = a.poison(x.cuda(), y.cuda(), torch.Generator().manual_seed(1))
    assert gpu.x.is_cuda and torch.equal(gpu.mask.cpu(), cpu.mask) and torch.equal(gpu.y.cpu(), cpu.y)
    for on_gpu, on_cpu in ((gpu.x, cpu.x), (a.apply_test_trigger(x.cuda()), a.apply_test_trigger(x))):
        assert (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1  # interpolation may round differently


@cuda
@pytest.mark.parametrize("name", MODEL_ATTACKS.names())
def test_model_attacks_on_cuda_match_cpu(name: str) -> None:
    benign = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0))

    def run(device: str) -> torch.Tensor:
        ctx = ModelAttackContext(
            global_vector=torch.zeros(1000, device=device),
            benign_updates=benign.to(device),
            num_clients=10,
            num_malicious=2,
            num_clients_per_round=10,
            round_examples=1000,
            own_examples=100,
            generator=torch.Generator().manual_seed(2),
        )
        return build_model_attack({"name": name})(benign[0].to(device), ctx)

    gpu = run("cuda")
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), run("cpu"), atol=1e-4)
