"""Artificial dendrites: sets of extra units added when training stalls.

Brenner and Itti's "Perforated Backpropagation" gives each artificial
neuron a few *dendrites*: extra non-linear units that feed the neuron's
pre-activation. The free ``perforatedai`` package (3.2.9) does it this way,
re-derived here in our own code:

* every ``Linear`` or ``Conv2d`` layer is wrapped; the wrapper starts with
  no dendrites and computes exactly what the layer computed;
* when the validation score has stalled for a number of epochs, one
  *dendrite set* is added to every wrapped layer: a freshly initialised
  copy ``d_j`` of the layer (same shape, PyTorch's default
  initialisation), squashed by a sigmoid, ``a_j = sigmoid(d_j(x) + sum_{i
  < j} v_ij * a_i)`` -- later sets also see the earlier ones -- and added
  to the layer's output through one weight per output neuron (per output
  channel for a convolution), ``y = layer(x) + sum_j w_j * a_j``;
* ``w_j`` and ``v_ij`` start at zero, so adding a set does not change the
  network's output at that moment; training (plain backpropagation, jointly
  with everything else, as in the free package) then moves them away from
  zero. The paper's own method -- train the dendrites separately to
  correlate with the neurons' remaining error, then freeze them -- is the
  package's licensed variant and is not built here.

Parameter cost. A layer with ``P`` parameters (weight and bias) and
``n_out`` outputs gains, with its ``j``-th set (``j = 1, 2, ...``), a copy
of itself (``P``), the output weights ``w_j`` (``n_out``) and the weights
``v_ij`` from each of the ``j - 1`` earlier sets (``(j - 1) n_out``). After
``s`` sets it holds ``P + s (P + n_out) + n_out s (s - 1) / 2`` parameters:
one set more than doubles a layer.

* :class:`DendriticLayer` -- the wrapper, with
  :meth:`~DendriticLayer.add_set` and :meth:`~DendriticLayer.remove_sets`;
* :func:`dendritize`, :func:`dendritic_layers`, :func:`add_dendrite_sets`
  -- the same for every matching layer of a model;
* :class:`EarlyStopping` and :class:`DendriteSchedule` -- *controllers*
  that decide after each epoch, from the validation score, whether to stop,
  or to add a set (see the protocol below);
* :func:`fit_controlled` -- one training loop for every controller, so the
  baseline, our dendrites and PerforatedAI's (through an adapter following
  the same protocol) are trained identically.

The controller protocol. A controller has

* ``prepare(model) -> model``: called once before training (it may wrap
  layers and return a new module);
* ``step(model, score) -> (model, restructured, complete)``: called after
  each epoch with that epoch's validation score (higher is better);
  ``restructured`` means the parameters changed (the loop rebuilds its
  optimiser), ``complete`` means stop now, and then the returned model is
  the best one seen, in state and structure;
* ``count_parameters(model) -> int``: the honest total parameter count;
* ``events``: a list of ``(epoch, text)`` pairs, ``epoch`` counted from 0
  (an index into :attr:`ControlledRun.val_acc`), e.g. ``(12, "added set
  1")``.

Optionally ``finish(model) -> model``: what to return when the epochs run
out before ``complete`` (both controllers here restore their best model);
:func:`fit_controlled` calls it when present.

References: R. Brenner and L. Itti, "Perforated Backpropagation: A
Neuroscience Inspired Extension to Artificial Neural Networks",
arXiv:2501.18018, 2025; the ``perforatedai`` package 3.2.9 (Perforated
AI, Apache-2.0), whose behaviour this module follows.

Introduced in the chapter "Dendrites, pruning and what sparsity costs".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .utils import check_choice, check_int, check_labels, check_real, \
    check_tensor, get_device
from .utils import progress as _progress

__all__ = [
    "DendriticLayer",
    "dendritize",
    "dendritic_layers",
    "add_dendrite_sets",
    "EarlyStopping",
    "DendriteSchedule",
    "ControlledRun",
    "fit_controlled",
]

_WRAPPABLE = (nn.Linear, nn.Conv2d)


def _count(model: nn.Module) -> int:
    """Number of distinct parameters' entries of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _check_generator(generator):
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (the "
                         f"new weights are drawn on the CPU, then moved), "
                         f"got one on {generator.device}")
    return generator


