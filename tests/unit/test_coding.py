"""sparselib.coding against closed forms, scikit-learn's lasso and planted
truths."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.decomposition import sparse_encode
from sklearn.linear_model import orthogonal_mp

from sparselib import coding as C


def random_problem(n_atoms=128, n_inputs=64, batch=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_atoms, n_inputs, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(batch, n_inputs, generator=g, dtype=torch.float64)
    return x, D


def sklearn_objective(x, D, lam, positive=False):
    codes = sparse_encode(x.numpy(), D.numpy(), algorithm="lasso_cd",
                          alpha=lam, max_iter=20_000, positive=positive)
    return C.objective(x, D, torch.from_numpy(codes), lam)


def test_orthonormal_dictionary_closed_form():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g,
                                       dtype=torch.float64))
    x = torch.randn(20, 32, generator=g, dtype=torch.float64)
    exact = C.soft_threshold(x @ Q.T, 0.3)
    # one ISTA step of size 1 (L = 1) is the solution...
    torch.testing.assert_close(C.ista(x, Q, 0.3, 1, step=1.0, tol=0), exact)
    # ... and the iterations converge to it with the default step
    torch.testing.assert_close(C.fista(x, Q, 0.3, 500, tol=1e-12), exact,
                               atol=1e-9, rtol=0)
    assert (exact == 0).any() and (exact != 0).any()


@pytest.mark.parametrize("solver,seed,lam,budget", [
    (C.fista, 0, 0.1, 5000), (C.fista, 1, 0.5, 3000), (C.fista, 2, 1.0, 3000),
    (C.ista, 1, 0.5, 20000), (C.ista, 2, 1.0, 20000)])
def test_objective_matches_sklearn_lasso(solver, seed, lam, budget):
    x, D = random_problem(seed=seed)
    ours = C.objective(x, D, solver(x, D, lam, budget, tol=1e-10), lam)
    ref = sklearn_objective(x, D, lam)
    rel = ((ours - ref) / ref).abs().max().item()
    assert rel < 1e-4, rel


def test_nonneg_matches_sklearn_positive_lasso():
    x, D = random_problem(seed=3)
    a = C.fista(x, D, 0.2, 3000, tol=1e-10, nonneg=True)
    assert (a >= 0).all()
    ours = C.objective(x, D, a, 0.2)
    ref = sklearn_objective(x, D, 0.2, positive=True)
    assert ((ours - ref) / ref).abs().max().item() < 1e-4


def test_lipschitz_is_the_squared_spectral_norm():
    _, D = random_problem(n_atoms=100, n_inputs=40, seed=4)
    ref = torch.linalg.matrix_norm(D, 2).item() ** 2
    assert C.lipschitz(D) == pytest.approx(ref, rel=1e-6)
    assert C.lipschitz(D.T) == pytest.approx(ref, rel=1e-6)


def test_ista_is_monotone_and_fista_is_faster():
    x, D = random_problem(n_atoms=200, n_inputs=50, seed=5)
    _, i_info = C.ista(x, D, 0.1, 300, tol=0, track=True, return_info=True)
    _, f_info = C.fista(x, D, 0.1, 300, tol=0, track=True, return_info=True)
    best = C.objective(x, D, C.fista(x, D, 0.1, 4000, tol=1e-12),
                       0.1).mean().item()
    gi = np.array(i_info.objective) - best
    gf = np.array(f_info.objective) - best
    assert np.all(np.diff(i_info.objective) <= 1e-12)  # ISTA never rises
    assert gf[99] < gi[99] / 10 and gf[299] < gi[299] / 10
    assert f_info.n_iter == 300 and not f_info.converged


def test_tolerance_stops_early():
    x, D = random_problem(seed=6)
    _, info = C.fista(x, D, 0.5, 10_000, tol=1e-4, return_info=True)
    assert info.converged and info.n_iter < 10_000


def lars_objective(x, D, lam, positive=False):
    """Per-sample optimum from scikit-learn's LARS lasso (exact path)."""
    codes = sparse_encode(x.numpy(), D.numpy(), algorithm="lasso_lars",
                          alpha=lam, positive=positive)
    return C.objective(x, D, torch.from_numpy(codes), lam)


