"""Pixel-exact expectations for every trigger."""

import math

import pytest
import torch

from fedsec.attacks.data import build_data_attack
from fedsec.attacks.data.dba import DBA
from fedsec.attacks.data.patterns import make_pattern


def zeros(c: int = 1, size: int = 6) -> torch.Tensor:
    return torch.zeros(1, c, size, size, dtype=torch.uint8)


def test_badnets_white_patch_bottom_right() -> None:
    out = build_data_attack({"name": "badnets", "patch_size": 3}).apply_test_trigger(zeros())
    expected = zeros()
    expected[..., 3:, 3:] = 255
    assert torch.equal(out, expected)


def test_badnets_checkerboard_at_explicit_position_on_every_channel() -> None:
    a = build_data_attack({"name": "badnets", "patch_size": 2, "position": [1, 0], "pattern": "checkerboard"})
    out = a.apply_test_trigger(zeros(c=3))
    expected = zeros(c=3)
    expected[..., 0, 1] = 255
    expected[..., 1, 2] = 255
    assert torch.equal(out, expected)


def test_badnets_random_pattern_comes_from_the_seed() -> None:
    a = build_data_attack({"name": "badnets", "pattern": "random", "seed": 5, "position": "top-left"})
    out = a.apply_test_trigger(zeros(c=3))
    assert torch.equal(out[0, :, :3, :3], make_pattern("random", 3, 3, 3, seed=5))
    assert not out[..., 3:, :].any() and not out[..., :, 3:].any()


def test_badnets_patch_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_data_attack({"name": "badnets", "patch_size": 3, "position": [4, 4]}).apply_test_trigger(zeros())


def test_blended_is_the_rounded_convex_mix() -> None:
    x = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6) * 7
    out = build_data_attack({"name": "blended", "alpha": 0.2, "seed": 3}).apply_test_trigger(x)
    pattern = make_pattern("random", 1, 6, 6, seed=3).float()
    assert torch.equal(out, ((0.8 * x.float() + 0.2 * pattern).round()).to(torch.uint8))


@pytest.mark.parametrize(
    ("signal", "v"),
    [
        ("sinusoid", lambda j: math.sin(2 * math.pi * j / 10)),
        ("ramp", lambda j: j / 10),
        ("triangle", lambda j: 1 - abs(j / 2.5 - 1) if j <= 5 else abs(j / 2.5 - 3) - 1),
    ],
)
def test_sig_column_values_follow_the_formula(signal: str, v) -> None:
    spec = {"signal": signal, "frequency": 1, "train_strength": 20, "test_strength": 50, "poison_fraction": 1}
    a = build_data_attack({"name": "sig", **spec})
    x = torch.full((2, 3, 4, 10), 100, dtype=torch.uint8)
    test = a.apply_test_trigger(x)
    train = a.poison(x, torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(0)).x
    for j in range(10):
        assert (test[..., j] == round(100 + 50 * v(j))).all(), j
        assert (train[..., j] == round(100 + 20 * v(j))).all(), j


def test_sig_is_clean_label_and_clamps() -> None:
    a = build_data_attack({"name": "sig", "target_label": 2, "poison_fraction": 1.0, "test_strength": 255})
    y = torch.tensor([2, 1, 2, 0])
    x = torch.full((4, 1, 5, 10), 250, dtype=torch.uint8)
    out = a.poison(x, y, torch.Generator().manual_seed(0))
    assert out.mask.tolist() == [True, False, True, False]
    assert torch.equal(out.y, y)
    assert a.apply_test_trigger(x).max() == 255 and a.apply_test_trigger(x).min() < 250
    assert a.asr_mask(y).tolist() == [False, True, False, True]


def test_dba_parts_are_disjoint_and_make_the_full_pattern() -> None:
    a = build_data_attack({"name": "dba"})
    assert isinstance(a, DBA)
    masks = a.part_masks(28, 28)
    assert masks.shape == (4, 28, 28) and (masks.sum(dim=(1, 2)) == 4).all()
    assert (masks.sum(0) <= 1).all()
    full = a.apply_test_trigger(zeros(size=28))[0, 0] == 255
    assert torch.equal(full, masks.any(0))
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[0, 0:4] = expected[0, 6:10] = expected[3, 0:4] = expected[3, 6:10] = True  # Xie et al.'s MNIST layout
    assert torch.equal(full, expected)
    for part in range(4):
        alone = a.apply_part(zeros(size=28), part)[0, 0] == 255
        assert torch.equal(alone, masks[part])


