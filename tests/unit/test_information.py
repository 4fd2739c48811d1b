"""sparselib.information against closed forms, numerical integrals and sklearn.

Oracles: the Gaussian formula ``-1/2 log2(1 - r^2)`` and its block form
``1/2 log2(det S_x det S_y / det S)``; the closed form of a symmetric
discrete channel; a quadrature (scipy) of the entropy of a Gaussian
mixture; scikit-learn's ``mutual_info_score`` (the plug-in estimate) and
``mutual_info_regression`` and ``mutual_info_classif`` (the KSG and Ross
estimators); a brute-force Ross estimator with Euclidean distances; a
quadrature of a two-dimensional mixture; Fano's inequality, which a
symmetric channel meets with equality; scipy's entropy. Every
sample is drawn with a fixed seed, so the tolerances below are checked on
one draw each; they are 2-3 standard deviations of the estimator at that
size, as measured over a few seeds when the tests were written.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.feature_selection import mutual_info_regression
from sklearn.metrics import mutual_info_score

from sparselib import information as I
from sparselib.information import mutual_information as mi


def gaussian_pair(r, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return z[:, 0], r * z[:, 0] + math.sqrt(1 - r * r) * z[:, 1]


def gaussian_mi(r):
    return -0.5 * math.log2(1 - r * r)


def channel(K, e, n, seed):
    """y uniform on K labels; x = y with prob 1 - e, else another label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    flip = rng.random(n) < e
    return np.where(flip, (y + rng.integers(1, K, n)) % K, y), y


def channel_mi(K, e):
    # X is uniform too; H(X | Y) is the entropy of one row of the channel
    row = -(1 - e) * math.log2(1 - e) - e * math.log2(e / (K - 1))
    return math.log2(K) - row


# --------------------------------------------------------------------------
# continuous pairs: KSG, binning, MINE


@pytest.mark.parametrize("r", [0.0, 0.5, 0.9])
def test_ksg_correlated_gaussians(r):
    x, y = gaussian_pair(r, 2000, seed=1)
    assert mi(x, y) == pytest.approx(gaussian_mi(r), abs=0.05)


def test_ksg_is_the_kraskov_estimator_of_scikit_learn():
    # same estimator (KSG 1, max-norm, tie-breaking noise) in nats
    x, y = gaussian_pair(0.7, 600, seed=2)
    ref = mutual_info_regression(x[:, None], y, n_neighbors=4,
                                 random_state=0)[0] / math.log(2)
    assert ref > 0  # scikit-learn clips at 0; we do not
    assert mi(x, y, k=4) == pytest.approx(ref, abs=1e-6)


def test_ksg_multivariate_gaussian_blocks():
    S = np.array([[1.0, 0.3, 0.6, 0.2],
                  [0.3, 1.0, 0.1, 0.5],
                  [0.6, 0.1, 1.0, 0.2],
                  [0.2, 0.5, 0.2, 1.0]])
    exact = 0.5 * math.log2(np.linalg.det(S[:2, :2])
                            * np.linalg.det(S[2:, 2:]) / np.linalg.det(S))
    z = np.random.default_rng(3).multivariate_normal(np.zeros(4), S, 2000)
    assert 0.4 < exact < 0.7
    assert mi(z[:, :2], z[:, 2:]) == pytest.approx(exact, abs=0.06)
    assert mi(z[:, :2], z[:, 2:], "binning") == pytest.approx(exact,
                                                              abs=0.15)


def test_ksg_invariant_to_affine_and_close_under_monotone_maps():
    x, y = gaussian_pair(0.8, 1500, seed=4)
    base = mi(x, y)
    # standardisation makes an affine map invisible (up to rounding)
    assert mi(5 * x + 3, -0.1 * y + 7) == pytest.approx(base, abs=1e-6)
    # a nonlinear monotone map changes the sample geometry, not the MI
    assert mi(x ** 3, np.exp(y)) == pytest.approx(gaussian_mi(0.8),
                                                  abs=0.08)