@pytest.mark.parametrize("n_atoms,n_inputs,batch,lam,solver", [
    (128, 64, 60, 0.1, C.fista), (256, 64, 40, 0.2, C.fista),
    (64, 64, 60, 0.05, C.fista), (100, 20, 80, 0.5, C.fista),
    (48, 32, 40, 0.1, C.ista)])
def test_defaults_reach_1e_4_and_the_gap_bounds_the_error(
        n_atoms, n_inputs, batch, lam, solver):
    # over-complete and square random problems, several lam: the default
    # call certifies every sample within 1e-4 of its optimum, and the
    # certificate is honest -- the true relative error, against the exact
    # LARS solution, is below the reported largest gap
    x, D = random_problem(n_atoms, n_inputs, batch, seed=n_atoms + batch)
    a, info = solver(x, D, lam, return_info=True)
    best = lars_objective(x, D, lam)
    rel = (C.objective(x, D, a, lam) - best) / best
    assert info.converged and info.gap <= 1e-4
    assert rel.max() <= info.gap + 1e-12
    assert rel.min() >= -1e-9        # nothing beats the optimum


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_a_loose_tolerance_is_still_a_bound(tol):
    x, D = random_problem(256, 64, 60, seed=3)
    a, info = C.fista(x, D, 0.1, tol=tol, return_info=True)
    best = lars_objective(x, D, 0.1)
    rel = (C.objective(x, D, a, 0.1) - best) / best
    assert info.converged and info.gap <= tol
    assert rel.max() <= info.gap + 1e-12


def test_nonneg_and_per_atom_lam_are_certified():
    x, D = random_problem(96, 32, 30, seed=5)
    a, info = C.fista(x, D, 0.2, nonneg=True, return_info=True)
    best = lars_objective(x, D, 0.2, positive=True)
    rel = (C.objective(x, D, a, 0.2) - best) / best
    assert info.converged and (a >= 0).all() and rel.max() <= info.gap
    lam = torch.linspace(0.05, 0.4, 96, dtype=x.dtype)
    a, info = C.fista(x, D, lam, return_info=True)
    # oracle for a per-atom penalty: scale atom j by 1/lam_j, solve with
    # lam = 1, scale the codes back
    b = lars_objective(x, D / lam[:, None], 1.0)
    rel = (C.objective(x, D, a, lam) - b) / b
    assert info.converged and rel.max() <= info.gap + 1e-12


