"""sparselib.utils: scale, device, seed and argument checks."""

import random

import numpy as np
import pytest
import torch

import sparselib as sl
from sparselib.utils import (check_choice, check_int, check_probability,
                             check_real, check_same, check_tensor,
                             progress_enabled)


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


def test_check_probability_takes_numpy_and_rejects_bool():
    assert check_probability("p", np.float32(0.5)) == 0.5
    assert check_probability("p", 1, open_low=True) == 1.0
    with pytest.raises(TypeError, match="p must be a real number, got True"):
        check_probability("p", True)
    with pytest.raises(ValueError, match=r"p must be a real number in "
                                         r"\[0, 1\), got 1\.0"):
        check_probability("p", 1.0, open_high=True)


@pytest.mark.parametrize("value,want", [
    (3, 3.0), (0.25, 0.25), (np.float32(0.5), 0.5), (np.float64(-2.5), -2.5),
    (np.int64(7), 7.0), (np.uint8(200), 200.0), (np.array(1.5), 1.5),
    (torch.tensor(0.75), 0.75), (torch.tensor(4), 4.0),
    (torch.tensor(0.5, dtype=torch.float64), 0.5)])
def test_check_real_accepts_real_numbers(value, want):
    got = check_real("lam", value)
    assert got == want and type(got) is float


@pytest.mark.parametrize("value", [
    True, False, np.bool_(True), 1j, np.complex64(1), "0.1", None, [0.1],
    torch.tensor([0.1]), torch.tensor(True), torch.tensor(1j),
    np.array([1.0])])
def test_check_real_rejects_other_kinds_with_type_error(value):
    with pytest.raises(TypeError, match="lam must be a real number, got"):
        check_real("lam", value)


def test_check_real_nan_and_inf():
    with pytest.raises(ValueError, match="lam must be a real number >= 0, "
                                         "not NaN; got nan"):
        check_real("lam", float("nan"), minimum=0)
    with pytest.raises(ValueError, match="NaN"):
        check_real("lam", np.float32("nan"))
    with pytest.raises(ValueError, match="NaN"):
        check_real("lam", torch.tensor(float("nan")))
    assert np.isnan(check_real("x", float("nan"), allow_nan=True))
    with pytest.raises(ValueError, match="x must be a finite real number, "
                                         "got inf"):
        check_real("x", float("inf"))
    with pytest.raises(ValueError, match="got -inf"):
        check_real("x", -np.inf, allow_nan=True)
    assert check_real("x", float("inf"), allow_inf=True) == float("inf")
    # an allowed infinity still obeys the bounds
    with pytest.raises(ValueError, match="x must be a real number <= 1, "
                                         "got inf"):
        check_real("x", float("inf"), maximum=1, allow_inf=True)


def test_check_real_bounds_open_and_closed():
    # closed ends accept the end itself
    assert check_real("t", 0, minimum=0) == 0.0
    assert check_real("t", 1, maximum=1) == 1.0
    assert check_real("t", 2, minimum=2, maximum=2) == 2.0
    # open ends reject it, and the message names the argument, the
    # interval and the value received
    cases = [
        (dict(minimum=0), -0.1, "lam must be a real number >= 0, got -0.1"),
        (dict(minimum=0, min_open=True), 0.0,
         "lam must be a real number > 0, got 0.0"),
        (dict(maximum=1), 1.5, "lam must be a real number <= 1, got 1.5"),
        (dict(maximum=1, max_open=True), 1,
         "lam must be a real number < 1, got 1.0"),
        (dict(minimum=0, maximum=1, min_open=True), 0,
         "lam must be a real number in (0, 1], got 0.0"),
        (dict(minimum=0, maximum=1, max_open=True), 1,
         "lam must be a real number in [0, 1), got 1.0"),
        (dict(minimum=-1, maximum=2.5), 3,
         "lam must be a real number in [-1, 2.5], got 3.0"),
    ]
    for bounds, value, message in cases:
        with pytest.raises(ValueError) as err:
            check_real("lam", value, **bounds)
        assert str(err.value) == message
    assert check_real("lam", 1e-300, minimum=0, min_open=True) == 1e-300
    assert check_real("lam", 0.999, maximum=1, max_open=True) == 0.999


def test_check_int_rejects_numpy_bool_and_complex_tensor():
    for bad in (np.bool_(True), torch.tensor(1j), torch.tensor(True)):
        with pytest.raises(TypeError, match="k must be an integer"):
            check_int("k", bad)
    assert check_int("k", np.uint16(3), maximum=3) == 3


