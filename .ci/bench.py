#!/usr/bin/env python3
"""Print the sparse-coding benchmarks: ratios measured in one process.

The measurements are sparselib's own (``sparselib.benchmarks``, which
chapter "Sparse coding as optimisation" calls to teach); this command line
is the repository's tooling, not part of the installed library::

    .venv/bin/python .ci/bench.py [--device auto] [--quick]

Encoding: the default ``fista(x, D, lam)`` against SPAMS ``lasso`` and
scikit-learn ``lasso_lars`` on whitened 8x8 natural-image patches, for
batches of 200 to 10,000 and dictionaries of 64 to 256 atoms (random
unit-norm atoms, and atoms learned on other patches), lam = 0.1.
Dictionary learning: time to SPAMS ``trainDL``'s objective after 1, 3 and
10 s on 20,000 patches, 128 atoms, lam = 0.2. k-winners: forward + backward
of ``sl.kwinners`` layers in ReLU units, against a bare ``topk`` threshold
and nupic.torch's threshold path written out (``--only kwinners`` runs
just that table). SPAMS comes from the
``spams-bin`` package (the ``bench`` extra); without it those columns are
skipped, with a message.
"""

from __future__ import annotations

import argparse
import sys

import torch

import sparselib as sl


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def kwinners_table(args) -> None:
    rows = sl.benchmarks.kwinners_speed(repeat=3 if args.quick else 30,
                                        device=args.device)
    print(f"{'k-winners shape':>18} {'k':>5} {'ReLU ms':>8} {'topk x':>7} "
          f"{'nupic path x':>12} {'ours x':>7} {'ours/nupic':>10}")
    for r in rows:
        print(f"{str(r['shape']):>18} {r['k']:>5} "
              f"{r['relu_s'] * 1e3:>8.3f} {r['topk_x']:>7.1f} "
              f"{r['reference_x']:>12.1f} {r['ours_x']:>7.1f} "
              f"{r['ours_vs_reference']:>10.2f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=".ci/bench.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes only (a smoke test)")
    parser.add_argument("--only", choices=("coding", "kwinners"),
                        help="run one of the two benchmarks")
    args = parser.parse_args(argv)
    if args.only != "coding":
        kwinners_table(args)
    if args.only == "kwinners":
        return 0
    spams = sl.benchmarks.have_spams()
    if not spams:
        print("SPAMS not installed (pip install spams-bin): its columns are "
              "skipped")
    g = torch.Generator().manual_seed(0)
    x = sl.data.natural_patches(8, 40_000, generator=g)
    train, test = x[:20_000], x[20_000:]
    batches = (200, 1000) if args.quick else (200, 1000, 10_000)
    atoms = (64, 256) if args.quick else (64, 128, 256)
    print(f"{'D':>9} {'atoms':>5} {'batch':>6} {'fista s':>8} "
          f"{'spams s':>8} {'sklearn s':>9} {'spams/fista':>11} "
          f"{'sklearn/fista':>13} {'gap fista':>9} {'gap spams':>9} "
          f"{'iters':>5} {'L0':>5}")
    for kind in ("random", "learned"):
        for k in atoms:
            if kind == "random":
                D = torch.randn(k, 64, generator=g)
                D /= D.norm(dim=1, keepdim=True)
            else:
                D, _ = sl.coding.learn_dictionary(
                    train, k, 0.1, n_epochs=2, generator=g,
                    progress_bar=False)
            for n in batches:
                r = sl.benchmarks.encoding_vs_references(
                    test[:n], D, 0.1, device=args.device)
                print(f"{kind:>9} {k:>5} {n:>6} {r['t_fista']:>8.3f} "
                      f"{fmt(r['t_spams'], '.3f'):>8} "
                      f"{r['t_sklearn']:>9.2f} "
                      f"{fmt(r['ratio_spams'], '.2f'):>11} "
                      f"{r['ratio_sklearn']:>13.1f} "
                      f"{r['max_gap_fista']:>9.1e} "
                      f"{fmt(r['max_gap_spams'], '.1e'):>9} "
                      f"{r['fista_iterations']:>5} "
                      f"{r['mean_active']:>5.1f}", flush=True)
    if spams:
        dl = sl.benchmarks.dictionary_vs_spams(
            train, 128, 0.2, seconds=(1, 3) if args.quick else (1, 3, 10),
            device=args.device)
        for t, f, r in zip(dl["spams_seconds"], dl["spams_objective"],
                           dl["t_to_reach"]):
            print(f"dictionary learning: SPAMS trainDL {t:.0f} s -> "
                  f"{f:.4f}; ours reaches it in {fmt(r, '.1f')} s")
        print("ours per epoch: " + ", ".join(
            f"{t:.1f} s {f:.4f}" for t, f in
            zip(dl["our_seconds"], dl["our_objective"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
