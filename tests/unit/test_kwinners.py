"""sparselib.kwinners against a numpy reference, hand cases and autograd.

The reference below is written from the formulas of nupic.torch's
k-winners (FACTS.md section 4): the boosted value is
``x * exp(boost * (k / n - duty))``; threshold mode keeps every unit whose
boosted value is >= the k-th largest of its row (numpy's sort), break-ties
mode exactly the k units of numpy's stable argsort; ``relu`` also drops
boosted values <= 0; the output is the original ``x`` on the winners and 0
elsewhere. The boosted value is computed with torch's elementwise ``exp`` in
the input's precision (a different rounding could flip a near tie between
reference and layer in float32); ordering, thresholds, selection and the
output are numpy's. Duty cycles follow ``period = min(duty_cycle_period,
samples seen)``, ``duty = (duty * (period - batch) + count) / period``,
checked by hand and batch by batch. Gradients by hand, with gradcheck and
gradgradcheck; entropies against scipy; invariants as hypothesis
properties; both sides of the CPU fast path (batch * n >= 2**17) and its
fallback on a tie.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from sparselib import kwinners as kw

#: batch * n from which the CPU takes the topk fast path (module docstring)
FAST = 1 << 17


# --------------------------------------------------------------------------
# the reference


def boosted(x, duty, k, n, boost):
    """``x * exp(boost * (k / n - duty))`` in ``x``'s precision, as numpy
    (``duty`` broadcasts against ``x``)."""
    x = x.detach().cpu()
    duty = torch.as_tensor(duty).detach().cpu().to(x.dtype)
    return (x * torch.exp((k / n - duty) * boost)).numpy()


def reference_mask(b, k, relu=False, break_ties=False):
    """Winners of each row of ``b`` (rows, n)."""
    b = np.asarray(b)
    n = b.shape[1]
    if break_ties:
        top = np.argsort(-b, axis=1, kind="stable")[:, :k]
        win = np.zeros(b.shape, dtype=bool)
        np.put_along_axis(win, top, True, axis=1)
    else:
        kth = np.sort(b, axis=1)[:, n - k][:, None]
        win = b >= kth
    if relu:
        win &= b > 0
    return win


def tied_rows(b, k):
    """Rows whose k-th and (k + 1)-th largest values are equal."""
    n = b.shape[1]
    if k == n:
        return np.zeros(b.shape[0], dtype=bool)
    s = np.sort(b, axis=1)
    return s[:, n - k] == s[:, n - k - 1]


def assert_rows(y, x, b, k, relu, break_ties):
    """``y`` (rows, n) is the k-winners output of ``x`` with boosted ``b``;
    returns the rows with a tie at the threshold.

    Threshold mode: exactly the reference. Break-ties mode: in rows without
    a tie at the threshold the top k are unique, so the reference is the
    same set (numpy's stable argsort gives it too, slower); in tied rows
    (``x`` must have no zeros there) every unit strictly above the k-th
    value wins, none below, and exactly k win (fewer with ``relu`` when the
    k-th boosted value is <= 0)."""
    y, x, b = np.asarray(y), np.asarray(x), np.asarray(b)
    n = b.shape[1]
    s = np.sort(b, axis=1)
    kth = s[:, n - k][:, None]
    tied = (s[:, n - k] == s[:, n - k - 1] if k < n
            else np.zeros(b.shape[0], dtype=bool))
    pos = b > 0 if relu else np.ones(b.shape, dtype=bool)
    want = np.where((b >= kth) & pos, x, 0)
    if not break_ties:
        np.testing.assert_array_equal(y, want)
        return tied
    np.testing.assert_array_equal(y[~tied], want[~tied])
    if not tied.any():
        return tied
    yt, xt, bt, kt, pt = y[tied], x[tied], b[tied], kth[tied], pos[tied]
    assert np.all(xt != 0), "test precondition: winners recognisable"
    assert np.all((yt == 0) | (yt == xt))
    chosen = yt != 0
    assert np.all(chosen[(bt > kt) & pt])
    assert not np.any(chosen[(bt < kt) | ~pt])
    count = np.where(kt[:, 0] > 0, k, (bt > 0).sum(1)) if relu else k
    np.testing.assert_array_equal(chosen.sum(1), count)
    return tied


def rows_local(t):
    """(B, C, H, W) -> (B * H * W, C): one row per position."""
    t = np.asarray(t)
    return np.moveaxis(t, 1, -1).reshape(-1, t.shape[1])


def rows_global(t):
    """(B, C, H, W) -> (B, C * H * W): one row per sample."""
    t = np.asarray(t)
    return t.reshape(t.shape[0], -1)


def assert_2d(y, x, duty, k, boost, local, relu, break_ties):
    n = x.shape[1] if local else x[0].numel()
    b = boosted(x, torch.as_tensor(duty).reshape(1, -1, 1, 1), k, n, boost)
    rows = rows_local if local else rows_global
    return assert_rows(rows(y.detach().cpu()), rows(x.detach().cpu()),
                       rows(b), k, relu, break_ties)


@pytest.fixture
def fast_calls(monkeypatch):
    """Records, per call of the fast selection, whether it was used (True)
    or fell back to the mask path (False)."""
    calls = []
    real = kw._fast_select

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(kw, "_fast_select", spy)
    return calls


def expected_calls(x_numel, k, n, tied, break_ties):
    """The fast path's calls: none below its bound or with k = n; else one,
    which falls back (False) in threshold mode when some row is tied."""
    if x_numel < FAST or k == n:
        return []
    return [bool(break_ties or not tied.any())]


# --------------------------------------------------------------------------
# hand-derived cases


def test_hand_case_no_boost():
    x = torch.tensor([[1.0, 3.0, 2.0, 5.0]])
    zero = torch.zeros(4)
    for bt in (False, True):
        y = kw.kwinners(x, zero, 2, 0.0, break_ties=bt)
        assert y.tolist() == [[0.0, 3.0, 0.0, 5.0]]
        assert kw.kwinners(x, zero, 1, 0.0, break_ties=bt).tolist() == \
            [[0.0, 0.0, 0.0, 5.0]]
        assert kw.kwinners(x, zero, 4, 0.0, break_ties=bt).tolist() == \
            x.tolist()


@pytest.mark.parametrize("boost,want", [
    # duty = (0.5, 1, 0, 0.5), k / n = 0.5: factors exp(b * (0, -.5, .5, 0)).
    # Unit 1 boosted 3 exp(-b/2), unit 2 boosted 2 exp(b/2): they swap at
    # exp(b) = 1.5, b = ln 1.5 = 0.405.
    (0.0, [0.0, 3.0, 0.0, 5.0]),
    (0.2, [0.0, 3.0, 0.0, 5.0]),     # 3 * 0.905 = 2.71 > 2 * 1.105 = 2.21
    (0.5, [0.0, 0.0, 2.0, 5.0]),     # 3 * 0.779 = 2.34 < 2 * 1.284 = 2.57
    (1.0, [0.0, 0.0, 2.0, 5.0]),     # 1.82 < 3.30 (unit 3: 5 * 1 = 5)
])
def test_hand_case_boost(boost, want):
    x = torch.tensor([[1.0, 3.0, 2.0, 5.0]])
    duty = torch.tensor([0.5, 1.0, 0.0, 0.5])
    for bt in (False, True):
        assert kw.kwinners(x, duty, 2, boost, break_ties=bt).tolist() == \
            [want]


def test_hand_case_boost_swaps_at_ln_1_5():
    x = torch.tensor([[1.0, 3.0, 2.0, 5.0]], dtype=torch.float64)
    duty = torch.tensor([0.5, 1.0, 0.0, 0.5], dtype=torch.float64)
    b0 = math.log(1.5)
    assert kw.kwinners(x, duty, 2, b0 - 1e-6)[0, 1] == 3.0
    assert kw.kwinners(x, duty, 2, b0 + 1e-6)[0, 2] == 2.0


def test_hand_case_negative_values_and_relu():
    x = torch.tensor([[-1.0, -3.0, 2.0, -0.5],
                      [-1.0, -3.0, -2.0, -5.0]])
    zero = torch.zeros(4)
    for bt in (False, True):
        y = kw.kwinners(x, zero, 2, 0.0, break_ties=bt)
        assert y.tolist() == [[0.0, 0.0, 2.0, -0.5], [-1.0, 0.0, -2.0, 0.0]]
        y = kw.kwinners(x, zero, 2, 0.0, break_ties=bt, relu=True)
        assert y.tolist() == [[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_hand_case_boost_on_negative_values():
    # a factor > 1 makes a negative value more negative: x = (-1, -1.25),
    # duty (0, 1), k / n = 0.5, boost 1: factors e^0.5 = 1.65, e^-0.5 = 0.61
    # -> boosted (-1.65, -0.76): unit 1 wins although its value is lower.
    x = torch.tensor([[-1.0, -1.25]])
    y = kw.kwinners(x, torch.tensor([0.0, 1.0]), 1, 1.0)
    assert y.tolist() == [[0.0, -1.25]]


def test_hand_case_ties():
    x = torch.tensor([[1.0, 2.0, 2.0, 0.5]])
    zero = torch.zeros(4)
    assert kw.kwinners(x, zero, 1, 0.0).tolist() == [[0.0, 2.0, 2.0, 0.0]]
    assert kw.kwinners(x, zero, 2, 0.0).tolist() == [[0.0, 2.0, 2.0, 0.0]]
    y = kw.kwinners(x, zero, 1, 0.0, break_ties=True)
    assert y.tolist() in ([[0.0, 2.0, 0.0, 0.0]], [[0.0, 0.0, 2.0, 0.0]])
    # tied after boosting: 1 * e^(b*(.5-0)) = 2 * e^(b*(.5-x)) at x = ln2/b
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    duty = torch.tensor([0.0, 0.5], dtype=torch.float64)
    y = kw.kwinners(x, duty, 1, 2 * math.log(2.0))  # factors 2, 1
    assert y.tolist() in ([[1.0, 2.0]], [[1.0, 0.0]], [[0.0, 2.0]])
    y = kw.kwinners(x, duty, 1, 2.0)                 # 1 * e = 2.72 > 2
    assert y.tolist() == [[1.0, 0.0]]


def test_hand_case_2d_local_and_global():
    # x (1, 2, 1, 2): channel 0 = (1, 3), channel 1 = (2, -1)
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, -1.0]]]])
    zero = torch.zeros(1, 2, 1, 1)
    y = kw.kwinners2d(x, zero, 1, 0.0, local=True)
    assert y.tolist() == [[[[0.0, 3.0]], [[2.0, 0.0]]]]
    y = kw.kwinners2d(x, zero, 2, 0.0, local=False)
    assert y.tolist() == [[[[0.0, 3.0]], [[2.0, 0.0]]]]
    y = kw.kwinners2d(x, zero, 1, 0.0, local=False)
    assert y.tolist() == [[[[0.0, 3.0]], [[0.0, 0.0]]]]
    y = kw.kwinners2d(x, zero, 3, 0.0, local=False, relu=True)
    assert y.tolist() == [[[[1.0, 3.0]], [[2.0, 0.0]]]]
    # boost, global (k / N = 2 / 4): duty (0, 1), boost 2 ->
    # factors e = 2.72, e^-1 = 0.37: boosted (2.72, 8.15 | 0.74, -0.37)
    duty = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1)
    y = kw.kwinners2d(x, duty, 2, 2.0, local=False)
    assert y.tolist() == [[[[1.0, 3.0]], [[0.0, 0.0]]]]
    # local (k / C = 1 / 2): factors e^1 = 2.72, e^-1 = 0.37 ->
    # position 0: 2.72 vs 0.74, position 1: 8.2 vs -0.37
    y = kw.kwinners2d(x, duty, 1, 2.0, local=True)
    assert y.tolist() == [[[[1.0, 3.0]], [[0.0, 0.0]]]]


# --------------------------------------------------------------------------
# random inputs against the reference


def _duty(kind, n, g, dtype=torch.float32):
    if kind == "equal":
        return torch.full((n,), 0.3, dtype=dtype)
    return torch.rand(n, generator=g, dtype=torch.float64).to(dtype)


_F32, _F64 = torch.float32, torch.float64
_SMALL_CASES = [(dtype, boost, duty_kind)
                for dtype in (_F32, _F64) for boost in (0.0, 0.5, 1.0, 10.0)
                for duty_kind in ("equal", "unequal")]
# a subset on the big shapes (fast path), to keep the file fast
_BIG_CASES = [(_F32, 0.0, "unequal"), (_F32, 0.5, "unequal"),
              (_F32, 1.0, "equal"), (_F32, 10.0, "unequal"),
              (_F64, 0.0, "equal"), (_F64, 1.0, "unequal"),
              (_F64, 10.0, "equal")]


@pytest.mark.parametrize(
    "shape,dtype,boost,duty_kind",
    [((8, 50), *c) for c in _SMALL_CASES]
    + [((300, 1024), *c) for c in _BIG_CASES])
def test_kwinners_matches_reference(fast_calls, shape, dtype, boost,
                                    duty_kind):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    x[0] = -x[0].abs()                     # negative values must win
    n = shape[1]
    duty = _duty(duty_kind, n, g)
    big = x.numel() >= FAST
    for k in (1, n // 10, n - 1) + (() if big else (n,)):
        b = boosted(x, duty, k, n, boost)
        for bt in (False, True):
            for relu in (False, True):
                fast_calls.clear()
                y = kw.kwinners(x, duty, k, boost, break_ties=bt, relu=relu)
                assert y.dtype == dtype and y.shape == x.shape
                tied = assert_rows(y.numpy(), x.numpy(), b, k, relu, bt)
                assert fast_calls == expected_calls(x.numel(), k, n, tied,
                                                    bt)
                assert not (big and tied.any())   # the fast path was taken


@pytest.mark.parametrize(
    "local,shape,dtype,boost,duty_kind",
    [(loc, (4, 6, 3, 5), dt, bo, du) for loc in (True, False)
     for dt in (_F32, _F64) for bo in (0.0, 0.5, 10.0)
     for du in ("equal", "unequal")]
    + [(loc, (32, 16, 16, 16), dt, bo, du) for loc in (True, False)
       for dt, bo, du in ((_F32, 0.5, "unequal"), (_F64, 10.0, "equal"))])
def test_kwinners2d_matches_reference(fast_calls, local, shape, dtype, boost,
                                      duty_kind):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    x[0, :, 0] = -x[0, :, 0].abs()
    c = shape[1]
    n = c if local else c * shape[2] * shape[3]
    duty = _duty(duty_kind, c, g).reshape(1, c, 1, 1)
    ks = (1, max(n // 10, 2), n - 1, n)
    if x.numel() >= FAST:
        ks = (1, n // 10, n - 1) if local else (n // 10, n - 1)
    for k in ks:
        for bt in (False, True):
            for relu in (False, True):
                fast_calls.clear()
                y = kw.kwinners2d(x, duty, k, boost, local=local,
                                  break_ties=bt, relu=relu)
                assert y.dtype == dtype and y.shape == x.shape
                tied = assert_2d(y, x, duty, k, boost, local, relu, bt)
                if local:
                    assert fast_calls == []       # always the mask path
                else:
                    assert fast_calls == expected_calls(x.numel(), k, n,
                                                        tied, bt)


@pytest.mark.parametrize("shape", [(8, 50), (300, 1024)])
def test_equal_duty_cycles_give_the_winners_of_no_boost(shape):
    g = torch.Generator().manual_seed(3)
    n = shape[1]
    x64 = torch.randn(shape, generator=g, dtype=torch.float64)
    xint = torch.randint(-40, 40, shape, generator=g).float()  # with ties
    xint[xint == 0] = 41.0
    for x in (x64, xint):
        for boost in (0.5, 1.0, 10.0):
            duty = torch.full((n,), 0.7, dtype=x.dtype)
            for k in (1, n // 10, n - 1):
                for bt in (False, True):
                    y = kw.kwinners(x, duty, k, boost, break_ties=bt)
                    assert_rows(y.numpy(), x.numpy(), x.numpy(), k, False,
                                bt)


@pytest.mark.parametrize("shape", [(8, 50), (300, 1024)])
@pytest.mark.parametrize("relu", [False, True])
def test_ties_threshold_keeps_all_break_ties_keeps_k(fast_calls, shape,
                                                     relu):
    # integers in -3..5 without 0: the k-th value is tied in nearly every row
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-3, 5, shape, generator=g).float()
    x[x == 0] = 5.0
    n = shape[1]
    for boost, duty in ((0.0, torch.rand(n, generator=g)),
                        (1.0, torch.full((n,), 0.2))):   # ties survive
        for k in (1, n // 10, n // 2):
            b = boosted(x, duty, k, n, boost)
            fast_calls.clear()
            y = kw.kwinners(x, duty, k, boost, relu=relu)
            tied = assert_rows(y.numpy(), x.numpy(), b, k, relu, False)
            assert tied.mean() > 0.5
            if not relu:
                assert ((y[tied] != 0).sum(1) > k).all()  # more than k
            assert fast_calls == expected_calls(x.numel(), k, n, tied, False)
            y = kw.kwinners(x, duty, k, boost, break_ties=True, relu=relu)
            assert_rows(y.numpy(), x.numpy(), b, k, relu, True)
            if not relu:
                assert ((y != 0).sum(1) == k).all()


@pytest.mark.parametrize("relu", [False, True])
def test_tie_in_one_row_of_a_big_batch(fast_calls, relu):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 1024, generator=g)
    n, k, r = 1024, 100, 7
    order = torch.argsort(x[r], descending=True)
    x[r, order[k]] = x[r, order[k - 1]]        # k-th == (k + 1)-th
    duty = torch.full((n,), 0.1)
    for boost in (0.0, 1.0):
        b = boosted(x, duty, k, n, boost)
        assert tied_rows(b, k).tolist() == [i == r for i in range(300)]
        fast_calls.clear()
        y = kw.kwinners(x, duty, k, boost, relu=relu)
        assert fast_calls == [False]               # fell back
        assert_rows(y.numpy(), x.numpy(), b, k, relu, False)
        assert (y[r] != 0).sum() == k + 1
        fast_calls.clear()
        y = kw.kwinners(x, duty, k, boost, break_ties=True, relu=relu)
        assert fast_calls == [True]
        assert_rows(y.numpy(), x.numpy(), b, k, relu, True)
        assert (y[r] != 0).sum() == k


def test_ties_away_from_the_threshold_keep_the_fast_path(fast_calls):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(300, 1024, generator=g)
    n, k = 1024, 50
    order = torch.argsort(x, dim=1, descending=True)
    rows = torch.arange(300)
    x[rows, order[:, 1]] = x[rows, order[:, 0]]            # among winners
    x[rows, order[:, k + 1]] = x[rows, order[:, k]]        # below
    zero = torch.zeros(n)
    y = kw.kwinners(x, zero, k, 0.0)
    assert fast_calls == [True]
    assert_rows(y.numpy(), x.numpy(), x.numpy(), k, False, False)
    assert ((y != 0).sum(1) == k).all()


def test_functions_leave_the_input_alone_and_work_under_no_grad():
    g = torch.Generator().manual_seed(7)
    for shape in ((8, 50), (300, 1024)):
        x = torch.randn(shape, generator=g)
        x0 = x.clone()
        duty = torch.rand(shape[1], generator=g)
        y = kw.kwinners(x, duty, 5, 1.0)
        with torch.no_grad():
            y2 = kw.kwinners(x, duty, 5, 1.0)
        assert torch.equal(x, x0) and torch.equal(y, y2)
        assert_rows(y.numpy(), x.numpy(), boosted(x, duty, 5, shape[1], 1.0),
                    5, False, False)
    x = torch.randn(2, 3, 4, 4, generator=g)
    x0 = x.clone()
    for local in (True, False):
        kw.kwinners2d(x, torch.rand(3, generator=g), 2, 1.0, local=local)
    assert torch.equal(x, x0)


def test_non_contiguous_input():
    g = torch.Generator().manual_seed(24)
    for shape in ((50, 8), (1024, 300)):
        x = torch.randn(shape, generator=g).t()
        duty = torch.rand(shape[0], generator=g)
        for bt in (False, True):
            y = kw.kwinners(x, duty, 7, 1.0, break_ties=bt)
            assert_rows(y.numpy(), x.numpy(),
                        boosted(x, duty, 7, shape[0], 1.0), 7, False, bt)
    x = torch.randn(3, 5, 4, 6, generator=g).transpose(2, 3)
    duty = torch.rand(5, generator=g)
    for local in (True, False):
        y = kw.kwinners2d(x, duty, 2 if local else 20, 1.0, local=local)
        assert_2d(y, x, duty, 2 if local else 20, 1.0, local, False, False)


def test_kwinners2d_accepts_duty_cycles_of_c_values():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 4, 2, 2, generator=g)
    duty = torch.rand(4, generator=g)
    for local in (True, False):
        y = kw.kwinners2d(x, duty, 2, 1.0, local=local)
        assert_2d(y, x, duty, 2, 1.0, local, False, False)


# --------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("shape", [(8, 50), (300, 1024)])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("break_ties", [False, True])
def test_gradient_reaches_the_winners_only(fast_calls, shape, relu,
                                           break_ties):
    g = torch.Generator().manual_seed(9)
    n = shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    duty = torch.rand(n, generator=g, dtype=torch.float64)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    k = n // 10
    xr = x.clone().requires_grad_(True)
    y = kw.kwinners(xr, duty, k, 1.0, break_ties=break_ties, relu=relu)
    (w * y).sum().backward()
    win = reference_mask(boosted(x, duty, k, n, 1.0), k, relu, break_ties)
    np.testing.assert_array_equal(xr.grad.numpy(),
                                  np.where(win, w.numpy(), 0))
    assert fast_calls == ([True] if x.numel() >= FAST else [])


@pytest.mark.parametrize("local", [True, False])
def test_gradient_2d_reaches_the_winners_only(local):
    g = torch.Generator().manual_seed(10)
    x = torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64)
    duty = torch.rand(1, 6, 1, 1, generator=g, dtype=torch.float64)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64)
    k = 2 if local else 10
    n = 6 if local else 54
    xr = x.clone().requires_grad_(True)
    (w * kw.kwinners2d(xr, duty, k, 1.0, local=local)).sum().backward()
    rows = rows_local if local else rows_global
    win = reference_mask(rows(boosted(x, duty, k, n, 1.0)), k)
    np.testing.assert_array_equal(rows(xr.grad.numpy()),
                                  np.where(win, rows(w.numpy()), 0))


def _separated(shape, g):
    """float64 values at least 0.1 apart, none within 1e-3 of 0."""
    m = math.prod(shape)
    v = (torch.randperm(m, generator=g).double() - m // 2) * 0.1
    v = v + 0.005 + 0.001 * torch.rand(m, generator=g, dtype=torch.float64)
    return v.reshape(shape)


@pytest.mark.parametrize("path", ["fast", "mask"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("break_ties", [False, True])
def test_gradcheck_and_gradgradcheck(monkeypatch, fast_calls, path, relu,
                                     break_ties):
    # the fast path's bound is lowered so that a small input takes it
    monkeypatch.setattr(kw, "_FAST_PATH_MIN", 1 if path == "fast" else 10**9)
    g = torch.Generator().manual_seed(11)
    x = _separated((3, 7), g).requires_grad_(True)
    duty = torch.rand(7, generator=g, dtype=torch.float64)

    def f(t):
        return kw.kwinners(t, duty, 3, 1.0, break_ties=break_ties,
                           relu=relu)

    b = boosted(x, duty, 3, 7, 1.0)
    s = np.sort(b, axis=1)
    assert (s[:, 4] - s[:, 3] > 1e-3).all() and (abs(b) > 1e-3).all()
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))
    if path == "fast":
        assert fast_calls and all(fast_calls)
    else:
        assert fast_calls == []


@pytest.mark.parametrize("path", ["fast", "mask"])
def test_relu_gives_a_zero_winner_no_gradient(monkeypatch, fast_calls,
                                              path):
    # x = (0, -1, -2, -3), k = 2: without relu 0 and -1 win (and pass
    # gradient); relu drops boosted values <= 0, so nothing passes.
    monkeypatch.setattr(kw, "_FAST_PATH_MIN", 1 if path == "fast" else 10**9)
    for bt in (False, True):
        for relu, want in ((False, [[1.0, 1.0, 0.0, 0.0]]),
                           (True, [[0.0, 0.0, 0.0, 0.0]])):
            x = torch.tensor([[0.0, -1.0, -2.0, -3.0]], requires_grad=True)
            y = kw.kwinners(x, torch.zeros(4), 2, 0.0, break_ties=bt,
                            relu=relu)
            y.sum().backward()
            assert x.grad.tolist() == want
    assert fast_calls == ([True] * 4 if path == "fast" else [])


@pytest.mark.parametrize("local", [True, False])
def test_gradcheck_2d(local):
    g = torch.Generator().manual_seed(12)
    x = _separated((2, 4, 2, 3), g).requires_grad_(True)
    duty = torch.rand(1, 4, 1, 1, generator=g, dtype=torch.float64)

    def f(t):
        return kw.kwinners2d(t, duty, 2 if local else 7, 0.5, local=local)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_module_gradient_in_training_and_eval():
    g = torch.Generator().manual_seed(13)
    m = kw.KWinners(40, 0.25, boost_strength=1.0, duty_cycle_period=100)
    x = torch.randn(16, 40, generator=g)
    w = torch.randn(16, 40, generator=g)
    for train in (True, False):
        m.train(train)
        k = m.k if train else m.k_inference
        duty = m.duty_cycle.clone()
        xr = x.clone().requires_grad_(True)
        (w * m(xr)).sum().backward()
        win = reference_mask(boosted(x, duty, k, 40, 1.0), k)
        np.testing.assert_array_equal(xr.grad.numpy(),
                                  np.where(win, w.numpy(), 0))


# --------------------------------------------------------------------------
# hypothesis properties


_values = st.floats(-100, 100, allow_nan=False).filter(lambda v: abs(v) > 1e-3)


@st.composite
def _case(draw, unique=False):
    rows = draw(st.integers(1, 5))
    n = draw(st.integers(1, 12))
    if unique:
        vals = draw(st.lists(st.integers(-1000, 1000), min_size=rows * n,
                             max_size=rows * n, unique=True))
        x = np.array(vals, dtype=np.float64).reshape(rows, n) / 8
    else:
        x = draw(hnp.arrays(np.float64, (rows, n), elements=_values))
    duty = draw(hnp.arrays(np.float64, (n,), elements=st.floats(0, 1)))
    k = draw(st.integers(1, n))
    boost = draw(st.sampled_from([0.0, 0.5, 3.0]))
    return torch.from_numpy(x), torch.from_numpy(duty), k, boost


@settings(max_examples=40, deadline=None)
@given(_case(), st.booleans())
def test_property_break_ties_keeps_exactly_k(case, relu):
    x, duty, k, boost = case
    y = kw.kwinners(x, duty, k, boost, break_ties=True)
    assert ((y != 0).sum(1) == k).all()
    assert ((y == 0) | (y == x)).all()
    y = kw.kwinners(x, duty, k, boost, break_ties=True, relu=True)
    assert ((y != 0).sum(1) <= k).all() and (y >= 0).all()


@settings(max_examples=40, deadline=None)
@given(_case(), st.booleans())
def test_property_threshold_keeps_everything_at_or_above_the_kth(case,
                                                                   relu):
    x, duty, k, boost = case
    n = x.shape[1]
    y = kw.kwinners(x, duty, k, boost, relu=relu).numpy()
    xn = x.numpy()
    assert np.all((y == 0) | (y == xn))
    b = boosted(x, duty, k, n, boost)
    kth = np.sort(b, axis=1)[:, n - k][:, None]
    want = (b >= kth) & ((b > 0) if relu else True)
    np.testing.assert_array_equal(y != 0, want)
    if not relu:
        assert ((y != 0).sum(1) >= k).all()


@settings(max_examples=40, deadline=None)
@given(_case(unique=True), st.booleans())
def test_property_no_boost_winners_are_numpys_top_k(case, break_ties):
    x, duty, k, _ = case
    y = kw.kwinners(x, duty, k, 0.0, break_ties=break_ties).numpy()
    top = np.argsort(x.numpy(), axis=1)[:, x.shape[1] - k:]
    for r in range(x.shape[0]):
        got = set(np.flatnonzero(y[r] != 0).tolist())
        assert got == set(top[r].tolist()) - set(
            np.flatnonzero(x[r].numpy() == 0).tolist())


# --------------------------------------------------------------------------
# modules: k, inference, duty cycles, boost strength, state


@pytest.mark.parametrize("n,p,f", [(20, 0.25, 1.5), (10, 0.25, 1.5),
                                   (100, 0.07, 1.5), (10, 0.36, 2.0),
                                   (7, 0.5, 1.0), (1000, 0.015, 0.9)])
def test_kwinners_k_and_k_inference(n, p, f):
    m = kw.KWinners(n, p, k_inference_factor=f)
    k = round(n * p)
    assert m.k == k and m.k_inference == int(k * f) and m.n == n


def test_kwinners_k_hand_values():
    assert kw.KWinners(20, 0.25).k_inference == 7            # int(7.5)
    assert kw.KWinners(10, 0.25).k == 2                      # round(2.5)
    assert kw.KWinners(100, 0.07).k == 7                     # 7.000...01
    m = kw.KWinners(10, 0.36, k_inference_factor=2.0)
    assert (m.k, m.k_inference) == (4, 8)


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("c,h,w,p,f", [(4, 3, 3, 0.25, 1.5),
                                       (8, 4, 4, 0.1, 1.5),
                                       (16, 5, 5, 0.3, 2.0)])
def test_kwinners2d_k_and_k_inference(local, c, h, w, p, f):
    m = kw.KWinners2d(c, p, k_inference_factor=f, local=local)
    big = c * h * w
    if not local:
        assert m.k == 0 and m.n == 0        # known at the first forward
    m.eval()
    m(torch.randn(2, c, h, w))
    nn_ = c if local else big
    assert m.k == round(nn_ * p)
    assert m.k_inference == round(nn_ * (p * f))
    assert m.n == big


def test_kwinners2d_k_hand_values():
    # N = 18, p = 0.25: k = round(4.5) = 4; k_inference = round(6.75) = 7,
    # where int(k * 1.5) would give 6
    m = kw.KWinners2d(2, 0.25, k_inference_factor=1.5).eval()
    m(torch.randn(1, 2, 3, 3))
    assert (m.k, m.k_inference) == (4, 7)


def test_defaults_are_nupics():
    m = kw.KWinners(10, 0.3)
    assert m.k_inference_factor == 1.5
    assert float(m.boost_strength) == 1.0 and m.boost_strength_factor == 0.9
    assert m.duty_cycle_period == 1000
    assert not m.break_ties and not m.relu
    m = kw.KWinners2d(4)
    assert m.percent_on == 0.1 and m.k_inference_factor == 1.5
    assert float(m.boost_strength) == 1.0 and m.boost_strength_factor == 0.9
    assert m.duty_cycle_period == 1000 and not m.local
    assert m.duty_cycle.shape == (1, 4, 1, 1)
    assert kw.KWinners(10, 0.3).duty_cycle.shape == (10,)


def test_duty_cycles_1d_by_hand():
    m = kw.KWinners(4, 0.5, boost_strength=0.0, duty_cycle_period=4)
    assert m.k == 2 and m.duty_cycle.tolist() == [0.0] * 4
    y = m(torch.tensor([[1.0, 3.0, 2.0, 5.0], [4.0, -1.0, 3.0, 0.5]]))
    assert y.tolist() == [[0.0, 3.0, 0.0, 5.0], [4.0, 0.0, 3.0, 0.0]]
    # counts (1, 1, 1, 1), seen 2, period 2: (0 * 0 + c) / 2
    torch.testing.assert_close(m.duty_cycle, torch.full((4,), 0.5))
    m(torch.tensor([[5.0, 4.0, -1.0, -2.0]]))
    # counts (1, 1, 0, 0), seen 3, period 3: (0.5 * 2 + c) / 3
    torch.testing.assert_close(m.duty_cycle,
                               torch.tensor([2 / 3, 2 / 3, 1 / 3, 1 / 3]))
    y = m(torch.tensor([[-1.0, -2.0, -3.0, -4.0], [1.0, 2.0, 3.0, 4.0]]))
    assert y.tolist() == [[-1.0, -2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0]]
    # negative winners do not count: counts (0, 0, 1, 1); seen 5, period 4:
    # (duty * 2 + c) / 4
    torch.testing.assert_close(
        m.duty_cycle, torch.tensor([1 / 3, 1 / 3, 5 / 12, 5 / 12]))
    assert m.learning_iterations == 5
    m.eval()
    m(torch.randn(7, 4))                   # larger than the period: fine
    torch.testing.assert_close(
        m.duty_cycle, torch.tensor([1 / 3, 1 / 3, 5 / 12, 5 / 12]))
    assert m.learning_iterations == 5
    m.train()
    m(torch.tensor([[0.0, 0.0, 1.0, 2.0]]))  # zeros win but do not fire
    # seen 6, period 4: (duty * 3 + (0, 0, 1, 1)) / 4
    torch.testing.assert_close(
        m.duty_cycle, torch.tensor([1 / 4, 1 / 4, 9 / 16, 9 / 16]))


def test_duty_cycles_2d_by_hand():
    # local: winners per position among 2 channels (k = 1)
    m = kw.KWinners2d(2, 0.5, boost_strength=0.0, duty_cycle_period=10,
                      local=True)
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, -1.0]]]])     # (1, 2, 1, 2)
    m(x)
    # channel 0 wins at position 1, channel 1 at position 0: 1/2 each
    torch.testing.assert_close(m.duty_cycle,
                               torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1))
    m(torch.tensor([[[[5.0, 4.0]], [[1.0, 2.0]]]]))
    # channel 0 wins both: counts (2/2, 0), seen 2: (0.5 * 1 + c) / 2
    torch.testing.assert_close(m.duty_cycle,
                               torch.tensor([0.75, 0.25]).reshape(1, 2, 1, 1))
    # global: k = round(4 * 0.5) = 2 of the 4 values of a sample
    m = kw.KWinners2d(2, 0.5, boost_strength=0.0, duty_cycle_period=10)
    m(torch.tensor([[[[5.0, 3.0]], [[1.0, -1.0]]]]))
    torch.testing.assert_close(m.duty_cycle,
                               torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))
    y = m(torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]],
                        [[[-5.0, 6.0]], [[-1.0, 0.5]]]]))
    assert y.tolist() == [[[[0.0, 0.0]], [[3.0, 4.0]]],
                          [[[0.0, 6.0]], [[0.0, 0.5]]]]
    # counts: channel 0 (0 + 1) / 2, channel 1 (2 + 1) / 2; seen 3, period 3
    # (duty * 1 + c) / 3 = ((1 + 0.5) / 3, (0 + 1.5) / 3)
    torch.testing.assert_close(m.duty_cycle,
                               torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1))
    assert m.learning_iterations == 3


def _simulate(m, batches, make_ref_output, per_unit_counts):
    """Feed ``batches`` to ``m`` in training mode and check each output
    against the reference and each duty-cycle update against the formula
    (applied to the duty cycles before the batch)."""
    seen = m.learning_iterations
    for x in batches:
        duty = m.duty_cycle.detach().clone().double()
        y = m(x)
        make_ref_output(y, x, duty)
        seen += x.shape[0]
        period = min(m.duty_cycle_period, seen)
        counts = per_unit_counts(y.detach().double())
        want = (duty.reshape(-1) * (period - x.shape[0]) + counts) / period
        torch.testing.assert_close(m.duty_cycle.double().reshape(-1), want,
                                   rtol=1e-6, atol=1e-7)
        assert m.learning_iterations == seen


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("break_ties", [False, True])
def test_kwinners_training_sequence(relu, break_ties):
    g = torch.Generator().manual_seed(14)
    m = kw.KWinners(30, 0.2, boost_strength=2.0, duty_cycle_period=25,
                    break_ties=break_ties, relu=relu)
    batches = [torch.randn(bs, 30, generator=g) + 0.5
               for bs in (10, 5, 10, 20, 3, 25)]

    def check(y, x, duty):
        assert_rows(y.detach().numpy(), x.numpy(),
                    boosted(x, duty, 6, 30, 2.0), 6, relu, break_ties)

    _simulate(m, batches, check, lambda y: (y > 0).sum(0).double())


@pytest.mark.parametrize("local", [True, False])
def test_kwinners2d_training_sequence(local):
    g = torch.Generator().manual_seed(15)
    c, h, w = 5, 3, 4
    m = kw.KWinners2d(c, 0.4, boost_strength=1.5, duty_cycle_period=12,
                      local=local)
    k = round((c if local else c * h * w) * 0.4)
    batches = [torch.randn(bs, c, h, w, generator=g)
               for bs in (4, 6, 5, 12, 2)]

    def check(y, x, duty):
        assert_2d(y, x, duty, k, 1.5, local, False, False)

    _simulate(m, batches, check,
              lambda y: (y > 0).sum((0, 2, 3)).double() / (h * w))


def test_big_batch_training_counts_on_the_fast_path(fast_calls):
    g = torch.Generator().manual_seed(16)
    m = kw.KWinners(1024, 0.05, boost_strength=1.0, duty_cycle_period=1000)
    x = torch.randn(300, 1024, generator=g)
    m(x)
    assert fast_calls == [True]
    _simulate(m, [torch.randn(200, 1024, generator=g)],
              lambda y, x, duty: assert_rows(
                  y.detach().numpy(), x.numpy(),
                  boosted(x, duty, 51, 1024, 1.0), 51, False, False),
              lambda y: (y > 0).sum(0).double())
    m2 = kw.KWinners2d(16, 0.1, duty_cycle_period=64)
    x = torch.randn(32, 16, 16, 16, generator=g)
    fast_calls.clear()
    y = m2(x)
    assert fast_calls == [True]
    assert_2d(y, x, torch.zeros(16), 410, 1.0, False, False, False)
    want = (y.detach() > 0).sum((0, 2, 3)) / 256 / 32  # period = 32
    torch.testing.assert_close(m2.duty_cycle.reshape(-1), want.float())


def test_eval_uses_k_inference_and_changes_nothing():
    g = torch.Generator().manual_seed(17)
    m = kw.KWinners(20, 0.25, boost_strength=1.0, duty_cycle_period=50)
    m(torch.randn(10, 20, generator=g))
    duty = m.duty_cycle.clone()
    m.eval()
    x = torch.randn(8, 20, generator=g)
    y = m(x)
    assert m.k_inference == 7
    assert_rows(y.numpy(), x.numpy(), boosted(x, duty, 7, 20, 1.0), 7,
                False, False)
    assert torch.equal(m.duty_cycle, duty) and m.learning_iterations == 10
    m2 = kw.KWinners2d(3, 0.25, boost_strength=1.0, duty_cycle_period=50)
    m2(torch.randn(4, 3, 2, 2, generator=g))
    duty = m2.duty_cycle.clone()
    m2.eval()
    x = torch.randn(60, 3, 2, 2, generator=g)    # larger than the period
    y = m2(x)
    assert m2.k_inference == round(12 * 0.375) == 4
    assert_2d(y, x, duty, 4, 1.0, False, False, False)
    assert torch.equal(m2.duty_cycle, duty) and m2.learning_iterations == 4
    m3 = kw.KWinners2d(8, 0.25, boost_strength=1.0, duty_cycle_period=50,
                       local=True)
    m3(torch.randn(4, 8, 2, 2, generator=g))
    duty = m3.duty_cycle.clone()
    m3.eval()
    x = torch.randn(60, 8, 2, 2, generator=g)
    y = m3(x)
    assert (m3.k, m3.k_inference) == (2, 3)       # round(8 * 0.375) = 3
    assert_2d(y, x, duty, 3, 1.0, True, False, False)
    assert torch.equal(m3.duty_cycle, duty) and m3.learning_iterations == 4


def test_update_duty_cycle_methods():
    m = kw.KWinners(3, 0.5, duty_cycle_period=4)
    m.update_duty_cycle(torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 0.0]]))
    torch.testing.assert_close(m.duty_cycle, torch.tensor([1.0, 0.5, 0.0]))
    m2 = kw.KWinners2d(2, 0.5, duty_cycle_period=4)
    m2.update_duty_cycle(torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]]))
    torch.testing.assert_close(m2.duty_cycle.reshape(-1),
                               torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize("make", [
    lambda: kw.KWinners(10, 0.3, duty_cycle_period=5),
    lambda: kw.KWinners2d(2, 0.3, duty_cycle_period=5)])
def test_batch_larger_than_the_period_is_rejected(make):
    m = make()
    x = torch.randn(6, 10) if isinstance(m, kw.KWinners) else \
        torch.randn(6, 2, 2, 2)
    with pytest.raises(ValueError, match="duty_cycle_period"):
        m(x)
    assert m.learning_iterations == 0
    assert (m.duty_cycle == 0).all()
    with pytest.raises(ValueError, match="duty_cycle_period"):
        m.update_duty_cycle(x)
    m(x[:5])                                     # equal to it: fine
    assert m.learning_iterations == 5


def test_update_boost_strength():
    m = kw.KWinners(10, 0.3, boost_strength=2.0, boost_strength_factor=0.5)
    m.update_boost_strength()
    assert float(m.boost_strength) == 1.0
    assert m._cached_boost_strength == 1.0
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 10),
        kw.KWinners(10, 0.3, boost_strength=3.0, boost_strength_factor=0.9),
        torch.nn.Sequential(kw.KWinners2d(2, 0.5, boost_strength=1.0,
                                          boost_strength_factor=0.25)))
    for _ in range(2):
        net.apply(kw.update_boost_strength)
    assert float(net[1].boost_strength) == pytest.approx(3.0 * 0.81)
    assert net[1]._cached_boost_strength == pytest.approx(3.0 * 0.81)
    assert float(net[2][0].boost_strength) == 0.0625
    # the decayed strength is the one the forward uses
    g = torch.Generator().manual_seed(18)
    layer = net[1]
    layer.duty_cycle.copy_(torch.rand(10, generator=g))
    x = torch.randn(5, 10, generator=g)
    layer.eval()
    k = layer.k_inference
    assert_rows(layer(x).numpy(), x.numpy(),
                boosted(x, layer.duty_cycle, k, 10, 3.0 * 0.9 * 0.9), k, False,
                False)


@pytest.mark.parametrize("two_d", [False, True])
def test_state_dict_round_trip(two_d):
    g = torch.Generator().manual_seed(19)
    if two_d:
        def make(b):
            return kw.KWinners2d(3, 0.3, boost_strength=b,
                                 boost_strength_factor=0.5,
                                 duty_cycle_period=40)
        shape = (8, 3, 2, 3)
    else:
        def make(b):
            return kw.KWinners(12, 0.25, boost_strength=b,
                               boost_strength_factor=0.5,
                               duty_cycle_period=40)
        shape = (8, 12)
    m = make(4.0)
    for _ in range(3):
        m(torch.randn(shape, generator=g))
    m.update_boost_strength()
    sd = m.state_dict()
    assert set(sd) == {"boost_strength", "duty_cycle"}
    m2 = make(0.3)
    m2.load_state_dict(sd)
    assert float(m2.boost_strength) == 2.0
    assert m2._cached_boost_strength == 2.0
    assert torch.equal(m2.duty_cycle, m.duty_cycle)
    m2.eval()
    x = torch.randn(shape, generator=g)
    y = m2(x)
    k = m2.k_inference
    if two_d:
        assert_2d(y, x, m.duty_cycle, k, 2.0, False, False, False)
    else:
        assert_rows(y.numpy(), x.numpy(), boosted(x, m.duty_cycle, k, 12, 2.0),
                    k, False, False)


def test_module_double_precision():
    g = torch.Generator().manual_seed(20)
    m = kw.KWinners(16, 0.25, duty_cycle_period=30).double()
    x = torch.randn(6, 16, generator=g, dtype=torch.float64)
    y = m(x)
    assert y.dtype == torch.float64 and m.duty_cycle.dtype == torch.float64
    assert_rows(y.detach().numpy(), x.numpy(),
                boosted(x, torch.zeros(16), 4, 16, 1.0), 4, False, False)


# --------------------------------------------------------------------------
# entropy


def _h_bits(p):
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    return np.array([stats.entropy([q, 1 - q], base=2) for q in p])


def test_binary_entropy_by_hand_and_scipy():
    p = torch.tensor([0.0, 0.5, 1.0, 0.25], dtype=torch.float64)
    h, total = kw.binary_entropy(p)
    h_quarter = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    np.testing.assert_allclose(h.numpy(), [0.0, 1.0, 0.0, h_quarter],
                               rtol=1e-12, atol=0)
    assert float(total) == pytest.approx(2 + h_quarter - 1, rel=1e-12)
    q = torch.rand(3, 7, generator=torch.Generator().manual_seed(21))
    h, total = kw.binary_entropy(q)
    assert h.shape == (3, 7)
    np.testing.assert_allclose(h.numpy().reshape(-1), _h_bits(q), rtol=1e-5)
    assert float(total) == pytest.approx(_h_bits(q).sum(), rel=1e-5)


def test_max_entropy_by_hand():
    assert kw.max_entropy(4, 2) == pytest.approx(4.0, rel=1e-15)
    assert kw.max_entropy(8, 2) == pytest.approx(
        8 * (0.25 * 2 + 0.75 * math.log2(4 / 3)), rel=1e-14)
    assert kw.max_entropy(10, 0) == 0.0 and kw.max_entropy(10, 10) == 0.0
    assert kw.max_entropy(1, 1) == 0.0


@pytest.mark.parametrize("args,exc,name", [
    ((0, 0), ValueError, "n"), ((4, 5), ValueError, "k"),
    ((4, -1), ValueError, "k"), ((4.0, 2), TypeError, "n"),
    ((4, 2.0), TypeError, "k")])
def test_max_entropy_rejects(args, exc, name):
    with pytest.raises(exc, match=rf"^{name}\b"):
        kw.max_entropy(*args)


def test_module_entropy():
    g = torch.Generator().manual_seed(22)
    m = kw.KWinners(10, 0.36, duty_cycle_period=100)
    assert float(m.entropy()) == 0.0
    m(torch.randn(30, 10, generator=g))
    assert float(m.entropy()) == pytest.approx(
        _h_bits(m.duty_cycle).sum(), rel=1e-5)
    # int(10 * 0.36) = 3 (round would give 4): 10 * H(0.3)
    assert m.max_entropy() == pytest.approx(10 * _h_bits([0.3])[0], rel=1e-12)
    m2 = kw.KWinners2d(4, 0.3, duty_cycle_period=100)
    m2(torch.randn(20, 4, 3, 5, generator=g))
    assert m2.n == 60
    assert float(m2.entropy()) == pytest.approx(
        _h_bits(m2.duty_cycle).sum() * 60 / 4, rel=1e-5)
    assert m2.max_entropy() == pytest.approx(60 * _h_bits([18 / 60])[0],
                                             rel=1e-12)


# --------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"percent_on": 0.0}, ValueError, "percent_on"),
    ({"percent_on": 1.0}, ValueError, "percent_on"),
    ({"percent_on": -0.1}, ValueError, "percent_on"),
    ({"percent_on": 1.5}, ValueError, "percent_on"),
    ({"percent_on": "0.1"}, TypeError, "percent_on"),
    ({"percent_on": 0.5, "k_inference_factor": 2.0}, ValueError,
     "k_inference_factor"),
    ({"percent_on": 0.4, "k_inference_factor": 3.0}, ValueError,
     "k_inference_factor"),
    ({"k_inference_factor": 0.0}, ValueError, "k_inference_factor"),
    ({"boost_strength": -0.5}, ValueError, "boost_strength"),
    ({"boost_strength_factor": 1.1}, ValueError, "boost_strength_factor"),
    ({"boost_strength_factor": -0.1}, ValueError, "boost_strength_factor"),
    ({"duty_cycle_period": 0}, ValueError, "duty_cycle_period"),
    ({"duty_cycle_period": 10.0}, TypeError, "duty_cycle_period"),
])
@pytest.mark.parametrize("cls", ["1d", "2d"])
def test_constructor_rejects(cls, kwargs, exc, name):
    kwargs = {"percent_on": 0.3, **kwargs}
    with pytest.raises(exc, match=name):
        if cls == "1d":
            kw.KWinners(20, **kwargs)
        else:
            kw.KWinners2d(4, **kwargs)


def test_k_zero_from_rounding_is_rejected():
    with pytest.raises(ValueError, match=r"\bk=0\b"):
        kw.KWinners(4, 0.1)                        # round(0.4) = 0
    with pytest.raises(ValueError, match=r"k_inference=0\b"):
        kw.KWinners(10, 0.1, k_inference_factor=0.5)   # int(0.5) = 0
    with pytest.raises(ValueError, match=r"k_inference=3\b"):
        kw.KWinners(2, 0.3, k_inference_factor=3.2)    # int(3.2) > n = 2
    with pytest.raises(ValueError, match=r"\bk=0\b"):
        kw.KWinners2d(4, 0.1, local=True)
    m = kw.KWinners2d(2, 0.1)                     # global: at first forward
    with pytest.raises(ValueError, match=r"\bk=0\b"):
        m(torch.randn(1, 2, 2, 1))                 # round(0.4) = 0
    with pytest.raises(ValueError, match=r"^n must be >= 1"):
        kw.KWinners(0, 0.5)
    with pytest.raises(ValueError, match=r"^channels must be >= 1"):
        kw.KWinners2d(0, 0.5)


def test_kwinners2d_failed_first_forward_leaves_the_layer_unset():
    m = kw.KWinners2d(2, 0.1)
    with pytest.raises(ValueError, match=r"\bk=0\b"):
        m(torch.randn(1, 2, 2, 1))                 # N = 4: round(0.4) = 0
    with pytest.raises(ValueError, match=r"\bk=0\b"):
        m(torch.randn(1, 2, 2, 1))                 # the same error again
    x = torch.randn(3, 2, 5, 5)                    # N = 50: k = 5
    y = m(x)
    assert (m.n, m.k) == (50, 5)
    assert_2d(y, x, torch.zeros(2), 5, 1.0, False, False, False)


def test_forward_rejects_bad_inputs():
    m = kw.KWinners(10, 0.3)
    with pytest.raises(ValueError, match=r"x must have 10 units"):
        m(torch.randn(4, 9))
    with pytest.raises(ValueError, match=r"^x must be 2-d"):
        m(torch.randn(4, 10, 1))
    with pytest.raises(TypeError, match=r"^x must be a floating"):
        m(torch.ones(4, 10, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        m(np.ones((4, 10)))
    m2 = kw.KWinners2d(3, 0.3)
    with pytest.raises(ValueError, match=r"x must have 3 channels"):
        m2(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match=r"^x must be 4-d"):
        m2(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match=r"^x must be a floating"):
        m2(torch.ones(2, 3, 2, 2, dtype=torch.int32))
    m2(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"C \* H \* W = 12"):
        m2(torch.randn(2, 3, 3, 2))
    assert m2.learning_iterations == 2


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(4), 2, 1.0),
     ValueError, r"^duty_cycles must have shape \(5,\)"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(1, 5), 2, 1.0),
     ValueError, r"^duty_cycles"),
    (lambda: kw.kwinners(torch.randn(3, 5), [0.0] * 5, 2, 1.0),
     TypeError, r"^duty_cycles"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(5), 0, 1.0),
     ValueError, r"^k\b"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(5), 6, 1.0),
     ValueError, r"^k\b"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(5), 2.0, 1.0),
     TypeError, r"^k\b"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(5), 2, -1.0),
     ValueError, r"^boost_strength"),
    (lambda: kw.kwinners(torch.randn(3, 5), torch.zeros(5), 2, None),
     TypeError, r"^boost_strength"),
    (lambda: kw.kwinners(torch.randn(5), torch.zeros(5), 2, 1.0),
     ValueError, r"^x must be 2-d"),
    (lambda: kw.kwinners(torch.ones(3, 5, dtype=torch.int64),
                         torch.zeros(5), 2, 1.0),
     TypeError, r"^x must be a floating"),
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2, 2), torch.zeros(1, 4, 1, 1),
                           1, 1.0),
     ValueError, r"^duty_cycles must have shape \(1, 3, 1, 1\)"),
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2, 2), torch.zeros(3, 1, 1, 1),
                           1, 1.0),
     ValueError, r"^duty_cycles"),
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2, 2), torch.zeros(3), 4, 1.0),
     ValueError, r"^k\b"),                       # local: k <= C
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2, 2), torch.zeros(3), 13, 1.0,
                           local=False),
     ValueError, r"^k\b"),                       # global: k <= C * H * W
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2, 2), torch.zeros(3), 1, -2.0),
     ValueError, r"^boost_strength"),
    (lambda: kw.kwinners2d(torch.randn(2, 3, 2), torch.zeros(3), 1, 1.0),
     ValueError, r"^x must be 4-d"),
    (lambda: kw.kwinners2d(torch.ones(2, 3, 2, 2, dtype=torch.int64),
                           torch.zeros(3), 1, 1.0),
     TypeError, r"^x must be a floating"),
    (lambda: kw.binary_entropy(torch.tensor([0, 1])),
     TypeError, r"^p must be a floating"),
])
def test_functions_reject_bad_inputs(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_kwinners2d_global_k_up_to_chw_is_accepted():
    x = torch.randn(2, 3, 2, 2)
    y = kw.kwinners2d(x, torch.zeros(3), 12, 1.0, local=False)
    assert torch.equal(y, x)


# --------------------------------------------------------------------------
# CUDA


def _device_matches_cpu(dev):
    """Functions and modules on ``dev`` give the CPU's outputs, gradients
    and duty cycles (float64; which tied unit wins in break-ties mode may
    differ, the number of winners may not)."""
    g = torch.Generator().manual_seed(23)

    def on(t):
        return t.to(dev, copy=True)

    for shape in ((8, 50), (300, 1024)):
        n = shape[1]
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        xi = torch.randint(-3, 5, shape, generator=g).double()   # ties
        xi[xi == 0] = 5.0
        duty = torch.rand(n, generator=g, dtype=torch.float64)
        w = torch.randn(shape, generator=g, dtype=torch.float64)
        for k in (1, n // 10, n - 1):
            for bt in (False, True):
                for relu in (False, True):
                    xc = x.clone().requires_grad_(True)
                    xg = on(x).requires_grad_(True)
                    yc = kw.kwinners(xc, duty, k, 1.0, bt, relu)
                    yg = kw.kwinners(xg, on(duty), k, 1.0, bt, relu)
                    assert yg.device.type == torch.device(dev).type
                    torch.testing.assert_close(yg.cpu(), yc, rtol=0, atol=0)
                    (w * yc).sum().backward()
                    (on(w) * yg).sum().backward()
                    torch.testing.assert_close(xg.grad.cpu(), xc.grad,
                                               rtol=0, atol=0)
                yc = kw.kwinners(xi, duty, k, 0.0, bt)
                yg = kw.kwinners(on(xi), on(duty), k, 0.0, bt).cpu()
                if bt:
                    assert torch.equal((yg != 0).sum(1), (yc != 0).sum(1))
                    assert_rows(yg.numpy(), xi.numpy(), xi.numpy(), k,
                                False, True)
                else:
                    torch.testing.assert_close(yg, yc, rtol=0, atol=0)
    x = torch.randn(32, 16, 16, 16, generator=g, dtype=torch.float64)
    duty = torch.rand(1, 16, 1, 1, generator=g, dtype=torch.float64)
    for local in (True, False):
        yc = kw.kwinners2d(x, duty, 3, 1.0, local=local)
        yg = kw.kwinners2d(on(x), on(duty), 3, 1.0, local=local)
        torch.testing.assert_close(yg.cpu(), yc, rtol=0, atol=0)
    for make, shape in (
            (lambda: kw.KWinners(64, 0.1, duty_cycle_period=50), (20, 64)),
            (lambda: kw.KWinners2d(8, 0.2, duty_cycle_period=50, local=True),
             (10, 8, 4, 4)),
            (lambda: kw.KWinners2d(8, 0.2, duty_cycle_period=50),
             (10, 8, 4, 4))):
        mc, mg = make().double(), make().double().to(dev)
        for _ in range(4):
            x = torch.randn(shape, generator=g, dtype=torch.float64)
            torch.testing.assert_close(mg(on(x)).cpu(), mc(x), rtol=0,
                                       atol=0)
            torch.testing.assert_close(mg.duty_cycle.cpu(), mc.duty_cycle)
        mc.eval()
        mg.eval()
        torch.testing.assert_close(mg(on(x)).cpu(), mc(x), rtol=0, atol=0)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    _device_matches_cpu("cuda")
