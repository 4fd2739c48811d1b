"""sparselib.metrics against hand-computed cases.

The streamed statistics (:func:`activity_stats`) are checked against the
whole-matrix measures and a hand case.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparselib import metrics as M

H = torch.tensor([[0.0, 2.0, 0.0, 0.0],    # one unit active
                  [1.0, 1.0, 1.0, 1.0],    # all active, equally
                  [0.0, 3.0, 4.0, 0.0]])   # two active


def test_l0_avr_activity_ratio():
    assert M.l0(H).tolist() == [1, 4, 2]
    assert M.avr(H) == pytest.approx(7 / 3)
    assert M.activity_ratio(H) == pytest.approx(7 / 12)
    # threshold: |h| > eps
    assert M.l0(H, eps=1.0).tolist() == [1, 0, 2]


def test_population_sparsity_hand_computed():
    ps = M.population_sparsity(H)
    # row 0: mean .5, mean sq 1 -> ratio .25 -> (1-.25)/(1-1/4) = 1
    assert ps[0].item() == pytest.approx(1.0)
    assert ps[1].item() == pytest.approx(0.0)
    # row 2: mean 7/4, mean sq 25/4 -> ratio 49/100 -> .51/.75 = .68
    assert ps[2].item() == pytest.approx(0.68)


def test_lifetime_sparsity_hand_computed():
    ls = M.lifetime_sparsity(H)
    # unit 0 responds to one input of 3: ratio (1/3)^2/(1/3)=1/3 -> 1
    assert ls[0].item() == pytest.approx(1.0)
    # unit 1: values 2,1,3 -> mean 2, mean sq 14/3 -> ratio 6/7
    assert ls[1].item() == pytest.approx((1 - 6 / 7) / (1 - 1 / 3))
    dead = M.lifetime_sparsity(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
    assert math.isnan(dead[0].item())


def test_hoyer_hand_computed():
    hs = M.hoyer_sparsity(H)
    assert hs[0].item() == pytest.approx(1.0)
    assert hs[1].item() == pytest.approx(0.0, abs=1e-7)
    # row 2: L1 = 7, L2 = 5 -> (2 - 1.4) / (2 - 1) = 0.6
    assert hs[2].item() == pytest.approx(0.6)


def test_duty_cycle_dead_units_entropy():
    h = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0],
                      [1.0, 0.0, 0.0], [1.0, 0.0, 5.0]])
    assert M.duty_cycle(h).tolist() == [1.0, 0.0, 0.5]
    assert M.dead_units(h).tolist() == [False, True, False]
    # always on: 0 bits; never: 0 bits; half the time: 1 bit
    assert M.unit_entropy(h).tolist() == pytest.approx([0.0, 0.0, 1.0])
    h4 = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    p = 0.25
    assert M.unit_entropy(h4).item() == pytest.approx(
        -(p * math.log2(p) + (1 - p) * math.log2(1 - p)))


@settings(max_examples=50, deadline=None)
@given(arrays("float32", st.tuples(st.integers(1, 6), st.integers(2, 8)),
              elements=st.floats(-10, 10, width=32)))
def test_sparsity_measures_lie_in_unit_interval(a):
    h = torch.from_numpy(a)
    for vals in (M.hoyer_sparsity(h), M.population_sparsity(h)):
        ok = vals[~torch.isnan(vals)]
        assert torch.all(ok >= -1e-5) and torch.all(ok <= 1 + 1e-5)
    assert 0 <= M.activity_ratio(h) <= 1
    assert torch.all(M.l0(h) <= h.shape[1])


@pytest.mark.parametrize("bad,exc,msg", [
    (torch.ones(3), ValueError, "2-d"),
    (torch.ones(0, 3), ValueError, "non-empty"),
    (torch.tensor([[1.0, float("nan")]]), ValueError, "NaN"),
    ([[1.0, 0.0]], TypeError, "torch.Tensor"),
])
def test_bad_input(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        M.l0(bad)


def test_bad_eps():
    with pytest.raises(ValueError, match="eps must be a real number >= 0"):
        M.l0(H, eps=-1)
    with pytest.raises(ValueError, match="eps .*NaN"):
        M.duty_cycle(H, eps=float("nan"))
    with pytest.raises(TypeError, match="eps must be a real number"):
        M.avr(H, eps="0")
    # an infinite threshold is allowed: nothing is active
    assert M.l0(H, eps=float("inf")).tolist() == [0, 0, 0]


def test_treves_rolls_closed_forms():
    # k equal responses among n: (1 - k/n) / (1 - 1/n)
    for n in (2, 5, 9):
        for k in range(1, n + 1):
            r = torch.zeros(1, n)
            r[0, :k] = 3.0
            expected = (1 - k / n) / (1 - 1 / n)
            assert M.population_sparsity(r).item() == pytest.approx(
                expected, abs=1e-7)
            assert M.lifetime_sparsity(r.T).item() == pytest.approx(
                expected, abs=1e-7)
    with pytest.raises(ValueError, match="at least 2"):
        M.population_sparsity(torch.ones(3, 1))


# --- streamed statistics ----------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_streamed_stats_equal_metrics_on_the_whole_matrix(batch_size):
    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(50, 30, generator=g) - 0.8)
    h[:, 3] = 0  # a dead unit
    s = M.activity_stats(lambda a: a, h, batch_size=batch_size)
    torch.testing.assert_close(s.l0, M.l0(h))
    torch.testing.assert_close(s.population, M.population_sparsity(h),
                               equal_nan=True)
    torch.testing.assert_close(s.duty, M.duty_cycle(h))
    torch.testing.assert_close(s.lifetime, M.lifetime_sparsity(h),
                               equal_nan=True, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.dead, M.dead_units(h))
    torch.testing.assert_close(s.mean, h.abs().mean(dim=0))
    assert s.avr == pytest.approx(M.avr(h))
    assert s.activity_ratio == pytest.approx(M.activity_ratio(h))
    assert s.dead_share == pytest.approx(1 / 30)
    summ = s.summary()
    assert summ["l0_max"] == M.l0(h).max().item()
    assert summ["lifetime"] == pytest.approx(
        float(np.nanmean(M.lifetime_sparsity(h).numpy())), rel=1e-5)


def test_streamed_stats_with_a_threshold_and_signed_units():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(20, 6, generator=g)   # signed: |h| is what counts
    s = M.activity_stats(lambda a: a, h, batch_size=6, eps=0.5)
    torch.testing.assert_close(s.l0, M.l0(h, eps=0.5))
    torch.testing.assert_close(s.duty, M.duty_cycle(h, eps=0.5))
    torch.testing.assert_close(s.lifetime, M.lifetime_sparsity(h),
                               rtol=1e-5, atol=1e-6)


def test_stats_hand_case():
    # two inputs, three units: unit 0 fires on both, unit 1 on one, unit 2
    # never.
    h = torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    s = M.activity_stats(lambda a: a, h, batch_size=1)
    assert s.l0.tolist() == [2, 1] and s.avr == 1.5
    assert s.duty.tolist() == [1.0, 0.5, 0.0]
    assert s.mean.tolist() == [1.0, 1.0, 0.0]
    assert s.lifetime[0].item() == pytest.approx(0.0)   # equal responses
    assert s.lifetime[1].item() == pytest.approx(1.0)   # one input only
    assert math.isnan(s.lifetime[2].item())
    # input 0: mean 1, mean square 5/3 -> ratio 3/5 -> (2/5) / (2/3) = 3/5
    assert s.population[0].item() == pytest.approx(0.6)
    assert s.population[1].item() == pytest.approx(1.0)
    assert s.dead.tolist() == [False, False, True]
    assert s.n_units == 3 and s.activity_ratio == pytest.approx(0.5)


def test_stats_bad_input():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        M.activity_stats(lambda a: a, torch.ones(4, 2), batch_size=0)
    with pytest.raises(ValueError, match="eps must be a real number >= 0"):
        M.activity_stats(lambda a: a, torch.ones(4, 2), eps=-1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        M.activity_stats(lambda a: a, [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        M.activity_stats(lambda a: a, torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\(batch, n_units\)"):
        M.activity_stats(lambda a: a.view(4, 1, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        M.activity_stats(lambda a: a * float("nan"), torch.ones(4, 2))


# ---- the no-loss rule: mean_B >= mean_A - max(sd_A, se_A) ----------------

def test_no_loss_se_dominated_hand_case():
    # A: 0.98 on every seed, n_test 10,000 -> sd_A = 0,
    # se_A = sqrt(.98 * .02 / 1e4) = sqrt(1.96e-6) = 0.0014, the margin;
    # B needs a mean of at least 0.98 - 0.0014 = 0.9786.
    base = [0.98, 0.98, 0.98]
    r = M.no_loss(base, [0.9777, 0.9787, 0.9797], n_test=10_000)
    assert r.baseline_mean == pytest.approx(0.98)
    assert r.baseline_sd == pytest.approx(0.0, abs=1e-12)
    assert r.baseline_se == pytest.approx(0.0014)
    assert r.margin == pytest.approx(0.0014)
    assert r.other_mean == pytest.approx(0.9787)
    assert r.other_sd == pytest.approx(0.001)      # sample sd, n - 1
    assert r.difference == pytest.approx(-0.0013)
    assert r.n_test == 10_000
    assert r.holds is True
    r = M.no_loss(base, [0.9785] * 3, n_test=10_000)
    assert r.difference == pytest.approx(-0.0015)
    assert r.holds is False


def test_no_loss_sd_dominated_hand_case():
    # A: 0.97, 0.98, 0.99 -> mean .98, sample sd = sqrt((1e-4 + 0 + 1e-4)
    # / 2) = 0.01 > se_A = 0.0014: the margin is 0.01, the bar 0.97.
    base = [0.97, 0.98, 0.99]
    r = M.no_loss(base, [0.971, 0.971, 0.971], n_test=10_000)
    assert r.baseline_sd == pytest.approx(0.01)
    assert r.margin == pytest.approx(0.01)
    assert r.holds is True
    assert M.no_loss(base, [0.969] * 3, n_test=10_000).holds is False
    # the same seeds on a 100-example test set: se_A = sqrt(.98*.02/100)
    # = 0.014 now dominates, and 0.969 passes.
    r = M.no_loss(base, [0.969] * 3, n_test=100)
    assert r.margin == pytest.approx(0.014)
    assert r.holds is True


def test_no_loss_better_setting_holds_and_inputs_of_any_kind():
    r = M.no_loss(np.array([0.90, 0.91, 0.92]),
                  torch.tensor([0.95, 0.96, 0.97]), n_test=1000)
    assert r.difference == pytest.approx(0.05)
    assert r.holds is True
    assert M.no_loss((0.5, 0.5, 0.5, 0.5), [0.5] * 3, 4).holds is True
    with pytest.raises(Exception):
        r.holds = False                          # frozen


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(acc_baseline=0.98), TypeError, "acc_baseline"),
    (dict(acc_baseline="0.98"), TypeError, "acc_baseline"),
    (dict(acc_other=[0.9, "x", 0.9]), TypeError, r"acc_other\[1\]"),
    (dict(acc_other=[0.9, None, 0.9]), TypeError, r"acc_other\[1\]"),
    (dict(acc_baseline=[0.9, 0.9]), ValueError, "at least 3"),
    (dict(acc_other=[0.9, 1.2, 0.9]), ValueError, r"acc_other\[1\]"),
    (dict(acc_other=[0.9, float("nan"), 0.9]), ValueError, "acc_other"),
    (dict(acc_baseline=[-0.1, 0.9, 0.9]), ValueError, "acc_baseline"),
    (dict(acc_baseline=torch.ones(3, 1)), ValueError, "1-d"),
    (dict(acc_other=np.ones((3, 1))), ValueError, "1-d"),
    (dict(n_test=0), ValueError, "n_test"),
    (dict(n_test=100.0), TypeError, "n_test"),
])
def test_no_loss_bad_inputs(kwargs, error, match):
    args = dict(acc_baseline=[0.9, 0.9, 0.9], acc_other=[0.9, 0.9, 0.9],
                n_test=100)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        M.no_loss(**args)


# ---------------------------------------------------------------- RER


def test_remaining_error_reduction_hand_numbers():
    # errors 0.74 % -> 0.58 %: 0.16 / 0.74 = 21.6 %
    assert M.remaining_error_reduction(0.9926, 0.9942) == pytest.approx(
        0.16 / 0.74)
    assert round(100 * M.remaining_error_reduction(0.9926, 0.9942), 1) == \
        21.6
    # errors 2.6 % -> 2.3 %: 0.3 / 2.6 = 11.5 %
    assert round(100 * M.remaining_error_reduction(0.974, 0.977), 1) == 11.5
    assert M.remaining_error_reduction(0.9, 0.9) == 0.0
    assert M.remaining_error_reduction(0.9, 1.0) == pytest.approx(1.0)
    assert M.remaining_error_reduction(0.9, 0.8) == pytest.approx(-1.0)
    assert M.remaining_error_reduction(0.0, 0.5) == pytest.approx(0.5)


def test_remaining_error_reduction_per_seed_sequences():
    base, new = [0.90, 0.80, 0.95], np.array([0.95, 0.90, 0.95])
    # errors 0.10, 0.20, 0.05 -> 0.05, 0.10, 0.05
    per = M.remaining_error_reduction(base, new, per_seed=True)
    assert per == pytest.approx([0.5, 0.5, 0.0])
    # mean errors 0.35 / 3 -> 0.20 / 3: RER 0.15 / 0.35
    assert M.remaining_error_reduction(base, new) == pytest.approx(
        0.15 / 0.35)
    assert M.remaining_error_reduction(torch.tensor([0.9926],
                                                    dtype=torch.float64),
                                       (0.9942,)) == pytest.approx(0.16 /
                                                                   0.74)
    assert M.remaining_error_reduction(np.float64(0.974),
                                       torch.tensor(0.977)) == \
        pytest.approx(0.3 / 2.6)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((99.26, 99.42), {}, ValueError, "acc_base"),
    ((0.9, 1.2), {}, ValueError, "acc_new"),
    ((0.9, float("nan")), {}, ValueError, "acc_new"),
    (("0.9", 0.9), {}, TypeError, "acc_base"),
    ((1.0, 1.0), {}, ValueError, "acc_base is 1"),
    (([0.9, 1.0], [0.9, 0.9]), {"per_seed": True}, ValueError,
     r"acc_base\[1\]"),
    (([0.9, 0.9], [0.9]), {}, ValueError, "paired"),
    (([], []), {}, ValueError, "acc_base"),
    ((0.9, [0.9]), {}, TypeError, "both"),
    (([0.9, None], [0.9, 0.9]), {}, TypeError, r"acc_base\[1\]"),
    ((np.ones((2, 1)) * 0.5, [0.5, 0.5]), {}, ValueError, "1-d"),
    ((0.9, 0.9), {"per_seed": 1}, TypeError, "per_seed"),
])
def test_remaining_error_reduction_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        M.remaining_error_reduction(*args, **kwargs)
