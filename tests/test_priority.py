from __future__ import annotations

import pytest

import model_boss
from model_boss import Priority, parse_priority


@pytest.mark.parametrize(
    ("value", "expected"),
    [("urgent", 1), ("HIGH", 5), (" normal ", 10), ("low", 20), ("batch", 50), (7, 7), ("15", 15)],
)
def test_priorities_accept_names_and_ints(value: object, expected: int) -> None:
    assert parse_priority(value) == expected  # type: ignore[arg-type]


def test_priority_order_is_urgent_first() -> None:
    assert sorted(Priority, key=int) == [
        Priority.URGENT,
        Priority.HIGH,
        Priority.NORMAL,
        Priority.LOW,
        Priority.BATCH,
    ]


@pytest.mark.parametrize("bad", ["asap", 0, -3, True, 1.5, None])
def test_bad_priorities_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="priority"):
        parse_priority(bad)  # type: ignore[arg-type]


def test_public_api_is_explicit() -> None:
    for name in model_boss.__all__:
        assert hasattr(model_boss, name), name
    assert sorted(model_boss.__all__) == model_boss.__all__