class DendriticLayer(nn.Module):
    """A ``Linear`` or ``Conv2d`` layer to which dendrite sets can be added.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``forward(x)`` returns ``module(x) + sum_j w_j * a_j`` with ``a_j =
    sigmoid(d_j(x) + sum_{i<j} v_ij * a_i)``: ``d_j`` is dendrite set
    ``j``, a plain ``nn.Linear`` / ``nn.Conv2d`` built with the wrapped
    layer's constructor arguments (features or channels, kernel, stride,
    padding, dilation, groups, padding mode, bias, dtype, device) and
    PyTorch's default initialisation drawn from this layer's generator;
    ``w_j`` and ``v_ij`` are vectors of one weight per output neuron (per
    output channel of a convolution, broadcast over height and width) that
    start at zero. With no sets the layer is the wrapped one.

    After ``s`` sets the layer holds ``P + s (P + n_out) + n_out s (s - 1)
    / 2`` parameters, ``P`` the wrapped layer's weight and bias entries
    (see the module docstring). A subclass of ``Linear`` / ``Conv2d`` is
    wrapped as it is, but its dendrites are plain dense layers of the same
    shape (masks or hooks of the wrapped layer are not copied).

    Parameters
    ----------
    module : torch.nn.Linear or torch.nn.Conv2d
        The layer to wrap (kept, not copied, as the attribute ``wrapped``).
    seed : int, default 0
        Seeds this layer's CPU generator, from which every new set's
        weights are drawn.

    Raises
    ------
    TypeError
        If ``module`` is not a ``Linear`` or ``Conv2d``.
    """

    def __init__(self, module: nn.Module, *, seed: int = 0):
        super().__init__()
        if isinstance(module, DendriticLayer) or \
                not isinstance(module, _WRAPPABLE):
            raise TypeError(f"module must be a torch.nn.Linear or "
                            f"torch.nn.Conv2d, got {type(module).__name__}")
        seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)
        self.wrapped = module
        self.dendrites = nn.ModuleList()
        self.out_weights = nn.ParameterList()
        # cross_weights[j - 1] holds v_ij (i < j) for set j >= 1, (j, n_out)
        self.cross_weights = nn.ParameterList()
        self._conv = isinstance(module, nn.Conv2d)
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def n_sets(self) -> int:
        """Number of dendrite sets."""
        return len(self.dendrites)

    @property
    def n_out(self) -> int:
        """Output neurons (``out_features``) or channels (``out_channels``)."""
        return self.wrapped.weight.shape[0]

    def _fresh_copy(self, generator) -> nn.Module:
        m = self.wrapped
        w = m.weight
        bias = m.bias is not None
        if self._conv:
            new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size,
                            stride=m.stride, padding=m.padding,
                            dilation=m.dilation, groups=m.groups, bias=bias,
                            padding_mode=m.padding_mode, dtype=w.dtype)
        else:
            new = nn.Linear(m.in_features, m.out_features, bias=bias,
                            dtype=w.dtype)
        # PyTorch's reset_parameters, drawn from our generator: weight
        # kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in),
        # 1/sqrt(fan_in)), then the bias from the same interval
        with torch.no_grad():
            nn.init.kaiming_uniform_(new.weight, a=math.sqrt(5),
                                     generator=generator)
            if bias:
                fan_in = new.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(new.bias, -bound, bound,
                                 generator=generator)
        return new.to(w.device)

    def add_set(self, generator: torch.Generator | None = None) -> int:
        """Add one dendrite set; the output is unchanged at this moment.

        Parameters
        ----------
        generator : torch.Generator, optional
            CPU generator for the new copy's weights (default: this layer's
            own, seeded by ``seed``).

        Returns
        -------
        int
            The number of sets now.

        Raises
        ------
        TypeError, ValueError
            If ``generator`` is not a CPU ``torch.Generator``.
        """
        generator = _check_generator(generator)
        if generator is None:
            generator = self._generator
        w = self.wrapped.weight
        j = self.n_sets
        self.dendrites.append(self._fresh_copy(generator))
        self.out_weights.append(nn.Parameter(
            torch.zeros(self.n_out, dtype=w.dtype, device=w.device)))
        if j:
            self.cross_weights.append(nn.Parameter(
                torch.zeros(j, self.n_out, dtype=w.dtype, device=w.device)))
        return self.n_sets

    def remove_sets(self, n_keep: int = 0) -> int:
        """Keep the first ``n_keep`` sets, drop the later ones.

        Parameters
        ----------
        n_keep : int, default 0
            Sets to keep, in ``[0, n_sets]``.

        Returns
        -------
        int
            The number of sets now (``n_keep``).

        Raises
        ------
        ValueError
            If ``n_keep`` is negative or above :attr:`n_sets`.
        """
        n_keep = check_int("n_keep", n_keep, minimum=0, maximum=self.n_sets)
        self.dendrites = nn.ModuleList(list(self.dendrites)[:n_keep])
        self.out_weights = nn.ParameterList(list(self.out_weights)[:n_keep])
        self.cross_weights = nn.ParameterList(
            list(self.cross_weights)[:max(n_keep - 1, 0)])
        return self.n_sets

    def _per_neuron(self, v: torch.Tensor) -> torch.Tensor:
        # (n_out,) broadcast over the last dim (Linear) or over H, W (Conv)
        return v.view(-1, 1, 1) if self._conv else v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.wrapped(x)
        acts = []
        for j, d in enumerate(self.dendrites):
            z = d(x)
            if j:
                v = self.cross_weights[j - 1]
                for i, a in enumerate(acts):
                    z = z + self._per_neuron(v[i]) * a
            a = torch.sigmoid(z)
            acts.append(a)
            y = y + self._per_neuron(self.out_weights[j]) * a
        return y

    def extra_repr(self) -> str:
        return f"n_sets={self.n_sets}"


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    return model


