"""Google Speech Commands as in "How Can We Be So Dense?": clips, features,
splits and the white-noise score.

Ahmad & Scheinkman (2019) test their sparse networks on a second data set,
Google Speech Commands v0.01 (Warden, 2017): one-second clips of single
spoken words, 16 kHz mono, 16-bit. This module reads the clips and turns
them into the paper's inputs, with torch only (no torchaudio, no librosa at
run time).

What the paper's code does (numenta/htmpapers, folder
``arxiv/how_can_we_be_so_dense``; the facts were read there and re-derived
here, no code is copied):

* **Classes.** Twelve outputs in the order ``unknown, silence, zero, one,
  ..., nine`` (:data:`SPEECH_LABELS`); the ten digits are the keywords
  (:data:`SPEECH_KEYWORDS`). The data preparation moves every other word
  folder aside before training, so the paper's "unknown" class has *no*
  examples (``include_unknown=False``, the default here). With
  ``include_unknown=True`` the other 20 words become "unknown", as the
  paper's dataset class would label them in an unsplit folder.
* **Silence.** Not background noise: an all-zero one-second clip, added to
  the *training* split only, ``int(0.1 * n)`` copies for ``n`` word clips
  (validation and testing: none). Its features are all 0 dB (below).
* **Splits.** The dataset's own ``validation_list.txt`` and
  ``testing_list.txt``; training is every clip in neither list.
* **Length.** Each clip is zero-padded at the end, or cropped, to 16,000
  samples (:func:`fix_length`).
* **Features** (:func:`log_mel_spectrogram`): power spectrogram
  ``|STFT|^2`` with ``n_fft=2048``, hop 512, a periodic Hann window of
  2048 samples, centred frames with reflect padding (librosa 0.6.2's
  default; librosa >= 0.10 pads with zeros instead), 32 Slaney mel bands
  from 0 to 8 kHz (:func:`mel_filterbank`, equal to
  ``librosa.filters.mel``), then decibels relative to the clip's own
  maximum, ``10 log10(max(S, 1e-10)) - 10 log10(max(max S, 1e-10))``,
  floored at 80 dB below the top. 16,000 samples give 1 + 16000 // 512 =
  32 frames, so the input is ``(1, 32, 32)``: mel band by frame, values in
  [-80, 0], no further normalisation.
* **Noise** (:func:`add_noise`): the clip, after fixing its length, is
  blended with white noise, ``(1 - a) * x + a * u`` with ``u`` uniform on
  [-1, 1] (full scale) drawn afresh for every sample, at the eleven levels
  ``a = 0.00, 0.05, ..., 0.50`` (:data:`SPEECH_NOISE_LEVELS`). The *noise
  score* (:func:`speech_noise_score`) sums the correct classifications of
  the test clips over the eleven levels.

The 300-clip subset shipped with the book (10 clips of each of the 30
words) has, with the official lists, 205 training, 44 validation and 51
testing clips; of the keyword clips, 62 / 16 / 22. With every word, "unknown"
is 200 of the 300 clips; ``max_unknown_fraction`` caps its share.
``split_by="random"`` draws a seeded split by speaker (the id before
``_nohash_``), stratified by label, for subsets whose lists are thin.

* :func:`load_wav`, :func:`fix_length` -- a clip as a float tensor.
* :func:`mel_filterbank`, :func:`log_mel_spectrogram` -- the features,
  batched and on any device.
* :func:`add_noise`, :func:`speech_noise_score` -- the noise test.
* :class:`SpeechCommands` (lazy) and :func:`load_speech_commands` (all in
  memory) -- the data, from :func:`speech_commands_root`.
* :func:`sample_weights` -- the paper's class-balancing sampler weights.

References: S. Ahmad and L. Scheinkman, "How Can We Be So Dense? The
Benefits of Using Highly Sparse Representations", arXiv:1903.11257, 2019
(Table 2). P. Warden, "Speech Commands: A public dataset for single-word
speech recognition", 2017 (v0.01). M. Slaney, "Auditory Toolbox", 1998
(the mel scale).

Introduced in the chapter "Noise-robust sparse networks".
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .data import DATA_ENV, data_root
from .noise import _predicted_classes
from .utils import check_choice, check_int, check_labels, \
    check_probability, check_real, check_tensor

__all__ = [
    "SPEECH_KEYWORDS",
    "SPEECH_LABELS",
    "SPEECH_NOISE_LEVELS",
    "SAMPLE_RATE",
    "N_SAMPLES",
    "SPEECH_FOLDERS",
    "SPEECH_COMMANDS_URL",
    "speech_commands_root",
    "download_speech_commands",
    "load_wav",
    "fix_length",
    "mel_filterbank",
    "log_mel_spectrogram",
    "add_noise",
    "SpeechCommands",
    "load_speech_commands",
    "sample_weights",
    "speech_noise_score",
]

#: The paper's ten keywords, the spoken digits.
SPEECH_KEYWORDS = ("zero", "one", "two", "three", "four", "five", "six",
                   "seven", "eight", "nine")
#: The twelve class names in the paper's output order ("unknown" is label
#: 0, "silence" label 1, keyword ``SPEECH_KEYWORDS[i]`` label ``i + 2``).
SPEECH_LABELS = ("unknown", "silence") + SPEECH_KEYWORDS
#: The eleven white-noise levels of the noise score, 0.00, 0.05, ..., 0.50.
SPEECH_NOISE_LEVELS = tuple(i / 20 for i in range(11))
#: Samples per second of every clip.
SAMPLE_RATE = 16000
#: Samples per clip after :func:`fix_length` (one second).
N_SAMPLES = 16000
#: Where :func:`speech_commands_root` looks inside the dataset folder, in
#: this order (the full release first, then the book's subset).
SPEECH_FOLDERS = ("speech_commands_v0.01",
                  "speech_commands_subset/speech_commands_v0.01")
#: Where the full v0.01 release is published (a 1.4 GB .tar.gz).
SPEECH_COMMANDS_URL = ("http://download.tensorflow.org/data/"
                       "speech_commands_v0.01.tar.gz")
_SPLITS = ("train", "validation", "testing")
_LISTS = {"validation": "validation_list.txt",
          "testing": "testing_list.txt"}
_UNKNOWN, _SILENCE = 0, 1
_PAPER_SILENCE = 0.1


# ---------------------------------------------------------------- files


def _is_dataset(path: Path) -> bool:
    return all((path / w).is_dir() for w in SPEECH_KEYWORDS)


def speech_commands_root(root: str | os.PathLike | None = None) -> Path:
    """The Speech Commands v0.01 folder (one sub-folder per word).
    Chapter "Noise-robust sparse networks".

    Looks in the dataset folder of :func:`sparselib.data.data_root`
    (``root``, else ``$SPARSELIB_DATA``, else a cache folder): the folder
    itself when it holds the word folders, else each of
    :data:`SPEECH_FOLDERS` inside it, in that order, so a full release
    (e.g. on Colab) wins over the book's 300-clip subset. A folder counts
    when it has a sub-folder for each of the ten keywords.

    Parameters
    ----------
    root : str or path, optional
        The dataset folder, or the Speech Commands folder itself.

    Returns
    -------
    pathlib.Path
        The folder holding ``zero/``, ``one/``, ... and, for the official
        split, ``validation_list.txt`` and ``testing_list.txt``.

    Raises
    ------
    TypeError
        If ``root`` is not a path.
    FileNotFoundError
        If ``root`` does not exist, or none of the places holds the
        keyword folders (the message names every place looked at).
    """
    if root is not None and isinstance(root, (str, os.PathLike)) and \
            not Path(root).expanduser().is_dir():
        raise FileNotFoundError(
            f"root {str(root)!r} does not exist; it must be the dataset "
            f"folder (holding speech_commands_v0.01/ or "
            f"speech_commands_subset/speech_commands_v0.01/) or the Speech "
            f"Commands folder itself")
    base = data_root(root)
    candidates = [base] + [base / sub for sub in SPEECH_FOLDERS]
    for path in candidates:
        if _is_dataset(path):
            return path
    looked = ", ".join(repr(str(p)) for p in candidates)
    raise FileNotFoundError(
        f"no Google Speech Commands v0.01 folder found: looked at {looked}; "
        f"each must hold one folder per keyword "
        f"({', '.join(SPEECH_KEYWORDS)}) of <speaker>_nohash_<n>.wav clips. "
        f"Download speech_commands_v0.01.tar.gz and extract it into "
        f"<dataset folder>/speech_commands_v0.01, or point root or "
        f"{DATA_ENV} at a folder that holds it")


def download_speech_commands(root: str | os.PathLike | None = None, *,
                             url: str = SPEECH_COMMANDS_URL,
                             progress: bool | None = None) -> Path:
    """Download and extract the full Speech Commands v0.01, once.
    Chapter "Noise-robust sparse networks".

    Extracts the archive at ``url`` into ``<dataset folder>/
    speech_commands_v0.01`` (the first of :data:`SPEECH_FOLDERS`) unless
    that folder already holds the ten keyword folders, and returns it. The
    archive (1.4 GB) is written next to it and removed after extraction.
    Needs a network connection (e.g. on Colab); no checksum is published
    with the release, so the result is checked by its content instead:
    the keyword folders and both split lists must be present.

    Parameters
    ----------
    root : str or path, optional
        The dataset folder; see :func:`sparselib.data.data_root`.
    url : str, default :data:`SPEECH_COMMANDS_URL`
        Where to fetch the ``.tar.gz`` from (``http(s)://`` or
        ``file://``).
    progress : bool, optional
        Show a download bar (``None``: yes unless at quick scale).

    Returns
    -------
    pathlib.Path
        The extracted folder.

    Raises
    ------
    TypeError
        If ``url`` is not a string.
    ValueError
        If ``url`` is not an http(s) or file URL, or the archive holds a
        member that would land outside the folder.
    FileNotFoundError
        If the extracted archive lacks a keyword folder or a split list.
    """
    import tarfile
    import urllib.request

    from tqdm.auto import tqdm

    from .utils import progress_enabled

    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    if not url.startswith(("http://", "https://", "file://")):
        raise ValueError(f"url must start with http://, https:// or "
                         f"file://, got {url!r}")
    target = data_root(root) / SPEECH_FOLDERS[0]
    if _is_dataset(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    archive = target.parent / "speech_commands_v0.01.tar.gz"
    with urllib.request.urlopen(url) as response, \
            open(archive, "wb") as out, \
            tqdm(total=int(response.headers.get("Content-Length") or 0)
                 or None, unit="B", unit_scale=True,
                 desc="Speech Commands",
                 disable=not progress_enabled(progress)) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))
    with tarfile.open(archive) as tar:
        base = target.resolve()
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if base not in (dest, *dest.parents) or member.issym() or \
                    member.islnk():
                raise ValueError(f"the archive member {member.name!r} "
                                 f"would land outside {str(target)!r}")
        tar.extractall(target)
    archive.unlink()
    missing = [w for w in SPEECH_KEYWORDS if not (target / w).is_dir()]
    missing += [f for f in _LISTS.values() if not (target / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the archive at {url!r} extracted into {str(target)!r} lacks "
            f"{', '.join(missing)}: not Speech Commands v0.01")
    return target


def load_wav(path: str | os.PathLike, *,
             sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a 16-bit mono WAV file as float32 samples in [-1, 1).
    Chapter "Noise-robust sparse networks".

    The integers are divided by 32768, as librosa (which the paper uses)
    reads 16-bit audio. Nothing is resampled: a file at another rate is
    an error.

    Parameters
    ----------
    path : str or path
        The ``.wav`` file.
    sample_rate : int, default 16000
        The rate the file must have.

    Returns
    -------
    torch.Tensor
        float32 ``(n_samples,)`` on the CPU.

    Raises
    ------
    TypeError
        If ``path`` is not a path or ``sample_rate`` not an integer.
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not 16-bit PCM, not mono, or not at
        ``sample_rate``.
    """
    from scipy.io import wavfile

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or Path), got "
                        f"{type(path).__name__}")
    sample_rate = check_int("sample_rate", sample_rate, minimum=1)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r}: no such file")
    rate, data = wavfile.read(path)
    if data.dtype != np.int16:
        raise ValueError(f"path {str(path)!r} must hold 16-bit PCM samples, "
                         f"got {data.dtype}")
    if data.ndim != 1:
        raise ValueError(f"path {str(path)!r} must be mono, got "
                         f"{data.shape[1]} channels")
    if rate != sample_rate:
        raise ValueError(f"path {str(path)!r} is sampled at {rate} Hz; "
                         f"sample_rate is {sample_rate} Hz (nothing is "
                         f"resampled)")
    return torch.from_numpy(data.astype(np.float32) / 32768.0)


