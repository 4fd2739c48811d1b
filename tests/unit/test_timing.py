"""sparselib.timing: the median of the timed calls, warm-up excluded."""

import pytest


def test_median_time_uses_median_of_timed_calls(monkeypatch):
    import sparselib.timing as U
    # perf_counter returns start/stop pairs: durations 3, 1, 2 -> median 2.
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(U.time, "perf_counter", lambda: next(ticks))
    calls = []
    assert U.median_time(lambda: calls.append(1), repeat=3, warmup=2) == 2.0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        U.median_time(lambda: None, repeat=0)
