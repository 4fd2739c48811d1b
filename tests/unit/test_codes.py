"""sparselib.codes: codebooks, damage and recognition, with hand-made cases."""

import pytest
import torch

from sparselib import codes


def test_local_code_is_one_hot():
    book = codes.codebook("local", 5, 8)
    assert torch.equal(book, torch.eye(8)[:5])
    with pytest.raises(ValueError, match="at most 8 items"):
        codes.codebook("local", 9, 8)


def test_dense_and_sparse_weights():
    g = torch.Generator().manual_seed(0)
    assert torch.all(codes.codebook("dense", 10, 64, generator=g).sum(1) == 32)
    assert torch.all(codes.codebook("sparse", 10, 64, 4, generator=g).sum(1)
                     == 4)
    with pytest.raises(ValueError, match="needs a"):
        codes.codebook("sparse", 10, 64)
    with pytest.raises(ValueError, match="kind must be one of 'local', "
                                         "'dense', 'sparse'; got "
                                         "'distributed'"):
        codes.codebook("distributed", 10, 64)
    with pytest.raises(TypeError, match="kind must be a string"):
        codes.codebook(None, 10, 64)
    with pytest.raises(TypeError, match="a must be an integer"):
        codes.codebook("local", 5, 8, 1.0)
    with pytest.raises(TypeError, match="a must be an integer"):
        codes.codebook("sparse", 5, 8, True)
    with pytest.raises(ValueError, match="a must be <= 64"):
        codes.codebook("sparse", 10, 64, 65)


def test_corrupt_drop_only_silences_active_units():
    g = torch.Generator().manual_seed(0)
    x = codes.codebook("dense", 200, 100, generator=g)
    y = codes.corrupt(x, drop=0.3, generator=g)
    assert torch.all(y <= x)  # nothing switched on
    assert (x.sum() - y.sum()) / x.sum() == pytest.approx(0.3, abs=0.02)
    assert torch.equal(codes.corrupt(x), x)


def test_corrupt_flip_rate():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200, 100)
    y = codes.corrupt(x, flip=0.1, generator=g)
    assert y.mean().item() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError,
                       match=r"flip must be a real number in \[0, 1\], "
                             r"got 1\.5"):
        codes.corrupt(x, flip=1.5)
    with pytest.raises(ValueError, match=r"drop .* got -0\.1"):
        codes.corrupt(x, drop=-0.1)
    with pytest.raises(TypeError, match="drop must be a real number"):
        codes.corrupt(x, drop="0.1")
    with pytest.raises(TypeError, match="codes must be a torch.Tensor"):
        codes.corrupt(x.tolist(), drop=0.1)


def test_recognise_hand_made():
    book = torch.tensor([[1., 1, 0, 0, 0, 0],
                         [0., 0, 1, 1, 0, 0],
                         [0., 0, 0, 0, 1, 1]])
    x = torch.tensor([[1., 0, 0, 0, 0, 0],    # half of item 0
                      [0., 0, 1, 1, 1, 0]])   # item 1 plus one noisy bit
    assert codes.recognise(x, book).tolist() == [0, 1]


def test_recognise_uses_hamming_distance_for_unequal_sizes():
    book = torch.tensor([[1., 0, 0, 0], [1., 1, 1, 1]])
    # overlap would pick item 1 (tie on overlap broken by size), Hamming item 0
    assert codes.recognise(torch.tensor([[1., 0, 0, 0]]), book).item() == 0


def test_ties_are_broken_at_random():
    book = codes.codebook("local", 4, 4)
    g = torch.Generator().manual_seed(0)
    picks = codes.recognise(torch.zeros(4000, 4), book, generator=g)
    freq = torch.bincount(picks, minlength=4).float() / 4000
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.03)


def test_local_code_fails_at_chance_when_its_unit_dies():
    book = codes.codebook("local", 10, 10)
    g = torch.Generator().manual_seed(0)
    dead = codes.corrupt(book.repeat(200, 1), drop=1.0, generator=g)
    acc = (codes.recognise(dead, book, generator=g) ==
           torch.arange(10).repeat(200)).float().mean()
    assert acc.item() == pytest.approx(0.1, abs=0.03)


def test_union():
    c = torch.tensor([[1., 0, 0], [0., 0, 1]])
    assert codes.union(c).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2-d"):
        codes.union(torch.ones(3))


def test_dense_code_refuses_another_width():
    with pytest.raises(ValueError, match="dense code has a = n // 2 = 5"):
        codes.codebook("dense", 3, 10, a=2)
