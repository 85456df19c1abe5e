"""The embedded default corpus: grammar sentences spoken by espeak-ng, generated lazily.

Design decisions:
- **ctypes, no subprocess.** The PyPI package ``espeakng_loader`` bundles
  ``libespeak-ng.so`` and its voice data but no Python API, and no system package or
  ``espeak-ng`` binary is assumed. We drive the C API directly: synchronous output,
  a callback that collects the 16-bit samples. No process spawn per utterance, so
  synthesis runs hundreds of times faster than real time.
- **One private library instance per stream.** libespeak-ng keeps all synthesis state
  in C globals, and some of it survives ``espeak_Initialize`` (the pitch-flutter
  phase, the automatic gain, the roughness cycle counter): with one shared instance
  an utterance's samples depend on everything the process spoke before it. Each
  :class:`EspeakEngine` therefore loads its own copy of the library (a memfd, or a
  temp file: ``dlopen`` of the same path would return the shared instance), which
  costs about a millisecond. Engines are built lazily inside the generator, so each
  Ray worker process initialises its own and nothing native is pickled.
- **A module lock around each synthesis.** Breath noise and the Klatt voices draw from
  libc ``rand()``, which is process-global: seeding it and synthesizing must be one
  atomic step if threads share the process. ``os.register_at_fork`` gives a forked
  child a fresh lock in case the fork happened while a thread held it.
- **Native 22050 Hz kept.** Shards keep each corpus's original rate (docs/DESIGN.md);
  resampling here would bake one consumer's rate into the corpus and cost time.
- **Determinism.** Everything about utterance ``i`` (text, voice, rate, pitch, noise,
  espeak's own random seed) is drawn from a generator seeded by ``(seed, i)``, and the
  engine's state depends only on the utterances before ``i`` in the same stream; so a
  seed always yields the same ids, texts, speakers and samples.
"""

from __future__ import annotations

import _ctypes  # dlclose(): the only way to unload a CDLL
import ctypes
import math
import os
import random
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import espeakng_loader
import numpy as np

from bigssl.config import Config, check
from bigssl.data.grammar import sample_sentence
from bigssl.data.records import RawUtterance

# The English voice files bundled in espeak-ng-data/lang/gmw (US, British regional, Caribbean).
DEFAULT_VOICES = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)  # fmt: skip
# The classic male/female formant variants and three Klatt-synthesiser variants; the
# community variants (robosoft, Demonic, whisper, ...) sound too unnatural for a default.
DEFAULT_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt3", "klatt4",
)  # fmt: skip

MIN_RATE_WPM, MAX_RATE_WPM = 80, 450  # espeak clamps outside this (no sonic speed-up)
_PITCH_BUCKET = 20  # espeak pitch units per speaker bucket (~4 semitones)

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() on bad data
_PARAM_RATE, _PARAM_PITCH = 1, 3
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_EE_OK = 0
_BUFFER_MS = 1000  # callback chunk length: fewer Python round trips per utterance
_QUESTION_WORDS = frozenset("what who how when where will is do does can".split())

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_LOCK = threading.Lock()
_LIBC = ctypes.CDLL(None)  # the process's libc: the rand() espeak calls is seeded here
_LIBC.srand.argtypes = [ctypes.c_uint]


def _fresh_lock_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


@lru_cache(maxsize=1)
def available_voices() -> frozenset[str]:
    """Voice names ``espeak_SetVoiceByName`` accepts: the bundled voice files, lowercased."""
    lang = Path(espeakng_loader.get_data_path()) / "lang"
    return frozenset(path.name.lower() for path in lang.rglob("*") if path.is_file())


@lru_cache(maxsize=1)
def available_variants() -> frozenset[str]:
    """Variant names (``voice+variant``) bundled in ``voices/!v``."""
    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return frozenset(path.name for path in folder.iterdir() if path.is_file())


@dataclass
class TtsConfig(Config):
    """How much synthetic speech to generate, and with which voices."""

    hours: float = 0.1  # total audio; generation stops after the utterance that reaches it
    seed: int = 0  # texts, voices and samples are a function of (seed, utterance index)
    voices: list[str] = field(default_factory=lambda: list(DEFAULT_VOICES))  # espeak voice files
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))  # [] = plain voice
    rate_wpm: list[int] = field(default_factory=lambda: [140, 200])  # [min, max] words/minute
    pitch: list[int] = field(default_factory=lambda: [30, 70])  # [min, max] espeak pitch 0..100
    noise_prob: float = 0.0  # probability an utterance gets additive white or pink noise
    snr_db: list[float] = field(default_factory=lambda: [10.0, 30.0])  # [min, max] noise SNR

    def validate(self) -> None:
        check(math.isfinite(self.hours) and self.hours > 0, "hours", "must be > 0")
        check(len(self.voices) > 0, "voices", "needs at least one voice")
        unknown = sorted({v.lower() for v in self.voices} - available_voices())
        check(not unknown, "voices", f"unknown espeak voice(s) {unknown}")
        # Checked here because espeak_SetVoiceByName("en-us+typo") returns OK and
        # silently speaks the plain voice.
        unknown = sorted(set(self.variants) - available_variants())
        check(not unknown, "variants", f"unknown espeak variant(s) {unknown}")
        _check_range(self.rate_wpm, "rate_wpm", MIN_RATE_WPM, MAX_RATE_WPM)
        _check_range(self.pitch, "pitch", 0, 100)
        check(0.0 <= self.noise_prob <= 1.0, "noise_prob", "must be in [0, 1]")
        _check_range(self.snr_db, "snr_db", -math.inf, math.inf)


