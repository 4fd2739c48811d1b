"""sparselib.metrics against hand-computed cases."""

import math

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
    with pytest.raises(ValueError, match="eps"):
        M.l0(H, eps=-1)
