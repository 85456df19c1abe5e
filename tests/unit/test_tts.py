"""The embedded TTS corpus: grammar, espeak-ng through ctypes, determinism, noise, config."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from bigssl.config import ConfigError
from bigssl.data.grammar import number_words, sample_sentence, vocabulary_estimate
from bigssl.data.records import RawUtterance
from bigssl.data.tts import (
    EspeakEngine,
    TtsConfig,
    add_noise,
    generate_tts,
    synthesize,
    trim_silence,
)

WORDS = re.compile(r"[a-z]+( [a-z]+)*")


def _generate(**overrides: object) -> list[RawUtterance]:
    return list(generate_tts(TtsConfig.from_dict(overrides)))


def _duration_s(utterances: list[RawUtterance]) -> float:
    return sum(len(u.samples) / u.sample_rate for u in utterances)


def _digest(utterances: list[RawUtterance]) -> str:
    h = hashlib.sha256()
    for u in utterances:
        h.update(f"{u.id}|{u.text}|{u.speaker}|".encode())
        h.update(u.samples.tobytes())
    return h.hexdigest()


def _frame_rms(samples: np.ndarray, frame: int = 220) -> np.ndarray:
    n = len(samples) // frame
    return np.sqrt(np.mean(samples[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))


# --- grammar -------------------------------------------------------------------------


def test_number_words_speaks_quantities():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty two"
    assert number_words(105) == "one hundred five"
    assert number_words(2018) == "two thousand eighteen"
    with pytest.raises(ValueError):
        number_words(-1)


def test_grammar_is_normalized_diverse_and_deterministic():
    sentences = [sample_sentence(random.Random(f"g{i}")) for i in range(3000)]
    assert all(WORDS.fullmatch(s) for s in sentences), [
        s for s in sentences if not WORDS.fullmatch(s)
    ]
    assert len(set(sentences)) > 2000  # thousands of distinct sentences in a few hours
    assert sentences[:50] == [sample_sentence(random.Random(f"g{i}")) for i in range(50)]
    assert 250 <= len(vocabulary_estimate(num_samples=5000)) <= 1500


# --- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"hours": -1}, "hours"),
        ({"hours": 0}, "hours"),
        ({"hourz": 1.0}, "hourz"),
        ({"voices": []}, "voices"),
        ({"voices": ["xx-nosuch"]}, "voices"),  # (espeak does speak "tlh", Klingon)
        ({"variants": ["no-such-variant"]}, "variants"),
        ({"rate_wpm": [200, 140]}, "rate_wpm"),
        ({"rate_wpm": [10, 140]}, "rate_wpm"),
        ({"pitch": [0, 101]}, "pitch"),
        ({"pitch": [50]}, "pitch"),
        ({"noise_prob": 1.5}, "noise_prob"),
        ({"snr_db": [30.0, 10.0]}, "snr_db"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        TtsConfig.from_dict(data)
    assert err.value.field == field


def test_default_config_is_valid_and_overridable():
    cfg = TtsConfig.load(overrides=["hours=0.5", "voices=en-us,en-gb-x-rp", "variants=[]"])
    assert (cfg.hours, cfg.voices, cfg.variants) == (0.5, ["en-us", "en-gb-x-rp"], [])
    assert len(TtsConfig().voices) >= 4 and len(TtsConfig().variants) >= 8


# --- synthesis -----------------------------------------------------------------------


def test_utterances_are_valid_audio_with_normalized_text():
    utterances = _generate(hours=0.01, seed=1)
    for u in utterances:
        assert u.source == "tts" and u.error is None and u.audio_path is None
        assert re.fullmatch(r"tts-s1-\d{7}", u.id)
        assert WORDS.fullmatch(u.text)
        assert u.sample_rate == 22050  # espeak's native rate, never resampled
        assert u.samples.dtype == np.float32 and u.samples.ndim == 1
        assert np.all(np.isfinite(u.samples)) and np.max(np.abs(u.samples)) <= 1.0
        assert np.sqrt(np.mean(u.samples.astype(np.float64) ** 2)) > 0.01  # not silent
        assert 0.3 < len(u.samples) / u.sample_rate < 15.0
    assert len({u.id for u in utterances}) == len(utterances)


def test_total_duration_reaches_hours_within_one_utterance():
    utterances = _generate(hours=0.01)
    total, last = _duration_s(utterances), len(utterances[-1].samples) / 22050
    assert 36.0 <= total < 36.0 + last


def test_same_seed_same_corpus_other_seed_differs():
    first, again, other = _generate(hours=0.01, seed=7), _generate(hours=0.01, seed=7), None
    assert _digest(first) == _digest(again)
    other = _generate(hours=0.01, seed=8)
    assert [u.text for u in other] != [u.text for u in first]
    assert _digest(other) != _digest(first)


def test_interleaved_streams_do_not_disturb_each_other():
    # Each stream owns a private libespeak-ng; a shared one would carry pitch-flutter
    # phase and gain from one stream into the other and change the samples.
    alone = _generate(hours=0.005, seed=3)
    streams = (
        generate_tts(TtsConfig(hours=0.005, seed=3)),
        generate_tts(TtsConfig(hours=0.005, seed=4)),
    )
    pairs = zip(*streams, strict=False)  # the streams differ in length; stop at the shorter
    interleaved = [a for a, _ in pairs]
    assert _digest(interleaved) == _digest(alone[: len(interleaved)])


def test_threads_generating_at_once_match_sequential_output():
    expected = _digest(_generate(hours=0.005, seed=5))
    results: list[str] = []

    def work() -> None:
        results.append(_digest(_generate(hours=0.005, seed=5)))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected, expected]


def test_a_fresh_process_generates_the_same_corpus():
    # What a Ray worker does: import, initialise its own engine, generate.
    code = (
        "import hashlib; from bigssl.data.tts import TtsConfig, generate_tts\n"
        "h = hashlib.sha256()\n"
        "for u in generate_tts(TtsConfig(hours=0.003, seed=9)):\n"
        "    h.update(f'{u.id}|{u.text}|{u.speaker}|'.encode()); h.update(u.samples.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(_generate(hours=0.003, seed=9))


def test_many_speakers_and_texts_in_a_few_minutes():
    utterances = _generate(hours=0.05, seed=2)
    speakers = {u.speaker for u in utterances}
    assert len(speakers) >= 30
    assert len({u.text for u in utterances}) >= 0.8 * len(utterances)
    assert {s.split("+")[0] for s in speakers} >= {"en-us", "en-gb-x-rp"}


def test_faster_rate_gives_shorter_audio():
    text = "navigate to forty two main street"
    slow, rate = synthesize(text, "en-us", rate_wpm=120)
    fast, _ = synthesize(text, "en-us", rate_wpm=300)
    assert rate == 22050
    assert len(slow) > 1.6 * len(fast)


def test_synthesize_is_a_pure_function_of_its_arguments():
    args = ("call maria garcia", "en-us+f2", 170, 60)
    first, _ = synthesize(*args)
    _generate(hours=0.002)  # other synthesis in between must not leak into the next call
    again, _ = synthesize(*args)
    assert np.array_equal(first, again)
    higher, _ = synthesize(*args[:3], 90)
    assert not np.array_equal(first, higher[: len(first)])


def test_unknown_voice_is_an_error_not_a_silent_fallback():
    with EspeakEngine() as engine, pytest.raises(ValueError, match="xx-nosuch"):
        engine.synthesize("hello", "xx-nosuch", 175, 50)


def test_noise_raises_the_noise_floor_without_changing_the_corpus():
    clean = _generate(hours=0.005, seed=4, noise_prob=0.0)
    noisy = _generate(hours=0.005, seed=4, noise_prob=1.0, snr_db=[10.0, 15.0])
    assert [u.text for u in clean] == [u.text for u in noisy]
    for c, n in zip(clean, noisy, strict=True):
        assert np.max(np.abs(n.samples)) <= 1.0 and np.all(np.isfinite(n.samples))
        # The quietest 10 ms frame: near zero in espeak's pauses, the noise level once noisy.
        floor_clean, floor_noisy = _frame_rms(c.samples).min(), _frame_rms(n.samples).min()
        assert floor_noisy > 5 * floor_clean + 5e-3


@pytest.mark.parametrize("color", ["white", "pink"])
def test_add_noise_hits_the_requested_snr(color):
    rng = np.random.default_rng(0)
    speech = (0.3 * np.sin(np.arange(22050) * 0.05)).astype(np.float32)
    noisy = add_noise(speech, 12.0, rng, color)
    noise = noisy.astype(np.float64) - speech
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(snr - 12.0) < 0.1 and noisy.dtype == np.float32


def test_trim_silence_cuts_long_edges_and_keeps_a_margin():
    tone = 0.5 * np.sin(np.arange(11025) * 0.1)
    padded = np.concatenate([np.zeros(22050), tone, np.zeros(22050)]).astype(np.float32)
    trimmed = trim_silence(padded, 22050, margin_s=0.05)
    assert len(tone) <= len(trimmed) <= len(tone) + 2 * (1102 + 220)
    raw = EspeakEngine()
    try:
        pcm = raw.synthesize("set a timer for twenty five minutes", "en-us+f3", 175, 50)
    finally:
        raw.close()
    spoken, _ = synthesize("set a timer for twenty five minutes", "en-us+f3")
    assert len(spoken) <= len(pcm)


def test_generation_is_lazy_one_utterance_per_request(monkeypatch):
    """Memory stays flat whatever ``hours`` asks for: the generator synthesizes an
    utterance only when the next one is requested (a 1000-hour corpus streams). An eager
    generator fails here, not by hanging: the corpus asked for is 36 s, ~15 utterances."""
    from bigssl.data import tts

    rendered: list[int] = []
    real_render = tts._render

    def counting_render(engine, cfg, plan):
        rendered.append(1)
        return real_render(engine, cfg, plan)

    monkeypatch.setattr(tts, "_render", counting_render)
    stream = generate_tts(TtsConfig(hours=0.01, seed=11))
    assert rendered == []  # nothing before the first request
    first, second = next(stream), next(stream)
    assert len(rendered) == 2 and first.id != second.id
    stream.close()