def test_independent_variables_give_about_zero():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2000, 2)), rng.standard_normal(2000)
    assert abs(mi(x, y)) < 0.05
    # few bins: the plug-in bias (B-1)^2 / (2 n ln 2) = 0.006 bits
    assert abs(mi(x, y, "binning", n_bins=5)) < 0.03
    est, hist = mi(x, y, "mine", return_history=True)
    assert abs(est) < 0.1
    # the training history's smoothed maximum is biased upward (the true
    # value is 0): the summary that EmbedderSDR reports
    assert I.smoothed_max(hist, 20) > 0.03
    assert I.smoothed_max(hist, 20) > est + 0.05


def test_binning_orders_and_is_biased_upward_at_small_n():
    est = [mi(*gaussian_pair(r, 2000, seed=6), method="binning")
           for r in (0.0, 0.5, 0.9)]
    assert est[0] < est[1] < est[2]
    assert est[2] == pytest.approx(gaussian_mi(0.9), abs=0.15)
    # independent, n = 200 in 20 x 20 cells: the plug-in estimate sees
    # structure in the noise; the bias shrinks with n
    small = mi(*gaussian_pair(0.0, 200, seed=7), method="binning")
    large = mi(*gaussian_pair(0.0, 4000, seed=7), method="binning")
    assert small > 0.5
    assert 0 < large < small / 4


def test_binning_is_capped_by_log2_n_bins():
    x, y = gaussian_pair(0.99, 2000, seed=8)  # true: 2.83 bits
    assert gaussian_mi(0.99) > 2.8
    assert mi(x, y, "binning", n_bins=4) <= 2.0 + 1e-12
    assert mi(x, y) == pytest.approx(gaussian_mi(0.99), abs=0.1)


def test_binning_is_the_plug_in_estimate_of_the_cells():
    # at most n_bins distinct values: each value is its own cell, and the
    # estimate is scikit-learn's plug-in mutual information
    x, y = channel(5, 0.3, 500, seed=9)
    ref = mutual_info_score(x, y) / math.log(2)
    assert mi(x.astype(float), y, "binning", n_bins=5) == pytest.approx(
        ref, rel=1e-12)
    assert mi(x.astype(float), y.astype(float), "binning",
              n_bins=8) == pytest.approx(ref, rel=1e-12)


def test_mine_correlated_gaussians():
    x, y = gaussian_pair(0.9, 2000, seed=10)
    est, hist = mi(x, y, "mine", return_history=True)
    assert est == pytest.approx(gaussian_mi(0.9), abs=0.15)
    assert hist.shape == (500,)
    # the critic learned: late training estimates are far above early ones
    assert hist[-50:].mean() > hist[:10].mean() + 0.5


# --------------------------------------------------------------------------
# discrete y: the mixed KSG estimator of Ross (2014)


def test_discrete_channel_closed_form():
    K, e = 4, 0.2
    x, y = channel(K, e, 4000, seed=11)
    exact = channel_mi(K, e)
    assert exact == pytest.approx(0.9611, abs=1e-4)
    # x's values as points on a line, and as one-hot codes (ties broken
    # by the jitter)
    assert mi(x.astype(float), y) == pytest.approx(exact, abs=0.08)
    assert mi(np.eye(K)[x], y) == pytest.approx(exact, abs=0.08)
    assert mi(x.astype(float), y, "binning") == pytest.approx(exact,
                                                              abs=0.08)


