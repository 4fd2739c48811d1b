#!/usr/bin/env python3
"""Print the sparse-coding benchmarks: ratios measured in one process.

The measurements are sparselib's own (``sparselib.benchmarks``, which
chapter "Sparse coding as optimisation" calls to teach); this command line
is the repository's tooling, not part of the installed library::

    .venv/bin/python .ci/bench.py [--device auto] [--batch 2000]
                                  [--patches 20000]
"""

from __future__ import annotations

import argparse
import sys

import torch

import sparselib as sl


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=".ci/bench.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--patches", type=int, default=20_000)
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x = sl.data.natural_patches(8, args.patches, generator=g)
    D = torch.randn(128, 64, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    enc = sl.benchmarks.encoding_vs_lars(x[:args.batch], D, 0.2,
                                         device=args.device)
    print(f"encoding {args.batch} patches: sklearn lasso_lars "
          f"{enc['t_sklearn']:.3f} s, FISTA ({enc['n_iter']} it., a count "
          f"found knowing LARS's objective) {enc['t_fista']:.3f} s on "
          f"{enc['device']}: {enc['ratio']:.1f}x (objective gap "
          f"{enc['rel_gap']:+.1e})")
    dl = sl.benchmarks.dictionary_vs_minibatch(x, 128, 0.2,
                                               device=args.device)
    print(f"dictionary learning: sklearn MiniBatchDictionaryLearning "
          f"{dl['t_sklearn']:.1f} s, ours {dl['t_ours']:.1f} s to the same "
          f"objective ({dl['epochs_ours']} epochs, reached={dl['reached']}):"
          f" ratio {dl['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
