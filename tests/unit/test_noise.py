"""sparselib.noise against hand-derived counts and hand-built classifiers.

Oracles: the replaced pixels are found with a mask on a background that
differs from the replacement value (so a repeated position would show as
a missing change); the per-level counts are the exact integer floor
``784 * i // 20`` and the paper's list; the noise scores of a perfect, a
constant and a hand-built degrading classifier are computed by hand.
"""

import pytest
import torch

from sparselib import noise as N

# int(784 * p) for p = 0.00, 0.05, ..., 0.50, written out by hand
PAPER_COUNTS = [0, 39, 78, 117, 156, 196, 235, 274, 313, 352, 392]


def changed(x, y):
    """Per image, the number of entries that differ."""
    return (x != y).flatten(1).sum(1)


def test_levels_are_the_eleven_exact_decimals():
    decimals = ["0.0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.35",
                "0.4", "0.45", "0.5"]
    assert isinstance(N.NOISE_LEVELS, tuple)
    assert N.NOISE_LEVELS == tuple(float(d) for d in decimals)
    assert all(type(p) is float for p in N.NOISE_LEVELS)


def test_noise_value_is_mean_plus_two_sd():
    assert N.NOISE_VALUE == pytest.approx(0.1307 + 2 * 0.3081, abs=1e-12)
    assert (N.NOISE_VALUE - N.MNIST_MEAN) / N.MNIST_STD == \
        pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (6, 784)])
def test_exact_count_of_replaced_pixels_at_every_level(shape):
    x = torch.full(shape, -1.0)
    g = torch.Generator().manual_seed(0)
    for i, p in enumerate(N.NOISE_LEVELS):
        y = N.replacement_noise(x, p, 1.0, generator=g)
        assert y.shape == x.shape
        want = 784 * i // 20  # exact rational floor
        assert want == PAPER_COUNTS[i] == int(784 * p)
        # every change is to the value, and exactly `want` distinct pixels
        assert torch.all((y == 1.0) | (y == -1.0))
        assert changed(x, y).tolist() == [want] * shape[0]


def test_count_follows_the_paper_float_formula():
    # int(100 * 0.29) is 28 with floats (the exact product is 29)
    assert int(100 * 0.29) == 28
    x = torch.zeros(4, 100)
    y = N.replacement_noise(x, 0.29, 1.0)
    assert changed(x, y).tolist() == [28] * 4
    # any (batch, ...) shape: 3 * 5 * 7 = 105 pixels, int(105 / 2) = 52
    x = torch.zeros(3, 3, 5, 7)
    assert changed(x, N.replacement_noise(x, 0.5, 1.0)).tolist() == [52] * 3
    # level 1 replaces every pixel
    assert torch.all(N.replacement_noise(x, 1.0, 2.5) == 2.5)


def test_default_value_is_written():
    x = torch.zeros(2, 784)
    y = N.replacement_noise(x, 0.5)
    assert torch.all((y == 0) | (y == torch.tensor(0.7469)))
    assert (y == torch.tensor(0.7469)).sum(1).tolist() == [392, 392]


def test_positions_differ_across_images():
    x = torch.zeros(8, 1, 28, 28)
    y = N.replacement_noise(x, 0.25, 1.0, generator=torch.Generator()
                            .manual_seed(1))
    masks = (y != 0).flatten(1)
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.equal(masks[i], masks[j])


def test_positions_are_uniform():
    # each pixel is chosen with probability p: Binomial(2000, 0.25) per pixel
    x = torch.zeros(2000, 784)
    y = N.replacement_noise(x, 0.25, 1.0,
                            generator=torch.Generator().manual_seed(2))
    freq = (y != 0).sum(0).double()
    mean, sd = 2000 * 196 / 784, (2000 * 0.25 * 0.75) ** 0.5
    assert freq.sum().item() == 2000 * 196
    assert (freq - mean).abs().max().item() < 5.5 * sd


def test_level_zero_is_an_unchanged_copy_and_input_untouched():
    x = torch.rand(3, 1, 28, 28)
    before = x.clone()
    y0 = N.replacement_noise(x, 0.0)
    assert torch.equal(y0, x) and y0.data_ptr() != x.data_ptr()
    y0.fill_(5.0)
    y = N.replacement_noise(x, 0.4, 2.0)
    assert torch.equal(x, before)
    assert y.data_ptr() != x.data_ptr()
    # non-contiguous input: untouched, output has the same values elsewhere
    xt = torch.rand(28, 28, 5).permute(2, 0, 1)
    keep = xt.clone()
    yt = N.replacement_noise(xt, 0.5, 9.0)
    assert torch.equal(xt, keep)
    assert torch.equal(yt[yt != 9.0], xt[yt != 9.0])
    assert ((yt == 9.0).flatten(1).sum(1) == 392).all()