def fix_length(wave: torch.Tensor, n_samples: int = N_SAMPLES
               ) -> torch.Tensor:
    """Zero-pad at the end, or crop the end, to ``n_samples`` samples.
    Chapter "Noise-robust sparse networks".

    Parameters
    ----------
    wave : torch.Tensor
        Samples ``(..., n)``; the last dimension is time.
    n_samples : int, default 16000
        The length wanted (the paper: one second at 16 kHz).

    Returns
    -------
    torch.Tensor
        ``(..., n_samples)``, dtype and device of ``wave``: the first
        ``min(n, n_samples)`` samples, then zeros. A new tensor.

    Raises
    ------
    TypeError
        If ``wave`` is not a tensor or ``n_samples`` not an integer.
    ValueError
        If ``wave`` is 0-d or ``n_samples < 1``.
    """
    check_tensor("wave", wave)
    if wave.ndim == 0:
        raise ValueError("wave must have a time dimension (..., n), got a "
                         "0-d tensor")
    n_samples = check_int("n_samples", n_samples, minimum=1)
    n = wave.shape[-1]
    if n >= n_samples:
        return wave[..., :n_samples].clone()
    return torch.nn.functional.pad(wave, (0, n_samples - n))


# ------------------------------------------------------------- features


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above,
    # with 27 steps per factor 6.4
    f_sp, f_break = 200.0 / 3.0, 1000.0
    logstep = math.log(6.4) / 27.0
    mel = f / f_sp
    above = f >= f_break
    mel[above] = (f_break / f_sp
                  + np.log(f[above] / f_break) / logstep)
    return mel


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, f_break = 200.0 / 3.0, 1000.0
    logstep = math.log(6.4) / 27.0
    m_break = f_break / f_sp
    f = f_sp * m
    above = m >= m_break
    f[above] = f_break * np.exp(logstep * (m[above] - m_break))
    return f