@pytest.mark.parametrize("track", [False, True])
def test_a_certified_sample_stops_changing(track):
    # sample 0 is a multiple of atom 3: its code is certified at the first
    # check (the exact solve on its support); sample 1, a random input,
    # needs many more iterations. Sample 0's code must then be the same
    # whatever the budget; sample 1's changes. track=True keeps every
    # sample in the batch (frozen by a mask), the default drops it.
    x, D = random_problem(128, 64, 2, seed=8)
    x[0] = 3 * D[3]
    runs = [C.fista(x, D, 0.1, n, tol=1e-9, track=track) for n in
            (100, 200, 2000)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][0], runs[2][0])
    assert not torch.equal(runs[0][1], runs[2][1])
    assert runs[0][0][3] == pytest.approx(3 - 0.1, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(arrays("float64", st.integers(1, 30),
              elements=st.floats(-10, 10)), st.floats(0, 5))
def test_soft_threshold_properties(z, lam):
    z = torch.from_numpy(z)
    s = C.soft_threshold(z, lam)
    assert torch.all(s.abs() <= z.abs())             # never grows
    assert torch.all(s[z.abs() <= lam] == 0)          # small values vanish
    big = z.abs() > lam
    torch.testing.assert_close(s[big], z[big] - lam * torch.sign(z[big]))
    # the prox: s minimises 1/2 (u - z)^2 + lam |u|, better than nearby u
    f = lambda u: 0.5 * (u - z) ** 2 + lam * u.abs()  # noqa: E731
    for d in (1e-3, -1e-3):
        assert torch.all(f(s) <= f(s + d) + 1e-12)


def test_gradients_flow_through_the_iterations():
    x, D = random_problem(n_atoms=6, n_inputs=4, batch=3, seed=7)
    x = x.requires_grad_()
    torch.autograd.gradcheck(
        lambda x_: C.fista(x_, D, 0.05, 20, tol=0), (x,))


def test_lista_starts_as_ista_and_learns():
    x, D = random_problem(n_atoms=64, n_inputs=32, batch=512, seed=8)
    x, D = x.float(), D.float()
    net = C.LISTA(D, 0.2, n_layers=3)
    torch.testing.assert_close(
        net(x), C.ista(x, D, 0.2, 3, tol=0), atol=1e-5, rtol=1e-4)
    target = C.fista(x, D, 0.2, 2000, tol=1e-8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = (net(x) - target).pow(2).sum(1).mean().item()
    for _ in range(300):
        opt.zero_grad()
        loss = (net(x) - target).pow(2).sum(1).mean()
        loss.backward()
        opt.step()
    assert loss.item() < before / 2


@settings(max_examples=50, deadline=None)
@given(arrays("float64", st.tuples(st.integers(1, 8), st.integers(1, 8)),
              elements=st.floats(-100, 100)))
def test_projection_keeps_atoms_in_the_unit_ball(d):
    D = torch.from_numpy(d.copy())
    before = D.clone()
    C.project_atoms_(D)
    norms = before.norm(dim=1)
    assert torch.all(D.norm(dim=1) <= 1 + 1e-12)
    inside = norms <= 1
    torch.testing.assert_close(D[inside], before[inside])


def planted(seed=0, n_atoms=24, n_inputs=16, n=3000, k=3):
    g = torch.Generator().manual_seed(seed)
    D_true = torch.randn(n_atoms, n_inputs, generator=g)
    D_true /= D_true.norm(dim=1, keepdim=True)
    codes = torch.zeros(n, n_atoms)
    support = torch.rand(n, n_atoms, generator=g).topk(k, dim=1).indices
    values = torch.randn(n, k, generator=g).sign() * \
        (1 + torch.rand(n, k, generator=g))
    codes.scatter_(1, support, values)
    return codes @ D_true, D_true


def test_planted_dictionary_is_recovered():
    x, D_true = planted()
    g = torch.Generator().manual_seed(0)
    D, hist = C.learn_dictionary(x, 24, 0.1, n_epochs=15, batch_size=256,
                                 generator=g, progress_bar=False)
    assert C.atom_recovery(D, D_true) >= 0.95
    assert max(hist.max_atom_norm) <= 1 + 1e-6
    assert hist.objective[-1] < hist.objective[0]


def test_forget_factor_hand_computed():
    assert C.forget_factor(0) == 0.0  # nothing to remember yet
    assert C.forget_factor(1) == pytest.approx(0.5 ** 10)
    assert C.forget_factor(3, nu=2) == pytest.approx(9 / 16)
    assert C.forget_factor(4, nu=1) == pytest.approx(4 / 5)
    assert C.forget_factor(7, nu=0) == 1.0
    # hand-derived weights of batches 1..4 after four steps: batch s keeps
    # (s / 4)^nu -- all equal for nu = 0, proportional to s for nu = 1
    for nu, want in ((0, [1, 1, 1, 1]), (1, [1 / 4, 2 / 4, 3 / 4, 1]),
                      (2, [1 / 16, 4 / 16, 9 / 16, 1])):
        w = []
        for t in range(4):
            w = [v * C.forget_factor(t, nu=nu) for v in w] + [1.0]
        assert w == pytest.approx(want)
    # it rises towards 1
    seq = [C.forget_factor(t) for t in range(0, 100_000, 97)]
    assert all(u <= v for u, v in zip(seq, seq[1:]))
    assert 0.9998 < seq[-1] < 1
    with pytest.raises(ValueError, match="step"):
        C.forget_factor(-1)
    with pytest.raises(ValueError, match="nu"):
        C.forget_factor(1, nu=-1.0)


def test_auto_forget_is_the_schedule():
    # two batches, one epoch: the first factor multiplies empty statistics,
    # so "auto" must equal the fixed factor of step 1, and differ from 0.5
    x, _ = planted(n=512)
    runs = {}
    for forget in ("auto", C.forget_factor(1), 0.5):
        g = torch.Generator().manual_seed(0)
        runs[forget], _ = C.learn_dictionary(
            x, 24, 0.1, n_epochs=1, batch_size=256, forget=forget,
            generator=g, progress_bar=False)
    assert torch.equal(runs["auto"], runs[C.forget_factor(1)])
    assert not torch.allclose(runs["auto"], runs[0.5])
    # a callable schedule is called with the step: 0, 1, 2, ...
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.5

    g = torch.Generator().manual_seed(0)
    D, _ = C.learn_dictionary(x, 24, 0.1, n_epochs=1, batch_size=256,
                              forget=schedule, generator=g,
                              progress_bar=False)
    assert seen == [0, 1]
    assert torch.equal(D, runs[0.5])


def test_without_projection_atoms_grow_and_codes_shrink():
    x, _ = planted(seed=1)
    g = torch.Generator().manual_seed(1)
    _, hist = C.learn_dictionary(x, 24, 0.5, n_epochs=8, project=False,
                                 generator=g, progress_bar=False)
    assert hist.max_atom_norm[-1] > 2 * hist.max_atom_norm[0]
    assert hist.mean_code_l1[-1] < hist.mean_code_l1[0] / 2


def test_atom_recovery_hand_made():
    D = torch.eye(3)
    assert C.atom_recovery(-D[[2, 0, 1]], D) == pytest.approx(1.0)
    half = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert C.atom_recovery(half, D[:2]) == pytest.approx(2 ** -0.5)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda x, D: C.fista(x[:, :10], D, 0.1), ValueError, "n_inputs"),
    (lambda x, D: C.fista(x, D, -0.1), ValueError,
     r"lam must be a real number >= 0, got -0\.1"),
    (lambda x, D: C.ista(x, D, float("nan")), ValueError, "lam.*NaN"),
    (lambda x, D: C.fista(x, D, torch.tensor([0.1, -1.0])), ValueError,
     "n_atoms=20"),
    (lambda x, D: C.fista(x, D, torch.full((20,), -1.0, dtype=x.dtype)),
     ValueError, "lam must be >= 0 everywhere"),
    (lambda x, D: C.fista(x, D, True), TypeError, "lam must be a real"),
    (lambda x, D: C.fista(x, D, None), TypeError, "lam must be a real"),
    (lambda x, D: C.fista(x, torch.cat([D, torch.zeros(1, D.shape[1],
                          dtype=D.dtype)]), 0.1), ValueError, "zero atom"),
    (lambda x, D: C.fista(x.clone().fill_(float("nan")), D, 0.1),
     ValueError, "x contains NaN"),
    (lambda x, D: C.fista(x.long(), D, 0.1), TypeError, "floating-point"),
    (lambda x, D: C.fista(x, D, "0.1"), TypeError,
     r"lam must be a real number, got '0\.1' \(str\)"),
    (lambda x, D: C.fista(x, D, 0.1, 0), ValueError, "n_iter"),
    (lambda x, D: C.fista(x, D, 0.1, step=-1.0), ValueError,
     r"step must be a real number > 0, got -1\.0"),
    (lambda x, D: C.fista(x, D, 0.1, step=0), ValueError, "step .*> 0"),
    (lambda x, D: C.fista(x, D, 0.1, tol=-1e-3), ValueError,
     "tol must be a real number >= 0"),
    (lambda x, D: C.fista(x, D, 0.1, tol="1e-3"), TypeError, "tol"),
    (lambda x, D: C.fista(x, D, 0.1, a0=torch.zeros(5, 20)), TypeError,
     "x and a0 must have the same dtype"),
    (lambda x, D: C.fista(x, D, 0.1, a0=torch.zeros(5, 3, dtype=x.dtype)),
     ValueError, "a0 must be"),
    (lambda x, D: C.fista(x, D.to("meta"), 0.1), ValueError,
     "x and D must be on the same device"),
    (lambda x, D: C.soft_threshold(x, -1.0), ValueError, "lam"),
    (lambda x, D: C.soft_threshold(x.numpy(), 1.0), TypeError,
     "z must be a torch.Tensor"),
    (lambda x, D: C.lipschitz(D, tol=-1.0), ValueError, "tol"),
    (lambda x, D: C.LISTA(D, 0.1, 2)(x.float()), TypeError,
     "x and LISTA weights must have the same dtype"),
    (lambda x, D: C.LISTA(D, -0.1, 2), ValueError, "lam"),
    (lambda x, D: C.atom_recovery(D, D.float()), TypeError, "dtype"),
    (lambda x, D: C.learn_dictionary(x, 0, 0.1), ValueError, "n_atoms"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget=1.0), ValueError,
     "forget"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget="sometimes"),
     ValueError, "forget must be"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget=True), TypeError,
     "forget must be"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget=None), TypeError,
     "forget must be"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget=lambda t: 1.5),
     ValueError, r"forget\(0\) must be a real number in \[0, 1\], got 1.5"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, forget=lambda t: "x"),
     TypeError, r"forget\(0\) must be a real number"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, tol=-1.0), ValueError,
     "tol"),
    (lambda x, D: C.learn_dictionary(x, 5, 0.1, n_iter=0), ValueError,
     "n_iter"),
    (lambda x, D: C.learn_dictionary(x, 5, -0.1), ValueError, "lam"),
    (lambda x, D: C.learn_dictionary(x, 20, 0.1, D0=D.float()), TypeError,
     "x and D0 must have the same dtype"),
    (lambda x, D: C.learn_dictionary(x, 20, 0.1, D0=D * float("nan")),
     ValueError, "D contains NaN"),
    (lambda x, D: C.learn_dictionary(x.numpy(), 5, 0.1), TypeError,
     "x must be a torch.Tensor"),
    (lambda x, D: C.objective(x, D, torch.zeros(3, 3, dtype=x.dtype), 0.1),
     ValueError, "a must be"),
    (lambda x, D: C.objective(x, D, torch.zeros(5, 20), 0.1), TypeError,
     "x and a must have the same dtype"),
    (lambda x, D: C.omp(x, D, 0), ValueError, "n_nonzero"),
    (lambda x, D: C.omp(x, D, 13), ValueError, "n_nonzero must be at most"),
    (lambda x, D: C.omp(x, D, 2.5), TypeError, "n_nonzero"),
    (lambda x, D: C.omp(x[:, :10], D, 2), ValueError, "n_inputs"),
    (lambda x, D: C.omp(x, torch.cat([D[:1], D[:1]]), 2), ValueError,
     "linearly dependent"),
])
def test_bad_input(make, exc, msg):
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    with pytest.raises(exc, match=msg):
        make(x, D)


