"""A canary's share: each replica sends exactly its percentage of every hundred requests to the
canary, spread evenly, whatever the percentage."""

from __future__ import annotations

import pytest

from serve_apps.traffic import CANARY, CHAMPION, TrafficSplit


@pytest.mark.parametrize("percent", [0, 1, 12.5, 20, 33.3, 50, 99, 100])
def test_every_hundred_requests_hold_the_share_to_one_request(percent):
    split = TrafficSplit(percent)
    picks = [split.next() for _ in range(2000)]
    for start in range(0, 2000, 100):
        window = picks[start : start + 100].count(CANARY)
        assert abs(window - percent) <= 1, (start, window)
    assert split.answered == {CANARY: picks.count(CANARY), CHAMPION: picks.count(CHAMPION)}
    assert abs(split.answered[CANARY] - 20 * percent) <= 1


def test_the_canary_turns_are_spread_evenly():
    split = TrafficSplit(20)
    picks = [split.next() for _ in range(50)]
    assert all(picks[i : i + 5].count(CANARY) == 1 for i in range(0, 50, 5))


@pytest.mark.parametrize("percent", [-1, 100.5])
def test_a_share_outside_0_to_100_is_refused(percent):
    with pytest.raises(ValueError, match="percentage"):
        TrafficSplit(percent)
