"""sparselib.costs against hand-computed cases and float64 products.

No test asserts a speed: timings are only checked to be positive floats
with the right structure (timed assertions flake on a shared machine).
"""

import math

import numpy as np
import pytest
import torch

from sparselib import costs as C

MB = 2 ** 20


# ------------------------------------------------------------ weights


@pytest.mark.parametrize("shape, sparsity", [
    ((10, 20), 0.3), ((7, 13), 0.5), ((64, 32), 0.9), ((5, 5), 0.0),
    ((5, 5), 1.0), ((3, 11), 0.77)])
def test_random_sparse_weight_has_exactly_round_sparsity_n_zeros(
        shape, sparsity):
    g = torch.Generator().manual_seed(1)
    w = C.random_sparse_weight(*shape, sparsity, generator=g)
    n = shape[0] * shape[1]
    assert w.shape == shape and w.dtype == torch.float32
    assert int((w == 0).sum()) == round(sparsity * n)


def test_random_sparse_weight_blocks_are_whole():
    g = torch.Generator().manual_seed(0)
    w = C.random_sparse_weight(32, 48, 0.5, block=16, generator=g)
    blocks = w.reshape(2, 16, 3, 16).permute(0, 2, 1, 3).reshape(6, 256)
    zero = (blocks == 0).all(1)
    assert ((blocks != 0).all(1) | zero).all()  # each block all or nothing
    assert int(zero.sum()) == 3
    w = C.random_sparse_weight(64, 64, 0.9, block=8, generator=g)
    blocks = w.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    zero = (blocks == 0).all(1)
    assert ((blocks != 0).all(1) | zero).all()
    assert int(zero.sum()) == round(0.9 * 64)


def test_random_sparse_weight_is_seeded_and_typed():
    def draw(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return C.random_sparse_weight(16, 24, 0.6, generator=g, **kw)

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    w = draw(3, dtype=torch.float64)
    assert w.dtype == torch.float64
    assert torch.equal(w.float(), draw(3))       # same draw, other dtype
    assert draw(3, device="cpu").device.type == "cpu"
    # the scale is 1 / sqrt(in_features): the non-zeros' spread
    big = C.random_sparse_weight(200, 400, 0.5,
                                 generator=torch.Generator().manual_seed(0))
    nz = big[big != 0]
    assert nz.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.02)


# ------------------------------------------------------------ formats

HAND = torch.tensor([[1.0, 0.0, 0.0, 2.0],
                     [0.0, 0.0, 3.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0]])


def test_storage_bytes_by_hand():
    assert C.storage_bytes(HAND) == 12 * 4
    assert C.storage_bytes(HAND.double()) == 12 * 8
    # CSR: 3 values (4 B) + 3 column indices (8 B) + 4 row pointers (8 B)
    assert C.storage_bytes(C.to_format(HAND, "csr")) == 12 + 24 + 32
    # CSC: 3 values + 3 row indices + 5 column pointers
    assert C.storage_bytes(C.to_format(HAND, "csc")) == 12 + 24 + 40
    # COO: 3 values + a (2, 3) int64 index
    assert C.storage_bytes(C.to_format(HAND, "coo")) == 12 + 48
    # BSR with (1, 2) blocks: [1, 0], [0, 2] and [3, 0] are stored (3
    # blocks of 2 values), 3 block-column indices, 4 block-row pointers
    bsr = C.to_format(HAND, "bsr", blocksize=(1, 2))
    assert C.storage_bytes(bsr) == 3 * 2 * 4 + 24 + 32
    # (3, 4): one block holding everything, 1 index, 2 pointers
    one = C.to_format(HAND, "bsr", blocksize=(3, 4))
    assert C.storage_bytes(one) == 12 * 4 + 8 + 16
    # a non-contiguous dense view counts its entries
    assert C.storage_bytes(HAND.T) == 48
    assert C.storage_bytes(HAND.to_sparse_bsc((1, 2))) == \
        HAND.to_sparse_bsc((1, 2)).values().numel() * 4 + \
        HAND.to_sparse_bsc((1, 2)).row_indices().numel() * 8 + \
        3 * 8