def test_gaussian_mixture_against_quadrature():
    K, sigma = 4, 0.5

    def pdf(t):
        return np.mean([stats.norm.pdf(t, c, sigma) for c in range(K)],
                       axis=0)

    h_x = -integrate.quad(lambda t: pdf(t) * np.log2(pdf(t)), -6, K + 5,
                          limit=200)[0]
    exact = h_x - 0.5 * math.log2(2 * math.pi * math.e * sigma ** 2)
    assert 1.1 < exact < 1.3
    rng = np.random.default_rng(12)
    y = rng.integers(0, K, 2000)
    x = y + sigma * rng.standard_normal(2000)
    assert mi(x, y) == pytest.approx(exact, abs=0.06)
    assert mi(x, y, "binning") == pytest.approx(exact, abs=0.1)
    assert mi(x, y, "mine") == pytest.approx(exact, abs=0.15)
    # an explicit y_discrete=False treats the labels as a continuous column
    assert mi(x, y, y_discrete=False) == pytest.approx(exact, abs=0.1)


def test_jitter_breaks_ties_of_duplicate_codes():
    # x is the one-hot code of y: I = H(Y) = log2 K exactly
    K = 8
    y = np.random.default_rng(13).integers(0, K, 1600)
    codes = np.eye(K)[y]
    assert mi(codes, y) == pytest.approx(math.log2(K), abs=0.02)
    # without jitter every neighbour ties at distance 0 and the estimate
    # is wrong
    assert abs(mi(codes, y, jitter=0.0) - math.log2(K)) > 0.5


def ross_brute_force(x, labels, k):
    """Ross (2014) in bits with Euclidean distances, from the full distance
    matrix (no trees, no ties in continuous data): the oracle for
    metric="euclidean"."""
    from scipy.special import digamma

    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    n = len(x)
    counts = np.bincount(labels)
    total = 0.0
    for i in range(n):
        same = d[i, labels == labels[i]]
        radius = np.sort(same)[k - 1]  # k-th neighbour in its class
        m = int(np.sum(d[i] <= radius))
        total += digamma(counts[labels[i]]) + digamma(m)
    return (digamma(n) + digamma(k) - total / n) / math.log(2)


def test_ksg_euclidean_is_ross_with_euclidean_distances():
    rng = np.random.default_rng(18)
    y = rng.integers(0, 3, 300)
    shift = np.array([1.0, 0.5, 0.0])
    x = rng.standard_normal((300, 3)) + y[:, None] * shift
    xs = (x - x.mean(0)) / x.std(0)  # the estimator standardises
    ref = ross_brute_force(xs, y, k=4)
    assert mi(x, y, k=4, metric="euclidean") == pytest.approx(ref, abs=1e-9)
    # the max-norm gives another value on the same data
    assert abs(mi(x, y, k=4) - ref) > 1e-3


def test_ksg_metrics_agree_in_one_dimension_and_with_scikit_learn():
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(19)
    y = rng.integers(0, 4, 800)
    x = y + 0.7 * rng.standard_normal(800)
    cheb = mi(x, y, k=3)
    assert mi(x, y, k=3, metric="euclidean") == cheb
    ref = mutual_info_classif(x[:, None], y, discrete_features=False,
                              n_neighbors=3, random_state=0)[0]
    assert cheb == pytest.approx(ref / math.log(2), abs=1e-6)


def test_ksg_euclidean_two_dimensional_mixture_against_quadrature():
    # four isotropic Gaussians at the corners of a square: I = h(X) - h(X|Y)
    K, sigma = 4, 0.6
    centres = np.array([[0, 0], [0, 2], [2, 0], [2, 2]], dtype=float)
    g = np.linspace(-4, 6, 801)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    pdf = np.mean([stats.norm.pdf(gx, cx, sigma) * stats.norm.pdf(gy, cy,
                                                                   sigma)
                   for cx, cy in centres], axis=0)
    cell = (g[1] - g[0]) ** 2
    h_x = -np.sum(pdf[pdf > 0] * np.log2(pdf[pdf > 0])) * cell
    exact = h_x - math.log2(2 * math.pi * math.e * sigma ** 2)
    assert 1.55 < exact < 1.75
    rng = np.random.default_rng(20)
    y = rng.integers(0, K, 3000)
    x = centres[y] + sigma * rng.standard_normal((3000, 2))
    assert mi(x, y, metric="euclidean") == pytest.approx(exact, abs=0.06)


