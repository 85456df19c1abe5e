"""bigssl: the BigSSL recipe (Zhang et al. 2021) as a Ray-native platform."""

__version__ = "0.1.0"