def test_storage_bytes_of_a_sparse_weight_beats_dense_only_when_sparse():
    g = torch.Generator().manual_seed(0)
    n = 64 * 64
    for s in (0.5, 0.9):
        w = C.random_sparse_weight(64, 64, s, generator=g)
        nnz = round((1 - s) * n)
        assert C.storage_bytes(C.to_format(w, "csr")) == \
            nnz * 12 + 65 * 8
    # CSR float32 pays 12 bytes per non-zero: it loses to dense (4 B per
    # entry) below 2/3 sparsity
    w = C.random_sparse_weight(64, 64, 0.5, generator=g)
    assert C.storage_bytes(C.to_format(w, "csr")) > C.storage_bytes(w)


@pytest.mark.parametrize("shape, blocksize", [
    ((32, 48), 16), ((16, 16), 4), ((64, 32), (8, 16)), ((24, 40), 8)])
@pytest.mark.parametrize("fmt", C.STORAGE_FORMATS)
def test_every_format_holds_the_same_matrix_and_product(shape, blocksize,
                                                         fmt):
    g = torch.Generator().manual_seed(2)
    w = C.random_sparse_weight(*shape, 0.8, generator=g)
    x = torch.randn(5, shape[1], generator=g)
    s = C.to_format(w, fmt, blocksize=blocksize if fmt == "bsr" else None)
    assert torch.equal(s.to_dense(), w)
    if fmt == "bsr" and isinstance(blocksize, tuple):
        with pytest.raises(RuntimeError, match="non-square"):
            s @ x.T                 # MKL, the CPU's BSR kernel
        s = s.to_dense().to_sparse_csr()
    y = (s @ x.T).T
    oracle = x.double() @ w.double().T
    torch.testing.assert_close(y.double(), oracle, rtol=1e-5, atol=1e-5)


def test_to_format_layouts_and_defaults():
    w = C.random_sparse_weight(32, 32, 0.5,
                               generator=torch.Generator().manual_seed(0))
    assert C.to_format(w, "dense") is w
    assert C.to_format(w, "csr").layout == torch.sparse_csr
    assert C.to_format(w, "csc").layout == torch.sparse_csc
    coo = C.to_format(w, "coo")
    assert coo.layout == torch.sparse_coo and coo.is_coalesced()
    bsr = C.to_format(w, "bsr")
    assert bsr.layout == torch.sparse_bsr
    assert tuple(bsr.values().shape[1:]) == (C.DEFAULT_BLOCKSIZE,) * 2


# ------------------------------------------------------------ timing


def test_linear_times_records():
    g = torch.Generator().manual_seed(0)
    w = C.random_sparse_weight(32, 64, 0.75, generator=g)
    formats = ("dense", "masked", "csr", "csc", "coo", "bsr")
    recs = C.linear_times(w, [1, 5], formats, blocksize=8, repeat=2,
                          warmup=0)
    assert [(r["batch"], r["format"]) for r in recs] == \
        [(b, f) for b in (1, 5) for f in formats]
    for r in recs:
        assert r["sparsity"] == 0.75
        assert isinstance(r["seconds"], float) and r["seconds"] > 0
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
        assert (r["out_features"], r["in_features"]) == (32, 64)
        assert r["device"] == "cpu" and r["dtype"] == "float32"
        assert r["threads"] == torch.get_num_threads()
    dense = [r for r in recs if r["format"] == "dense"]
    assert all(r["ratio"] == 1.0 for r in dense)
    for r in recs:
        d = next(x for x in dense if x["batch"] == r["batch"])
        assert r["ratio"] == pytest.approx(d["seconds"] / r["seconds"])
    no_dense = C.linear_times(w, [2], ["csr"], repeat=1)
    assert no_dense[0]["ratio"] is None