def _check_types(types):
    if isinstance(types, type):
        types = (types,)
    try:
        types = tuple(types)
    except TypeError:
        raise TypeError(f"types must be a tuple of layer classes, got "
                        f"{type(types).__name__}") from None
    if not types:
        raise ValueError("types must name at least one layer class")
    for t in types:
        if not isinstance(t, type) or not issubclass(t, _WRAPPABLE):
            raise TypeError(f"types must hold subclasses of torch.nn.Linear "
                            f"or torch.nn.Conv2d, got {t!r}")
    return types


def _targets(module, prefix, types, out):
    """(qualified name, module) of matching layers, not inside wrappers."""
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, DendriticLayer):
            continue
        if isinstance(child, types):
            out.append((full, child))
        else:
            _targets(child, full, types, out)
    return out


def dendritize(model: nn.Module, types=_WRAPPABLE, exclude=(), *,
               seed: int = 0) -> nn.Module:
    """Wrap every matching layer of ``model`` in a :class:`DendriticLayer`.
    Chapter "Dendrites, pruning and what sparsity costs".

    Submodules that are instances of ``types`` are replaced in place (the
    wrapper keeps the original layer as its ``wrapped``), except those
    whose qualified name (as in ``model.named_modules()``, e.g.
    ``"1"`` or ``"features.0"``) is in ``exclude``. Layers already inside a
    :class:`DendriticLayer` are left alone, so calling it twice wraps
    nothing twice. Each wrapper gets its own seed, drawn from a generator
    seeded with ``seed``, in the order of ``model.named_modules()``.

    Parameters
    ----------
    model : torch.nn.Module
        The network, changed in place. If ``model`` itself is a matching
        layer, a new wrapper around it is returned instead.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        Layer classes to wrap (subclasses of ``Linear`` or ``Conv2d``).
    exclude : iterable of str, default ()
        Qualified names of layers to leave unwrapped; each must name a
        submodule of ``model``.
    seed : int, default 0
        Seeds the wrappers' generators.

    Returns
    -------
    torch.nn.Module
        ``model`` (or the wrapper, see above).

    Raises
    ------
    TypeError
        If ``model`` is not a module, or ``types`` holds a class that is
        not a ``Linear`` / ``Conv2d`` subclass, or ``exclude`` is not an
        iterable of strings.
    ValueError
        If a name in ``exclude`` names no submodule of ``model``.
    """
    _check_model(model)
    types = _check_types(types)
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)
    if isinstance(exclude, str) or not isinstance(exclude, Iterable):
        raise TypeError(f"exclude must be an iterable of layer names, got "
                        f"{type(exclude).__name__}")
    exclude = tuple(exclude)
    names = {n for n, _ in model.named_modules()}
    for name in exclude:
        if not isinstance(name, str):
            raise TypeError(f"exclude must hold layer names (str), got "
                            f"{name!r}")
        if name not in names or name == "":
            raise ValueError(f"exclude names {name!r}, which is not a "
                             f"submodule of model")
    gen = torch.Generator().manual_seed(seed)

    def next_seed():
        return int(torch.randint(2 ** 62, (1,), generator=gen))

    if isinstance(model, types) and not isinstance(model, DendriticLayer):
        return DendriticLayer(model, seed=next_seed())
    for name, layer in _targets(model, "", types, []):
        if name in exclude:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, DendriticLayer(layer, seed=next_seed()))
    return model


