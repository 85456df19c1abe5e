"""Named encoder sizes, as functions returning a :class:`ConformerConfig`.

Design decisions:
- ``tiny`` is for CPU demos and tests; ``s`` and ``m`` follow the Conformer paper's
  S/M widths (Gulati et al. 2020); ``xl``, ``xxl`` and ``g`` follow BigSSL's Table 1
  (24 x 1024, 42 x 1024, 36 x 3072) and land within 5 % of its 0.6 B / 1.0 B / 8 B.
- Feed-forward width is 4 x ``d_model`` and the depthwise kernel 5 for the big
  sizes, as in BigSSL. Their subsampling uses 256 channels (as FastConformer
  does): with ``d_model`` channels the subsampling alone would add 30 M (xl) to
  270 M (g) parameters the paper does not count.
- ``tiny``'s subsampling has 64 channels: at 144 its second 3x3 conv cost more than
  the four Conformer layers together (0.81 vs 0.39 s per 6,000-frame CPU step,
  same CTC learning curve per step).
- Measured encoder parameter counts (``count_parameters``): tiny 2.16 M, s 8.37 M,
  m 26.3 M, xl 585.5 M, xxl 1.020 B, g 7.834 B.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bigssl.config import ConfigError
from bigssl.models.conformer import ConformerConfig


def tiny() -> ConformerConfig:
    """4 x 144, ~2.2 M parameters: CPU demo and unit tests."""
    return ConformerConfig(
        d_model=144,
        num_layers=4,
        num_heads=4,
        ffn_dim=576,
        depthwise_conv_kernel_size=15,
        subsampling_channels=64,
    )


def s() -> ConformerConfig:
    """16 x 144 (Conformer S), ~8.4 M parameters."""
    return dataclasses.replace(
        tiny(), num_layers=16, depthwise_conv_kernel_size=31, subsampling_channels=144
    )


def m() -> ConformerConfig:
    """16 x 256 (Conformer M), ~26 M parameters."""
    return dataclasses.replace(s(), d_model=256, ffn_dim=1024, subsampling_channels=256)


def xl() -> ConformerConfig:
    """24 x 1024, 8 heads (BigSSL Conformer XL), ~0.59 B parameters."""
    return ConformerConfig(
        d_model=1024,
        num_layers=24,
        num_heads=8,
        ffn_dim=4096,
        depthwise_conv_kernel_size=5,
        subsampling_channels=256,
    )


def xxl() -> ConformerConfig:
    """42 x 1024, 8 heads (BigSSL Conformer XXL), ~1.02 B parameters."""
    return dataclasses.replace(xl(), num_layers=42)


def g() -> ConformerConfig:
    """36 x 3072, 16 heads (BigSSL Conformer G), ~7.8 B parameters."""
    return dataclasses.replace(xl(), d_model=3072, num_layers=36, num_heads=16, ffn_dim=12288)


PRESETS: dict[str, Callable[[], ConformerConfig]] = {
    "tiny": tiny,
    "s": s,
    "m": m,
    "xl": xl,
    "xxl": xxl,
    "g": g,
}


def build_preset(name: str) -> ConformerConfig:
    """The :class:`ConformerConfig` of preset ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]()


def expand_preset(section: dict, encoder_keys: tuple[str, ...] = ("encoder",)) -> dict:
    """A raw config mapping with ``preset`` expanded: the preset's encoder sizes first,
    explicit ``encoder`` keys (at ``encoder_keys`` inside ``section``) on top. In place."""
    if not section.get("preset"):
        return section
    node = section
    for key in encoder_keys[:-1]:
        node = node.setdefault(key, {})
    encoder = dataclasses.asdict(build_preset(str(section["preset"])))
    encoder.update(node.get(encoder_keys[-1], {}))
    node[encoder_keys[-1]] = encoder
    return section