def test_check_choice():
    assert check_choice("kind", "mse", ("mse", "sum")) == "mse"
    with pytest.raises(ValueError) as err:
        check_choice("kind", "l1", ("mse", "sum"))
    assert str(err.value) == "kind must be one of 'mse', 'sum'; got 'l1'"
    for bad in (None, 1, b"mse", ["mse"]):
        with pytest.raises(TypeError, match="kind must be a string, one of "
                                            "'mse', 'sum'; got"):
            check_choice("kind", bad, ("mse", "sum"))
    with pytest.raises(ValueError, match="got 'MSE'"):  # exact, not folded
        check_choice("kind", "MSE", ["mse"])


def test_check_tensor():
    x = torch.zeros(2, 3)
    assert check_tensor("x", x, ndim=2, floating=True, finite=True) is x
    assert check_tensor("x", x, ndim=(2, 3), dtype=torch.float32) is x
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got "
                                        "ndarray"):
        check_tensor("x", np.zeros((2, 3)))
    with pytest.raises(TypeError, match="x must be a floating-point tensor, "
                                        "got dtype torch.int64"):
        check_tensor("x", x.long(), floating=True)
    with pytest.raises(TypeError, match="x must have dtype torch.float64, "
                                        "got torch.float32"):
        check_tensor("x", x, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x must be 3-d, got shape \(2, 3\) "
                                         r"\(2-d\)"):
        check_tensor("x", x, ndim=3)
    with pytest.raises(ValueError, match="x must be 1-d or 3-d"):
        check_tensor("x", x, ndim=(1, 3))
    x[1, 2] = float("nan")
    check_tensor("x", x)  # values are read only when asked
    with pytest.raises(ValueError, match="x contains NaN or infinite"):
        check_tensor("x", x, finite=True)
    with pytest.raises(ValueError, match="x contains NaN or infinite"):
        check_tensor("x", torch.tensor([1.0, float("-inf")]), finite=True)


def test_check_same():
    x64 = torch.zeros(2, dtype=torch.float64)
    D32 = torch.zeros(3)
    check_same({"x": x64, "y": x64.clone(), "none": None})
    check_same([("x", x64)])
    check_same({})
    with pytest.raises(TypeError) as err:
        check_same({"x": x64, "D": D32})
    msg = str(err.value)
    assert msg == ("x and D must have the same dtype; got x: torch.float64, "
                   "D: torch.float32")
    check_same({"x": x64, "D": D32}, dtype=False)  # device only
    with pytest.raises(ValueError, match="x and D must be on the same "
                                         "device; got x on cpu, D on meta"):
        check_same({"x": x64, "D": torch.zeros(2, dtype=torch.float64,
                                              device="meta")})
    with pytest.raises(TypeError, match="D must be a torch.Tensor"):
        check_same({"x": x64, "D": [0.0]})


def test_sci_and_glue_follow_the_contract():
    assert sl.utils.sci(np.float32(0.5)) == "$0.5$"
    assert sl.utils.sci(float("inf")) == "$inf$"
    with pytest.raises(TypeError, match="x must be a real number"):
        sl.utils.sci("0.5")
    with pytest.raises(TypeError, match="x must be a real number"):
        sl.utils.sci(True)
    with pytest.raises(TypeError, match="name must be a string"):
        sl.glue(3, 1)


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



def test_check_labels_accepts_integer_labels_and_names_the_argument():
    from sparselib.utils import check_labels
    y = torch.tensor([0, 3, 1])
    assert check_labels("y", y, 3) is y
    with pytest.raises(TypeError, match=r"^lab must hold integer class"):
        check_labels("lab", torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(TypeError, match=r"^lab must hold integer class"):
        check_labels("lab", torch.tensor([True, False]), 2)
    with pytest.raises(ValueError, match=r"^lab must hold one label per "
                                         r"input: 4; got 3"):
        check_labels("lab", y, 4)
    with pytest.raises(ValueError, match="lab must be 1-d"):
        check_labels("lab", y[None], 3)
    with pytest.raises(TypeError, match="lab must be a torch.Tensor"):
        check_labels("lab", [0, 1], 2)


def test_format_table_aligns_hand_written_example():
    from sparselib.utils import format_table
    out = format_table({"a": {"x": 1, "yy": None}, "bbb": {"x": 22.5,
                                                           "yy": "z"}},
                       index="net", na="-")
    assert out.splitlines() == ["net     x  yy",
                                "a       1   -",
                                "bbb  22.5   z"]


def test_format_table_sequences_and_errors():
    import pytest
    from sparselib.utils import format_table
    assert format_table({"r": (1, float("nan"))}, ["p", "q"]).splitlines() \
        == ["   p  q", "r  1"]
    with pytest.raises(ValueError, match="columns"):
        format_table({"r": (1, 2)})
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        format_table({"r": (1, 2)}, ["a", "b", "c"])
    with pytest.raises(TypeError, match="rows must be a dict"):
        format_table([1, 2])