def test_outputs_that_disagree_are_caught():
    y = torch.ones(4, 3)
    C._agree({"dense": 5 * y, "masked": y, "csr": y + 1e-7},
             torch.float32)                       # dense is not compared
    with pytest.raises(RuntimeError, match="'csr'"):
        C._agree({"masked": y, "csr": y + 0.1}, torch.float32)


def test_sparsity_sweep_grid():
    recs = C.sparsity_sweep(32, 32, [0.5, 0.9], [1, 4],
                            ["dense", "csr", "bsr"], block=8, repeat=1,
                            warmup=0, progress_bar=False)
    assert len(recs) == 2 * 2 * 3
    assert {r["target_sparsity"] for r in recs} == {0.5, 0.9}
    for r in recs:
        n_zero_blocks = round(r["target_sparsity"] * 16)
        assert r["sparsity"] == n_zero_blocks / 16
        assert r["block"] == 8
    recs = C.sparsity_sweep(10, 10, [0.33], [2], ["dense", "masked"],
                            repeat=1, warmup=0, progress_bar=False)
    assert recs[0]["sparsity"] == 0.33 and recs[0]["block"] is None


# ------------------------------------------------------------ crossover


def rec(fmt, batch, sparsity, ratio):
    return {"format": fmt, "batch": batch, "sparsity": sparsity,
            "ratio": ratio}


RECORDS = [rec("csr", 8, 0.9, 1.2), rec("csr", 8, 0.5, 0.5),
           rec("csr", 8, 0.95, 2.0), rec("csr", 8, 0.8, 0.8),
           rec("csr", 1, 0.5, 0.9), rec("csr", 1, 0.8, 1.5),
           rec("bsr", 8, 0.5, 0.1), rec("bsr", 8, 0.99, 0.9),
           rec("dense", 8, 0.5, 1.0), rec("csr", 64, 0.5, 1.1),
           rec("csr", 64, 0.9, 3.0)]


def test_crossover_interpolates_between_the_bracketing_records():
    # 0.8 -> 0.8 and 0.9 -> 1.2: the ratio reaches 1 half way, at 0.85
    assert C.crossover_sparsity(RECORDS, "csr", 8) == pytest.approx(0.85)
    # logit: half way between log 4 and log 9 is log 6, i.e. 6/7
    assert C.crossover_sparsity(RECORDS, "csr", 8, scale="logit") == \
        pytest.approx(6 / 7)
    # batch 1: 0.9 at 0.5, 1.5 at 0.8 -> 0.5 + 0.3 * (0.1 / 0.6) = 0.55
    assert C.crossover_sparsity(RECORDS, "csr", 1) == pytest.approx(0.55)
    # already faster at the smallest sparsity measured: that sparsity
    assert C.crossover_sparsity(RECORDS, "csr", 64) == 0.5
    assert C.crossover_sparsity(RECORDS, "dense", 8) == 0.5
    # never faster
    assert C.crossover_sparsity(RECORDS, "bsr", 8) is None


def test_crossover_takes_the_first_crossing_and_exact_hits():
    recs = [rec("csr", 2, 0.5, 0.5), rec("csr", 2, 0.6, 1.0),
            rec("csr", 2, 0.7, 0.9), rec("csr", 2, 0.8, 3.0)]
    assert C.crossover_sparsity(recs, "csr", 2) == pytest.approx(0.6)
    recs = [rec("csr", 2, 0.2, 0.0), rec("csr", 2, 0.6, 2.0),
            rec("csr", 2, 0.7, 0.5)]
    assert C.crossover_sparsity(recs, "csr", 2) == pytest.approx(0.4)