def dendritic_layers(model: nn.Module) -> list[DendriticLayer]:
    """The :class:`DendriticLayer` modules of ``model``, in module order.
    Chapter "Dendrites, pruning and what sparsity costs".

    Parameters
    ----------
    model : torch.nn.Module
        The network (may itself be a :class:`DendriticLayer`).

    Returns
    -------
    list of DendriticLayer
        Possibly empty.

    Raises
    ------
    TypeError
        If ``model`` is not a module.
    """
    _check_model(model)
    return [m for m in model.modules() if isinstance(m, DendriticLayer)]


def add_dendrite_sets(model: nn.Module) -> nn.Module:
    """Add one dendrite set to every :class:`DendriticLayer` of ``model``.
    Chapter "Dendrites, pruning and what sparsity costs".

    The network's output is unchanged at this moment (the new output
    weights are zero); its parameters are not, so rebuild the optimiser.

    Parameters
    ----------
    model : torch.nn.Module
        A network passed through :func:`dendritize`.

    Returns
    -------
    torch.nn.Module
        ``model``.

    Raises
    ------
    TypeError
        If ``model`` is not a module.
    ValueError
        If ``model`` has no :class:`DendriticLayer`.
    """
    layers = dendritic_layers(model)
    if not layers:
        raise ValueError("model has no DendriticLayer: call dendritize() "
                         "first")
    for layer in layers:
        layer.add_set()
    return model


