"""Februus: Grad-CAM by hand, the planted trigger removed, clean inputs kept."""

from __future__ import annotations

import torch
from torch import nn

from fedsec.guards import build_guard
from fedsec.guards.februus import grad_cam
from tests.guards.conftest import TARGET, World


def test_grad_cam_by_hand() -> None:
    """One 1 x 1 convolution (2 maps A_k = w_k · x) and a linear head: the gradient of logit c
    on A_k is the head's weights V[c, k], so CAM = ReLU(Σ_k mean(V[c, k]) · A_k), min-max scaled."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 1, bias=False)
    head = nn.Linear(2 * 9, 3)
    model = nn.Sequential(conv, nn.Flatten(), head)
    x = torch.rand(4, 1, 3, 3)
    cam = grad_cam(model, x, 2)
    with torch.no_grad():
        maps = conv(x)
        chosen = model(x).argmax(1)
        alpha = head.weight.view(3, 2, 9).mean(2)[chosen]
        expected = torch.relu((alpha[:, :, None, None] * maps).sum(1, keepdim=True))
        low, high = expected.amin((2, 3), keepdim=True), expected.amax((2, 3), keepdim=True)
        expected = (expected - low) / (high - low).clamp_min(1e-12)
    assert torch.allclose(cam, expected, atol=1e-5)


def test_trigger_removed_clean_kept(conv_world: World) -> None:
    w = conv_world
    guard = build_guard({"name": "februus", "patch": 2, "inpainter_width": 8, "inpainter_steps": 80,
                         "batch_size": 32, "reject": True, "frr": 0.05, "mask_threshold": 0.5})
    guard.fit(w.model, w.clean, torch.Generator().manual_seed(0))
    triggered, clean = guard(w.model, w.triggered[:300]), guard(w.model, w.test_x[:300])

    def labels(x: torch.Tensor) -> torch.Tensor:
        return w.model(x.float() / 255).argmax(1)

    assert (labels(triggered.inputs) == TARGET).float().mean() < 0.2
    assert (labels(clean.inputs) == w.test_y[:300]).float().mean() > 0.85
    assert clean.rejected.float().mean() <= 0.15 and triggered.rejected.float().mean() > 0.7
