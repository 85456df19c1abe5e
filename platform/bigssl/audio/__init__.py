"""Audio core: decode, resample, log-mel fbank. numpy/torch in, numpy out; no Ray."""

from bigssl.audio.decode import AudioError, decode_audio, encode_flac
from bigssl.audio.features import Fbank, FbankConfig

__all__ = ["AudioError", "Fbank", "FbankConfig", "decode_audio", "encode_flac"]