def _clone_state(model):
    # on the model's device: no read-back to the host
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class EarlyStopping:
    """The baseline controller: no dendrites, stop when the score stalls.
    Chapter "Dendrites, pruning and what sparsity costs".

    Keeps a copy of the state of the best epoch (the first whose score
    exceeds the best before it by more than ``min_delta``); completes
    after ``patience`` consecutive epochs without such an improvement and
    then loads that best state into the model.

    Parameters
    ----------
    patience : int
        Epochs without improvement before stopping (>= 1).
    min_delta : float, default 0.0
        An improvement must exceed the best score by more than this
        (>= 0).

    Raises
    ------
    TypeError, ValueError
        If ``patience`` or ``min_delta`` is not a valid number.
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = check_int("patience", patience, minimum=1)
        self.min_delta = check_real("min_delta", min_delta, minimum=0)
        self._reset()

    def _reset(self):
        self.events: list[tuple[int, str]] = []
        self.epoch = -1
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.stale = 0
        self._best_state = None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Reset the controller's record; return ``model`` unchanged."""
        self._reset()
        return _check_model(model)

    def _improved(self, score):
        return self.best_score is None or \
            score > self.best_score + self.min_delta

    def _remember(self, model, score):
        self.best_score = score
        self.best_epoch = self.epoch
        self._best_state = _clone_state(model)
        self.stale = 0

    def step(self, model: nn.Module, score: float):
        """Record one epoch's validation ``score``; stop after a stall.

        Returns
        -------
        tuple
            ``(model, restructured, complete)``; ``restructured`` is always
            False; when ``complete``, ``model`` holds the best state.
        """
        _check_model(model)
        score = check_real("score", score)
        self.epoch += 1
        if self._improved(score):
            self._remember(model, score)
            return model, False, False
        self.stale += 1
        if self.stale >= self.patience:
            model = self.finish(model)
            return model, False, True
        return model, False, False

    def finish(self, model: nn.Module) -> nn.Module:
        """Load the best state into ``model`` (the run is over)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
            self.events.append((self.epoch, f"restored best (epoch "
                                            f"{self.best_epoch})"))
        return model

    def count_parameters(self, model: nn.Module) -> int:
        """All parameter entries of ``model`` (each shared tensor once)."""
        return _count(_check_model(model))


class DendriteSchedule(EarlyStopping):
    """Add a dendrite set to every layer whenever the score stalls.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``prepare`` wraps the model's layers (:func:`dendritize`). After each
    epoch: a score above the best by more than ``min_delta`` is remembered
    (state and number of sets); after ``patience`` epochs without one the
    schedule decides:

    * no set yet, or the best score has improved since the last set was
      added, and fewer than ``max_sets`` sets: add one set to every layer
      (``restructured``) and count the patience afresh;
    * the last set has not beaten the best score reached before it, or
      ``max_sets`` sets are there already: complete, removing the sets
      added after the best epoch and loading its state.

    Parameters
    ----------
    patience : int
        Epochs without improvement before acting (>= 1).
    max_sets : int
        Most dendrite sets per layer (>= 0; 0 is early stopping on the
        wrapped model).
    min_delta : float, default 0.0
        An improvement must exceed the best score by more than this.
    types : tuple of type, default (nn.Linear, nn.Conv2d)
        Layer classes to wrap (see :func:`dendritize`).
    exclude : iterable of str, default ()
        Qualified names of layers not to wrap.
    seed : int, default 0
        Seeds the dendrites' initial weights.
    grow : bool, default True
        ``False`` makes the schedule its own control: the same decisions
        at the same epochs, and ``restructured`` where a set would be
        added (so a training loop rebuilds its optimiser and trains on),
        but no set is added and the model is not wrapped. It separates
        what the dendrites add from what the longer training and the
        optimiser restarts around them add.

    Raises
    ------
    TypeError, ValueError
        If an argument is not of the documented kind or range.
    """

    def __init__(self, patience: int, max_sets: int, min_delta: float = 0.0,
                 types=_WRAPPABLE, exclude=(), seed: int = 0,
                 grow: bool = True):
        super().__init__(patience, min_delta)
        if not isinstance(grow, bool):
            raise TypeError(f"grow must be True or False, got {grow!r}")
        self.grow = grow
        self.max_sets = check_int("max_sets", max_sets, minimum=0)
        self.types = _check_types(types)
        if isinstance(exclude, str) or not isinstance(exclude, Iterable):
            raise TypeError(f"exclude must be an iterable of layer names, "
                            f"got {type(exclude).__name__}")
        self.exclude = tuple(exclude)
        self.seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)

    def _reset(self):
        super()._reset()
        self.n_sets = 0
        self.best_n_sets = 0
        self._best_before_set: float | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Reset the record and :func:`dendritize` ``model`` (unless
        ``grow`` is False)."""
        self._reset()
        if not self.grow:
            return _check_model(model)
        model = dendritize(_check_model(model), self.types, self.exclude,
                           seed=self.seed)
        if not dendritic_layers(model):
            raise ValueError("model has no layer of the given types to "
                             "give dendrites")
        return model

    def _remember(self, model, score):
        super()._remember(model, score)
        self.best_n_sets = self.n_sets

    def step(self, model: nn.Module, score: float):
        """Record one epoch's validation ``score``; add a set or stop.

        Returns
        -------
        tuple
            ``(model, restructured, complete)``: ``restructured`` when a
            set was added or sets were removed; when ``complete``, ``model``
            is the best one seen (sets and state).
        """
        _check_model(model)
        score = check_real("score", score)
        self.epoch += 1
        if self._improved(score):
            self._remember(model, score)
            return model, False, False
        self.stale += 1
        if self.stale < self.patience:
            return model, False, False
        helped = self.n_sets == 0 or self.best_score > self._best_before_set
        if helped and self.n_sets < self.max_sets:
            self._best_before_set = self.best_score
            self.n_sets += 1
            self.stale = 0
            if self.grow:
                add_dendrite_sets(model)
                self.events.append((self.epoch, f"added set {self.n_sets}"))
            else:
                self.events.append((self.epoch,
                                    f"restart {self.n_sets} (no set)"))
            return model, True, False
        why = "max_sets reached" if helped else \
            f"set {self.n_sets} did not help"
        self.events.append((self.epoch, why))
        changed = self.grow and self.n_sets != self.best_n_sets
        return self.finish(model), changed, True

    def finish(self, model: nn.Module) -> nn.Module:
        """Restore the best model: drop later sets, load its state."""
        if self._best_state is None:
            return model
        for layer in dendritic_layers(model) if self.grow else ():
            layer.remove_sets(self.best_n_sets)
        self.n_sets = self.best_n_sets
        model.load_state_dict(self._best_state)
        what = "sets" if self.grow else "restarts"
        self.events.append((self.epoch, f"restored best (epoch "
                                        f"{self.best_epoch}, "
                                        f"{self.best_n_sets} {what})"))
        return model


