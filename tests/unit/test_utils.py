"""sparselib.utils: scale, device, seed and argument checks."""

import random

import numpy as np
import pytest
import torch

import sparselib as sl
from sparselib.utils import check_int, check_probability, progress_enabled


@pytest.fixture(autouse=True)
def no_scale_env(monkeypatch):
    monkeypatch.delenv("SPARSELIB_SCALE", raising=False)


@pytest.mark.parametrize("scale", ["quick", "full", "paper", " Quick "])
def test_resolve_scale_accepts_the_three_scales(scale):
    assert sl.resolve_scale(scale) == scale.strip().lower()


def test_resolve_scale_defaults_to_full():
    assert sl.resolve_scale(None) == "full"


def test_environment_overrides_the_parameter(monkeypatch):
    monkeypatch.setenv("SPARSELIB_SCALE", "quick")
    assert sl.resolve_scale("paper") == "quick"


def test_unknown_scale_is_named(monkeypatch):
    with pytest.raises(ValueError, match=r"scale must be one of .*'huge'"):
        sl.resolve_scale("huge")
    monkeypatch.setenv("SPARSELIB_SCALE", "tiny")
    with pytest.raises(ValueError, match="SPARSELIB_SCALE.*'tiny'"):
        sl.resolve_scale("full")


def test_scale_must_be_a_string():
    with pytest.raises(TypeError, match="scale"):
        sl.resolve_scale(3)


def test_auto_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sl.get_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sl.get_device("auto") == torch.device("cuda")
    assert sl.get_device(None) == torch.device("cuda")


def test_explicit_cpu_device():
    assert sl.get_device("cpu") == torch.device("cpu")
    assert sl.get_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "", "mps"])
def test_unknown_device_is_named(bad):
    with pytest.raises(ValueError, match="device"):
        sl.get_device(bad)


def test_device_of_wrong_type():
    with pytest.raises(TypeError, match="device"):
        sl.get_device(0)


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        sl.get_device("cuda")


def test_seed_everything_repeats_all_three_generators():
    def draw():
        return (random.random(), np.random.rand(), torch.rand(3))

    sl.seed_everything(7)
    first = draw()
    sl.seed_everything(7)
    second = draw()
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
    sl.seed_everything(8)
    assert not torch.equal(draw()[2], first[2])


def test_seed_everything_returns_a_seeded_generator():
    g = sl.seed_everything(3)
    assert torch.equal(torch.rand(2, generator=g),
                       torch.rand(2, generator=torch.Generator().manual_seed(3)))


def test_deterministic_option_sets_torch_flags():
    try:
        sl.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, 2**40])
def test_bad_seed(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        sl.seed_everything(bad)


def test_setup_and_pick():
    cfg = sl.setup("quick", seed=1, device="cpu")
    assert cfg.scale == "quick" and cfg.device.type == "cpu"
    assert str(cfg).startswith("scale=quick device=cpu seed=1")
    assert cfg.pick(quick=1, full=8, paper=15) == 1
    with pytest.raises(ValueError, match="missing"):
        cfg.pick(quick=1, full=8)
    with pytest.raises(ValueError, match="unknown"):
        cfg.pick(quick=1, full=8, paper=15, huge=99)


def test_progress_is_silent_at_quick_scale_only():
    sl.setup("quick", device="cpu")
    assert not progress_enabled()
    assert progress_enabled(True)
    sl.setup("full", device="cpu")
    assert progress_enabled()
    assert not progress_enabled(False)


def test_check_int():
    assert check_int("n", np.int64(5)) == 5
    assert check_int("n", torch.tensor(5)) == 5
    for bad in (5.0, "5", None, True, torch.tensor(5.0)):
        with pytest.raises(TypeError, match="n must be an integer"):
            check_int("n", bad)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        check_int("n", -1, minimum=0)
    with pytest.raises(ValueError, match="n must be <= 3, got 4"):
        check_int("n", 4, maximum=3)


def test_check_probability():
    assert check_probability("p", 0) == 0.0
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError,
                           match=r"p must be a real number in \[0, 1\]"):
            check_probability("p", bad)
    with pytest.raises(ValueError,
                       match=r"rho must be a real number in \(0, 1\), got 0"):
        check_probability("rho", 0.0, open_low=True, open_high=True)
    with pytest.raises(TypeError, match="p"):
        check_probability("p", "0.5")


def test_progress_wraps_and_is_silent_at_quick_scale():
    sl.setup("quick", device="cpu")
    bar = sl.progress(range(3), "x")
    assert bar.disable and list(bar) == [0, 1, 2]
    sl.setup("full", device="cpu")
    bar = sl.progress(range(3), "x", enabled=False)
    assert bar.disable
    bar = sl.progress(range(3), "x")
    assert not bar.disable and list(bar) == [0, 1, 2]


def test_glue_checks_its_name():
    assert sl.glue("a_value", 3.5) == 3.5
    with pytest.raises(ValueError, match="name"):
        sl.glue("not a name", 1)


@pytest.mark.parametrize("x,digits,text", [
    (0.00123, 1, r"$1.2 \times 10^{-3}$"),
    (1.086e-15, 2, r"$1.09 \times 10^{-15}$"),
    (250000.0, 0, r"$2 \times 10^{5}$"),
    (0.584, 2, "$0.584$"),
    (0, 1, "$0$"),
])
def test_sci(x, digits, text):
    assert sl.utils.sci(x, digits) == text