def test_mixed_dtypes_are_our_type_error_naming_x_and_D():
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    for solver in (C.fista, C.ista):
        with pytest.raises(TypeError) as err:
            solver(x, D.float(), 0.1)  # x float64, D float32
        msg = str(err.value)
        assert "x and D must have the same dtype" in msg
        assert "x: torch.float64" in msg and "D: torch.float32" in msg
    with pytest.raises(TypeError, match="x and D must have the same dtype"):
        C.omp(x.float(), D, 2)


def test_numpy_and_tensor_lam_are_accepted():
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    ref = C.fista(x, D, 0.25, 50, tol=0)
    assert torch.equal(C.fista(x, D, np.float32(0.25), 50, tol=0), ref)
    assert torch.equal(C.fista(x, D, np.float64(0.25), 50, tol=0), ref)
    per_atom = torch.full((20,), 0.25, dtype=x.dtype)
    assert torch.equal(C.fista(x, D, per_atom, 50, tol=0), ref)


def test_target_keyword_is_gone():
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    for solver in (C.fista, C.ista):
        with pytest.raises(TypeError, match="target"):
            solver(x, D, 0.1, 10, target=0.0)


def _count_calls(monkeypatch, names):
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(C, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(C, name, counted)
    return calls


def test_solvers_check_once_not_per_iteration(monkeypatch):
    # the public soft_threshold (which checks lam) is never called by the
    # loops, and the argument checks run the same number of times whatever
    # the number of iterations
    def forbidden(*args, **kwargs):
        raise AssertionError("soft_threshold called inside a solver loop")

    monkeypatch.setattr(C, "soft_threshold", forbidden)
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    lam = torch.full((20,), 0.1, dtype=x.dtype)
    counts = []
    for n_iter in (3, 40):
        calls = _count_calls(monkeypatch, ["_check_lam", "_check_xD",
                                           "check_real", "check_tensor",
                                           "check_same"])
        a, info = C.fista(x, D, lam, n_iter, tol=0, track=True,
                          return_info=True)
        assert info.n_iter == n_iter
        counts.append(dict(calls))
        monkeypatch.undo()
        monkeypatch.setattr(C, "soft_threshold", forbidden)
    assert counts[0] == counts[1]
    assert counts[0]["_check_lam"] == 1 and counts[0]["_check_xD"] == 1
    # LISTA's forward reads no values: no lam check per call
    model = C.LISTA(D, lam, 4)
    calls = _count_calls(monkeypatch, ["_check_lam"])
    model(x)
    assert calls["_check_lam"] == 0


def test_learn_dictionary_checks_x_and_D_once(monkeypatch):
    x, _ = random_problem(n_atoms=20, n_inputs=12, batch=64)
    calls = _count_calls(monkeypatch, ["_check_xD", "_check_lam"])
    g = torch.Generator().manual_seed(0)
    C.learn_dictionary(x, 6, 0.1, n_epochs=2, batch_size=16, generator=g,
                       progress_bar=False)  # 8 mini-batches
    assert calls == {"_check_xD": 1, "_check_lam": 1}


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 5), (2, 20), (3, 64)])
def test_omp_matches_sklearn_orthogonal_mp(seed, k):
    x, D = random_problem(n_atoms=128, n_inputs=64, batch=40, seed=seed)
    ours = C.omp(x, D, k)
    theirs = orthogonal_mp(D.numpy().T, x.numpy().T, n_nonzero_coefs=k).T
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-8, rtol=0)
    assert ((ours != 0).sum(1) == k).all()


