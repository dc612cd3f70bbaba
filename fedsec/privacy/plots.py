"""PNG grids of reconstructed images beside the originals."""

from __future__ import annotations

import io

import torch
from PIL import Image


def image_grid(rows: list[torch.Tensor], scale: int = 3, gap: int = 2) -> bytes:
    """PNG bytes of image rows (each (N, C, H, W) in 0..1, same N), one image per cell,
    enlarged ``scale`` times, on a white background."""
    n, c, h, w = rows[0].shape
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = torch.ones((c, len(rows) * cell_h + gap, n * cell_w + gap))
    for i, row in enumerate(rows):
        big = row.detach().float().cpu().clamp(0, 1).repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        for j, image in enumerate(big):
            top, left = gap + i * cell_h, gap + j * cell_w
            canvas[:, top:top + h * scale, left:left + w * scale] = image
    pixels = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    out = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).save(out, format="PNG")
    return out.getvalue()
