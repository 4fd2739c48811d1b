"""sparselib.benchmarks: they measure what they claim, at the stated precision.

No timing is asserted (timed tests flake); the ratios are printed by
``python -m sparselib.benchmarks`` and reported in chapter 2.
"""

import pytest
import torch

from sparselib import benchmarks, coding


def test_encoding_benchmark_matches_the_lars_objective():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(48, 16, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    x = torch.randn(100, 16, generator=g)
    r = benchmarks.encoding_vs_lars(x, D, 0.3, device="cpu", repeat=1)
    assert r["n_iter"] >= 1 and r["t_sklearn"] > 0 and r["t_fista"] > 0
    assert r["ratio"] == r["t_sklearn"] / r["t_fista"]
    assert r["rel_gap"] <= 1e-4  # FISTA reached LARS's objective


def test_dictionary_benchmark_reaches_the_sklearn_objective():
    g = torch.Generator().manual_seed(0)
    D_true = torch.randn(12, 10, generator=g)
    D_true /= D_true.norm(dim=1, keepdim=True)
    codes = torch.randn(600, 12, generator=g) * \
        (torch.rand(600, 12, generator=g) < 0.2)
    x = codes @ D_true
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
