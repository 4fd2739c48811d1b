"""sparselib: the library behind *sparse-book*, an executable textbook on
sparse coding and sparse representations in neural networks.

Every chapter does ``import sparselib as sl``. The modules, each with one
purpose:

==================  ===========================================================
``utils``           scale, device and seed of a run, argument checks
``sdr``             SDR theory: capacity, exact match probability, Monte Carlo
``codes``           local / dense / sparse codebooks, damage, recognition
``coding``          sparse coding: ISTA, FISTA, LISTA, dictionary learning
``layers``          NdLinear, nearest Kronecker product, TopK, conv decoders
``kwinners``        k-winners-take-all layers with boosting and duty cycles
``embedder``        binary SDR embedder: kWTA codes, triplet loss, centroids
``information``     mutual information in bits: binning, KSG, MINE
``sparse_weights``  Linear / Conv2d layers with a fixed sparse weight mask
``noise``           replacement noise and the noise score of sparse networks
``sparse_cnn``      CNNs of "How Can We Be So Dense?" and their training
``dendrites``       artificial dendrite sets, their schedule, a shared loop
``perforated``      PerforatedAI's dendrites behind the same schedule API
``pruning``         magnitude pruning, lottery tickets, SET and RigL
``costs``           what sparsity costs: sparse kernels, bytes, latency
``losses``          reconstruction losses, L1 and KL sparsity penalties
``autoencoders``    sparse autoencoders: KL, L1, TopK (AuxK); Linear or NdLinear
``classifiers``     MLP / CNN / joint conv autoencoder with L1 on their activity
``metrics``         L0, AVR, population / lifetime / Hoyer sparsity, entropy
``data``            MNIST and Fashion-MNIST from ``$SPARSELIB_DATA``
``speech``          Google Speech Commands: log-mel inputs, splits, noise
``train``           a small training loop with a progress bar and a history
``plot``            the book's figure style and plotting helpers
``widgets``         explorers that are safe to run headless
``timing``          fair wall-clock measurements (median, CUDA sync)
``benchmarks``      speed ratios against SPAMS, scikit-learn, nupic-style kWTA
==================  ===========================================================

``python -m sparselib`` prints this list, importing every module. The
book's own tooling (running the chapters, their goldens and freshness, the
benchmark command line) lives in the repository's ``.ci/`` folder, not here.

Notation, shared by code and maths (see the book's notation page):
``x`` inputs ``(batch, n_inputs)``; ``D`` a dictionary ``(n_atoms, n_inputs)``
with atoms as rows, so that ``x ≈ a @ D`` (scikit-learn's convention);
``a`` codes ``(batch, n_atoms)``; ``h`` hidden activations
``(batch, n_units)``; ``lam`` the L1 weight; ``k`` the number of winners;
``n_iter`` iterations. For binary codes: ``n`` bits, ``a`` of them active,
stored patterns of ``s`` bits, match threshold ``theta``.

Everything is device-agnostic (tensors are made on the device of their
inputs) and works under autograd and ``torch.no_grad``.
"""

from . import (autoencoders, benchmarks, classifiers, codes, coding, costs,
               data, dendrites, embedder, information, kwinners, layers,
               losses, metrics, noise, perforated, plot, pruning, sdr,
               sparse_cnn, sparse_weights, speech, timing, train, utils,
               widgets)
from .utils import (RunConfig, get_device, glue, progress, resolve_scale,
                    sci, seed_everything, setup)

__version__ = "0.1.0"

__all__ = [
    "autoencoders", "benchmarks", "classifiers", "codes", "coding", "costs",
    "data", "dendrites", "embedder", "information", "kwinners", "layers",
    "losses", "metrics", "noise", "perforated", "plot", "pruning", "sdr",
    "sparse_cnn",
    "sparse_weights", "speech", "timing", "train", "utils",
    "widgets",
    "RunConfig", "get_device", "glue", "progress", "resolve_scale",
    "sci", "seed_everything",
    "setup",
    "__version__",
]