@dataclass
class ControlledRun:
    """What :func:`fit_controlled` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The final model: the controller's best one when it completed (or
        has ``finish``), else the last epoch's.
    val_acc : list of float
        Validation accuracy after each epoch.
    n_params : list of int
        ``controller.count_parameters`` of the model evaluated each epoch.
    train_loss : list of float
        Mean training cross-entropy of each epoch.
    events : list of tuple
        The controller's ``(epoch, text)`` events.
    epochs_run : int
        Epochs trained.
    best_val : float
        The highest validation accuracy seen.
    completed : bool
        Whether the controller stopped the run (else the epochs ran out).
    final_n_params : int
        ``controller.count_parameters(model)`` of the returned model.
    """

    model: nn.Module
    val_acc: list = field(default_factory=list)
    n_params: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    events: list = field(default_factory=list)
    epochs_run: int = 0
    best_val: float = float("nan")
    completed: bool = False
    final_n_params: int = 0


def _check_pair(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, y) of tensors, got "
                        f"{type(data).__name__}")
    x, y = data
    check_tensor(f"{name} x", x, floating=True)
    if x.ndim < 2:
        raise ValueError(f"{name} x must hold one input per row, (n, ...); "
                         f"got shape {tuple(x.shape)}")
    check_labels(f"{name} y", y, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError(f"{name} x holds no samples")
    if x.device != y.device:
        raise ValueError(f"{name} x and {name} y must be on one device; got "
                         f"{x.device} and {y.device}")
    if int(y.min()) < 0:  # once, at the entry point
        raise ValueError(f"{name} y must hold class labels >= 0")
    return x, y


@torch.no_grad()
def _correct(model, x, y, batch_size, device):
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum()
    return correct


def _optimizer(kind, model, lr):
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr)