def mel_filterbank(n_mels: int, n_fft: int,
                   sample_rate: float = SAMPLE_RATE, f_min: float = 0.0,
                   f_max: float | None = None, *, htk: bool = False,
                   norm: str | None = "slaney",
                   dtype: torch.dtype = torch.float32,
                   device=None) -> torch.Tensor:
    """Triangular mel filters over the bins of a one-sided spectrum.
    Chapter "Noise-robust sparse networks".

    ``n_mels + 2`` points equally spaced on the mel scale from ``f_min``
    to ``f_max`` are mapped back to hertz, ``f_0 < ... < f_{n_mels+1}``;
    filter ``i`` rises linearly from 0 at ``f_i`` to 1 at ``f_{i+1}`` and
    falls back to 0 at ``f_{i+2}``, evaluated at the bin frequencies
    ``k * sample_rate / n_fft``. With ``norm="slaney"`` each filter is
    scaled by ``2 / (f_{i+2} - f_i)`` so that all have the same area. The
    mel scale is Slaney's (linear below 1 kHz, logarithmic above) or, with
    ``htk=True``, ``2595 log10(1 + f / 700)``. Equal to
    ``librosa.filters.mel`` (computed in float64, then cast).

    Parameters
    ----------
    n_mels : int
        Number of filters (the paper: 32).
    n_fft : int
        FFT size; the spectrum has ``n_fft // 2 + 1`` bins.
    sample_rate : float, default 16000
        Sampling rate in hertz.
    f_min : float, default 0.0
        Lowest frequency, in [0, ``f_max``).
    f_max : float, optional
        Highest frequency, at most ``sample_rate / 2``; ``None`` means
        ``sample_rate / 2``.
    htk : bool, default False
        Use the HTK mel formula instead of Slaney's.
    norm : {"slaney", None}, default "slaney"
        Equal-area scaling, or none (peaks of 1).
    dtype : torch.dtype, default torch.float32
        A floating dtype for the result.
    device : torch.device or str, optional
        Where to put the result (default: the CPU).

    Returns
    -------
    torch.Tensor
        ``(n_mels, n_fft // 2 + 1)``, non-negative.

    Raises
    ------
    TypeError
        If an argument has the wrong type (``htk`` not a bool, ``norm``
        not a string or ``None``, ``dtype`` not a floating dtype).
    ValueError
        If ``n_mels < 1``, ``n_fft < 2``, ``sample_rate <= 0``, ``f_min``
        or ``f_max`` is out of range, or ``norm`` is an unknown string.
    """
    n_mels = check_int("n_mels", n_mels, minimum=1)
    n_fft = check_int("n_fft", n_fft, minimum=2)
    sample_rate = check_real("sample_rate", sample_rate, minimum=0,
                             min_open=True)
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else check_real(
        "f_max", f_max, minimum=0, maximum=nyquist, min_open=True)
    f_min = check_real("f_min", f_min, minimum=0, maximum=f_max,
                       max_open=True)
    if not isinstance(htk, bool):
        raise TypeError(f"htk must be a bool, got {type(htk).__name__}")
    if norm is not None:
        check_choice("norm", norm, ("slaney",))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got "
                        f"{dtype!r}")

    mel_lo, mel_hi = _hz_to_mel(np.array([f_min, f_max]), htk)
    f_pts = _mel_to_hz(np.linspace(mel_lo, mel_hi, n_mels + 2), htk)
    bins = np.linspace(0.0, nyquist, n_fft // 2 + 1)
    width = np.diff(f_pts)                              # (n_mels + 1,)
    offset = f_pts[:, None] - bins[None, :]             # (n_mels + 2, F)
    rising = -offset[:-2] / width[:-1, None]
    falling = offset[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (f_pts[2:] - f_pts[:-2]))[:, None]
    return torch.as_tensor(weights).to(device=device, dtype=dtype)


def log_mel_spectrogram(wave: torch.Tensor, *,
                        sample_rate: float = SAMPLE_RATE,
                        n_fft: int = 2048, hop_length: int = 512,
                        n_mels: int = 32, f_min: float = 0.0,
                        f_max: float | None = None, center: bool = True,
                        pad_mode: str = "reflect", power: float = 2.0,
                        htk: bool = False, norm: str | None = "slaney",
                        ref: str | float = "max", amin: float = 1e-10,
                        top_db: float | None = 80.0) -> torch.Tensor:
    """The paper's input: a mel spectrogram in decibels, per clip.
    Chapter "Noise-robust sparse networks".

    ``S = M @ |STFT(x)|^power`` with a periodic Hann window of ``n_fft``
    samples, hop ``hop_length`` and, with ``center=True``, ``n_fft // 2``
    samples of ``pad_mode`` padding at both ends (frame ``t`` is centred
    on sample ``t * hop_length``); ``M`` is :func:`mel_filterbank`. Then
    ``D = 10 log10(max(S, amin)) - 10 log10(max(r, amin))`` with
    ``r = max S`` of the clip (``ref="max"``) or ``r = ref``, and with
    ``top_db``, ``D = max(D, max D - top_db)`` per clip. The defaults are
    the paper's (librosa 0.6.2's ``melspectrogram(y, sr=16000,
    n_mels=32)`` and ``power_to_db(S, ref=np.max)``): a one-second clip
    gives ``(32, 32)``. Equal to that librosa pipeline (with
    ``pad_mode="reflect"``; librosa >= 0.10 defaults to ``"constant"``).

    Parameters
    ----------
    wave : torch.Tensor
        Floating-point samples ``(..., n)``, any device. Computed in
        float64 for float64 input, else in float32.
    sample_rate : float, default 16000
        Sampling rate in hertz.
    n_fft : int, default 2048
        FFT size and window length.
    hop_length : int, default 512
        Samples between frames.
    n_mels : int, default 32
        Mel bands.
    f_min : float, default 0.0
        Lowest mel frequency.
    f_max : float, optional
        Highest mel frequency; ``None`` means ``sample_rate / 2``.
    center : bool, default True
        Pad so that frames are centred (else frame ``t`` starts at
        ``t * hop_length``).
    pad_mode : {"reflect", "constant"}, default "reflect"
        Padding with ``center=True``: mirrored samples (librosa 0.6.2,
        the paper) or zeros (librosa >= 0.10).
    power : float, default 2.0
        Exponent of the magnitude (2: power, 1: amplitude).
    htk : bool, default False
        HTK mel scale instead of Slaney's.
    norm : {"slaney", None}, default "slaney"
        Filter scaling (see :func:`mel_filterbank`).
    ref : "max" or float, default "max"
        Reference power for 0 dB: each clip's maximum, or a positive
        number.
    amin : float, default 1e-10
        Floor on powers before the logarithm, positive.
    top_db : float, optional
        Dynamic range kept below each clip's top, non-negative; ``None``
        keeps all.

    Returns
    -------
    torch.Tensor
        ``(..., n_mels, n_frames)`` on ``wave``'s device, float32 (float64
        for float64 input); ``n_frames = 1 + n // hop_length`` with
        ``center=True``, else ``1 + (n - n_fft) // hop_length``. An
        all-zero clip gives all zeros with ``ref="max"``.

    Raises
    ------
    TypeError
        If ``wave`` is not a floating-point tensor or another argument
        has the wrong type.
    ValueError
        If ``wave`` is 0-d or too short for one frame (with reflect
        padding: ``n > n_fft // 2``; without centring: ``n >= n_fft``),
        or an argument is out of range.
    """
    check_tensor("wave", wave, floating=True)
    if wave.ndim == 0:
        raise ValueError("wave must have a time dimension (..., n), got a "
                         "0-d tensor")
    n_fft = check_int("n_fft", n_fft, minimum=2)
    hop_length = check_int("hop_length", hop_length, minimum=1)
    if not isinstance(center, bool):
        raise TypeError(f"center must be a bool, got "
                        f"{type(center).__name__}")
    pad_mode = check_choice("pad_mode", pad_mode, ("reflect", "constant"))
    power = check_real("power", power, minimum=0, min_open=True)
    amin = check_real("amin", amin, minimum=0, min_open=True)
    if isinstance(ref, str):
        check_choice("ref", ref, ("max",))
    else:
        ref = check_real("ref", ref, minimum=0, min_open=True)
    if top_db is not None:
        top_db = check_real("top_db", top_db, minimum=0)
    n = wave.shape[-1]
    if center and pad_mode == "reflect" and n <= n_fft // 2:
        raise ValueError(f"wave must have more than n_fft // 2 = "
                         f"{n_fft // 2} samples for reflect padding, got "
                         f"{n}")
    if not center and n < n_fft:
        raise ValueError(f"wave must have at least n_fft = {n_fft} "
                         f"samples without centring, got {n}")
    dtype = torch.float64 if wave.dtype == torch.float64 else \
        torch.float32
    fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max, htk=htk,
                        norm=norm, dtype=dtype, device=wave.device)

    lead = wave.shape[:-1]
    x = wave.reshape(-1, n).to(dtype)
    window = torch.hann_window(n_fft, periodic=True, dtype=dtype,
                               device=wave.device)
    spec = torch.stft(x, n_fft, hop_length=hop_length, window=window,
                      center=center, pad_mode=pad_mode, onesided=True,
                      return_complex=True)              # (B, F, T)
    mag = spec.abs()
    mag = mag.square() if power == 2.0 else mag.pow(power)
    mel = torch.matmul(fb, mag)                          # (B, n_mels, T)

    db = 10.0 * torch.log10(mel.clamp_min(amin))
    if ref == "max":
        top = mel.amax(dim=(-2, -1), keepdim=True).clamp_min(amin)
        db = db - 10.0 * torch.log10(top)
    else:
        db = db - 10.0 * math.log10(max(ref, amin))
    if top_db is not None:
        floor = db.amax(dim=(-2, -1), keepdim=True) - top_db
        db = torch.maximum(db, floor)
    return db.reshape(*lead, n_mels, db.shape[-1])


