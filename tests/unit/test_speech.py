"""sparselib.speech: Speech Commands clips, features, splits and noise.

Oracles: librosa (``filters.mel``, ``feature.melspectrogram`` +
``power_to_db``, the pipeline of the paper's code), hand-derived mel bands,
areas and counts, a hand-made dataset with hand-written split lists, the
closed-form statistics of uniform noise, and hand-built classifiers.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.io import wavfile

from sparselib import speech as sp

SR = 16000


def _librosa_log_mel(y, *, pad_mode="reflect", center=True, power=2.0,
                     ref=np.max, top_db=80.0, n_mels=32, n_fft=2048,
                     hop_length=512, fmin=0.0, fmax=None, htk=False,
                     norm="slaney"):
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=n_fft, hop_length=hop_length, center=center,
        pad_mode=pad_mode, power=power, n_mels=n_mels, fmin=fmin,
        fmax=fmax, htk=htk, norm=norm, dtype=y.dtype)
    return librosa.power_to_db(S, ref=ref, top_db=top_db)


def _signals():
    t = np.arange(SR) / SR
    rng = np.random.default_rng(0)
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 3500 * t ** 2))
    return {"sine": 0.3 * np.sin(2 * np.pi * 440.0 * t),
            "chirp": chirp,
            "noise": rng.uniform(-0.2, 0.2, SR)}


# ------------------------------------------------------------ filters


@pytest.mark.parametrize("n_mels,n_fft,fmin,fmax,htk,norm", [
    (32, 2048, 0.0, None, False, "slaney"),
    (32, 2048, 0.0, None, True, "slaney"),
    (40, 512, 20.0, 7600.0, False, None),
    (64, 1024, 300.0, 4000.0, True, None),
    (128, 400, 0.0, 8000.0, False, "slaney"),
    (10, 256, 0.0, 6000.0, True, "slaney"),
])
def test_mel_filterbank_equals_librosa(n_mels, n_fft, fmin, fmax, htk,
                                       norm):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                              fmax=fmax, htk=htk, norm=norm,
                              dtype=np.float64)
    ours = sp.mel_filterbank(n_mels, n_fft, SR, fmin, fmax, htk=htk,
                             norm=norm, dtype=torch.float64)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
    f32 = sp.mel_filterbank(n_mels, n_fft, SR, fmin, fmax, htk=htk,
                            norm=norm)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), ref, rtol=0, atol=1e-5)


def test_slaney_filters_have_unit_area_and_unnormalised_peak_one():
    # a triangle of height 2 / (f2 - f0) over [f0, f2] has area 1; on a
    # fine grid of bins the Riemann sum approaches it
    n_fft = 1 << 16
    bin_hz = SR / n_fft
    fb = sp.mel_filterbank(16, n_fft, SR, 100.0, 7000.0,
                           dtype=torch.float64)
    np.testing.assert_allclose((fb.sum(1) * bin_hz).numpy(), 1.0,
                               rtol=2e-3)
    peak = sp.mel_filterbank(16, n_fft, SR, 100.0, 7000.0, norm=None,
                             dtype=torch.float64).amax(1)
    np.testing.assert_allclose(peak.numpy(), 1.0, atol=1e-3)


def test_pure_1khz_sine_peaks_in_the_band_around_1khz():
    # Slaney scale: 1 kHz is mel 1000 / (200/3) = 15; 8 kHz is
    # 15 + 27 ln(8) / ln(6.4) = 45.245. 32 bands use 34 equally spaced
    # points, spacing 45.245 / 33 = 1.371, so band i peaks at mel
    # 1.371 (i + 1): band 10 at 15.08 mel (1005.6 Hz), its neighbours at
    # 914 Hz and 1105 Hz. 1 kHz is 6 % of the way from band 10's peak
    # towards band 9's: band 10 has the largest response.
    mel_top = 15 + 27 * math.log(8) / math.log(6.4)
    band = round(15 / (mel_top / 33)) - 1
    assert band == 10
    t = torch.arange(SR, dtype=torch.float64) / SR
    d = sp.log_mel_spectrogram(0.5 * torch.sin(2 * math.pi * 1000 * t))
    assert d.shape == (32, 32)
    assert torch.all(d.argmax(0) == band)
    # the clip's maximum (0 dB) lies in that band, in every inner frame
    assert d[band, 2:-2].abs().max() < 1e-9


# ----------------------------------------------------------- features


@pytest.mark.parametrize("name", ["sine", "chirp", "noise"])
def test_log_mel_equals_librosa_on_synthetic_signals(name):
    y = _signals()[name]
    ref = _librosa_log_mel(y)
    ours = sp.log_mel_spectrogram(torch.from_numpy(y))
    assert ours.dtype == torch.float64 and ours.shape == (32, 32)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-8)
    y32 = y.astype(np.float32)
    ours32 = sp.log_mel_spectrogram(torch.from_numpy(y32))
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.numpy(), _librosa_log_mel(y32),
                               rtol=0, atol=2e-3)


@pytest.mark.parametrize("kw", [
    dict(pad_mode="constant"),
    dict(center=False),
    dict(power=1.0, top_db=None),
    dict(ref=1.0, top_db=40.0),
    dict(n_mels=40, n_fft=512, hop_length=160, fmin=20.0, fmax=7600.0,
         htk=True, norm=None),
])
def test_log_mel_options_equal_librosa(kw):
    y = _signals()["chirp"][:12000]
    ref = _librosa_log_mel(y, **kw)
    ours_kw = dict(kw)
    if "fmin" in ours_kw:
        ours_kw["f_min"] = ours_kw.pop("fmin")
        ours_kw["f_max"] = ours_kw.pop("fmax")
    ours = sp.log_mel_spectrogram(torch.from_numpy(y), **ours_kw)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread
def test_log_mel_equals_librosa_on_a_real_clip(speech_root):
    librosa = pytest.importorskip("librosa")
    path = sorted((speech_root / "seven").glob("*.wav"))[0]
    y, sr = librosa.load(path, sr=None)
    assert sr == SR
    wave = sp.load_wav(path)
    np.testing.assert_array_equal(wave.numpy(), y)
    y = librosa.util.fix_length(y, size=SR)
    ours = sp.log_mel_spectrogram(sp.fix_length(wave))
    np.testing.assert_allclose(ours.numpy(), _librosa_log_mel(y), rtol=0,
                               atol=2e-3)
    np.testing.assert_allclose(
        sp.log_mel_spectrogram(sp.fix_length(wave).double()).numpy(),
        _librosa_log_mel(y.astype(np.float64)), rtol=0, atol=1e-8)


def test_log_mel_is_batched_and_silence_is_zero():
    sig = _signals()
    x = torch.tensor(np.stack([sig["sine"], sig["chirp"], sig["noise"],
                               np.zeros(SR)])).reshape(2, 2, SR)
    d = sp.log_mel_spectrogram(x)
    assert d.shape == (2, 2, 32, 32)
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(d[i, j],
                                       sp.log_mel_spectrogram(x[i, j]),
                                       rtol=0, atol=1e-10)
    assert torch.all(d[1, 1] == 0.0)
    assert d.amax(dim=(-2, -1))[:, :].eq(0.0).all()
    assert d.amin() >= -80.0 and d[0, 1].amin() == -80.0  # chirp: floored


# --------------------------------------------------------- length, wav


def test_fix_length_hand_cases():
    w = torch.tensor([1.0, 2.0, 3.0])
    assert sp.fix_length(w, 5).tolist() == [1, 2, 3, 0, 0]
    assert sp.fix_length(w, 2).tolist() == [1, 2]
    out = sp.fix_length(w, 3)
    out[0] = 9.0
    assert w[0] == 1.0  # a copy, never a view
    b = torch.arange(6).reshape(2, 3)
    assert sp.fix_length(b, 4).tolist() == [[0, 1, 2, 0], [3, 4, 5, 0]]
    assert sp.fix_length(torch.zeros(12345)).shape == (16000,)


def test_load_wav_round_trip_and_format_checks(tmp_path):
    data = np.array([0, 1, -1, 32767, -32768, 1000], dtype=np.int16)
    wavfile.write(tmp_path / "a.wav", SR, data)
    w = sp.load_wav(tmp_path / "a.wav")
    assert w.dtype == torch.float32 and w.shape == (6,)
    np.testing.assert_array_equal(w.numpy(), data / np.float32(32768))
    assert w.max() < 1.0 and w.min() == -1.0
    wavfile.write(tmp_path / "s.wav", SR, np.zeros((10, 2), np.int16))
    with pytest.raises(ValueError, match="path .*mono"):
        sp.load_wav(tmp_path / "s.wav")
    wavfile.write(tmp_path / "f.wav", SR, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="path .*16-bit"):
        sp.load_wav(tmp_path / "f.wav")
    wavfile.write(tmp_path / "r.wav", 8000, data)
    with pytest.raises(ValueError, match="sample_rate"):
        sp.load_wav(tmp_path / "r.wav")
    assert sp.load_wav(tmp_path / "r.wav", sample_rate=8000).shape == (6,)
    with pytest.raises(FileNotFoundError, match="path"):
        sp.load_wav(tmp_path / "missing.wav")
    with pytest.raises(TypeError, match="path"):
        sp.load_wav(3)


# ------------------------------------------------------------ dataset

_OTHER = ("bed", "cat")
_VALID = ["zero/B_nohash_0.wav", "one/B_nohash_0.wav", "bed/B_nohash_0.wav",
          "nine/Z_nohash_0.wav"]  # the last is not in the folder
_TEST = ["zero/C_nohash_0.wav", "one/C_nohash_0.wav", "two/C_nohash_0.wav",
         "cat/C_nohash_0.wav"]


def _make_dataset(base, lists=True):
    """12 words x speakers A, B, C; clip = a distinct short sine."""
    rng = np.random.default_rng(1)
    for w in sp.SPEECH_KEYWORDS + _OTHER:
        (base / w).mkdir(parents=True)
        for spk in "ABC":
            n = int(rng.integers(6000, 17000))
            t = np.arange(n) / SR
            f = float(rng.uniform(200, 4000))
            clip = (8000 * np.sin(2 * np.pi * f * t)).astype(np.int16)
            wavfile.write(base / w / f"{spk}_nohash_0.wav", SR, clip)
    (base / "_background_noise_").mkdir()
    wavfile.write(base / "_background_noise_" / "white.wav", SR,
                  np.ones(SR, np.int16))
    if lists:
        (base / "validation_list.txt").write_text("\n".join(_VALID) + "\n")
        (base / "testing_list.txt").write_text("\n".join(_TEST) + "\n")
    return base


@pytest.fixture
def tiny(tmp_path):
    return _make_dataset(tmp_path / "gsc")


@pytest.fixture
def speech_root(shared_data_folder):
    try:
        return sp.speech_commands_root(shared_data_folder)
    except FileNotFoundError as e:
        pytest.skip(f"no Speech Commands clips: {e}")


@pytest.fixture
def shared_data_folder():
    import os

    path = os.environ.get("SPARSELIB_DATA")
    if not path:
        pytest.skip("SPARSELIB_DATA is not set")
    return path


def _rel(ds):
    """The items as ``word/file`` (sorted), then one "silence" each."""
    clips = sorted(f"{f.parent.name}/{f.name}" for f in ds.files if f)
    return clips + ["silence"] * ds.files.count(None)


def test_labels_are_the_papers_order():
    assert sp.SPEECH_KEYWORDS == ("zero", "one", "two", "three", "four",
                                  "five", "six", "seven", "eight", "nine")
    assert sp.SPEECH_LABELS[:2] == ("unknown", "silence")
    assert sp.SPEECH_LABELS[2:] == sp.SPEECH_KEYWORDS
    assert sp.SPEECH_NOISE_LEVELS == (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3,
                                      0.35, 0.4, 0.45, 0.5)


def test_list_split_membership_matches_the_hand_written_lists(tiny):
    kw_clips = {f"{w}/{s}_nohash_0.wav" for w in sp.SPEECH_KEYWORDS
                for s in "ABC"}
    other = {f"{w}/{s}_nohash_0.wav" for w in _OTHER for s in "ABC"}
    listed = set(_VALID) | set(_TEST)
    # the paper: keywords only; 10% silence in training only
    train = sp.SpeechCommands(tiny, "train")
    assert _rel(train) == sorted(kw_clips - listed) + ["silence"] * 2
    assert len(train) == 25 + int(0.1 * 25)
    valid = sp.SpeechCommands(tiny, "validation")
    assert _rel(valid) == ["one/B_nohash_0.wav", "zero/B_nohash_0.wav"]
    test = sp.SpeechCommands(tiny, "testing")
    assert _rel(test) == sorted(["zero/C_nohash_0.wav", "one/C_nohash_0.wav",
                                 "two/C_nohash_0.wav"])
    # with the other words as "unknown"
    train_u = sp.SpeechCommands(tiny, "train", include_unknown=True)
    assert _rel(train_u) == sorted((kw_clips | other) - listed) + \
        ["silence"] * 2  # int(0.1 * 29)
    assert _rel(sp.SpeechCommands(tiny, "validation",
                                  include_unknown=True)) == \
        sorted(["bed/B_nohash_0.wav", "one/B_nohash_0.wav",
                "zero/B_nohash_0.wav"])
    assert _rel(sp.SpeechCommands(tiny, "testing", include_unknown=True,
                                  silence_fraction=0.5)) == \
        sorted(_TEST) + ["silence"] * 2
    assert train.classes == sp.SPEECH_LABELS


def test_label_mapping(tiny):
    ds = sp.SpeechCommands(tiny, "train", include_unknown=True)
    for f, y in zip(ds.files, ds.labels):
        if f is None:
            assert y == 1
        elif f.parent.name in _OTHER:
            assert y == 0
        else:
            assert y == 2 + sp.SPEECH_KEYWORDS.index(f.parent.name)
    assert ds.labels[-1] == 1 and ds.files[-1] is None  # silence last
    words = {f.parent.name: y for f, y in zip(ds.files, ds.labels) if f}
    assert words["zero"] == 2 and words["nine"] == 11 and words["bed"] == 0


def test_items_are_the_papers_features(tiny):
    ds = sp.SpeechCommands(tiny, "testing")
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert y == ds.labels[0]
    raw = wavfile.read(ds.files[0])[1].astype(np.float32) / 32768
    padded = np.zeros(SR, np.float32)
    padded[:min(SR, raw.size)] = raw[:SR]
    np.testing.assert_allclose(x[0].numpy(), _librosa_log_mel(padded),
                               rtol=0, atol=2e-3)
    silence, label = sp.SpeechCommands(tiny, "train")[-1]
    assert label == 1 and torch.all(silence == 0)
    # the transform acts on the waveform: silenced clips give 0 dB
    muted = sp.SpeechCommands(tiny, "testing", transform=torch.zeros_like)
    assert torch.all(muted[0][0] == 0) and muted[0][1] == ds.labels[0]
    with pytest.raises(TypeError, match="transform"):
        sp.SpeechCommands(tiny, transform=3)


def test_max_unknown_fraction_caps_unknown(tiny):
    # train: 25 keyword clips, 4 unknown; f = 0.1 keeps
    # floor(0.1 * 25 / 0.9) = 2, f = 0.5 keeps min(4, 25) = 4
    def n_unknown(f):
        ds = sp.SpeechCommands(tiny, "train", include_unknown=True,
                               max_unknown_fraction=f, silence_fraction=0)
        return ds.labels.count(0), len(ds)

    assert n_unknown(0.1) == (2, 27)
    assert n_unknown(0.0) == (0, 25)
    assert n_unknown(0.5) == (4, 29)
    a = sp.SpeechCommands(tiny, "train", include_unknown=True,
                          max_unknown_fraction=0.1, seed=3)
    b = sp.SpeechCommands(tiny, "train", include_unknown=True,
                          max_unknown_fraction=0.1, seed=3)
    assert a.files == b.files


def test_random_split_is_by_speaker_seeded_and_complete(tiny):
    thirds = (1 / 3, 1 / 3, 1 / 3)

    def parts(seed, fractions=thirds, unknown=True):
        return {s: sp.SpeechCommands(tiny, s, split_by="random",
                                     fractions=fractions, seed=seed,
                                     include_unknown=unknown,
                                     silence_fraction=0)
                for s in ("train", "validation", "testing")}

    p = parts(0)
    speakers = {s: {f.name.split("_")[0] for f in d.files}
                for s, d in p.items()}
    # 3 speakers with 12 clips each, a third each: one speaker per part
    assert all(len(v) == 1 for v in speakers.values())
    assert set.union(*speakers.values()) == set("ABC")
    assert sum(len(d) for d in p.values()) == 36
    assert [d.files for d in p.values()] == \
        [d.files for d in parts(0).values()]
    # keywords only: the same clips as the keyword part of the full split
    kw = parts(0, unknown=False)
    for s in p:
        assert kw[s].files == [f for f in p[s].files
                               if f.parent.name not in _OTHER]
    everything = parts(5, fractions=(1.0, 0.0, 0.0))
    assert len(everything["train"]) == 36
    assert len(everything["validation"]) == len(everything["testing"]) == 0
    x, y = sp.load_speech_commands("validation", root=tiny,
                                   split_by="random",
                                   fractions=(1.0, 0.0, 0.0))
    assert x.shape == (0, 1, 32, 32) and y.shape == (0,)


def test_random_split_of_the_shared_subset(speech_root):
    sizes, speakers = {}, {}
    for s in ("train", "validation", "testing"):
        ds = sp.SpeechCommands(speech_root, s, split_by="random",
                               include_unknown=True, silence_fraction=0)
        sizes[s] = len(ds)
        speakers[s] = {f.name.split("_nohash_")[0] for f in ds.files}
        # every keyword in every part (stratified by label)
        assert set(range(2, 12)) <= set(ds.labels)
    assert sum(sizes.values()) == 300
    assert abs(sizes["train"] - 180) <= 10
    assert abs(sizes["validation"] - 60) <= 10
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]


def test_load_speech_commands_equals_the_dataset(tiny):
    ds = sp.SpeechCommands(tiny, "train", include_unknown=True)
    x, y = sp.load_speech_commands("train", root=tiny, include_unknown=True,
                                   batch_size=7)
    assert x.shape == (len(ds), 1, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == ds.labels
    for i in (0, 5, len(ds) - 1):
        torch.testing.assert_close(x[i], ds[i][0], rtol=0, atol=1e-4)
    w, y2 = sp.load_speech_commands("train", root=tiny,
                                    include_unknown=True, features=False)
    assert w.shape == (len(ds), SR) and torch.equal(y, y2)
    torch.testing.assert_close(w[3], ds.waveform(3))


def test_root_lookup(tmp_path, monkeypatch):
    base = tmp_path / "data"
    subset = _make_dataset(base / "speech_commands_subset" /
                           "speech_commands_v0.01")
    assert sp.speech_commands_root(base) == subset
    assert sp.speech_commands_root(subset) == subset
    monkeypatch.setenv("SPARSELIB_DATA", str(base))
    assert sp.speech_commands_root() == subset
    full = _make_dataset(base / "speech_commands_v0.01")
    assert sp.speech_commands_root(base) == full  # the full one first
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError,
                       match="speech_commands_v0.01.*speech_commands_subset"):
        sp.speech_commands_root(empty)
    with pytest.raises(FileNotFoundError, match="root .*nowhere"):
        sp.speech_commands_root(tmp_path / "nowhere")
    no_lists = _make_dataset(tmp_path / "nolists", lists=False)
    with pytest.raises(FileNotFoundError, match="validation_list.txt"):
        sp.SpeechCommands(no_lists)
    assert len(sp.SpeechCommands(no_lists, split_by="random")) > 0


def test_subset_counts_with_the_official_lists(speech_root):
    if "speech_commands_subset" not in str(speech_root):
        pytest.skip("counted for the book's 300-clip subset only")
    # counted by hand from the subset's folders and the two lists
    for unknown, expected in [(True, (205, 44, 51)), (False, (62, 16, 22))]:
        n = tuple(len(sp.SpeechCommands(speech_root, s,
                                        include_unknown=unknown,
                                        silence_fraction=0))
                  for s in ("train", "validation", "testing"))
        assert n == expected
    train = sp.SpeechCommands(speech_root)  # the paper's: + int(0.1 * 62)
    assert len(train) == 68 and train.labels.count(1) == 6


def test_sample_weights_hand_case():
    w = sp.sample_weights(torch.tensor([0, 0, 2]), 3)
    # counts 1 + (2, 0, 1) = (3, 1, 2), sum 6: weights 6/3, 6/3, 6/2
    assert w.tolist() == [2.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="labels"):
        sp.sample_weights(torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="labels"):
        sp.sample_weights(torch.tensor([0.0]))


# -------------------------------------------------------------- noise


def test_add_noise_level_zero_is_unchanged_copy():
    w = torch.randn(3, 100)
    out = sp.add_noise(w, 0.0)
    assert torch.equal(out, w) and out.data_ptr() != w.data_ptr()


@pytest.mark.parametrize("level,max_value", [(0.05, 1.0), (0.25, 1.0),
                                             (0.5, 0.3), (1.0, 1.0)])
def test_add_noise_statistics_follow_the_formula(level, max_value):
    n = 200_000
    wave = torch.full((n,), 0.3, dtype=torch.float64)
    wave[::2] = -0.1
    g = torch.Generator().manual_seed(7)
    out = sp.add_noise(wave, level, max_value=max_value, generator=g)
    noise = (out - (1 - level) * wave).numpy()  # = level * u
    half = level * max_value
    assert np.abs(noise).max() <= half * (1 + 1e-12)
    # u uniform on [-1, 1]: mean 0, variance 1/3
    assert abs(noise.mean()) < 5 * half / math.sqrt(3 * n)
    assert abs(noise.var() / (half ** 2 / 3) - 1) < 0.02
    assert stats.kstest(noise, "uniform", args=(-half, 2 * half)).pvalue \
        > 1e-3
    # independent of the signal, and reproducible
    assert abs(np.corrcoef(noise, wave.numpy())[0, 1]) < 0.02
    out2 = sp.add_noise(wave, level, max_value=max_value,
                        generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, out2)


def test_speech_noise_score_hand_built_classifiers():
    # silent clips: features all 0 dB without noise, not with it
    waves = torch.zeros(5, SR)
    labels = torch.ones(5, dtype=torch.int64)

    def silence_detector(x):
        return (x.flatten(1).abs().amax(1) == 0).long()

    r = sp.speech_noise_score(silence_detector, waves, labels,
                              batch_size=2)
    assert r["correct"] == [5] + [0] * 10
    assert r["score"] == 5 and r["max_score"] == 55 and r["n"] == 5

    def always_one(x):
        return torch.ones(x.shape[0], dtype=torch.int64)

    mixed = torch.tensor([1, 0, 1, 2, 1])
    r = sp.speech_noise_score(always_one, waves, mixed, [0.0, 0.3, 1.0])
    assert r["correct"] == [3, 3, 3] and r["accuracy"] == [0.6] * 3

    seen = []

    def logits(x):
        seen.append(x.shape)
        return torch.zeros(x.shape[0], 12)  # arg-max: class 0

    r = sp.speech_noise_score(logits, waves, torch.zeros(5).long(), [0.5],
                              transform=lambda x: x + 1)
    assert r["correct"] == [5] and seen == [(5, 1, 32, 32)]
    with pytest.raises(ValueError, match="levels"):
        sp.speech_noise_score(always_one, waves, labels, [])
    with pytest.raises(ValueError, match="waves"):
        sp.speech_noise_score(always_one, waves[0], labels)
    with pytest.raises(ValueError, match="levels\\[0\\]"):
        sp.speech_noise_score(always_one, waves, labels, [1.5])


# --------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument(tiny):
    w = torch.zeros(SR)
    cases = [
        (TypeError, "wave", lambda: sp.log_mel_spectrogram(w.long())),
        (ValueError, "wave", lambda: sp.log_mel_spectrogram(w[:1000])),
        (ValueError, "wave", lambda: sp.log_mel_spectrogram(
            w[:1500], center=False)),
        (ValueError, "pad_mode", lambda: sp.log_mel_spectrogram(
            w, pad_mode="edge")),
        (ValueError, "ref", lambda: sp.log_mel_spectrogram(w, ref="min")),
        (ValueError, "ref", lambda: sp.log_mel_spectrogram(w, ref=0.0)),
        (ValueError, "top_db", lambda: sp.log_mel_spectrogram(
            w, top_db=-1.0)),
        (ValueError, "hop_length", lambda: sp.log_mel_spectrogram(
            w, hop_length=0)),
        (ValueError, "n_mels", lambda: sp.mel_filterbank(0, 512)),
        (ValueError, "f_max", lambda: sp.mel_filterbank(8, 512, SR, 0,
                                                        9000.0)),
        (ValueError, "f_min", lambda: sp.mel_filterbank(8, 512, SR, 5000.0,
                                                        4000.0)),
        (ValueError, "norm", lambda: sp.mel_filterbank(8, 512, norm="l2")),
        (TypeError, "htk", lambda: sp.mel_filterbank(8, 512, htk=1)),
        (ValueError, "n_samples", lambda: sp.fix_length(w, 0)),
        (ValueError, "wave", lambda: sp.fix_length(torch.tensor(1.0))),
        (ValueError, "level", lambda: sp.add_noise(w, 1.5)),
        (TypeError, "wave", lambda: sp.add_noise(w.long(), 0.1)),
        (TypeError, "generator", lambda: sp.add_noise(w, 0.1,
                                                      generator=3)),
        (ValueError, "max_value", lambda: sp.add_noise(w, 0.1,
                                                       max_value=0.0)),
        (ValueError, "split", lambda: sp.SpeechCommands(tiny, "test")),
        (ValueError, "split_by", lambda: sp.SpeechCommands(
            tiny, split_by="hash")),
        (ValueError, "fractions", lambda: sp.SpeechCommands(
            tiny, split_by="random", fractions=(0.5, 0.2, 0.2))),
        (TypeError, "fractions", lambda: sp.SpeechCommands(
            tiny, fractions=(0.5, 0.5))),
        (ValueError, "max_unknown_fraction", lambda: sp.SpeechCommands(
            tiny, include_unknown=True, max_unknown_fraction=1.0)),
        (TypeError, "include_unknown", lambda: sp.SpeechCommands(
            tiny, include_unknown="yes")),
        (ValueError, "silence_fraction", lambda: sp.SpeechCommands(
            tiny, silence_fraction=-0.1)),
        (ValueError, "seed", lambda: sp.SpeechCommands(tiny, seed=-1)),
        (ValueError, "batch_size", lambda: sp.load_speech_commands(
            root=tiny, batch_size=0)),
        (TypeError, "features", lambda: sp.load_speech_commands(
            root=tiny, features=1)),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_cuda_features_equal_cpu():
    sig = _signals()
    x = torch.tensor(np.stack([sig["sine"], sig["chirp"], sig["noise"],
                               np.zeros(SR)]), dtype=torch.float32)
    cpu = sp.log_mel_spectrogram(x)
    gpu = sp.log_mel_spectrogram(x.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-3)
    torch.testing.assert_close(
        sp.log_mel_spectrogram(x.double().cuda()).cpu(),
        sp.log_mel_spectrogram(x.double()), rtol=0, atol=1e-8)
    g = torch.Generator(device="cuda").manual_seed(0)
    noisy = sp.add_noise(x.cuda(), 0.5, generator=g)
    d = noisy - 0.5 * x.cuda()
    assert noisy.device.type == "cuda" and d.abs().max() <= 0.5 + 1e-6
    assert sp.mel_filterbank(32, 2048, device="cuda").device.type == "cuda"
    r = sp.speech_noise_score(
        lambda z: (z.flatten(1).abs().amax(1) == 0).long(),
        torch.zeros(4, SR, device="cuda"),
        torch.ones(4, dtype=torch.int64, device="cuda"), [0.0, 0.1])
    assert r["correct"] == [4, 0]


def _tiny_release(tmp_path, words):
    import io
    import tarfile
    src = tmp_path / "release.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        def add(name, data=b""):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for w in words:
            add(f"{w}/abc_nohash_0.wav", b"RIFF")
        add("validation_list.txt", b"zero/abc_nohash_0.wav\n")
        add("testing_list.txt", b"")
    return src


def test_download_extracts_a_release_once(tmp_path, monkeypatch):
    from sparselib.speech import (SPEECH_KEYWORDS, download_speech_commands,
                                  speech_commands_root)
    src = _tiny_release(tmp_path, SPEECH_KEYWORDS)
    data = tmp_path / "data"
    data.mkdir()
    out = download_speech_commands(data, url=src.as_uri(), progress=False)
    assert out == data / "speech_commands_v0.01"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == \
        sorted(SPEECH_KEYWORDS)
    assert not (data / "speech_commands_v0.01.tar.gz").exists()
    assert speech_commands_root(data) == out
    # Already there: no second download (a bad URL would fail otherwise).
    assert download_speech_commands(data, url="file:///nonexistent.tgz",
                                    progress=False) == out


def test_download_rejects_wrong_archives_and_urls(tmp_path):
    import pytest
    from sparselib.speech import download_speech_commands
    src = _tiny_release(tmp_path, ["zero", "one"])
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(FileNotFoundError, match="lacks two"):
        download_speech_commands(data, url=src.as_uri(), progress=False)
    with pytest.raises(ValueError, match="url must start"):
        download_speech_commands(data, url="ftp://x", progress=False)
    with pytest.raises(TypeError, match="url must be a string"):
        download_speech_commands(data, url=3, progress=False)