def test_omp_on_an_orthonormal_dictionary_keeps_the_k_largest():
    # With Q orthonormal, a = x Q^T exactly, and OMP keeps its k entries of
    # largest magnitude unchanged (hard thresholding): derived by hand.
    g = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g,
                                       dtype=torch.float64))
    x = torch.randn(30, 16, generator=g, dtype=torch.float64)
    full = x @ Q.T
    top = full.abs().topk(4, dim=1).indices
    expected = torch.zeros_like(full).scatter(1, top, full.gather(1, top))
    torch.testing.assert_close(C.omp(x, Q, 4), expected)
    torch.testing.assert_close(C.omp(x, Q, 16), full)  # all atoms: exact


def test_omp_residual_is_orthogonal_to_the_chosen_atoms():
    x, D = random_problem(n_atoms=50, n_inputs=30, batch=10, seed=5)
    a = C.omp(x, D, 7)
    resid = x - a @ D
    corr = resid @ D.T
    chosen = a != 0
    assert corr[chosen].abs().max() < 1e-10
    assert corr[~chosen].abs().max() > 1e-3


def test_omp_planted_support_is_found():
    # a noiseless 3-sparse signal on an incoherent dictionary: OMP recovers
    # the support and the values exactly
    x, D = random_problem(n_atoms=40, n_inputs=64, batch=1, seed=6)
    a_true = torch.zeros(8, 40, dtype=torch.float64)
    for i in range(8):
        a_true[i, [i, 10 + i, 30 + i]] = torch.tensor([1.5, -2.0, 1.2],
                                                      dtype=torch.float64)
    torch.testing.assert_close(C.omp(a_true @ D, D, 3), a_true)