def _check_range(value: list[int] | list[float], name: str, low: float, high: float) -> None:
    check(len(value) == 2, name, f"must be [min, max], got {value}")
    check(all(math.isfinite(v) for v in value), name, f"must be finite, got {value}")
    check(value[0] <= value[1], name, f"min must be <= max, got {value}")
    check(low <= value[0] and value[1] <= high, name, f"must lie within [{low}, {high}]")


@lru_cache(maxsize=1)
def _library_bytes() -> bytes:
    return Path(espeakng_loader.get_library_path()).read_bytes()


def _load_private_library() -> tuple[ctypes.CDLL, int | None]:
    """``dlopen`` a fresh copy of the bundled library; returns it and the fd to keep open."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("libespeak-ng")
        try:
            with open(fd, "wb", closefd=False) as file:
                file.write(_library_bytes())
            # The fd stays open while the library is loaded: a reused fd number would
            # make a later engine's /proc path match this one and dlopen would share it.
            return ctypes.CDLL(f"/proc/self/fd/{fd}"), fd
        except OSError:  # /proc missing or memfd mapping refused: fall back to a file
            os.close(fd)
    with tempfile.NamedTemporaryFile(prefix="libespeak-ng-", suffix=".so", delete=False) as f:
        f.write(_library_bytes())
    try:
        return ctypes.CDLL(f.name), None
    finally:
        os.unlink(f.name)  # the mapping outlives the name


class EspeakEngine:
    """One private, initialised libespeak-ng; ``synthesize`` returns int16 PCM at ``sample_rate``.

    Use as a context manager (or call :meth:`close`) to free the native instance.
    """

    def __init__(self) -> None:
        self._lib, self._fd = _load_private_library()
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed ({rate}) with data at {data_path!r}")
        self.sample_rate: int = rate
        self._chunks: list[bytes] = []
        # Keep a reference: ctypes frees the trampoline with the Python object.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], num_samples: int, _events: int) -> int:
        if wav and num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0  # 0 = keep synthesizing

    def synthesize(
        self, text: str, voice: str, rate_wpm: int, pitch: int, rand_seed: int = 0
    ) -> np.ndarray:
        """Speak ``text`` with ``voice`` (``"en-us"`` or ``"en-us+f3"``); int16 array, shape (T,)."""
        if self._lib is None:
            raise RuntimeError("EspeakEngine is closed")
        lib, data = self._lib, text.encode("utf-8") + b"\0"
        with _LOCK:
            self._chunks = []
            status = lib.espeak_SetVoiceByName(voice.encode("utf-8"))
            if status != _EE_OK:
                raise ValueError(f"espeak has no voice {voice!r} (status {status})")
            lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            lib.espeak_ng_SetRandSeed(rand_seed & 0x7FFFFFFF)
            _LIBC.srand(rand_seed & 0x7FFFFFFF)
            status = lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            chunks, self._chunks = self._chunks, []
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed (status {status}) for {text!r}")
        return np.frombuffer(b"".join(chunks), dtype="<i2")  # espeak writes little-endian

    def close(self) -> None:
        if self._lib is None:
            return
        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)  # the copy is private: nothing else uses it
        self._lib = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EspeakEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def trim_silence(
    samples: np.ndarray, sample_rate: int, threshold_db: float = -50.0, margin_s: float = 0.05
) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` below the loudest 10 ms frame.

    ``margin_s`` of context is kept on each side so soft onsets and releases survive.
    """
    frame = max(1, sample_rate // 100)
    num_frames = len(samples) // frame
    if num_frames == 0:
        return samples
    frames = samples[: num_frames * frame].astype(np.float64).reshape(num_frames, frame)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    active = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 20))
    if len(active) == 0:
        return samples[:0]
    margin = int(margin_s * sample_rate)
    start = max(0, active[0] * frame - margin)
    end = min(len(samples), (active[-1] + 1) * frame + margin)
    return samples[start:end]