def fit_controlled(model: nn.Module, controller, train: tuple, val: tuple,
                   *, max_epochs: int, batch_size: int = 128,
                   lr: float = 1e-3, optimizer: str = "adam", seed: int = 0,
                   device=None, progress: bool | None = None,
                   eval_batch_size: int = 1024,
                   desc: str = "epochs") -> ControlledRun:
    """Train a classifier epoch by epoch while ``controller`` steers it.
    Chapter "Dendrites, pruning and what sparsity costs".

    ``model = controller.prepare(model)``; then each epoch: one pass over
    ``train`` in shuffled batches (order from ``torch.randperm`` with a CPU
    ``torch.Generator`` seeded once with ``seed``; the last batch may be
    smaller), each batch one optimiser step on the cross-entropy of the
    logits; then the accuracy on ``val`` (eval mode, no gradients), read
    back once, together with the epoch's mean loss; then
    ``controller.step(model, accuracy)``. When it says ``restructured``
    the optimiser is built anew on ``model.parameters()`` (its moments are
    lost, as when PerforatedAI restructures); when it says ``complete`` the
    run ends with its model. If the epochs run out first, the controller's
    ``finish(model)`` is called when it has one.

    The optimiser is ``torch.optim.Adam(lr=lr)`` or plain
    ``torch.optim.SGD(lr=lr)``, with PyTorch's other defaults. The model's
    initial weights are the caller's, the dendrites' come from the
    controller's seed; dropout (if any) draws from torch's global
    generator.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(batch, n_classes)``.
    controller : object
        Has ``prepare``, ``step``, ``count_parameters`` and ``events`` (see
        the module docstring), e.g. :class:`EarlyStopping` or
        :class:`DendriteSchedule`.
    train, val : tuple of torch.Tensor
        ``(x, y)``: floating inputs ``(n, ...)`` and integer labels
        ``(n,)``, on any device (batches are moved to the model's).
    max_epochs : int
        Most epochs to train (>= 1).
    batch_size : int, default 128
        Examples per training step.
    lr : float, default 1e-3
        Learning rate (> 0).
    optimizer : {"adam", "sgd"}, default "adam"
        The optimiser.
    seed : int, default 0
        Seeds the shuffling.
    device : str or torch.device, optional
        Where to train (the model is moved there before ``prepare``);
        default the model's device.
    progress : bool, optional
        Show a bar over the epochs (``None``: yes unless at quick scale).
    eval_batch_size : int, default 1024
        Batch size of the validation passes.
    desc : str, default "epochs"
        The bar's label.

    Returns
    -------
    ControlledRun
        The model and the per-epoch record (plain Python numbers).

    Raises
    ------
    TypeError
        If ``model`` is not a module, ``controller`` lacks a method of the
        protocol, or a data set is not a pair of tensors of the right
        kinds.
    ValueError
        If a number is out of range, a data set's tensors disagree in
        length or device, or a label is negative.
    FloatingPointError
        If an epoch's mean training loss is not finite.
    """
    _check_model(model)
    for attr in ("prepare", "step", "count_parameters"):
        if not callable(getattr(controller, attr, None)):
            raise TypeError(f"controller must have a {attr}() method (the "
                            f"controller protocol); got "
                            f"{type(controller).__name__}")
    if not hasattr(controller, "events"):
        raise TypeError(f"controller must have an events list; got "
                        f"{type(controller).__name__}")
    max_epochs = check_int("max_epochs", max_epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size,
                                minimum=1)
    lr = check_real("lr", lr, minimum=0, min_open=True)
    optimizer = check_choice("optimizer", optimizer, ("adam", "sgd"))
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 63 - 1)
    x, y = _check_pair("train", train)
    xv, yv = _check_pair("val", val)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    else:
        device = get_device(device)
        model.to(device)
    model = controller.prepare(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"controller.prepare must return a torch.nn.Module, "
                        f"got {type(model).__name__}")
    model.to(device)
    opt = _optimizer(optimizer, model, lr)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    run = ControlledRun(model=model)
    bar = _progress(range(max_epochs), desc=desc, enabled=progress)
    try:
        for epoch in bar:
            model.train()
            perm = torch.randperm(n, generator=gen).to(x.device)
            total = torch.zeros((), device=device)
            for lo in range(0, n, batch_size):
                idx = perm[lo:lo + batch_size]
                xb = x[idx].to(device, non_blocking=True)
                yb = y[idx].to(device, non_blocking=True)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * idx.shape[0]
            correct = _correct(model, xv, yv, eval_batch_size, device)
            # the epoch's one read-back
            loss_sum, n_correct = torch.stack(
                [total.double(), correct.double()]).tolist()
            mean_loss = loss_sum / n
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"the mean training loss became {mean_loss} in epoch "
                    f"{epoch} (counted from 0)")
            acc = n_correct / xv.shape[0]
            run.train_loss.append(mean_loss)
            run.val_acc.append(acc)
            run.n_params.append(int(controller.count_parameters(model)))
            run.epochs_run = epoch + 1
            model, restructured, complete = controller.step(model, acc)
            bar.set_postfix({"loss": f"{mean_loss:.4g}",
                             "val": f"{acc:.4f}"}, refresh=False)
            if complete:
                run.completed = True
                break
            if restructured:
                model.to(device)
                opt = _optimizer(optimizer, model, lr)
        if not run.completed and callable(getattr(controller, "finish",
                                                  None)):
            model = controller.finish(model)
    finally:
        bar.close()
    model.eval()
    run.model = model
    run.events = list(controller.events)
    run.best_val = max(run.val_acc)
    run.final_n_params = int(controller.count_parameters(model))
    return run