def test_sustained_crossover_ignores_a_crossing_that_falls_back():
    # 1.0 at 0.6 falls back to 0.9 at 0.7: the sustained crossing is the
    # one between 0.7 (0.9) and 0.8 (3.0): 0.7 + 0.1 * 0.1 / 2.1
    recs = [rec("csr", 2, 0.5, 0.5), rec("csr", 2, 0.6, 1.0),
            rec("csr", 2, 0.7, 0.9), rec("csr", 2, 0.8, 3.0)]
    assert C.crossover_sparsity(recs, "csr", 2, sustained=True) == \
        pytest.approx(0.7 + 0.1 * 0.1 / 2.1)
    # above 1 at the first point only: never, when sustained
    recs = [rec("bsr", 1, 0.5, 1.1), rec("bsr", 1, 0.9, 0.6)]
    assert C.crossover_sparsity(recs, "bsr", 1) == 0.5
    assert C.crossover_sparsity(recs, "bsr", 1, sustained=True) is None
    # above 1 everywhere: the smallest sparsity, as without sustained
    assert C.crossover_sparsity(RECORDS, "csr", 64, sustained=True) == 0.5
    with pytest.raises(TypeError, match="sustained"):
        C.crossover_sparsity(RECORDS, "csr", 64, sustained=1)


@pytest.mark.parametrize("records, fmt, batch, kw, error, match", [
    (RECORDS, "coo", 8, {}, ValueError, "format 'coo' and batch 8"),
    (RECORDS, "csr", 3, {}, ValueError, "batch 3"),
    (RECORDS, "csr", 0, {}, ValueError, "batch"),
    (RECORDS, "csr", 8, {"scale": "log"}, ValueError, "scale"),
    (RECORDS, 3, 8, {}, TypeError, "fmt"),
    ("records", "csr", 8, {}, TypeError, "records"),
    ([1, 2], "csr", 8, {}, TypeError, r"records\[0\]"),
    ([{"format": "csr"}], "csr", 8, {}, ValueError, r"records\[0\]"),
    ([rec("csr", 8, 0.5, None)], "csr", 8, {}, ValueError, "no ratio"),
    ([rec("csr", 8, 0.5, 1), rec("csr", 8, 0.5, 2)], "csr", 8, {},
     ValueError, "same sparsity"),
    ([rec("csr", 8, 0.0, 0.5), rec("csr", 8, 0.5, 2)], "csr", 8,
     {"scale": "logit"}, ValueError, r"\(0, 1\)"),
    ([rec("csr", 8, 1.5, 0.5)], "csr", 8, {}, ValueError, "sparsity"),
])
def test_crossover_bad_inputs(records, fmt, batch, kw, error, match):
    with pytest.raises(error, match=match):
        C.crossover_sparsity(records, fmt, batch, **kw)


# ------------------------------------------------------------ models


def test_latency_positive_floats_and_mode_restored():
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5),
                                torch.nn.Linear(30, 4)).train()
    out = C.latency(model, torch.randn(20), (1, 7, 32), repeat=3)
    assert list(out) == [1, 7, 32]
    assert all(isinstance(t, float) and t > 0 for t in out.values())
    assert model.training
    out = C.latency(model.eval(), torch.randn(20), repeat=1, warmup=0,
                    device="cpu")
    assert list(out) == [1, 256] and not model.training


def test_latency_runs_in_eval_mode_without_grad():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled(),
                         tuple(x.shape)))
            return self.lin(x)

    C.latency(Probe(), torch.randn(3), (4,), repeat=1, warmup=1)
    assert seen == [(False, False, (4, 3))] * 2