def add_noise(
    samples: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white"
) -> np.ndarray:
    """Add white or pink (1/f power) Gaussian noise at ``snr_db``; float32, peak <= 1."""
    if color not in ("white", "pink"):
        raise ValueError(f"noise color must be 'white' or 'pink', got {color!r}")
    if color == "pink" and len(samples) > 1:
        # Shape at a power-of-two length and cut: pocketfft is ~10x slower on the
        # large prime factors an arbitrary utterance length tends to have.
        num_fft = 1 << (len(samples) - 1).bit_length()
        spectrum = np.fft.rfft(rng.standard_normal(num_fft))
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # power ~ 1/f
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=num_fft)[: len(samples)]
    else:
        noise = rng.standard_normal(len(samples))
    signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise_power = max(float(np.mean(noise**2)), 1e-20)
    noisy = samples + noise * math.sqrt(signal_power / 10 ** (snr_db / 10) / noise_power)
    peak = float(np.max(np.abs(noisy), initial=0.0))
    if peak > 1.0:
        noisy /= peak  # scaling keeps the drawn SNR; clipping would not
    return noisy.astype(np.float32)


def synthesize(
    text: str, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50, rand_seed: int = 0
) -> tuple[np.ndarray, int]:
    """Speak one text on a fresh engine: trimmed float32 samples in [-1, 1] and the native rate.

    A fresh engine per call (about a millisecond) makes this a pure function of its arguments.
    """
    with EspeakEngine() as engine:
        pcm = engine.synthesize(_spoken_form(text), voice, rate_wpm, pitch, rand_seed)
        sample_rate = engine.sample_rate
    return _trimmed_float(pcm, sample_rate), sample_rate


def _trimmed_float(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    return trim_silence(pcm.astype(np.float32) / 32768.0, sample_rate)


def _spoken_form(text: str) -> str:
    # A trailing "?" gives questions a rising contour; espeak does not say punctuation.
    words = text.split()
    return text + "?" if words and words[0] in _QUESTION_WORDS else text


@dataclass(frozen=True)
class UtterancePlan:
    """Everything random about one utterance, drawn before any audio is made."""

    index: int
    text: str
    voice: str  # what espeak is given: "voice" or "voice+variant"
    speaker: str  # voice + variant + pitch bucket
    rate_wpm: int
    pitch: int
    rand_seed: int  # seeds espeak's own noise (breath, Klatt)


def plan_utterance(cfg: TtsConfig, index: int) -> UtterancePlan:
    """Draw utterance ``index`` of the stream for ``cfg.seed``; independent of other indices."""
    # A str seed is hashed with SHA-512: stable across processes, unlike hash().
    rng = random.Random(f"tts:{cfg.seed}:{index}")
    text = sample_sentence(rng)
    voice = rng.choice(cfg.voices).lower()
    variant = rng.choice(cfg.variants) if cfg.variants else ""
    rate_wpm = rng.randint(cfg.rate_wpm[0], cfg.rate_wpm[1])
    pitch = rng.randint(cfg.pitch[0], cfg.pitch[1])
    low = pitch // _PITCH_BUCKET * _PITCH_BUCKET
    full_voice = f"{voice}+{variant}" if variant else voice
    speaker = f"{full_voice}+p{low}-{min(low + _PITCH_BUCKET - 1, 100)}"
    return UtterancePlan(index, text, full_voice, speaker, rate_wpm, pitch, rng.getrandbits(31))


def _render(
    engine: EspeakEngine, cfg: TtsConfig, plan: UtterancePlan
) -> tuple[RawUtterance, float]:
    pcm = engine.synthesize(
        _spoken_form(plan.text), plan.voice, plan.rate_wpm, plan.pitch, plan.rand_seed
    )
    samples = _trimmed_float(pcm, engine.sample_rate)
    # Noise draws come from their own stream so noise_prob never changes texts or voices.
    noise_rng = np.random.default_rng(
        random.Random(f"noise:{cfg.seed}:{plan.index}").getrandbits(64)
    )
    if noise_rng.random() < cfg.noise_prob:
        snr_db = float(noise_rng.uniform(cfg.snr_db[0], cfg.snr_db[1]))
        color = "pink" if noise_rng.random() < 0.5 else "white"
        samples = add_noise(samples, snr_db, noise_rng, color)
    utterance = RawUtterance(
        id=f"tts-s{cfg.seed}-{plan.index:07d}",
        source="tts",
        text=plan.text,
        speaker=plan.speaker,
        samples=samples,
        sample_rate=engine.sample_rate,
        error=None if len(samples) else f"espeak produced no audio for voice {plan.voice}",
    )
    return utterance, len(samples) / engine.sample_rate


def generate_tts(cfg: TtsConfig) -> Iterator[RawUtterance]:
    """Yield utterances until their total duration reaches ``cfg.hours``; memory stays flat.

    An utterance that came out silent is still yielded, with ``error`` set, so the
    caller quarantines it instead of the corpus shrinking without a word.
    """
    target_s, total_s, index, num_silent_in_row = cfg.hours * 3600.0, 0.0, 0, 0
    with EspeakEngine() as engine:
        while total_s < target_s:
            utterance, duration_s = _render(engine, cfg, plan_utterance(cfg, index))
            total_s += duration_s
            num_silent_in_row = num_silent_in_row + 1 if utterance.error else 0
            if num_silent_in_row >= 100:
                raise RuntimeError("espeak produced 100 silent utterances in a row; check voices")
            index += 1
            yield utterance
