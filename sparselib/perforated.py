"""The real PerforatedAI dendrites, driven by the same loop as ours.

PerforatedAI ("dendritic optimization", the free ``perforatedai`` package
3.2.9 on PyPI, Apache-2.0, a compiled Cython wheel) wraps every
``nn.Linear`` / ``nn.Conv*`` of a model in a ``PAINeuronModule``. When the
validation score has not improved for ``n_epochs_to_switch`` epochs it
reloads the best checkpoint so far and adds one *dendrite set* to every
wrapped layer: set ``j`` is a copy of the layer with all of its parameters
redrawn from ``N(0, 0.01**2)`` (not the layer's own initialisation),
``a_j = sigmoid(d_j(x) + sum_{i<j} v_ij * a_i)``, added to the layer's
output as ``y = layer(x) + sum_j w_j * a_j`` with per-neuron weights
``w_j`` and ``v_ij`` that start at zero. The free version trains the new
sets jointly with everything else by backpropagation (the
"perforated backpropagation" variant is a licensed extra). If a set does
not beat the best score reached before it, PerforatedAI discards it,
reloads the best checkpoint and tries a freshly drawn set
(``max_dendrite_tries`` times in all); then it stops and hands back the
best model it saved.

:class:`PerforatedAI` wraps that machinery in the controller protocol of
:mod:`sparselib.dendrites`, so one training loop
(``dendrites.fit_controlled``) trains the baseline, our own dendrites and
PerforatedAI's::

    model = controller.prepare(model)            # wraps the layers
    model, restructured, complete = controller.step(model, val_accuracy)
    controller.count_parameters(model)           # PerforatedAI's own count
    controller.events                            # [(epoch, "added ...")]
    model = controller.finish(model)             # epochs ran out: best

What the adapter takes care of (all found by reading the package's
shipped sources and running it offline on a CPU):

* **Non-interactive.** Without ``configuration_confirmed`` the package
  opens a terminal dialog (``input()``) before it wraps anything; many of
  its error paths call ``pdb.set_trace()`` (a notebook would hang) and
  then ``sys.exit``. The adapter confirms the configuration, and during
  every call into the package turns ``pdb.set_trace`` and ``input`` into a
  :class:`RuntimeError` and a ``SystemExit`` into a :class:`RuntimeError`
  (the package prints its own explanation first).
* **Its defaults are a smoke test.** ``testing_dendrite_capacity`` is True
  by default: the package then adds a set after *every* epoch, whatever
  the score, and declares training complete after three sets. The adapter
  switches it off, so dendrites are added on stalls only.
* **Files.** The package writes checkpoints (``best_model.pt``,
  ``switch_<k>.pt``, ...) and a ``<name>_config.json`` into a folder
  ``<save_name>`` of the *current working directory*; a ``/`` in the name
  makes it call ``sys.exit``. The adapter changes the working directory to
  its own folder for the duration of each call: a temporary directory by
  default, removed by :meth:`PerforatedAI.cleanup` or when the controller
  is garbage collected.
* **Global state.** Settings live in one global ``PAIConfig`` and the run
  in one global tracker; a run even rewrites settings. ``prepare()``
  installs a fresh configuration and tracker each time, so seeds and
  models can be trained one after another in one process (not two at
  once: the package cannot).
* **Network.** Nothing phones home in a training run: the only network
  code is an optional dashboard (``dashboard_events_enabled``, off by
  default, posts to ``http://localhost:3002``; the adapter keeps it off)
  and explicit Hugging Face upload/download helpers, never called here.
* **matplotlib.** Importing the package switches matplotlib to the
  ``Agg`` backend, and a notebook would stop showing figures (switching
  back afterwards is not enough: the inline figure formatter is gone). The
  adapter makes ``matplotlib.use`` a no-op during the import.
* **Random numbers.** New sets are drawn from PyTorch's global generator;
  :meth:`PerforatedAI.step` draws them inside
  ``torch.random.fork_rng``, seeded from ``seed`` and the epoch, so a run
  is reproducible and the caller's random state is left alone.

Parameter counts. For a wrapped layer with ``P`` weights and biases and
``n`` outputs carrying ``s`` sets, the parameters used by the forward pass
are ``P + s*(P + n) + n*s*(s-1)/2`` (the count of
``sparselib.dendrites.DendriticLayer``). PerforatedAI's own
``count_params`` reports ``n*(s-1)*(s+2)/2`` more: each new set appends a
fresh ``(s, n)`` output-weight matrix and freezes the old ones, which stay
registered (``n*s*(s-1)/2`` stale entries), and for the second and later
sets an unused ``(s-1, n)`` candidate matrix is left behind. It is exact
for one set. A plain ``sum(p.numel() for p in model.parameters())`` counts
``P`` more again per layer: a frozen copy of the original layer
(``dendrite_module.parent_module``), the template each new set is copied
from, which ``count_params`` leaves out by name.

References: PerforatedAI, ``perforatedai`` 3.2.9 (PyPI, Apache-2.0) and
its API documentation and examples (github.com/PerforatedAI); R. Brenner
and L. Itti, "Perforated Backpropagation: A Neuroscience Inspired
Extension to Artificial Neural Networks", arXiv:2501.18018, 2025.

Introduced in the chapter "Dendrites, pruning and what sparsity costs".
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .utils import check_int, check_real, check_probability

__all__ = [
    "PERFORATEDAI_VERSION",
    "INSTALL_HINT",
    "have_perforatedai",
    "perforatedai_version",
    "n_dendrites",
    "PerforatedAI",
]

#: The PerforatedAI release the adapter was written for and tested with.
PERFORATEDAI_VERSION = "3.2.9"
#: The commands that install PerforatedAI, quoted in every ImportError.
INSTALL_HINT = ('pip install "sparselib[dendrites]" (or: pip install '
                'perforatedai==3.2.9)')

# The folder name handed to PerforatedAI as ``save_name`` (no "/" allowed).
_SAVE_NAME = "pai"
# PerforatedAI's default relative improvement thresholds, indexed by the
# number of dendrite sets added so far (the last one is used beyond).
_DEFAULT_THRESHOLDS = (0.001, 0.0001, 0.0)


def have_perforatedai() -> bool:
    """Whether the ``perforatedai`` package can be imported.
    Chapter "Dendrites, pruning and what sparsity costs".

    Returns
    -------
    bool
        True if ``import perforatedai`` succeeds (a cheap import: the
        package's top level loads nothing else).
    """
    try:
        import perforatedai  # noqa: F401
    except ImportError:
        return False
    return True


def perforatedai_version() -> str | None:
    """The installed PerforatedAI version, or None if it is not importable.
    Chapter "Dendrites, pruning and what sparsity costs".

    Returns
    -------
    str or None
        The distribution's version string (``"3.2.9"``), or None when
        :func:`have_perforatedai` is False.
    """
    if not have_perforatedai():
        return None
    from importlib import metadata

    try:
        return metadata.version("perforatedai")
    except metadata.PackageNotFoundError:
        import perforatedai

        return getattr(perforatedai, "__version__", None)


_WARNED_VERSION = False


def _pai():
    """Import PerforatedAI's modules lazily; restore matplotlib's backend.

    Returns
    -------
    types.SimpleNamespace
        ``GPA`` (globals), ``UPA`` (utils) and ``PA`` (modules).

    Raises
    ------
    ImportError
        If ``perforatedai`` is not installed, with the install commands.
    """
    global _WARNED_VERSION
    from types import SimpleNamespace

    try:
        import matplotlib
        backend = dict.__getitem__(matplotlib.rcParams, "backend")
    except ImportError:
        matplotlib = backend = None
    real_use = None
    if matplotlib is not None:
        # importing the tracker calls matplotlib.use("Agg"); in a notebook
        # even switching back loses the inline figure formatter, so the
        # call is made a no-op for the import
        real_use = matplotlib.use
        matplotlib.use = lambda *args, **kwargs: None
    try:
        from perforatedai import globals_perforatedai as gpa
        from perforatedai import modules_perforatedai as pa
        from perforatedai import utils_perforatedai as upa
    except ImportError as err:
        raise ImportError(
            "sparselib.perforated needs the PerforatedAI package "
            f"(perforatedai {PERFORATEDAI_VERSION}); install it with "
            f"{INSTALL_HINT}") from err
    finally:
        if real_use is not None:
            matplotlib.use = real_use
        # should the backend have changed all the same: switch it back
        if matplotlib is not None and \
                dict.__getitem__(matplotlib.rcParams, "backend") != backend:
            import matplotlib.pyplot as plt

            plt.switch_backend(backend)
    version = perforatedai_version()
    if version != PERFORATEDAI_VERSION and not _WARNED_VERSION:
        _WARNED_VERSION = True
        warnings.warn(f"sparselib.perforated was written for perforatedai "
                      f"{PERFORATEDAI_VERSION}, found {version}; it relies "
                      f"on the package's internals and may not work",
                      stacklevel=3)
    return SimpleNamespace(GPA=gpa, UPA=upa, PA=pa)


def _refuse_interaction(*args, **kwargs):
    raise RuntimeError(
        "PerforatedAI asked for interactive input (pdb.set_trace or input) "
        "after an error it detected; see the message it printed above")


@contextlib.contextmanager
def _guarded(directory: str):
    """Run PerforatedAI code in ``directory``, never blocking or exiting.

    Inside the block the working directory is ``directory`` (where the
    package writes its files), ``pdb.set_trace`` and ``input`` raise
    :class:`RuntimeError`, and a ``SystemExit`` is turned into a
    :class:`RuntimeError`. All three are restored on the way out. Not
    thread-safe (the working directory is per process).
    """
    import pdb

    old_cwd = os.getcwd()
    old_trace, old_input = pdb.set_trace, builtins.input
    pdb.set_trace = _refuse_interaction
    builtins.input = _refuse_interaction
    os.chdir(directory)
    try:
        yield
    except SystemExit as exc:
        raise RuntimeError(
            f"PerforatedAI tried to end the process (sys.exit({exc.code!r})) "
            f"after an error it detected; see the message it printed "
            f"above") from exc
    finally:
        os.chdir(old_cwd)
        pdb.set_trace, builtins.input = old_trace, old_input


def _neuron_modules(model, pai) -> list:
    return [m for m in model.modules()
            if isinstance(m, pai.PA.PAINeuronModule)]


def n_dendrites(model: nn.Module) -> int:
    """The number of dendrite sets in a PerforatedAI-wrapped model.
    Chapter "Dendrites, pruning and what sparsity costs".

    Parameters
    ----------
    model : nn.Module
        A model returned by :meth:`PerforatedAI.prepare` or
        :meth:`PerforatedAI.step`.

    Returns
    -------
    int
        The sets each wrapped layer carries (PerforatedAI adds them to all
        layers at once, so the layers agree).

    Raises
    ------
    ImportError
        If PerforatedAI is not installed.
    TypeError
        If ``model`` is not an ``nn.Module``.
    ValueError
        If ``model`` has no PerforatedAI-wrapped layer.
    RuntimeError
        If the wrapped layers carry different numbers of sets.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    pai = _pai()
    counts = {int(m.dendrite_modules_added)
              for m in _neuron_modules(model, pai)}
    if not counts:
        raise ValueError("model has no PerforatedAI-wrapped layer; pass the "
                         "model returned by PerforatedAI.prepare()")
    if len(counts) > 1:
        raise RuntimeError(f"the wrapped layers carry different numbers of "
                           f"dendrite sets: {sorted(counts)}")
    return counts.pop()


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return value


class PerforatedAI:
    """PerforatedAI's dendrites behind the shared controller protocol.
    Chapter "Dendrites, pruning and what sparsity costs".

    Call :meth:`prepare` once on a fresh model (it wraps every Linear /
    Conv layer and resets PerforatedAI's global state), build the
    optimiser on the returned model, and after each epoch call
    :meth:`step` with the validation accuracy; rebuild the optimiser
    whenever it reports ``restructured`` (the parameters are new objects)
    and stop when it reports ``complete``; if the epochs run out first,
    :meth:`finish` loads the best checkpoint. PerforatedAI's settings not
    listed below keep the package's defaults: history-based switching
    (``switch_mode`` ``DOING_HISTORY``), a score averaged over
    ``history_lookback`` epochs, no warm-up after a switch
    (``initial_history_after_switches`` 0), the best score reset at each
    switch, new sets drawn with standard deviation 0.01
    (``candidate_weight_initialization_multiplier``), sigmoid dendrites,
    one candidate at a time. Changed on purpose:
    ``testing_dendrite_capacity`` False (see the module notes),
    ``test_saves`` False (no debugging checkpoint after every epoch),
    graphs off unless asked for, ``silent`` unless asked otherwise, the
    device and dtype taken from the model's parameters.

    Parameters
    ----------
    patience : int, default 10
        Epochs without improvement before a set is added (PerforatedAI's
        ``n_epochs_to_switch``; its default is 10). At least 1.
    max_dendrites : int, default 100
        Stop, keeping the best model, once this many sets were added and
        the last one helped (``max_dendrites``, default 100). 0 makes the
        controller plain early stopping.
    improvement_threshold : float or sequence of float, optional
        Relative margin a score must beat the best by to count as an
        improvement (``improvement_threshold``); a sequence gives one
        margin per number of sets added so far, the last repeating.
        Each in [0, 1). Default ``(0.001, 0.0001, 0.0)``, PerforatedAI's.
    improvement_threshold_raw : float, default 1e-5
        Absolute margin required as well (``improvement_threshold_raw``).
    max_dendrite_tries : int, default 2
        Freshly drawn sets tried after a set that did not help, counting
        the first (``max_dendrite_tries``). At least 1.
    history_lookback : int, default 1
        Epochs the score is averaged over (``history_lookback``).
    seed : int, default 0
        Seeds the draws of new sets: at the step of epoch ``e`` the global
        generator is forked and seeded with ``seed + e``.
    save_dir : str or os.PathLike, optional
        Folder for PerforatedAI's files (created if missing); each
        :meth:`prepare` makes a new ``run-*`` folder inside it, the
        package then writes into its ``pai`` subfolder. None (default): a
        temporary directory, deleted by :meth:`cleanup`.
    graphs : bool, default False
        Let PerforatedAI draw its PNG graphs and CSV files after every
        epoch (its default; slow).
    silent : bool, default True
        PerforatedAI's ``silent`` setting. A few messages are printed
        regardless (e.g. "Resetting committed to initial rate to False"
        at each switch, "[PAI Config] Saved ..." once per run).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type or out of range.
    """

    def __init__(self, patience: int = 10, max_dendrites: int = 100, *,
                 improvement_threshold: float | Sequence[float] =
                 _DEFAULT_THRESHOLDS,
                 improvement_threshold_raw: float = 1e-5,
                 max_dendrite_tries: int = 2, history_lookback: int = 1,
                 seed: int = 0, save_dir: str | os.PathLike | None = None,
                 graphs: bool = False, silent: bool = True):
        self.patience = check_int("patience", patience, minimum=1)
        self.max_dendrites = check_int("max_dendrites", max_dendrites,
                                       minimum=0)
        if isinstance(improvement_threshold, (str, bytes)) or not \
                isinstance(improvement_threshold, Sequence):
            improvement_threshold = [improvement_threshold]
        if len(improvement_threshold) == 0:
            raise ValueError("improvement_threshold must not be empty")
        self.improvement_threshold = [
            check_real("improvement_threshold", t, minimum=0, maximum=1,
                       max_open=True) for t in improvement_threshold]
        self.improvement_threshold_raw = check_real(
            "improvement_threshold_raw", improvement_threshold_raw,
            minimum=0)
        self.max_dendrite_tries = check_int(
            "max_dendrite_tries", max_dendrite_tries, minimum=1)
        self.history_lookback = check_int("history_lookback",
                                          history_lookback, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        if save_dir is not None and \
                not isinstance(save_dir, (str, os.PathLike)):
            raise TypeError(f"save_dir must be a path (str or os.PathLike) "
                            f"or None, got {type(save_dir).__name__}")
        self.save_dir = None if save_dir is None else os.fspath(save_dir)
        self.graphs = _check_bool("graphs", graphs)
        self.silent = _check_bool("silent", silent)
        #: (epoch index, description) of PerforatedAI's decisions.
        self.events: list[tuple[int, str]] = []
        #: The folder PerforatedAI writes into for the current run.
        self.run_dir: str | None = None
        self._tmp = None
        self._workdir = None
        self._epoch = 0
        self._complete = False
        self._placeholder = None

    def __repr__(self) -> str:
        return (f"PerforatedAI(patience={self.patience}, "
                f"max_dendrites={self.max_dendrites}, "
                f"max_dendrite_tries={self.max_dendrite_tries}, "
                f"seed={self.seed})")

    def _configure(self, pai, model):
        gpa = pai.GPA
        # a fresh global configuration and tracker: nothing carries over
        gpa.pc = gpa.PAIConfig()
        gpa.pai_tracker = []
        first = next(model.parameters())
        settings = {
            "configuration_confirmed": True,
            "testing_dendrite_capacity": False,
            "switch_mode": gpa.pc.DOING_HISTORY,
            "n_epochs_to_switch": self.patience,
            "max_dendrites": self.max_dendrites,
            "max_dendrite_tries": self.max_dendrite_tries,
            "improvement_threshold": list(self.improvement_threshold),
            "improvement_threshold_raw": self.improvement_threshold_raw,
            "history_lookback": self.history_lookback,
            "maximizing_score": True,
            "silent": self.silent,
            "device": first.device,
            "use_cuda": first.device.type == "cuda",
            "d_type": first.dtype,
            "test_saves": False,
            "dashboard_events_enabled": False,
        }
        for name, value in settings.items():
            # an unknown name would only be printed and ignored
            if f"_{name}" not in gpa.pc.__dict__:
                raise RuntimeError(f"this PerforatedAI version has no "
                                   f"setting {name!r}")
            getattr(gpa.pc, f"set_{name}")(value)

    def _new_workdir(self) -> str:
        self.cleanup()
        if self.save_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sparselib-pai-")
            return self._tmp.name
        os.makedirs(self.save_dir, exist_ok=True)
        return tempfile.mkdtemp(prefix="run-", dir=self.save_dir)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Wrap the model's layers and start a fresh PerforatedAI run.

        Parameters
        ----------
        model : nn.Module
            A model with at least one ``nn.Linear`` / ``nn.Conv1d/2d/3d``
            (what PerforatedAI wraps by default) and no attribute named
            ``module`` (PerforatedAI takes that for a DataParallel
            wrapper and refuses). Its parameters' device and dtype become
            PerforatedAI's.

        Returns
        -------
        nn.Module
            The wrapped model; train this one.

        Raises
        ------
        ImportError
            If PerforatedAI is not installed.
        TypeError
            If ``model`` is not an ``nn.Module``.
        ValueError
            If ``model`` has no parameters or no layer PerforatedAI wraps.
        RuntimeError
            If PerforatedAI reports an error (instead of its pdb prompt).
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")
        if next(model.parameters(), None) is None:
            raise ValueError("model must have parameters")
        pai = _pai()
        self._configure(pai, model)
        self._workdir = self._new_workdir()
        self.run_dir = os.path.join(self._workdir, _SAVE_NAME)
        with _guarded(self._workdir):
            model = pai.UPA.perforate_model(
                model, save_name=_SAVE_NAME, making_graphs=self.graphs,
                maximizing_score=True)
        if not _neuron_modules(model, pai):
            raise ValueError("model has no layer PerforatedAI wraps (Linear "
                             "or Conv1d/2d/3d)")
        # PerforatedAI reads the learning rate from an optimiser registered
        # with it; the loop owns the real one, so it gets a stand-in
        self._placeholder = torch.optim.SGD(
            [nn.Parameter(torch.zeros(1))], lr=0.0)
        self.events = []
        self._epoch = 0
        self._complete = False
        return model

    def step(self, model: nn.Module, score: float
             ) -> tuple[nn.Module, bool, bool]:
        """Report one epoch's validation accuracy to PerforatedAI.

        Parameters
        ----------
        model : nn.Module
            The model returned by :meth:`prepare` or the previous step.
        score : float
            The epoch's validation accuracy, in [0, 1] (higher is better).

        Returns
        -------
        model : nn.Module
            The model to train next (the same object, restructured in
            place when ``restructured``).
        restructured : bool
            PerforatedAI reloaded a checkpoint and changed the parameters
            (added or redrew a set, or restored the best model): rebuild
            the optimiser.
        complete : bool
            Training is over; ``model`` is the best model PerforatedAI
            saved (weights and sets).

        Raises
        ------
        ImportError
            If PerforatedAI is not installed.
        TypeError, ValueError
            For a bad ``score`` or a model without wrapped layers.
        RuntimeError
            If :meth:`prepare` was not called, the run is already
            complete, or PerforatedAI reports an error.
        """
        if self._workdir is None:
            raise RuntimeError("call prepare(model) before step()")
        if self._complete:
            raise RuntimeError("the run is complete; call prepare() to "
                               "start another")
        score = check_probability("score", score)
        before = n_dendrites(model)
        pai = _pai()
        tracker = pai.GPA.pai_tracker
        if tracker.member_vars.get("optimizer_instance") is None:
            tracker.set_optimizer_instance(self._placeholder)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + self._epoch)
            with _guarded(self._workdir):
                model, restructured, complete = \
                    tracker.add_validation_score(score, model)
        restructured, complete = bool(restructured), bool(complete)
        after = n_dendrites(model)
        if complete:
            self.events.append(
                (self._epoch, f"complete: restored the best model "
                              f"({after} dendrite sets)"))
        elif restructured and after > before:
            self.events.append((self._epoch, f"added dendrites {after}"))
        elif restructured:
            self.events.append(
                (self._epoch, f"redrew dendrites {after} (restored the "
                              f"best model, the last set did not help)"))
        self._epoch += 1
        self._complete = complete
        return model, restructured, complete

    def finish(self, model: nn.Module) -> nn.Module:
        """Load PerforatedAI's best checkpoint when the epochs run out.

        ``fit_controlled`` calls this when ``max_epochs`` ends a run that
        PerforatedAI had not completed; the model then gets the weights and
        the dendrite sets of the best epoch, as after a completion. Does
        nothing before :meth:`prepare` or after a completed run.

        Parameters
        ----------
        model : nn.Module
            The model returned by the last :meth:`step`.

        Returns
        -------
        nn.Module
            The same object, holding the best checkpoint.

        Raises
        ------
        RuntimeError
            If PerforatedAI reports an error.
        """
        if self._workdir is None or self._complete:
            return model
        pai = _pai()
        with _guarded(self._workdir):
            model = pai.UPA.load_system(model, _SAVE_NAME, "best_model",
                                        switch_call=True)
        self._complete = True
        self.events.append(
            (max(self._epoch - 1, 0), f"restored the best model "
                                      f"({n_dendrites(model)} dendrite "
                                      f"sets)"))
        return model

    def count_parameters(self, model: nn.Module) -> int:
        """PerforatedAI's parameter count (``UPA.count_params``).

        Parameters
        ----------
        model : nn.Module
            A wrapped model.

        Returns
        -------
        int
            The number of distinct parameters, leaving out the template
            copies (``parent_module``) but counting the frozen output
            weights of earlier sets (see the module notes).

        Raises
        ------
        ImportError
            If PerforatedAI is not installed.
        TypeError
            If ``model`` is not an ``nn.Module``.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")
        return int(_pai().UPA.count_params(model))

    def cleanup(self) -> None:
        """Delete the temporary folder of the current run, if there is one.

        Folders inside a ``save_dir`` given by the user are kept.
        """
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