def test_ksg_on_binary_codes_max_norm_barely_sees_similarity():
    # two classes, each code one of its class's prototypes with 2 of 8
    # bits moved: all distinct codes lie at max-norm distance 1 (before
    # standardisation; after it, that of one bit), so the max-norm
    # estimate knows little; the Euclidean one sees the classes
    rng = np.random.default_rng(21)
    n, d, a = 400, 64, 8
    y = rng.integers(0, 2, n)
    proto = np.zeros((2, d))
    proto[0, :a] = 1
    proto[1, a:2 * a] = 1
    codes = proto[y].copy()
    for i in range(n):
        on = np.flatnonzero(codes[i])
        off = np.flatnonzero(codes[i] == 0)
        codes[i, rng.choice(on, 2, replace=False)] = 0
        codes[i, rng.choice(off, 2, replace=False)] = 1
    diff = np.abs(codes[:, None] - codes[None]).max(-1)
    assert set(np.unique(diff)) <= {0.0, 1.0}
    # the classes are perfectly separable: I = H(Y), about 1 bit; the
    # Euclidean estimate is biased down a little by the tied distances
    h_y = I.entropy_discrete(y)
    assert mi(codes, y, metric="euclidean") == pytest.approx(h_y, abs=0.1)
    assert mi(codes, y) < 0.2


def test_fano_bound():
    # a symmetric channel meets Fano's inequality with equality
    for K, e in ((4, 0.2), (10, 0.05), (2, 0.3)):
        assert I.fano_bound(1 - e, K) == pytest.approx(channel_mi(K, e),
                                                       rel=1e-12)
    assert I.fano_bound(1.0, 10) == pytest.approx(math.log2(10))
    assert I.fano_bound(0.1, 10) == pytest.approx(0.0, abs=1e-12)  # chance
    # always wrong between two classes: T names Y exactly
    assert I.fano_bound(0.0, 2) == pytest.approx(1.0)
    assert I.fano_bound(1.0, 4, h_y=1.5) == pytest.approx(1.5)
    assert I.fano_bound(0.3, 4, h_y=1.0) < 0  # not clipped
    # the plug-in entropy of balanced labels, a hair above log2 K, is fine
    assert I.fano_bound(1.0, 10, h_y=math.log2(10) + 1e-12) == \
        pytest.approx(math.log2(10))
    with pytest.raises(ValueError, match="accuracy must be a real number "
                                         "in"):
        I.fano_bound(1.5, 10)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        I.fano_bound(0.5, 1)
    with pytest.raises(TypeError, match="n_classes must be an integer"):
        I.fano_bound(0.5, 10.0)
    with pytest.raises(ValueError, match="h_y must be <= log2"):
        I.fano_bound(0.5, 4, h_y=2.5)


def test_entropy_discrete():
    assert I.entropy_discrete(np.arange(8).repeat(3)) == pytest.approx(3.0)
    assert I.entropy_discrete(torch.zeros(5, dtype=torch.long)) == 0.0
    labels = np.random.default_rng(14).integers(0, 6, 300)
    assert I.entropy_discrete(labels) == pytest.approx(
        stats.entropy(np.bincount(labels), base=2), rel=1e-12)
    # rows are symbols: three distinct codes in proportions 1/2, 1/4, 1/4
    codes = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]])
    assert I.entropy_discrete(codes) == pytest.approx(1.5)


def test_smoothed_max_hand_case():
    h = [0.0, 1.0, 3.0, 1.0, 0.0]
    assert I.smoothed_max(h, 1) == 3.0
    assert I.smoothed_max(h, 2) == 2.0
    assert I.smoothed_max(np.array(h), 3) == pytest.approx(5 / 3)
    assert I.smoothed_max(torch.tensor(h), 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="window must be <= 5"):
        I.smoothed_max(h, 6)
    with pytest.raises(ValueError, match="history contains NaN"):
        I.smoothed_max([0.0, float("nan")], 1)


