"""Sparse autoencoders: one encoder, one decoder, a choice of sparsity.

:class:`SparseAutoencoder` maps ``x`` ``(batch, *in_shape)`` to hidden
activations ``h`` ``(batch, n_hidden)`` and back to ``x_hat`` (the shape of
``x``). Its sparsity comes from one of

* ``"kl"`` -- sigmoid units and UFLDL's penalty
  ``beta * sum_j KL(rho || rho_hat_j)`` (:func:`sparselib.losses.kl_sparsity`);
* ``"l1"`` -- ReLU units and ``lam * mean_batch sum_j |h_j|``
  (:func:`sparselib.losses.l1_activity`);
* ``"topk"`` -- keep the ``k`` largest pre-activations, ReLU, zero the rest
  (:func:`sparselib.layers.topk_relu`): exactly ``k`` active units, no
  penalty. Latents that have not fired for ``dead_after`` examples count as
  dead; ``aux_k`` turns on the AuxK loss of Gao et al. (2024), which asks
  the ``aux_k`` largest dead latents to reconstruct the residual;
* ``"none"`` -- a plain autoencoder (sigmoid units).

Encoder and decoder are :class:`torch.nn.Linear` (``layer="linear"``) or
:class:`sparselib.layers.NdLinear` (``layer="ndlinear"``, with
``hidden_shape`` a tuple of as many axes as ``in_shape``). An optional
weight decay ``weight_decay * 1/2 sum W^2`` completes UFLDL's objective.

:meth:`SparseAutoencoder.loss` returns ``(total, logs)``, the form that
:func:`sparselib.train.fit` expects.

Introduced in the chapter "Sparse autoencoders".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import NdLinear, _shape, topk_relu
from .losses import (_kl_bernoulli, _normalized_mse, l1_activity,
                     reconstruction_loss, weight_decay)
from .utils import (check_choice, check_int, check_probability, check_real,
                    check_tensor)

__all__ = ["SparseAutoencoder", "SPARSITIES"]

#: The sparsity mechanisms :class:`SparseAutoencoder` knows.
SPARSITIES = ("kl", "l1", "topk", "none")

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu,
                None: lambda z: z}


class SparseAutoencoder(nn.Module):
    """An autoencoder with one hidden layer and a chosen sparsity.

    Chapter "Sparse autoencoders".

    Parameters
    ----------
    in_shape : int or tuple of int
        The shape of one input (e.g. ``784`` or ``(28, 28)``). Inputs may
        also be given flattened.
    hidden_shape : int or tuple of int
        The hidden layer (a tuple with as many axes as ``in_shape`` for
        ``layer="ndlinear"``).
    sparsity : str, default "kl"
        One of :data:`SPARSITIES`.
    layer : {"linear", "ndlinear"}
        The layer type of encoder and decoder.
    rho, beta : float
        Target mean activation in (0, 1) and weight of the KL penalty
        (``sparsity="kl"``).
    lam : float
        Weight of the L1 penalty (``sparsity="l1"``).
    k : int, optional
        Active units per input (``sparsity="topk"``),
        ``1 <= k <= n_hidden``.
    weight_decay : float, default 0
        Weight of ``1/2 sum W^2`` over the weight matrices (written
        omega in the book's notation).
    output : {"sigmoid", None}
        ``"sigmoid"`` (inputs in [0, 1]) or ``None`` (linear output).
    recon : {"mse", "half_sum"}
        See :func:`sparselib.losses.reconstruction_loss`.
    aux_k, aux_alpha, dead_after : optional
        AuxK for ``"topk"``: number of dead latents used, weight of their
        loss, and how many training examples without firing make a latent
        dead (default: 8 times ``n_hidden``).
    tied_init : bool, default False
        Start with the decoder weight equal to the encoder weight's
        transpose (``layer="linear"``), a remedy against dead latents
        (Gao et al. 2024). The weights are not tied during training.
    """

    def __init__(self, in_shape, hidden_shape, *, sparsity: str = "kl",
                 layer: str = "linear", rho: float = 0.05, beta: float = 3.0,
                 lam: float = 1e-3, k: int | None = None,
                 weight_decay: float = 0.0, output: str | None = "sigmoid",
                 recon: str = "mse", aux_k: int | None = None,
                 aux_alpha: float = 1 / 32, dead_after: int | None = None,
                 tied_init: bool = False):
        super().__init__()
        check_choice("sparsity", sparsity, SPARSITIES)
        check_choice("layer", layer, ("linear", "ndlinear"))
        if output is not None:
            check_choice("output", output, ("sigmoid",))
        check_choice("recon", recon, ("mse", "half_sum"))
        self.in_shape = _shape("in_shape", in_shape)
        self.hidden_shape = _shape("hidden_shape", hidden_shape)
        self.n_inputs = math.prod(self.in_shape)
        self.n_hidden = math.prod(self.hidden_shape)
        self.sparsity, self.layer = sparsity, layer
        self.output, self.recon = output, recon
        self.rho = check_probability("rho", rho, open_low=True,
                                     open_high=True)
        self.beta = check_real("beta", beta, minimum=0)
        self.lam = check_real("lam", lam, minimum=0)
        self.weight_decay = check_real("weight_decay", weight_decay,
                                       minimum=0)
        if sparsity == "topk":
            if k is None:
                raise ValueError("sparsity='topk' needs k (active units per "
                                 "input)")
            self.k = check_int("k", k, minimum=1, maximum=self.n_hidden)
        elif k is not None:
            raise ValueError(f"k is only used with sparsity='topk', not "
                             f"{sparsity!r}")
        else:
            self.k = None
        self.hidden_activation = {"kl": "sigmoid", "none": "sigmoid",
                                  "l1": "relu", "topk": None}[sparsity]
        if layer == "linear":
            self.encoder = nn.Linear(self.n_inputs, self.n_hidden)
            self.decoder = nn.Linear(self.n_hidden, self.n_inputs)
        else:
            if len(self.hidden_shape) != len(self.in_shape):
                raise ValueError(
                    f"layer='ndlinear' needs hidden_shape with as many axes "
                    f"as in_shape {self.in_shape}; got {self.hidden_shape}")
            self.encoder = NdLinear(self.in_shape, self.hidden_shape)
            self.decoder = NdLinear(self.hidden_shape, self.in_shape)
        if tied_init:
            if layer != "linear":
                raise ValueError("tied_init needs layer='linear'")
            with torch.no_grad():
                self.decoder.weight.copy_(self.encoder.weight.T)
        self.aux_k = None
        if aux_k is not None:
            if sparsity != "topk":
                raise ValueError("aux_k (AuxK) needs sparsity='topk'")
            if output is not None:
                raise ValueError("aux_k (AuxK) needs a linear output "
                                 "(output=None)")
            self.aux_k = check_int("aux_k", aux_k, minimum=1,
                                   maximum=self.n_hidden)
        self.aux_alpha = check_real("aux_alpha", aux_alpha, minimum=0)
        self.dead_after = check_int(
            "dead_after", 8 * self.n_hidden if dead_after is None
            else dead_after, minimum=1)
        # Examples seen since each latent last fired (training only).
        self.register_buffer("since_fired",
                             torch.zeros(self.n_hidden, dtype=torch.long))

    # -- shapes ------------------------------------------------------------
    def _as_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_tensor(name, x)  # shape checks only: this runs every step
        flat = x.ndim == 2 and x.shape[1] == self.n_inputs
        full = tuple(x.shape[1:]) == self.in_shape
        if not (flat or full) or x.shape[0] == 0:
            raise ValueError(
                f"{name} must have shape (batch, {self.n_inputs}) or "
                f"(batch, {', '.join(map(str, self.in_shape))}); got "
                f"{tuple(x.shape)}")
        if self.layer == "linear":
            return x.reshape(x.shape[0], self.n_inputs)
        return x.reshape(x.shape[0], *self.in_shape)

    # -- the maps ----------------------------------------------------------
    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output before the nonlinearity, ``(batch, n_hidden)``."""
        return self.encoder(self._as_input(x)).reshape(x.shape[0], -1)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """The hidden nonlinearity (sigmoid, ReLU or TopK) applied to ``z``."""
        if self.sparsity == "topk":
            return topk_relu(z, self.k)
        return _ACTIVATIONS[self.hidden_activation](z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden activations ``h`` ``(batch, n_hidden)``."""
        return self.activate(self.preactivation(x))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Decode ``h`` ``(batch, n_hidden)`` to ``(batch, *in_shape)``."""
        check_tensor("h", h)
        if h.ndim != 2 or h.shape[1] != self.n_hidden:
            raise ValueError(f"h must have shape (batch, {self.n_hidden}); "
                             f"got {tuple(h.shape)}")
        hh = h if self.layer == "linear" else h.reshape(h.shape[0],
                                                         *self.hidden_shape)
        out = self.decoder(hh)
        if self.output == "sigmoid":
            out = torch.sigmoid(out)
        return out.reshape(h.shape[0], *self.in_shape)

    def forward(self, x: torch.Tensor):
        """``(x_hat, h)``: the reconstruction, shaped like ``x``, and ``h``."""
        h = self.encode(x)
        return self.decode(h).reshape(x.shape), h

    # -- the objective -----------------------------------------------------
    def penalty(self, h: torch.Tensor) -> torch.Tensor:
        """The unweighted sparsity penalty of ``h`` (0 for TopK and none)."""
        if self.sparsity == "kl":
            # kl_sparsity(h, rho) without its check that rho_hat lies in
            # [0, 1] (true of sigmoid units; the check would read h on
            # every training step)
            return _kl_bernoulli(self.rho, h.mean(dim=0)).sum()
        if self.sparsity == "l1":
            return l1_activity(h)
        return h.new_zeros(())

    def dead_mask(self) -> torch.Tensor:
        """Latents that have not fired in the last ``dead_after`` training
        examples, ``(n_hidden,)`` bool."""
        return self.since_fired >= self.dead_after

    def loss(self, x: torch.Tensor):
        """``(total, logs)`` for a batch ``x``.

        ``total = recon + beta * KL`` (or ``+ lam * L1``) ``+ weight_decay *
        1/2 sum W^2 + aux_alpha * AuxK``. ``logs`` has ``recon``,
        ``penalty`` (unweighted), ``l0`` (mean active units) and, when used,
        ``decay`` and ``aux``, as detached 0-d tensors (read back by
        :func:`sparselib.train.fit` once per epoch, not once per step). In
        training mode it also updates the dead-latent counters.
        """
        z = self.preactivation(x)
        h = self.activate(z)
        x_hat = self.decode(h)
        target = self._as_input(x).reshape(x_hat.shape)
        rec = reconstruction_loss(x_hat, target, self.recon)
        pen = self.penalty(h)
        weight = {"kl": self.beta, "l1": self.lam}.get(self.sparsity, 0.0)
        total = rec + weight * pen
        logs = {"recon": rec.detach(), "penalty": pen.detach(),
                "l0": (h != 0).sum(dim=1).float().mean().detach()}
        if self.weight_decay:
            dec = weight_decay(self)
            total = total + self.weight_decay * dec
            logs["decay"] = dec.detach()
        if self.training and self.sparsity == "topk":
            with torch.no_grad():
                fired = (h != 0).any(dim=0)
                self.since_fired += x.shape[0]
                self.since_fired.masked_fill_(fired, 0)
        if self.aux_k is not None:
            aux = self._aux_loss(z, x_hat, target)
            total = total + self.aux_alpha * aux
            logs["aux"] = aux.detach()
        return total, logs

    def _aux_loss(self, z, x_hat, target, host_count=None):
        # host_count: count the dead units on the host (free on the CPU);
        # off the CPU a fixed k and a mask avoid a read-back every step.
        # Both give the same value and gradients (tests/unit).
        if host_count is None:
            host_count = z.device.type == "cpu"
        dead = self.dead_mask()
        if host_count:
            n_dead = int(dead.sum())
            if n_dead == 0:
                return z.new_zeros(())
            k = min(self.aux_k, n_dead)
        else:  # no host read per step: fixed k, then zeroed when none died
            k = min(self.aux_k, z.shape[1])
        zd = z.masked_fill(~dead, float("-inf"))
        vals, idx = zd.topk(k, dim=1)
        # a masked (alive) unit picked when fewer than k are dead gets
        # relu(-inf) = 0, the same as not picking it
        h_aux = torch.zeros_like(z).scatter(1, idx, torch.relu(vals))
        # The decoder's linear part: decode(h) - decode(0).
        e_hat = self.decode(h_aux) - self.decode(torch.zeros_like(h_aux))
        e = (target - x_hat).detach()
        # normalized_mse without its value check (0 for a residual of
        # variance 0, e.g. a batch of one, instead of an error)
        aux = _normalized_mse(e_hat.flatten(1), e.flatten(1))
        return aux if host_count else aux * dead.any()

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def features(self, which: str = "decoder") -> torch.Tensor:
        """Each hidden unit's weights as an input-shaped image.

        ``"decoder"``: the output pattern unit ``j`` adds,
        ``(n_hidden, *in_shape)``; ``"encoder"``: the input pattern it
        responds to. For NdLinear the dense equivalent is used.
        """
        check_choice("which", which, ("decoder", "encoder"))
        mod = self.decoder if which == "decoder" else self.encoder
        W = mod.weight if isinstance(mod, nn.Linear) else \
            mod.dense_equivalent()[0]
        W = W.detach()
        if which == "decoder":
            W = W.T
        return W.reshape(self.n_hidden, *self.in_shape)

    def extra_repr(self) -> str:
        s = f"sparsity={self.sparsity!r}, layer={self.layer!r}"
        if self.sparsity == "kl":
            s += f", rho={self.rho}, beta={self.beta}"
        elif self.sparsity == "l1":
            s += f", lam={self.lam}"
        elif self.sparsity == "topk":
            s += f", k={self.k}"
        return s
