"""sparselib.benchmarks: they measure what they claim, at the stated precision.

No timing is asserted (timed tests flake); the ratios are printed by
``.ci/bench.py`` and reported in chapter 2.
"""

import pytest
import torch

from sparselib import benchmarks, coding


def planted_patches():
    """600 sparse combinations (about 20 % of 12 unit atoms) in 10-d."""
    g = torch.Generator().manual_seed(0)
    D_true = torch.randn(12, 10, generator=g)
    D_true /= D_true.norm(dim=1, keepdim=True)
    codes = torch.randn(600, 12, generator=g) * \
        (torch.rand(600, 12, generator=g) < 0.2)
    return codes @ D_true


def test_encoding_benchmark_times_the_default_call_against_lars():
    # the default fista call is certified within 1e-4, so its objective is
    # within 1e-4 of the exact LARS objectives; the exact solvers agree to
    # rounding; ratios are what they say; scikit-learn's time is scaled
    # from the samples it encoded
    g = torch.Generator().manual_seed(0)
    D = torch.randn(48, 16, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    x = torch.randn(100, 16, generator=g)
    r = benchmarks.encoding_vs_references(x, D, 0.3, device="cpu",
                                          repeat=1, sklearn_max=40)
    assert r["t_sklearn"] > 0 and r["t_fista"] > 0
    assert r["ratio_sklearn"] == r["t_sklearn"] / r["t_fista"]
    assert r["sklearn_samples"] == 40
    assert 0 <= r["max_gap_fista"] <= 1e-4
    assert r["fista_certified_gap"] <= 1e-4
    assert abs(r["max_gap_sklearn"]) <= 1e-9
    if benchmarks.have_spams():
        assert r["ratio_spams"] == r["t_spams"] / r["t_fista"]
        assert abs(r["max_gap_spams"]) <= 1e-9
    else:
        assert r["t_spams"] is None and r["ratio_spams"] is None


def test_dictionary_benchmark_against_spams():
    if not benchmarks.have_spams():
        pytest.skip("SPAMS not installed (pip install spams-bin)")
    x = planted_patches()
    r = benchmarks.dictionary_vs_spams(x, 12, 0.1, seconds=(1,),
                                       batch_size=100, max_epochs=3,
                                       device="cpu", n_score=200)
    assert len(r["spams_objective"]) == 1
    assert len(r["our_seconds"]) == len(r["our_objective"]) >= 1
    # t_to_reach is the first epoch whose score is at most SPAMS's
    hit = [t for t, f in zip(r["our_seconds"], r["our_objective"])
           if f <= r["spams_objective"][0]]
    assert r["t_to_reach"][0] == (hit[0] if hit else None)


def test_dictionary_benchmark_reaches_the_sklearn_objective():
    x = planted_patches()
    r = benchmarks.dictionary_vs_minibatch(x, 12, 0.1, sk_epochs=2,
                                           batch_size=100, device="cpu")
    assert r["reached"] and r["objective_ours"] <= r["objective_sklearn"]
    assert r["ratio"] == r["t_ours"] / r["t_sklearn"]


def test_learn_dictionary_callback_can_stop_and_is_not_timed():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    seen = []
    _, hist = coding.learn_dictionary(x, 8, 0.1, n_epochs=10,
                                      callback=lambda e, D: seen.append(e)
                                      or e == 3, progress_bar=False)
    assert seen == [1, 2, 3] and len(hist.seconds) == 3


def test_dictionary_benchmark_scores_on_the_first_n_score_rows():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 10, generator=g)
    r = benchmarks.dictionary_vs_minibatch(x, 6, 0.3, sk_epochs=1,
                                           batch_size=100, max_epochs=2,
                                           device="cpu", n_score=50)
    head = x[:50]
    assert r["objective_sklearn"] == pytest.approx(
        benchmarks.mean_objective(head, r["D_sklearn"].float(), 0.3))
    assert r["objective_ours"] == pytest.approx(
        benchmarks.mean_objective(head, r["D_ours"], 0.3))
    with pytest.raises(ValueError, match="n_score"):
        benchmarks.dictionary_vs_minibatch(x, 6, 0.3, n_score=0)


def test_kwinners_speed_rows_and_ratios():
    rows = benchmarks.kwinners_speed([((8, 50), 5), ((4, 3, 5, 5), 7)],
                                     repeat=1)
    assert [r["shape"] for r in rows] == [(8, 50), (4, 3, 5, 5)]
    assert [r["k"] for r in rows] == [5, 7]
    for r in rows:
        assert r["relu_s"] > 0
        for key in ("topk_x", "reference_x", "ours_x"):
            assert r[key] > 0
        assert r["ours_vs_reference"] == pytest.approx(
            r["ours_x"] / r["reference_x"])


def test_kwinners_speed_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-d or 4-d"):
        benchmarks.kwinners_speed([((8, 5, 5), 3)], repeat=1)
    with pytest.raises(ValueError, match="k must be <= 50"):
        benchmarks.kwinners_speed([((8, 50), 51)], repeat=1)


def test_nupic_reference_path_matches_the_layer():
    # the written-out reference and sparselib's layer pick the same winners
    # and update the duty cycles alike (boost on, distinct values)
    from sparselib.kwinners import KWinners
    torch.manual_seed(0)
    layer = KWinners(40, 0.1, boost_strength=1.5)
    duty = torch.zeros(40)
    state = {"seen": 0}
    for _ in range(3):
        x = torch.randn(16, 40)
        y_ref = benchmarks._nupic_reference(x, duty, layer.k, 1.5, state)
        torch.testing.assert_close(layer(x), y_ref)
        torch.testing.assert_close(layer.duty_cycle, duty)