# --------------------------------------------------------------------------
# inputs: tensors, devices, seeds, errors


def test_torch_inputs_and_determinism():
    x, y = gaussian_pair(0.6, 400, seed=15)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    xt = torch.tensor(x32, requires_grad=True)
    assert mi(xt, torch.tensor(y32)) == mi(x32.astype(float),
                                           y32.astype(float))
    state = torch.get_rng_state()
    kw = dict(method="mine", n_steps=40, batch_size=64, hidden=16)
    a = mi(x, y, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    with torch.no_grad():  # MINE still trains its critic
        b = mi(torch.tensor(x), torch.tensor(y), **kw)
    assert a == pytest.approx(b, abs=1e-5)
    assert mi(x, y, **kw, seed=1) != a


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(method="kde"), ValueError, "method must be one of 'ksg'"),
    (dict(k=0), ValueError, "k must be >= 1, got 0"),
    (dict(k=2.0), TypeError, "k must be an integer"),
    (dict(n_bins=1), ValueError, "n_bins must be >= 2"),
    (dict(holdout=1.0), ValueError, r"holdout must be a real number in"),
    (dict(jitter=-1e-3), ValueError, "jitter must be a real number >= 0"),
    (dict(y_discrete="yes"), TypeError, "y_discrete must be True, False"),
    (dict(return_history=True), ValueError,
     "return_history=True needs method='mine'"),
    (dict(metric="hamming"), ValueError, "metric must be one of"),
    (dict(metric="euclidean", method="binning"), ValueError,
     "metric='euclidean' needs method='ksg'"),
    (dict(metric="euclidean"), ValueError,
     "metric='euclidean' needs a discrete y"),
])
def test_bad_arguments(kwargs, exc, msg):
    x, y = gaussian_pair(0.5, 50, seed=16)
    with pytest.raises(exc, match=msg):
        mi(x, y, **kwargs)


def test_bad_data():
    x, y = gaussian_pair(0.5, 50, seed=17)
    with pytest.raises(ValueError, match="same number of samples; got 50 "
                                         "and 49"):
        mi(x, y[:49])
    with pytest.raises(ValueError, match="k=3 needs more than k samples; "
                                         "got n=3"):
        mi(x[:3], y[:3])
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="class 1 has 3"):
        mi(np.arange(13.0), labels)
    bad = x.copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        mi(bad, y)
    with pytest.raises(ValueError, match="y contains NaN"):
        mi(x, torch.tensor(bad))
    with pytest.raises(TypeError, match="x must be a NumPy array or a torch"):
        mi(list(x), y)
    with pytest.raises(ValueError, match="x must be 1-d"):
        mi(x.reshape(5, 5, 2), y)
    with pytest.raises(ValueError, match="y_discrete=True needs one column"):
        mi(x, np.zeros((50, 2), dtype=int), y_discrete=True)
    with pytest.raises(ValueError, match="MINE needs at least 2"):
        mi(x[:3], y[:3], "mine", holdout=0.1)
    with pytest.raises(ValueError, match="labels must be non-empty"):
        I.entropy_discrete(np.zeros(0))


@pytest.mark.gpu
def test_mine_and_ksg_on_cuda():
    x, y = gaussian_pair(0.9, 2000, seed=10)
    xc = torch.tensor(x, device="cuda")
    yc = torch.tensor(y, device="cuda")
    assert mi(xc, yc) == mi(x, y)  # KSG runs on a CPU copy
    est, hist = mi(xc, yc, "mine", return_history=True)
    assert est == pytest.approx(gaussian_mi(0.9), abs=0.15)
    assert hist.shape == (500,)
    with pytest.raises(ValueError, match="same device"):
        mi(xc, torch.tensor(y))