def test_peak_memory_cpu_against_known_allocations():
    def one():
        t = torch.empty(10 * MB // 4)       # 10 MiB of float32
        t.fill_(1.0)
        return t

    def two_at_once():
        a = torch.ones(10 * MB // 4)
        b = a * 2                           # 20 MiB at once
        del a
        c = b + 1                           # a freed: still 20 MiB
        return float(c[0])

    def nothing():
        return 3

    peak = C.peak_memory(one)
    assert 10 * MB <= peak < 10 * MB + MB // 2
    peak = C.peak_memory(two_at_once, device="cpu")
    assert 20 * MB <= peak < 20 * MB + MB // 2
    assert C.peak_memory(nothing) < 1024


# ------------------------------------------------------------ 2:4


def test_prune_2_4_by_hand():
    w = torch.tensor([[1.0, -3.0, 2.0, 0.5, 0.0, 0.0, 0.0, 4.0],
                      [-1.0, 1.5, -2.0, 0.1, 5.0, 6.0, -7.0, 8.0]])
    want = torch.tensor([[0.0, -3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 4.0],
                         [0.0, 1.5, -2.0, 0.0, 0.0, 0.0, -7.0, 8.0]])
    assert torch.equal(C.prune_2_4(w), want)
    assert torch.equal(w[0, :2], torch.tensor([1.0, -3.0]))  # not modified


def test_prune_2_4_keeps_the_two_largest_of_each_four():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g, dtype=torch.float64)
    p = C.prune_2_4(w)
    assert p.dtype == torch.float64 and p.shape == w.shape
    groups = w.numpy().reshape(16, 16, 4)
    pg = p.numpy().reshape(16, 16, 4)
    order = np.argsort(-np.abs(groups), axis=-1)
    oracle = np.zeros_like(groups)
    np.put_along_axis(oracle, order[..., :2],
                      np.take_along_axis(groups, order[..., :2], -1), -1)
    np.testing.assert_array_equal(pg, oracle)
    assert ((pg != 0).sum(-1) == 2).all()


def test_semi_structured_needs_capability_8_on_a_gpu():
    reason = C.semi_structured_support("cpu")
    assert "capability >= 8.0" in reason
    if not torch.cuda.is_available():
        assert "capability >= 8.0" in C.semi_structured_support()
        assert "capability >= 8.0" in C.semi_structured_support("cuda")
        with pytest.raises(RuntimeError, match=r"capability >= 8\.0"):
            C.semi_structured_times(64, 64, [8])
    with pytest.raises(RuntimeError, match=r"capability >= 8\.0"):
        C.semi_structured_times(64, 64, [8], device="cpu")


# ------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("call, error, match", [
    (lambda: C.random_sparse_weight(4, 4, 1.5), ValueError, "sparsity"),
    (lambda: C.random_sparse_weight(4, 4, "a"), TypeError, "sparsity"),
    (lambda: C.random_sparse_weight(0, 4, 0.5), ValueError, "out_features"),
    (lambda: C.random_sparse_weight(4, 4.0, 0.5), TypeError, "in_features"),
    (lambda: C.random_sparse_weight(8, 12, 0.5, block=8), ValueError,
     r"in_features \(12\) must be a multiple of block"),
    (lambda: C.random_sparse_weight(8, 8, 0.5, block=0), ValueError,
     "block"),
    (lambda: C.random_sparse_weight(4, 4, 0.5, generator=0), TypeError,
     "generator"),
    (lambda: C.random_sparse_weight(4, 4, 0.5, dtype=torch.int64),
     TypeError, "dtype"),
    (lambda: C.to_format(HAND, "csx"), ValueError, "fmt"),
    (lambda: C.to_format(HAND, 3), TypeError, "fmt"),
    (lambda: C.to_format(HAND, "bsr", blocksize=3), ValueError,
     "blocksize"),
    (lambda: C.to_format(HAND, "bsr", blocksize=(1, 2, 3)), ValueError,
     "blocksize"),
    (lambda: C.to_format(HAND, "csr", blocksize=2), ValueError,
     "blocksize"),
    (lambda: C.to_format(HAND.to_sparse(), "csr"), TypeError, "weight"),
    (lambda: C.to_format(HAND[0], "csr"), ValueError, "weight"),
    (lambda: C.to_format(HAND.long(), "csr"), TypeError, "weight"),
    (lambda: C.storage_bytes([1, 2]), TypeError, "weight"),
    (lambda: C.linear_times(HAND, []), ValueError, "batch_sizes"),
    (lambda: C.linear_times(HAND, [0]), ValueError, r"batch_sizes\[0\]"),
    (lambda: C.linear_times(HAND, 4), TypeError, "batch_sizes"),
    (lambda: C.linear_times(HAND, [1], ["dense", "dense"]), ValueError,
     "formats"),
    (lambda: C.linear_times(HAND, [1], ["dense", "ell"]), ValueError,
     r"formats\[1\]"),
    (lambda: C.linear_times(HAND, [1], "dense"), TypeError, "formats"),
    (lambda: C.linear_times(HAND, [1], ["bsr"], blocksize=3), ValueError,
     "blocksize"),
    (lambda: C.linear_times(HAND, [1], ["csr"], blocksize=2), ValueError,
     "blocksize"),
    (lambda: C.linear_times(HAND, [1], ["bsr"], blocksize=(1, 2)),
     ValueError, "blocksize must be square"),
    (lambda: C.linear_times(HAND, [1], repeat=0), ValueError, "repeat"),
    (lambda: C.linear_times(HAND, [1], dtype="float"), TypeError, "dtype"),
    (lambda: C.sparsity_sweep(8, 8, [], [1]), ValueError, "sparsities"),
    (lambda: C.sparsity_sweep(8, 8, [0.5, 2.0], [1]), ValueError,
     r"sparsities\[1\]"),
    (lambda: C.sparsity_sweep(8, 12, [0.5], [1], block=8), ValueError,
     "blocksize"),
    (lambda: C.latency("model", torch.randn(3)), TypeError, "model"),
    (lambda: C.latency(torch.nn.Linear(3, 2), [1, 2, 3]), TypeError,
     "example"),
    (lambda: C.latency(torch.nn.Linear(3, 2), torch.randn(3), [0]),
     ValueError, r"batch_sizes\[0\]"),
    (lambda: C.peak_memory(3), TypeError, "fn"),
    (lambda: C.peak_memory(lambda: 0, device="tpu"), ValueError, "device"),
    (lambda: C.prune_2_4(torch.randn(4, 6)), ValueError, "multiple of 4"),
    (lambda: C.prune_2_4(torch.randn(8)), ValueError, "weight"),
    (lambda: C.semi_structured_times(64, 100), ValueError, "in_features"),
    (lambda: C.semi_structured_times(48, 64), ValueError, "out_features"),
    (lambda: C.semi_structured_times(64, 64, dtype=torch.float32),
     TypeError, "dtype"),
])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------ GPU


