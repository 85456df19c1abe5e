"""Decode and encode audio with soundfile (libsndfile).

Decoding never raises anything but :class:`AudioError`, whose message is the
quarantine reason: callers turn it into a quarantine row instead of crashing.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """Audio that cannot be used; the message is the quarantine reason."""


def decode_audio(data: bytes | str, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode encoded bytes (or a path) to float32 samples in [-1, 1].

    Returns (samples, sample_rate); samples are (T,) when ``mono`` (channels
    averaged) else (T, C).
    """
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types; all mean "undecodable"
        detail = getattr(err, "error_string", None) or str(err)  # without the BytesIO repr
        raise AudioError(f"undecodable audio: {type(err).__name__}: {detail}") from None
    if samples.shape[0] == 0:
        raise AudioError("zero-length audio")
    if not np.isfinite(samples).all():
        raise AudioError("audio holds NaN or infinite samples")
    return (samples.mean(axis=1) if mono else samples), int(rate)


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode float samples in [-1, 1] ((T,) or (T, C)) as 16-bit FLAC bytes."""
    buffer = io.BytesIO()
    clipped = np.clip(samples, -1.0, 1.0)
    sf.write(buffer, clipped, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def audio_info(data: bytes) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) from the header without decoding the body."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as err:
        raise AudioError(f"undecodable audio: {type(err).__name__}: {err}") from None
    return int(info.frames), int(info.samplerate), int(info.channels)