# ---------------------------------------------------------------- noise


def _check_generator(generator, device):
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator must be on the wave's device "
                         f"({device}), got a generator on "
                         f"{generator.device}")
    return generator


def add_noise(wave: torch.Tensor, level: float, *, max_value: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend white noise into clips: ``(1 - level) * wave + level * u``.
    Chapter "Noise-robust sparse networks".

    The paper's noise: ``u`` is uniform on ``[-max_value, max_value]``
    (full scale, 1), one independent draw per sample of every clip. The
    clip's own amplitude shrinks by ``1 - level`` while the noise grows
    by ``level``. Apply it after :func:`fix_length`, as the paper does
    (the padded tail is noisy too).

    Parameters
    ----------
    wave : torch.Tensor
        Floating-point samples ``(..., n)``; not modified.
    level : float
        The blend ``a`` in [0, 1]; level 0 returns an unchanged copy.
    max_value : float, default 1.0
        Half-width of the noise's range, positive.
    generator : torch.Generator, optional
        Source of the noise, on ``wave``'s device; ``None`` uses torch's
        global generator.

    Returns
    -------
    torch.Tensor
        A new tensor, shape, dtype and device of ``wave``.

    Raises
    ------
    TypeError
        If ``wave`` is not a floating-point tensor, ``level`` or
        ``max_value`` not a real number, or ``generator`` not a generator.
    ValueError
        If ``level`` lies outside [0, 1], ``max_value <= 0``, or
        ``generator`` is on another device.
    """
    check_tensor("wave", wave, floating=True)
    level = check_probability("level", level)
    max_value = check_real("max_value", max_value, minimum=0,
                           min_open=True)
    generator = _check_generator(generator, wave.device)
    if level == 0.0:
        return wave.clone()
    u = torch.rand(wave.shape, generator=generator, dtype=wave.dtype,
                   device=wave.device)
    return (1.0 - level) * wave + (level * max_value) * (2.0 * u - 1.0)


# ------------------------------------------------------------- datasets


def _read_list(path: Path) -> set:
    if not path.is_file():
        raise FileNotFoundError(
            f"split list {str(path)!r} not found: split_by='lists' needs the "
            f"dataset's validation_list.txt and testing_list.txt; use "
            f"split_by='random' for a folder without them")
    text = path.read_text(encoding="utf-8")
    return {line.strip().replace("\\", "/") for line in text.splitlines()
            if line.strip()}


def _clips(folder: Path) -> list:
    """``(relative path, word, speaker)`` of every clip, sorted."""
    out = []
    for d in sorted(p for p in folder.iterdir()
                    if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(d.glob("*.wav")):
            out.append((f"{d.name}/{f.name}", d.name,
                        f.name.split("_nohash_")[0]))
    return out


def _check_fractions(fractions):
    if isinstance(fractions, (str, bytes)) or \
            not isinstance(fractions, Sequence) or len(fractions) != 3:
        raise TypeError(f"fractions must be a sequence of three real "
                        f"numbers (train, validation, testing), got "
                        f"{fractions!r}")
    fr = [check_probability(f"fractions[{i}]", f)
          for i, f in enumerate(fractions)]
    if abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {tuple(fr)} (sum "
                         f"{sum(fr)!r})")
    return fr


def _random_split(clips, fractions, seed) -> dict:
    """Speaker-disjoint split of ``clips``, stratified by label.

    The groups are the ten keywords and "every other word". Speakers are
    assigned one at a time, in a seeded random order, each to the split
    where it least increases the squared gap between the split's
    per-group counts (and its total) and their targets ``fraction *
    count``; of several such orders (64, fewer for many speakers), the
    assignment with the smallest total squared gap is kept.
    """
    by_speaker = defaultdict(Counter)
    per_group = Counter()
    for _, word, spk in clips:
        group = word if word in SPEECH_KEYWORDS else "unknown"
        by_speaker[spk][group] += 1
        per_group[group] += 1
    names = sorted(by_speaker)
    n_total = sum(per_group.values())
    target = [{g: f * k for g, k in per_group.items()} for f in fractions]
    rng = np.random.default_rng(seed)
    best_cost, best = math.inf, None
    for _ in range(max(1, min(64, 20_000 // max(1, len(names))))):
        counts = [Counter() for _ in _SPLITS]
        totals = [0, 0, 0]
        assign = {}
        for i in rng.permutation(len(names)):
            c = by_speaker[names[i]]
            m = sum(c.values())
            costs = [math.inf if f == 0.0 else
                     sum(k * (k + 2 * (counts[s][g] - target[s][g]))
                         for g, k in c.items())
                     + m * (m + 2 * (totals[s] - f * n_total))
                     for s, f in enumerate(fractions)]
            s = int(np.argmin(costs))
            assign[names[i]] = _SPLITS[s]
            counts[s].update(c)
            totals[s] += m
        cost = sum((counts[s][g] - target[s][g]) ** 2
                   for s in range(3) for g in per_group)
        cost += sum((totals[s] - f * n_total) ** 2
                    for s, f in enumerate(fractions))
        if cost < best_cost:
            best_cost, best = cost, assign
    return best


def _select(root, split, split_by, fractions, seed, include_unknown,
            max_unknown_fraction, silence_fraction):
    """``(folder, relative paths or None for silence, labels)``."""
    split = check_choice("split", split, _SPLITS)
    split_by = check_choice("split_by", split_by, ("lists", "random"))
    fractions = _check_fractions(fractions)
    seed = check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    if not isinstance(include_unknown, bool):
        raise TypeError(f"include_unknown must be a bool, got "
                        f"{type(include_unknown).__name__}")
    if max_unknown_fraction is not None:
        max_unknown_fraction = check_probability(
            "max_unknown_fraction", max_unknown_fraction, open_high=True)
    if silence_fraction is None:
        silence_fraction = _PAPER_SILENCE if split == "train" else 0.0
    else:
        silence_fraction = check_real("silence_fraction", silence_fraction,
                                      minimum=0)
    folder = speech_commands_root(root)
    clips = _clips(folder)
    if split_by == "lists":
        lists = {s: _read_list(folder / name) for s, name in _LISTS.items()}

        def which(rel, spk):
            if rel in lists["testing"]:
                return "testing"
            return "validation" if rel in lists["validation"] else "train"
    else:
        assign = _random_split(clips, fractions, seed)

        def which(rel, spk):
            return assign[spk]

    index = {w: SPEECH_LABELS.index(w) for w in SPEECH_KEYWORDS}
    known, unknown = [], []
    for rel, word, spk in clips:
        if which(rel, spk) != split:
            continue
        if word in index:
            known.append((rel, index[word]))
        elif include_unknown:
            unknown.append((rel, _UNKNOWN))
    if unknown and max_unknown_fraction is not None:
        f = max_unknown_fraction
        keep = min(len(unknown), math.floor(f * len(known) / (1 - f)
                                            + 1e-9))
        rng = np.random.default_rng([seed, _SPLITS.index(split)])
        picked = np.sort(rng.choice(len(unknown), size=keep, replace=False))
        unknown = [unknown[i] for i in picked]
    items = sorted(known + unknown)
    n_silence = int(len(items) * silence_fraction)
    items += [(None, _SILENCE)] * n_silence
    return folder, [r for r, _ in items], [y for _, y in items]


class SpeechCommands(torch.utils.data.Dataset):
    """Google Speech Commands v0.01 as the paper's ``(1, 32, 32)`` inputs.

    Item ``i`` is ``(features, label)``: the clip read by
    :func:`load_wav`, fixed to one second (:func:`fix_length`), passed
    through ``transform`` if given (e.g. ``lambda w: add_noise(w, 0.1)``)
    and turned into :func:`log_mel_spectrogram` with the paper's settings,
    ``(1, 32, 32)`` float32; the label indexes :data:`SPEECH_LABELS`.
    Features are computed on the CPU when an item is read; for everything
    at once (and on a GPU) use :func:`load_speech_commands`.

    Clips are listed in sorted order of their path ``word/file.wav``;
    "silence" items (all-zero clips, path ``None``) come last.

    Parameters
    ----------
    root : str or path, optional
        The dataset folder or the Speech Commands folder; see
        :func:`speech_commands_root`.
    split : {"train", "validation", "testing"}, default "train"
        Which part.
    split_by : {"lists", "random"}, default "lists"
        ``"lists"``: the dataset's ``validation_list.txt`` and
        ``testing_list.txt`` (training: in neither), as the paper.
        ``"random"``: a seeded split by speaker (no speaker in two
        parts), stratified by label (each keyword, and the other words
        together), with sizes near ``fractions``; it is drawn over all
        words, so a clip's part does not depend on ``include_unknown``.
    fractions : sequence of 3 floats, default (0.6, 0.2, 0.2)
        Target shares of train, validation and testing for
        ``split_by="random"``; each in [0, 1], summing to 1.
    seed : int, default 0
        Seeds the random split and the choice of "unknown" clips.
    include_unknown : bool, default False
        Label the clips of the other 20 words "unknown" (label 0) instead
        of leaving them out (the paper leaves them out).
    max_unknown_fraction : float, optional
        With ``include_unknown``, keep a seeded random choice of at most
        ``floor(f * n_keyword / (1 - f))`` "unknown" clips, so that they
        make at most the share ``f`` in [0, 1) of the word clips. ``None``
        keeps all (in the 300-clip subset, 2/3 of the clips).
    silence_fraction : float, optional
        Add ``int(silence_fraction * n)`` silent clips to the ``n`` word
        clips. ``None`` means the paper's: 0.1 for ``"train"``, 0 for the
        other splits.
    transform : callable, optional
        Applied to each one-second waveform ``(16000,)`` before the
        features.

    Attributes
    ----------
    root : pathlib.Path
        The Speech Commands folder.
    files : list of pathlib.Path or None
        The clip of each item (``None`` for silence).
    labels : list of int
        The label of each item.
    classes : tuple of str
        :data:`SPEECH_LABELS`.

    Raises
    ------
    TypeError, ValueError
        If an argument has the wrong type or value (the message names
        it).
    FileNotFoundError
        If no dataset folder is found, or a split list is missing with
        ``split_by="lists"``.
    """

    def __init__(self, root=None, split: str = "train", *,
                 split_by: str = "lists",
                 fractions: Sequence[float] = (0.6, 0.2, 0.2),
                 seed: int = 0, include_unknown: bool = False,
                 max_unknown_fraction: float | None = None,
                 silence_fraction: float | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor]
                 | None = None):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got "
                            f"{type(transform).__name__}")
        folder, rel, labels = _select(root, split, split_by, fractions,
                                      seed, include_unknown,
                                      max_unknown_fraction,
                                      silence_fraction)
        self.root = folder
        self.split = split
        self.files = [None if r is None else folder / r for r in rel]
        self.labels = labels
        self.classes = SPEECH_LABELS
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def waveform(self, index: int) -> torch.Tensor:
        """Clip ``index`` fixed to one second, float32 ``(16000,)``."""
        path = self.files[index]
        if path is None:
            return torch.zeros(N_SAMPLES)
        return fix_length(load_wav(path))

    def __getitem__(self, index: int):
        wave = self.waveform(index)
        if self.transform is not None:
            wave = self.transform(wave)
        return log_mel_spectrogram(wave).unsqueeze(0), self.labels[index]


def _features(waves: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = [log_mel_spectrogram(waves[i:i + batch_size])
           for i in range(0, waves.shape[0], batch_size)]
    if not out:
        return waves.new_zeros((0, 1, 32, 32))
    return torch.cat(out).unsqueeze(1)


def load_speech_commands(split: str = "train", *, root=None,
                         split_by: str = "lists",
                         fractions: Sequence[float] = (0.6, 0.2, 0.2),
                         seed: int = 0, include_unknown: bool = False,
                         max_unknown_fraction: float | None = None,
                         silence_fraction: float | None = None,
                         features: bool = True, device=None,
                         batch_size: int = 256):
    """Load one split of Speech Commands into memory as ``(x, y)``.
    Chapter "Noise-robust sparse networks".

    The same clips, in the same order, as :class:`SpeechCommands` with
    the same arguments; the features are computed in batches on
    ``device``.

    Parameters
    ----------
    split : {"train", "validation", "testing"}, default "train"
        Which part.
    root : str or path, optional
        See :func:`speech_commands_root`.
    split_by : {"lists", "random"}, default "lists"
        See :class:`SpeechCommands`.
    fractions : sequence of 3 floats, default (0.6, 0.2, 0.2)
        See :class:`SpeechCommands`.
    seed : int, default 0
        See :class:`SpeechCommands`.
    include_unknown : bool, default False
        See :class:`SpeechCommands`.
    max_unknown_fraction : float, optional
        See :class:`SpeechCommands`.
    silence_fraction : float, optional
        See :class:`SpeechCommands`.
    features : bool, default True
        Return the log-mel inputs ``(N, 1, 32, 32)``; ``False`` returns
        the one-second waveforms ``(N, 16000)`` instead (for
        :func:`speech_noise_score`).
    device : torch.device or str, optional
        Where ``x`` and ``y`` go (default: the CPU).
    batch_size : int, default 256
        Clips per feature computation.

    Returns
    -------
    x : torch.Tensor
        float32 ``(N, 1, 32, 32)`` in dB ([-80, 0]), or ``(N, 16000)``.
    y : torch.Tensor
        int64 labels ``(N,)`` indexing :data:`SPEECH_LABELS`.

    Raises
    ------
    TypeError, ValueError
        If an argument has the wrong type or value.
    FileNotFoundError
        As :class:`SpeechCommands`.
    """
    if not isinstance(features, bool):
        raise TypeError(f"features must be a bool, got "
                        f"{type(features).__name__}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    folder, rel, labels = _select(root, split, split_by, fractions, seed,
                                  include_unknown, max_unknown_fraction,
                                  silence_fraction)
    waves = torch.zeros(len(rel), N_SAMPLES)
    for i, r in enumerate(rel):
        if r is not None:
            wave = load_wav(folder / r)[:N_SAMPLES]
            waves[i, :wave.shape[0]] = wave
    waves = waves.to(device)
    y = torch.tensor(labels, dtype=torch.int64, device=waves.device)
    if not features:
        return waves, y
    return _features(waves, batch_size), y


def sample_weights(labels: torch.Tensor,
                   n_classes: int = len(SPEECH_LABELS)) -> torch.Tensor:
    """Per-example weights that balance the classes, as in the paper.

    With ``c_k = 1 + (number of examples of class k)`` (one added to
    every class, empty ones included) and ``C = sum_k c_k``, example
    ``i`` gets ``C / c_{y_i}``; drawing with these weights
    (``torch.utils.data.WeightedRandomSampler``) makes every present
    class about equally likely.

    Parameters
    ----------
    labels : torch.Tensor
        Integer labels ``(N,)`` in ``[0, n_classes)``.
    n_classes : int, default 12
        Number of classes.

    Returns
    -------
    torch.Tensor
        float64 ``(N,)`` on ``labels``' device.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer tensor or ``n_classes`` not an
        integer.
    ValueError
        If ``labels`` is not 1-d, ``n_classes < 1``, or a label lies
        outside ``[0, n_classes)``.
    """
    check_tensor("labels", labels, ndim=1)
    check_labels("labels", labels, labels.shape[0])
    n_classes = check_int("n_classes", n_classes, minimum=1)
    if labels.numel() and (int(labels.min()) < 0
                           or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) "
                         f"(n_classes = {n_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    counts = 1.0 + torch.bincount(labels, minlength=n_classes).double()
    return counts.sum() / counts[labels]


def speech_noise_score(predict: Callable[[torch.Tensor], torch.Tensor],
                       waves: torch.Tensor, labels: torch.Tensor,
                       levels: Sequence[float] = SPEECH_NOISE_LEVELS, *,
                       transform: Callable[[torch.Tensor], torch.Tensor]
                       | None = None,
                       batch_size: int = 1000,
                       generator: torch.Generator | None = None,
                       seed: int = 0) -> dict:
    """Correct classifications of noisy clips at each level, and their sum.
    Chapter "Noise-robust sparse networks".

    For each level ``a`` (in order) and each batch of one-second clips,
    :func:`add_noise` blends in white noise, :func:`log_mel_spectrogram`
    makes the ``(b, 1, 32, 32)`` inputs, ``transform`` (if given) is
    applied and ``predict`` classifies; the correct predictions are
    counted. With the default levels and the test clips this is the
    paper's noise score, at most ``11 * n``.

    Runs under ``torch.no_grad``; call ``model.eval()`` first. The counts
    are read back once per level.

    Parameters
    ----------
    predict : callable
        ``predict(x)`` returns class indices ``(b,)`` (integer dtype) or
        scores ``(b, n_classes)`` (floating dtype; the arg-max is taken).
    waves : torch.Tensor
        Floating-point clips ``(n, n_samples)`` already fixed in length
        (``load_speech_commands(..., features=False)``); ``n >= 1``.
    labels : torch.Tensor
        Integer labels ``(n,)`` on ``waves``' device.
    levels : sequence of float, default :data:`SPEECH_NOISE_LEVELS`
        Noise levels, each in [0, 1]; at least one.
    transform : callable, optional
        Applied to each batch of features before ``predict``.
    batch_size : int, default 1000
        Clips per call of ``predict``.
    generator : torch.Generator, optional
        Source of the noise, on ``waves``' device; when given, ``seed`` is
        ignored.
    seed : int, default 0
        Seeds a fresh generator on ``waves``' device when ``generator`` is
        ``None``.

    Returns
    -------
    dict
        ``"levels"``, ``"correct"`` (int per level), ``"accuracy"``
        (``correct / n``), ``"score"`` (the sum of ``"correct"``),
        ``"max_score"`` (``n * len(levels)``) and ``"n"``.

    Raises
    ------
    TypeError
        If ``predict`` or ``transform`` is not callable, ``waves`` is not
        a floating-point tensor, ``labels`` not integer, a level not a
        real number, or ``predict`` returns something other than a
        tensor.
    ValueError
        If ``waves`` is not 2-d with at least one clip, ``labels`` does
        not match, ``levels`` is empty or out of [0, 1], ``batch_size <
        1``, or ``predict`` returns the wrong shape.
    """
    if not callable(predict):
        raise TypeError(f"predict must be callable, got "
                        f"{type(predict).__name__}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got "
                        f"{type(transform).__name__}")
    check_tensor("waves", waves, ndim=2, floating=True)
    n = waves.shape[0]
    if n == 0:
        raise ValueError("waves must hold at least one clip, got shape "
                         f"{tuple(waves.shape)}")
    check_labels("labels", labels, n)
    if labels.device != waves.device:
        raise ValueError(f"labels must be on waves' device ({waves.device})"
                         f", got {labels.device}")
    if isinstance(levels, (str, bytes)) or \
            not isinstance(levels, Sequence):
        raise TypeError(f"levels must be a sequence of real numbers, got "
                        f"{type(levels).__name__}")
    levels = [check_probability(f"levels[{i}]", p)
              for i, p in enumerate(levels)]
    if not levels:
        raise ValueError("levels must hold at least one noise level, got an "
                         "empty sequence")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    generator = _check_generator(generator, waves.device)
    if generator is None:
        generator = torch.Generator(device=waves.device)
        generator.manual_seed(seed)

    correct = []
    with torch.no_grad():
        for a in levels:
            total = 0
            for start in range(0, n, batch_size):
                batch = waves[start:start + batch_size]
                x = log_mel_spectrogram(
                    add_noise(batch, a, generator=generator)).unsqueeze(1)
                if transform is not None:
                    x = transform(x)
                pred = _predicted_classes(predict(x), batch.shape[0])
                y = labels[start:start + batch_size].to(pred.device)
                total = total + (pred == y).sum()
            correct.append(int(total))  # one synchronisation per level
    return {
        "levels": levels,
        "correct": correct,
        "accuracy": [c / n for c in correct],
        "score": sum(correct),
        "max_score": n * len(levels),
        "n": n,
    }
