"""sparselib.sdr against scipy's hypergeometric law, enumeration and Monte Carlo."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from sparselib import sdr


def scipy_match(n, a, s, theta):
    # population n, s "successes" (the pattern's bits), a draws.
    return stats.hypergeom(n, s, a).sf(theta - 1)


def test_hand_derived_small_case():
    # n=4, a=2, s=2: C(4,2)=6 vectors; 1 shares both bits, 1 shares none.
    assert sdr.match_probability(4, 2, 2, 2) == pytest.approx(1 / 6, abs=0)
    assert sdr.match_probability(4, 2, 2, 1) == pytest.approx(5 / 6, rel=1e-15)
    assert sdr.match_probability(4, 2, 2, 0) == 1.0
    assert sdr.match_probability(4, 2, 2, 3) == 0.0


@pytest.mark.parametrize("a", [64, 128, 256])
@pytest.mark.parametrize("n", [300, 500, 1000, 2000, 3500])
def test_fig2_values_agree_with_scipy(n, a):
    exact = sdr.match_probability(n, a, 24, 12)
    assert exact == pytest.approx(scipy_match(n, a, 24, 12), rel=1e-9)
    assert math.log(exact) == pytest.approx(
        sdr.log_match_probability(n, a, 24, 12), rel=1e-12)


@pytest.mark.parametrize("n,a,s,theta", [
    (20_000, 400, 24, 12), (50_000, 25_000, 24, 12), (30_000, 64, 40, 20),
    (10_000, 5_000, 300, 150)])
def test_large_n_agrees_with_scipy(n, a, s, theta):
    exact = sdr.match_probability(n, a, s, theta)
    ref = scipy_match(n, a, s, theta)
    assert exact > 0
    assert exact == pytest.approx(ref, rel=1e-7)
    assert sdr.log_match_probability(n, a, s, theta) == pytest.approx(
        stats.hypergeom(n, s, a).logsf(theta - 1), rel=1e-9)


def test_log_space_beyond_float_range():
    # One vector in C(40000, 200) ~ 1e-560 matches a 200-bit pattern fully:
    # the probability underflows to 0.0, its log must stay exact.
    n, a = 40_000, 200
    expected = -(special.gammaln(n + 1) - special.gammaln(a + 1)
                 - special.gammaln(n - a + 1))
    assert sdr.match_probability(n, a, a, a) == 0.0
    assert sdr.log_match_probability(n, a, a, a) == pytest.approx(
        expected, rel=1e-12)
    assert sdr.log_match_probability(n, a, a, a) < -1000


def test_no_wrong_zero_near_the_bottom_of_float_range():
    # exact value 1/C(2000, 120) ~ 2e-195: representable, so it must not be 0
    p = sdr.match_probability(2000, 120, 120, 120)
    assert p == pytest.approx(1 / math.comb(2000, 120), rel=1e-15)
    assert p > 0


def brute_force(n, a, s, theta):
    pattern = set(range(s))
    hits = total = 0
    for sub in itertools.combinations(range(n), a):
        total += 1
        hits += len(pattern.intersection(sub)) >= theta
    return hits / total


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_enumeration_oracle(data):
    n = data.draw(st.integers(1, 10))
    a = data.draw(st.integers(0, n))
    s = data.draw(st.integers(0, n))
    theta = data.draw(st.integers(0, s + 1))
    assert sdr.match_probability(n, a, s, theta) == pytest.approx(
        brute_force(n, a, s, theta), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), data=st.data())
def test_probability_properties(n, data):
    a = data.draw(st.integers(0, n))
    s = data.draw(st.integers(0, n))
    theta = data.draw(st.integers(0, s))
    p = sdr.match_probability(n, a, s, theta)
    assert 0.0 <= p <= 1.0
    # a higher threshold can only lower the probability
    assert sdr.match_probability(n, a, s, theta + 1) <= p
    if a < n:  # one more active bit can only raise it
        assert sdr.match_probability(n, a + 1, s, theta) >= p


def test_monte_carlo_agrees_with_exact():
    g = torch.Generator().manual_seed(0)
    n, a, s, theta = 300, 256, 24, 22
    exact = sdr.match_probability(n, a, s, theta)
    est, se = sdr.match_probability_mc(n, a, s, theta, 40_000, generator=g)
    assert 0.05 < exact < 0.5
    assert abs(est - exact) < 5 * se


def test_monte_carlo_standard_error_formula():
    g = torch.Generator().manual_seed(1)
    est, se = sdr.match_probability_mc(50, 25, 10, 5, 2000, generator=g)
    q = (est * 2000 + 1) / 2002
    assert se == pytest.approx(math.sqrt(q * (1 - q) / 2000))
    # no hit at all: the estimate is 0, its error is not
    est, se = sdr.match_probability_mc(2000, 10, 24, 10, 500, generator=g)
    assert est == 0.0 and se > 0


@pytest.mark.parametrize("args,exc,msg", [
    ((100, 101, 24, 12), ValueError, r"a \(active bits, 101\) must be <= n"),
    ((100, 10, 101, 12), ValueError, r"s \(bits of the stored pattern"),
    ((-5, 10, 24, 12), ValueError, "n must be >= 1"),
    ((100, -1, 24, 12), ValueError, "a must be >= 0"),
    ((100, 10, 24, -1), ValueError, "theta must be >= 0"),
    ((100.0, 10, 24, 12), TypeError, "n must be an integer"),
    ((100, 10.5, 24, 12), TypeError, "a must be an integer"),
    ((100, 10, 24, "12"), TypeError, "theta must be an integer"),
])
def test_bad_input(args, exc, msg):
    with pytest.raises(exc, match=msg):
        sdr.match_probability(*args)
    with pytest.raises(exc, match=msg):
        sdr.log_match_probability(*args)


def test_capacity_bits():
    # FACTS: C(2048, 40) ~ 10^84.4 patterns.
    assert sdr.capacity_bits(2048, 40) / math.log2(10) == pytest.approx(
        84.4, abs=0.05)
    assert sdr.capacity_bits(2048, 40) == pytest.approx(
        (special.gammaln(2049) - special.gammaln(41) - special.gammaln(2009))
        / math.log(2), rel=1e-12)
    assert sdr.capacity_bits(64, 1) == 6.0  # a local code: log2 n
    assert sdr.capacity_bits(10, 0) == 0.0
    grid = sdr.capacity_bits(np.array([10, 20]), np.array([[1], [2]]))
    assert grid.shape == (2, 2)
    assert grid[1, 0] == pytest.approx(math.log2(45))
    with pytest.raises(ValueError, match=r"a \(11\) must be <= n"):
        sdr.capacity_bits(10, 11)
    with pytest.raises(TypeError, match="integers"):
        sdr.capacity_bits(10.5, 2)


def test_random_sdr_has_exactly_a_bits():
    g = torch.Generator().manual_seed(0)
    x = sdr.random_sdr(500, 100, 7, generator=g)
    assert x.shape == (500, 100)
    assert torch.all(x.sum(1) == 7)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # every position is used about equally often: 500 * 7 / 100 = 35
    counts = x.sum(0)
    assert counts.mean() == pytest.approx(35)
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    with pytest.raises(ValueError, match="a must be <= 100"):
        sdr.random_sdr(1, 100, 101)


def test_overlap_and_expected_overlap():
    x = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]])
    y = torch.tensor([[1, 0, 1, 0]])
    assert sdr.overlap(x, y).tolist() == [[1.0], [1.0]]
    assert sdr.expected_overlap(1000, 50) == 2.5
    with pytest.raises(ValueError, match="same n"):
        sdr.overlap(x, torch.ones(1, 5))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        sdr.overlap(x, [[1.0, 0.0]])
    # any dtypes: bool codes against float codes, counted exactly
    a = torch.tensor([[True, True, False]])
    b = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    assert sdr.overlap(a, b).tolist() == [[2.0, 1.0]]
    g = torch.Generator().manual_seed(0)
    codes = sdr.random_sdr(400, 1000, 50, generator=g)
    ov = sdr.overlap(codes[:200], codes[200:])
    assert ov.mean().item() == pytest.approx(2.5, rel=0.05)


def brute_union_sizes(n, a, m):
    subsets = list(itertools.combinations(range(n), a))
    counts = np.zeros(n + 1)
    for combo in itertools.product(subsets, repeat=m):
        counts[len(set().union(*combo))] += 1
    return counts / counts.sum()


@pytest.mark.parametrize("n,a,m", [(6, 2, 2), (5, 2, 3), (7, 3, 2), (4, 1, 4)])
def test_union_size_distribution_by_enumeration(n, a, m):
    np.testing.assert_allclose(sdr.union_size_distribution(n, a, m),
                               brute_union_sizes(n, a, m), atol=1e-12)


def test_union_match_probability_against_simulation():
    g = torch.Generator().manual_seed(0)
    n, a, m, theta = 1000, 20, 40, 15
    exact = sdr.union_match_probability(n, a, m, theta)
    hits, trials, probes = 0, 400, 500
    for _ in range(trials):
        u = (sdr.random_sdr(m, n, a, generator=g).sum(0) > 0).float()
        hits += int((sdr.random_sdr(probes, n, a, generator=g) @ u
                     >= theta).sum())
    sim = hits / (trials * probes)
    assert 0.01 < exact < 0.5
    # unions vary, so allow a generous 4 % of relative error
    assert sim == pytest.approx(exact, rel=0.04)
    approx = sdr.union_match_probability(n, a, m, theta, exact=False)
    assert approx == pytest.approx(exact, rel=0.3)


def test_union_match_probability_limits():
    assert sdr.union_match_probability(100, 5, 0) == 0.0
    # a union of one code: the probe must equal that code
    assert sdr.union_match_probability(20, 3, 1) == pytest.approx(
        1 / math.comb(20, 3))
    assert sdr.union_match_probability(50, 25, 200) == pytest.approx(1.0)


def test_union_curve_in_one_pass_equals_single_values():
    ms = [0, 1, 5, 30, 80]
    curve = sdr.union_match_probabilities(300, 10, ms, theta=8)
    single = [sdr.union_match_probability(300, 10, m, theta=8) for m in ms]
    np.testing.assert_allclose(curve, single, rtol=1e-12)
    assert np.all(np.diff(curve) >= 0)


def test_union_curve_rejects_fractional_m():
    # m counts codes: 2.5 used to be truncated to 2 silently
    with pytest.raises(TypeError, match="m must be an integer"):
        sdr.union_match_probabilities(300, 10, [1, 2.5])
    with pytest.raises(ValueError, match="m must be >= 0, got -1"):
        sdr.union_match_probabilities(300, 10, np.array([-1, 2]))


# --------------------------------------------------------------------------
# set operations: union, intersection, matching a union

A3 = torch.tensor([[1, 1, 0, 0, 0],
                   [0, 1, 1, 0, 0],
                   [0, 1, 0, 0, 1]])


def test_union_and_intersection_hand_cases():
    assert sdr.sdr_union(A3).tolist() == [1, 1, 1, 0, 1]
    assert sdr.sdr_intersection(A3).tolist() == [0, 1, 0, 0, 0]
    assert sdr.sdr_union(A3[:2]).tolist() == [1, 1, 1, 0, 0]
    # the dtype is kept: bool in, bool out; float in, float out
    u = sdr.sdr_union(A3.bool())
    assert u.dtype == torch.bool and u.tolist() == [True] * 3 + [False, True]
    assert sdr.sdr_intersection(A3.float()).dtype == torch.float32
    # a batch of unions (..., m, n): one per leading index
    stack = torch.stack([A3, 1 - A3])
    # (bit 1 is on in every row of A3, so off in every row of 1 - A3)
    assert sdr.sdr_union(stack).tolist() == [[1, 1, 1, 0, 1],
                                             [1, 0, 1, 1, 1]]
    assert sdr.sdr_intersection(stack).tolist() == [[0, 1, 0, 0, 0],
                                                    [0, 0, 0, 1, 0]]
    # no codes: the empty union is empty, the empty intersection is all
    assert sdr.sdr_union(torch.zeros(0, 4)).tolist() == [0.0] * 4
    assert sdr.sdr_intersection(torch.zeros(0, 4)).tolist() == [1.0] * 4


def test_union_matches_hand_case():
    union = sdr.sdr_union(A3)  # bits 0, 1, 2, 4
    probes = torch.tensor([[1, 0, 0, 1, 0],    # 1 of 2 in the union
                           [1, 0, 1, 0, 1],    # 3 of 3
                           [0, 0, 0, 1, 0],    # 0 of 1
                           [0, 0, 0, 0, 0]])   # nothing
    assert sdr.union_matches(union, probes, 1).tolist() == [
        True, True, False, False]
    assert sdr.union_matches(union, probes, 3).tolist() == [
        False, True, False, False]
    assert sdr.union_matches(union, probes, 0).all()
    # float and bool codes mixed; one union per batch of probes
    unions = torch.stack([union, torch.zeros(5, dtype=union.dtype)]).bool()
    out = sdr.union_matches(unions, torch.stack([probes, probes]).float(), 1)
    assert out.tolist() == [[True, True, False, False], [False] * 4]


def test_union_false_match_rate_against_exact_theory():
    # fresh random codes against unions of m random codes: each trial uses
    # its own union and one probe, so hits ~ Binomial(trials, p_exact)
    n, a, m, theta, trials = 100, 5, 15, 4, 6000
    exact = sdr.union_match_probability(n, a, m, theta)
    assert 0.1 < exact < 0.5
    g = torch.Generator().manual_seed(0)
    unions = sdr.sdr_union(
        sdr.random_sdr(trials * m, n, a, generator=g).view(trials, m, n))
    probes = sdr.random_sdr(trials, n, a, generator=g).view(trials, 1, n)
    hits = sdr.union_matches(unions, probes, theta)
    assert hits.shape == (trials, 1)
    rate = hits.float().mean().item()
    se = math.sqrt(exact * (1 - exact) / trials)
    assert abs(rate - exact) < 4 * se
    # the union's own members always match it in full
    members = sdr.random_sdr(m, n, a, generator=g)
    assert sdr.union_matches(sdr.sdr_union(members), members, a).all()


binary_codes = st.integers(1, 5).flatmap(lambda m: st.integers(1, 12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, 1), min_size=n, max_size=n),
                       min_size=m, max_size=m)))


@settings(max_examples=80, deadline=None)
@given(rows=binary_codes)
def test_set_operations_agree_with_python_sets(rows):
    codes = torch.tensor(rows)
    sets = [{j for j, b in enumerate(r) if b} for r in rows]
    union = sdr.sdr_union(codes)
    inter = sdr.sdr_intersection(codes)
    assert {j for j, b in enumerate(union.tolist()) if b} == \
        set().union(*sets)
    assert {j for j, b in enumerate(inter.tolist()) if b} == \
        set.intersection(*sets)
    sizes = codes.sum(1)
    assert union.sum() >= sizes.max()
    assert inter.sum() <= sizes.min()
    if len(rows) >= 2:  # inclusion-exclusion for two codes
        a, b = codes[0], codes[1]
        pair = codes[:2]
        assert sdr.sdr_union(pair).sum() == \
            a.sum() + b.sum() - sdr.sdr_intersection(pair).sum()
        assert sdr.overlap(a[None], b[None]).item() == \
            sdr.sdr_intersection(pair).sum().item()
    # matching the union at theta = |x| means x is a subset of it
    for r, s in zip(codes, sets):
        assert sdr.union_matches(union, r[None], len(s)).item()


def test_set_operations_bad_input():
    with pytest.raises(ValueError, match=r"codes must be binary"):
        sdr.sdr_union(torch.tensor([[0.0, 0.5]]))
    with pytest.raises(ValueError, match=r"codes must be binary"):
        sdr.sdr_intersection(torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match="codes must have at least 2"):
        sdr.sdr_union(torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="codes must be a torch.Tensor"):
        sdr.sdr_union([[1, 0]])
    u = torch.tensor([1, 0, 1])
    with pytest.raises(ValueError, match="x must be binary"):
        sdr.union_matches(u, torch.tensor([[1, -1, 0]]), 1)
    with pytest.raises(ValueError, match="union must be binary"):
        sdr.union_matches(u * 3, torch.tensor([[1, 0, 0]]), 1)
    with pytest.raises(ValueError, match="theta must be >= 0, got -1"):
        sdr.union_matches(u, torch.tensor([[1, 0, 0]]), -1)
    with pytest.raises(TypeError, match="theta must be an integer"):
        sdr.union_matches(u, torch.tensor([[1, 0, 0]]), 1.0)
    with pytest.raises(ValueError, match="same n"):
        sdr.union_matches(u, torch.tensor([[1, 0]]), 1)
    with pytest.raises(ValueError, match="do not broadcast"):
        sdr.union_matches(torch.ones(2, 3), torch.ones(3, 4, 3), 1)


@pytest.mark.gpu
def test_set_operations_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    codes = sdr.random_sdr(30, 200, 10, generator=g).view(3, 10, 200)
    union = sdr.sdr_union(codes)
    assert union.device.type == "cuda"
    assert torch.equal(union.cpu(), sdr.sdr_union(codes.cpu()))
    assert torch.equal(sdr.sdr_intersection(codes).cpu(),
                       sdr.sdr_intersection(codes.cpu()))
    assert sdr.union_matches(union, codes, 10).all()