def test_omp_gradients_match_finite_differences():
    x, D = random_problem(n_atoms=12, n_inputs=8, batch=3, seed=7)
    x.requires_grad_(True)
    D.requires_grad_(True)
    # the support is fixed for small perturbations, so the map is smooth
    assert torch.autograd.gradcheck(lambda x, D: C.omp(x, D, 3), (x, D))


def test_loops_read_no_values_on_the_meta_device():
    # a meta tensor has no values: any check that reads one (.item(),
    # bool(), .any()) raises. The (F)ISTA loop without a tolerance and
    # LISTA's forward must run on meta tensors.
    x, D = random_problem(n_atoms=20, n_inputs=12, batch=5)
    xm, Dm = x.to("meta"), D.to("meta")
    lam = torch.full((20,), 0.1, dtype=x.dtype, device="meta")
    a0 = torch.zeros(5, 20, dtype=x.dtype, device="meta")
    for momentum in (False, True):
        a, info = C._iterate(xm, Dm, lam, 30, 0.0, 0.5, False, a0,
                             momentum, False)
        assert a.device.type == "meta" and info.n_iter == 30
    net = C.LISTA(D, 0.1, 4).to("meta")
    assert net(xm).shape == (5, 20)
    with pytest.raises((RuntimeError, NotImplementedError)):
        bool(xm.sum() > 0)  # the premise: reading a meta value fails
