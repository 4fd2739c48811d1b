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


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(repeat=2.0), TypeError, "repeat must be an integer"),
    (dict(warmup=-1), ValueError, "warmup must be >= 0, got -1"),
    (dict(device="gpu"), ValueError, "device must name a torch device"),
    (dict(device=1.5), TypeError, "device must be None"),
])
def test_median_time_bad_arguments(kwargs, exc, match):
    import sparselib.timing as U
    calls = []
    with pytest.raises(exc, match=match):
        U.median_time(lambda: calls.append(1), **kwargs)
    assert calls == []  # checked before anything runs
    with pytest.raises(TypeError, match="fn must be callable"):
        U.median_time(None)
