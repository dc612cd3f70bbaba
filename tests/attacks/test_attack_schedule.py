"""When attackers act, and which clients they are."""

import pytest
from pydantic import ValidationError

from fedsec.attacks.schedule import AttackSchedule, malicious_clients


def rounds(schedule: AttackSchedule, last: int = 12) -> list[int]:
    return [r for r in range(1, last + 1) if schedule.active(r)]


def test_schedule_windows() -> None:
    assert rounds(AttackSchedule()) == list(range(1, 13))
    assert rounds(AttackSchedule(start_round=3, end_round=9, every=3)) == [3, 6, 9]
    assert rounds(AttackSchedule(start_round=10)) == [10, 11, 12]
    assert rounds(AttackSchedule(single_shot=5)) == [5]


@pytest.mark.parametrize(
    "bad",
    [{"start_round": 0}, {"every": 0}, {"start_round": 5, "end_round": 4}, {"single_shot": 3, "every": 2}, {"x": 1}],
)
def test_schedule_rejects(bad: dict) -> None:
    with pytest.raises(ValidationError):
        AttackSchedule.model_validate(bad)


def test_random_roles_are_deterministic_and_sized() -> None:
    chosen = malicious_clients(20, fraction=0.25, seed=3)
    assert len(chosen) == 5 and all(0 <= i < 20 for i in chosen)
    assert chosen == malicious_clients(20, fraction=0.25, seed=3, server_round=7)  # fixed for the run
    assert chosen != malicious_clients(20, fraction=0.25, seed=4)
    assert malicious_clients(10, fraction=0.0, seed=0) == frozenset()
    assert malicious_clients(10, fraction=1.0, seed=0) == frozenset(range(10))


def test_roles_redrawn_each_round() -> None:
    draws = [malicious_clients(20, fraction=0.2, seed=1, redraw_each_round=True, server_round=r) for r in range(1, 6)]
    assert len(set(draws)) > 1 and all(len(d) == 4 for d in draws)
    again = malicious_clients(20, fraction=0.2, seed=1, redraw_each_round=True, server_round=3)
    assert draws[2] == again


def test_explicit_ids() -> None:
    assert malicious_clients(10, ids=[2, 7, 2], seed=0) == frozenset({2, 7})
    with pytest.raises(ValueError, match="not all in"):
        malicious_clients(10, ids=[10])
    with pytest.raises(ValueError, match="exactly one"):
        malicious_clients(10, fraction=0.1, ids=[1])
    with pytest.raises(ValueError, match="exactly one"):
        malicious_clients(10)
