from dataclasses import dataclass, field

import pytest

from bigssl.config import Config, ConfigError, check
from bigssl.data.features import FeaturizeConfig


@dataclass
class Inner(Config):
    size: int = 4
    rate: float = 0.5

    def validate(self) -> None:
        check(self.size > 0, "size", "must be > 0")


@dataclass
class Outer(Config):
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    mode: str | None = None


def test_defaults_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  size: 8\n")
    cfg = Outer.load(path, ["inner.rate=2", "tags=a,b"])
    assert (cfg.name, cfg.inner.size, cfg.inner.rate, cfg.tags) == ("y", 8, 2.0, ["a", "b"])


def test_unknown_key_is_named_with_its_dotted_path():
    with pytest.raises(ConfigError) as err:
        Outer.from_dict({"inner": {"stpes": 3}})
    assert err.value.field == "inner.stpes"


def test_wrong_type_and_failed_validation_name_the_field():
    with pytest.raises(ConfigError) as err:
        Outer.load(None, ["inner.size=big"])
    assert err.value.field == "inner.size"
    with pytest.raises(ConfigError) as err:
        Outer.load(None, ["inner.size=0"])
    assert err.value.field == "inner.size" and "must be > 0" in str(err.value)
    with pytest.raises(ConfigError) as err:
        FeaturizeConfig.load(None, ["fbank.normalize=global"])
    assert err.value.field == "fbank.normalize"


def test_bool_is_not_an_int_and_malformed_override_is_rejected():
    with pytest.raises(ConfigError):
        Outer.from_dict({"inner": {"size": True}})
    with pytest.raises(ConfigError):
        Outer.load(None, ["inner.size"])