def test_dba_attacker_stamps_its_own_part_in_training() -> None:
    spec = {"name": "dba", "poison_fraction": 1.0}
    x, y = zeros(size=28), torch.tensor([5])
    for index in range(6):
        a = build_data_attack(spec, attacker_index=index)
        stamped = a.poison(x, y, torch.Generator()).x[0, 0] == 255
        assert torch.equal(stamped, a.part_masks(28, 28)[index % 4])
    assert torch.equal(build_data_attack(spec).poison(x, y, torch.Generator()).x, a.apply_test_trigger(x))
    with pytest.raises(ValueError, match="local_part"):
        DBA(DBA.Params(), local_part=4)


def test_dba_scores_the_full_pattern_and_each_part_and_checks_that_it_fits() -> None:
    a = build_data_attack({"name": "dba"})
    x = zeros(size=28)
    triggers = a.test_triggers()
    assert list(triggers) == ["asr", "asr_part0", "asr_part1", "asr_part2", "asr_part3"]
    assert torch.equal(triggers["asr"](x), a.apply_test_trigger(x))
    assert torch.equal(triggers["asr_part2"](x), a.apply_part(x, 2))
    assert a.check((1, 28, 28), 10) == []
    assert a.check((1, 8, 8), 10) == ["offset: the DBA pattern does not fit a 8x8 image (move it, or shrink it: "
                                      "num_parts, part_height, part_width, gap, parts_per_row)"]
    badnets = build_data_attack({"name": "badnets"})
    assert list(badnets.test_triggers()) == ["asr"] and badnets.check((1, 8, 8), 10) == []


def test_wanet_zero_strength_is_the_identity() -> None:
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert torch.equal(build_data_attack({"name": "wanet", "strength": 0.0}).apply_test_trigger(x), x)


def test_wanet_warp_changes_pixels_keeps_shape_and_is_fixed_by_the_seed() -> None:
    x = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    a = build_data_attack({"name": "wanet", "strength": 1.0, "seed": 4})
    out = a.apply_test_trigger(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert (out != x).float().mean() > 0.2
    assert torch.equal(out, build_data_attack({"name": "wanet", "strength": 1.0, "seed": 4}).apply_test_trigger(x))
    assert not torch.equal(out, build_data_attack({"name": "wanet", "strength": 1.0, "seed": 5}).apply_test_trigger(x))


def test_wanet_noise_mode_warps_other_rows_and_keeps_their_labels() -> None:
    x = torch.randint(0, 256, (10, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    y = torch.arange(10)
    a = build_data_attack({"name": "wanet", "poison_fraction": 0.2, "noise_fraction": 1.0})
    out = a.poison(x, y, torch.Generator().manual_seed(0))
    assert int(out.mask.sum()) == 2
    changed = (out.x != x).flatten(1).any(1)
    assert changed.all()
    assert torch.equal(out.y[~out.mask], y[~out.mask])
    assert not torch.equal(out.x[~out.mask], a.apply_test_trigger(x[~out.mask]))  # jittered, not the backdoor


def test_label_flip_modes() -> None:
    y = torch.tensor([0, 1, 6, 9, 6])
    x = torch.zeros(5, 1, 4, 4, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    source = build_data_attack({"name": "label-flip", "poison_fraction": 1.0})  # 6 → 0
    out = source.poison(x, y, g)
    assert out.y.tolist() == [0, 1, 0, 9, 0] and out.mask.tolist() == [False, False, True, False, True]
    assert source.asr_mask(y).tolist() == [False, False, True, False, True]
    assert torch.equal(out.x, x) and torch.equal(source.apply_test_trigger(x), x)
    spec = {"target_mode": "all-to-one", "target_label": 1, "poison_fraction": 1}
    one = build_data_attack({"name": "label-flip", **spec})
    assert one.poison(x, y, g).y.tolist() == [1, 1, 1, 1, 1]
    assert one.asr_mask(y).tolist() == [True, False, True, True, True]
    many = build_data_attack({"name": "label-flip", "target_mode": "all-to-all", "poison_fraction": 1})
    assert many.poison(x, y, g).y.tolist() == [1, 2, 7, 0, 7]