def test_dtype_preserved():
    for dtype in (torch.float16, torch.float64):
        x = torch.full((2, 784), -1.0, dtype=dtype)
        y = N.replacement_noise(x, 0.1, 1.0)
        assert y.dtype == dtype and changed(x, y).tolist() == [78, 78]


def test_seeded_reproducibility():
    x = torch.zeros(5, 784)
    a = N.replacement_noise(x, 0.3, 1.0,
                            generator=torch.Generator().manual_seed(7))
    b = N.replacement_noise(x, 0.3, 1.0,
                            generator=torch.Generator().manual_seed(7))
    c = N.replacement_noise(x, 0.3, 1.0,
                            generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gradient_flows_to_kept_pixels_only():
    x = torch.full((2, 784), -1.0, requires_grad=True)
    y = N.replacement_noise(x, 0.2, 1.0)
    y.sum().backward()
    assert torch.equal(x.grad, (y.detach() == -1.0).to(x.dtype))


def test_replacement_noise_bad_inputs():
    x = torch.zeros(2, 784)
    with pytest.raises(TypeError, match="images"):
        N.replacement_noise(torch.zeros(2, 784, dtype=torch.long), 0.1)
    with pytest.raises(TypeError, match="images"):
        N.replacement_noise([[0.0] * 784], 0.1)
    with pytest.raises(ValueError, match="images"):
        N.replacement_noise(torch.zeros(784), 0.1)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="level"):
            N.replacement_noise(x, bad)
    with pytest.raises(TypeError, match="level"):
        N.replacement_noise(x, "0.1")
    with pytest.raises(ValueError, match="value"):
        N.replacement_noise(x, 0.1, float("inf"))
    with pytest.raises(TypeError, match="generator"):
        N.replacement_noise(x, 0.1, generator=0)


# ---------------------------------------------------------------- noise_score

def id_images(n, background_step=1.0):
    """Image i is the constant -(i + 1): its id survives any level < 1."""
    ids = torch.arange(n, dtype=torch.float32)
    return (-(ids + 1) * background_step)[:, None, None, None].expand(
        n, 1, 28, 28).contiguous()


def ids_of(x):
    """Recover image ids from the smallest (never replaced) pixel."""
    return (-x.flatten(1).min(1).values - 1).round().long()


def test_perfect_classifier_scores_the_maximum():
    n = 23
    labels = torch.arange(n) % 10
    images = id_images(n)

    def predict(x):  # class indices
        assert not torch.is_grad_enabled()
        return labels[ids_of(x)]

    def predict_logits(x):  # one-hot logits, arg-max taken
        return torch.nn.functional.one_hot(labels[ids_of(x)], 10).float()

    for f in (predict, predict_logits):
        r = N.noise_score(f, images, labels, batch_size=5)
        assert r["correct"] == [n] * 11
        assert r["accuracy"] == [1.0] * 11
        assert r["score"] == r["max_score"] == n * 11
        assert r["n"] == n and r["levels"] == list(N.NOISE_LEVELS)


def test_perfect_classifier_by_batch_order():
    # predict ignores x and returns the labels of the batch, in order
    n, bs = 17, 4
    labels = torch.randint(0, 10, (n,), generator=torch.Generator()
                           .manual_seed(3))
    state = {"i": 0}

    def predict(x):
        i = state["i"]
        state["i"] = (i + len(x)) % n
        return labels[i:i + len(x)]

    r = N.noise_score(predict, torch.rand(n, 784), labels, batch_size=bs)
    assert r["score"] == n * 11 and r["max_score"] == n * 11


def test_constant_classifier_scores_its_class_count():
    labels = torch.tensor([3, 1, 3, 0, 3, 2, 1, 3, 9, 3])  # five 3s
    r = N.noise_score(lambda x: torch.full((len(x),), 3), torch.rand(10, 784),
                      labels, batch_size=3)
    assert r["correct"] == [5] * 11
    assert r["score"] == 55 and r["max_score"] == 110
    assert r["accuracy"] == [0.5] * 11