@pytest.mark.gpu
def test_costs_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    w = C.random_sparse_weight(64, 128, 0.9, generator=g, device="cuda")
    assert w.device.type == "cuda"
    assert int((w == 0).sum()) == round(0.9 * 64 * 128)
    recs = C.linear_times(w, [1, 16], ("dense", "masked", "csr", "bsr"),
                          repeat=2)
    assert all(r["device"].startswith("cuda") and r["seconds"] > 0
               for r in recs)

    def ten_mb():
        return torch.empty(10 * MB // 4, device="cuda")

    peak = C.peak_memory(ten_mb, device="cuda")
    assert 10 * MB <= peak < 10 * MB + MB // 2
    out = C.latency(torch.nn.Linear(8, 4).cuda(), torch.randn(8), (1, 64),
                    repeat=2)
    assert all(t > 0 for t in out.values())


@pytest.mark.gpu
def test_semi_structured_times_on_cuda():
    if C.semi_structured_support("cuda") is not None:
        pytest.skip(C.semi_structured_support("cuda"))
    recs = C.semi_structured_times(256, 512, [8, 64], repeat=3, warmup=1)
    assert [(r["batch"], r["format"]) for r in recs] == \
        [(8, "dense"), (8, "2:4"), (64, "dense"), (64, "2:4")]
    assert all(r["seconds"] > 0 and r["dtype"] == "float16" for r in recs)
    w = C.prune_2_4(torch.randn(256, 512)).half().cuda()
    s = torch.sparse.to_sparse_semi_structured(w)
    # half the values plus metadata: less than the dense fp16 weight
    assert C.storage_bytes(s) < C.storage_bytes(w)
    assert C.storage_bytes(s) >= C.storage_bytes(w) // 2
