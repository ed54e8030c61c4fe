"""The relay policy's decisions, in-process with the clock passed in (the KME server drives them)."""

from __future__ import annotations

from collections import deque

import pytest

from qnet.keys.relay_policy import HOLD_DOWN_S, HoldDown, failed_element, next_batch, split


def test_a_failure_is_held_down_for_its_period_then_forgotten() -> None:
    hold = HoldDown()
    hold.hold("B", 10.0)
    hold.hold("B-C", 12.0)
    assert hold.held(10.0 + HOLD_DOWN_S - 0.01) == ["B", "B-C"]
    assert hold.held(10.0 + HOLD_DOWN_S) == ["B-C"]  # B's period is over
    hold.hold("B", 20.0)  # failing again starts a new period
    assert hold.held(20.0 + HOLD_DOWN_S - 0.01) == ["B"]
    with pytest.raises(ValueError, match="period_s"):
        HoldDown(-1.0)


def test_batches_take_live_requests_up_to_the_limit_and_split_in_halves() -> None:
    queue = deque([("a", 300), ("gone", 300), ("b", 500), ("c", 300)])
    batch = next_batch(queue, lambda r: r[1], alive=lambda r: r[0] != "gone", limit=1024)
    assert batch == [("a", 300), ("b", 500)]  # the request whose client left is dropped, costs nothing
    assert list(queue) == [("c", 300)]
    assert split([1, 2, 3]) == ([1], [2, 3])
    with pytest.raises(ValueError, match="cannot be split"):
        split([1])


def test_the_failed_element_is_what_the_answer_names_else_the_next_node() -> None:
    assert failed_element("B", {"failed": "D"}) == "D"
    assert failed_element("B", {"message": "x", "details": [{"key_ID": "k"}, {"failed": "C-D"}]}) == "C-D"
    assert failed_element("B", "not json") == "B"