def test_degrading_classifier_hand_counts():
    # image i is right while fewer than T[i] pixels are replaced
    thresholds = torch.tensor([0, 40, 118, 200, 393])
    labels = torch.tensor([4, 3, 2, 1, 0])
    images = id_images(5)

    def transform(x):  # after the noise: doubles background and value
        return 2 * x

    def predict(x):
        ids = ids_of(x / 2)
        replaced = (x == 2.0).flatten(1).sum(1)
        return torch.where(replaced < thresholds[ids], labels[ids],
                           (labels[ids] + 1) % 10)

    r = N.noise_score(predict, images, labels, value=1.0,
                      transform=transform, batch_size=2)
    # counts 0, 39, 78, 117, 156, 196, 235, ...: T=0 never, T=40 two
    # levels, T=118 four, T=200 six, T=393 all eleven
    assert r["correct"] == [4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1]
    assert r["score"] == 0 + 2 + 4 + 6 + 11
    # custom levels, in the order given
    r = N.noise_score(predict, images, labels, [0.5, 0.0, 0.1], value=1.0,
                      transform=transform)
    assert r["correct"] == [1, 4, 3] and r["max_score"] == 15


def test_score_is_seeded_and_statistically_right():
    # right iff pixel 0 is not replaced: P = 1 - count / 784 per image
    n = 400
    images = torch.zeros(n, 1, 28, 28)
    labels = torch.zeros(n, dtype=torch.long)

    def predict(x):
        return (x.flatten(1)[:, 0] != 0).long()

    a = N.noise_score(predict, images, labels, batch_size=128, seed=5)
    b = N.noise_score(predict, images, labels, batch_size=128, seed=5)
    c = N.noise_score(predict, images, labels, batch_size=128, seed=6)
    g = torch.Generator().manual_seed(5)
    d = N.noise_score(predict, images, labels, batch_size=128, generator=g)
    assert a == b == d
    assert a["correct"] != c["correct"]
    assert a["correct"][0] == n
    for k, got in zip(PAPER_COUNTS, a["correct"]):
        q = k / 784
        sd = (n * q * (1 - q)) ** 0.5
        assert abs(got - n * (1 - q)) <= 5 * sd + 1e-9


def test_noise_score_bad_inputs():
    x, y = torch.rand(4, 784), torch.tensor([0, 1, 2, 3])

    def ok(z):
        return torch.zeros(len(z), dtype=torch.long)

    with pytest.raises(TypeError, match="predict"):
        N.noise_score(None, x, y)
    with pytest.raises(TypeError, match="transform"):
        N.noise_score(ok, x, y, transform=3)
    with pytest.raises(TypeError, match="images"):
        N.noise_score(ok, x.long(), y)
    with pytest.raises(ValueError, match="images"):
        N.noise_score(ok, torch.rand(0, 784), torch.zeros(0).long())
    with pytest.raises(TypeError, match="labels"):
        N.noise_score(ok, x, y.float())
    with pytest.raises(ValueError, match="labels"):
        N.noise_score(ok, x, y[:3])
    with pytest.raises(ValueError, match="labels"):
        N.noise_score(ok, x, y[:, None])
    with pytest.raises(ValueError, match="levels"):
        N.noise_score(ok, x, y, [])
    with pytest.raises(ValueError, match=r"levels\[1\]"):
        N.noise_score(ok, x, y, [0.1, 1.2])
    with pytest.raises(TypeError, match="levels"):
        N.noise_score(ok, x, y, 0.1)
    with pytest.raises(ValueError, match="batch_size"):
        N.noise_score(ok, x, y, batch_size=0)
    with pytest.raises(TypeError, match="seed"):
        N.noise_score(ok, x, y, seed=1.5)
    with pytest.raises(TypeError, match="predict"):
        N.noise_score(lambda z: [0] * len(z), x, y)
    with pytest.raises(ValueError, match="predict"):
        N.noise_score(lambda z: torch.zeros(len(z), 3, dtype=torch.long),
                      x, y)
    with pytest.raises(ValueError, match="predict"):
        N.noise_score(lambda z: torch.zeros(len(z) + 1, dtype=torch.long),
                      x, y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda():
    x = torch.full((6, 1, 28, 28), -1.0, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    y = N.replacement_noise(x, 0.35, 1.0, generator=g)
    assert y.device == x.device and changed(x, y).tolist() == [274] * 6
    with pytest.raises(ValueError, match="generator"):
        N.replacement_noise(x, 0.1, generator=torch.Generator())
    labels = torch.arange(6, device="cuda")
    r = N.noise_score(lambda z: labels[:len(z)] * 0 + 2, x, labels,
                      batch_size=6)
    assert r["correct"] == [1] * 11
