"""BDMAE (Sun et al., CVPR 2023, "Mask and Restore: blind backdoor defense at test time with
masked autoencoder"): find the trigger region from image and label consistency, then restore it.

The image is cut into patch x patch tokens. Random masks of ``mask_ratio`` of the tokens are
restored by the masked autoencoder: a token whose masking changes the model's label scores on
label consistency, a token the restoration changes (1 − SSIM) on image consistency. Both scores
are refined by masking connected regions drawn by score (topology-aware refinement), averaged
with weight ``alpha``, and the tokens above five decreasing thresholds are restored; the purified
input averages those restorations. Steps and constants follow the authors' code (tsun/BDMAE,
``defense/BDMAE.py``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from fedsec.guards.base import GUARDS, probabilities
from fedsec.guards.inpainting import MaskSampler, Purifier, PurifierParams, patch_mask, random_token_mask, ssim_map

REFINE_STEP = 0.05
"""Score change per refinement step (the authors' beta)."""
IMAGE_SCORE_FLOOR = 0.2
"""Image-consistency score above which a token counts towards the refinement's mask size."""
FINAL_START, FINAL_STEP, FINAL_MASKS = 0.6, 0.05, 5
"""The final restorations mask the tokens scoring above 1 − t for t = 1 − 0.6 + k · 0.05, k < 5."""
FINAL_MAX_SHARE = 0.25
"""The thresholds shrink (× 0.99, at most 200 times) until less than this share of tokens passes the lowest."""


def neighbours(rows: int, cols: int, device: torch.device) -> Tensor:
    """(T, T) float adjacency of a rows x cols token grid (4-neighbourhood)."""
    index = torch.arange(rows * cols, device=device).view(rows, cols)
    adjacency = torch.zeros(rows * cols, rows * cols, device=device)
    for a, b in ((index[:-1], index[1:]), (index[:, :-1], index[:, 1:])):
        adjacency[a.flatten(), b.flatten()] = 1
        adjacency[b.flatten(), a.flatten()] = 1
    return adjacency


def top_tokens(scores: Tensor, counts: Tensor) -> Tensor:
    """(B, T) mask of each row's ``counts`` highest-scoring tokens."""
    rank = scores.argsort(1, descending=True).argsort(1)
    return (rank < counts.unsqueeze(1)).float()


def local_region(scores: Tensor, allowed: Tensor, sizes: Tensor, adjacency: Tensor, pull: float,
                 generator: torch.Generator) -> Tensor:
    """(B, T) mask of a region grown token by token: a seed drawn with weight ``scores``, then
    ``sizes`` − 1 more tokens among ``allowed``, each the argmax of uniform noise × (score +
    ``pull`` for a neighbour of the region) (the authors' gen_local_sample)."""
    b, t = scores.shape

    def noise() -> Tensor:
        return torch.rand(b, t, generator=generator).to(scores.device)

    selected = F.one_hot((noise() * scores).argmax(1), t).float()
    candidate = (selected @ adjacency).clamp(max=1) * (1 - selected)
    for step in range(1, int(sizes.max().item()) if len(sizes) else 0):
        pick = F.one_hot((noise() * (scores + candidate * pull) - (1 - allowed) * 100 - selected * 100).argmax(1),
                         t).float()
        grow = (sizes > step).float().unsqueeze(1) * pick
        selected = selected + grow
        candidate = ((candidate + grow @ adjacency).clamp(max=1) - selected).clamp(min=0)
    return selected


@GUARDS.register("bdmae")
class BDMAE(Purifier):
    """Restores the tokens that image and label consistency point at (Mask and Restore)."""

    class Params(PurifierParams):
        name: Literal["bdmae"] = "bdmae"
        patch: int = Field(2, ge=1, le=64, description="Side of a token, in pixels (28 x 28 images: 14 x 14 tokens, "
                           "the grid the authors' ViT-MAE sees on every input resized to 224 x 224).")
        mask_ratio: float = Field(0.75, gt=0, lt=1, description="Share of the tokens each random mask hides "
                                  "(the autoencoder trains at the same share).")
        alpha: float = Field(0.5, ge=0, le=1, description="Weight of the image-consistency score against the "
                             "label-consistency score.")
        initial_inner: int = Field(5, ge=1, le=100, description="Random masks per round of the initial scoring.")
        initial_outer: int = Field(5, ge=1, le=100, description="Rounds of the initial scoring (one SSIM map each).")
        refine_steps: int = Field(10, ge=0, le=1000, description="Topology-aware refinement steps per score.")
        topology_pull: float = Field(
            0.5, ge=0, description="Bonus added to the scores of a region's neighbouring tokens when it grows "
            "(token-score units).")
        mask_count: Literal["per-input", "batch"] = Field(
            "per-input", description="per-input: each input's mask sizes from its own scores; batch: the sizes "
            "averaged over the batch, as the authors' code does.")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.params: BDMAE.Params = params

    def training_masks(self, size: tuple[int, int]) -> MaskSampler:
        return MaskSampler(size, self.params.patch, self.params.mask_ratio)

    def _counts(self, counts: Tensor) -> Tensor:
        """Mask sizes per input, or their batch mean truncated (the authors' code)."""
        if self.params.mask_count == "batch":
            return counts.float().mean().long().expand_as(counts)
        return counts.long()

    def restore(self, model: nn.Module, x: Tensor) -> Tensor:
        p, g = self.params, self.generator
        assert self.inpainter is not None, "fit first"
        size = tuple(x.shape[-2:])
        rows, cols = size[0] // p.patch, size[1] // p.patch
        tokens = rows * cols

        def restored(token_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            """The restoration, its pixel mask and whether the model's label changed."""
            pixels = patch_mask(token_mask, p.patch, size).to(x.device)
            out = self.inpainter(x, pixels)
            return out, pixels, probabilities(model, out, p.batch_size).argmax(1) != label

        def to_tokens(pixel_scores: Tensor) -> Tensor:
            return F.interpolate(pixel_scores[:, None, :rows * p.patch, :cols * p.patch], size=(rows, cols),
                                 mode="nearest").flatten(1)

        label = probabilities(model, x, p.batch_size).argmax(1)
        b = len(x)
        changed_count = torch.zeros(b, tokens, device=x.device)
        total, covered = torch.zeros_like(x), torch.zeros_like(x)
        image_scores = []
        for _ in range(p.initial_outer):
            for _ in range(p.initial_inner):
                token_mask = random_token_mask(b, tokens, int(tokens * p.mask_ratio), g).to(x.device)
                out, pixels, changed = restored(token_mask)
                changed_count += token_mask * changed.float().unsqueeze(1)
                total += out * pixels
                covered += pixels
            average = torch.where(covered > 0, total / covered.clamp_min(1), x)
            image_scores.append(1 - to_tokens(ssim_map(x, average)))
        image_score = torch.stack(image_scores).mean(0)
        label_score = changed_count / (p.initial_inner * p.initial_outer)

        adjacency = neighbours(rows, cols, x.device)
        image_score = self._refine(image_score, self._counts((image_score >= IMAGE_SCORE_FLOOR).sum(1)),
                                   adjacency, restored)
        label_score = self._refine(label_score, self._counts(label_score.mean(1) * tokens), adjacency, restored)
        score = p.alpha * image_score + (1 - p.alpha) * label_score

        thresholds = (1 - FINAL_START + torch.arange(FINAL_MASKS, device=x.device) * FINAL_STEP).expand(b, -1)
        for _ in range(200):
            share = (score >= 1 - thresholds[:, -1:]).float().mean(1)
            if p.mask_count == "batch":
                share = share.mean().expand_as(share)
            crowded = (share >= FINAL_MAX_SHARE).unsqueeze(1)
            if not crowded.any():
                break
            thresholds = torch.where(crowded, thresholds * 0.99, thresholds)
        total.zero_()
        covered.zero_()
        for k in range(FINAL_MASKS):
            count = self._counts((score >= 1 - thresholds[:, k:k + 1]).sum(1))
            out, pixels, _ = restored(top_tokens(score, count))
            total += out * pixels
            covered += pixels
        average = total / covered.clamp_min(1)
        return average * pixels + out * (1 - pixels)

    def _refine(self, score: Tensor, counts: Tensor, adjacency: Tensor, restored) -> Tensor:  # noqa: ANN001
        """Topology-aware refinement: mask a region drawn among the ``counts`` top tokens; if the
        label holds, the region's scores fall and the rest of the top tokens' rise; else the reverse."""
        for _ in range(self.params.refine_steps):
            top = top_tokens(score, counts)
            region = local_region(score, top, counts // 2, adjacency, self.params.topology_pull, self.generator)
            _, _, changed = restored(region)
            beta = ((1 - 2 * changed.float()) * REFINE_STEP).unsqueeze(1)
            score = score - beta * region + beta * (top - region)
        return score
