"""A plain ``pip install`` of the wheel carries what the package reads at run time.

The recipes (``configs/``) and the Arrow schemas (``schemas/``) are package data in
``bigssl/``; the repository's top-level folders of those names are symlinks into it.
The test builds the wheel from a copy of the source (no ``build/`` in the tree, no race
with another build), installs it into a temporary target with pip, and imports it from
a temporary working directory with the editable install's path taken away, so a
package-data line dropped from pyproject.toml fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "platform" / "bigssl"

# Runs in the installed copy: every shipped config through its stage's typed config
# (unknown keys are errors there), every schema through bigssl.schemas.
PROBE = """
import json, sys
from pathlib import Path

source_root = Path(sys.argv[1]).resolve()
# The editable install is a .pth path to platform/ (or, in setuptools' strict mode, a
# meta-path finder): take both away so nothing can come from the repository.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != source_root]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]

import bigssl
from bigssl import schemas
from bigssl.stages import demo
from bigssl.stages.finetune import FinetuneConfig
from bigssl.stages.pretrain import PretrainConfig
from bigssl.stages.sweep import SweepConfig

# As in test_configs.py: pre-training configs are named by preset, others "STAGE-NAME".
loaders = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "sweep": SweepConfig}
configs = {}
for path in sorted(demo.CONFIGS.glob("*.yaml")):
    stage = path.stem.split("-", 1)[0] if "-" in path.stem else "pretrain"
    configs[path.name] = type(loaders[stage].load(path)).__name__
schema_versions = {}
for path in sorted(schemas.schemas_dir().glob("*.v*.json")):
    name, version = path.stem.split(".v")
    schema_versions[path.name] = schemas.load(name, int(version)).metadata[b"version"].decode()
print(json.dumps({
    "bigssl": bigssl.__file__,
    "configs_dir": str(demo.CONFIGS),
    "schemas_dir": str(schemas.schemas_dir()),
    "configs": configs,
    "schemas": schema_versions,
}))
"""


def _pip(*args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_top_level_configs_and_schemas_are_the_package_data():
    # Documented paths (--config configs/..., schemas/...) resolve into the package.
    assert (REPO / "configs").resolve() == PACKAGE / "configs"
    assert (REPO / "schemas").resolve() == PACKAGE / "schemas"


def test_wheel_install_finds_every_config_and_schema(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "platform", source / "platform", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels, site, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    cwd.mkdir()
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source))
    (wheel,) = wheels.glob("bigssl-*.whl")
    _pip("install", "--no-deps", "-q", "--target", str(site), str(wheel))

    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "platform")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])

    installed = site / "bigssl"
    assert Path(found["bigssl"]) == installed / "__init__.py"
    assert Path(found["configs_dir"]) == installed / "configs"
    assert Path(found["schemas_dir"]) == installed / "schemas"
    assert set(found["configs"]) == {p.name for p in (PACKAGE / "configs").glob("*.yaml")}
    assert {"tiny.yaml", "finetune-tiny.yaml", "sweep-demo.yaml"} <= set(found["configs"])
    assert found["configs"]["sweep-demo.yaml"] == "SweepConfig"
    shipped = {p.name for p in (PACKAGE / "schemas").glob("*.v*.json")}
    assert set(found["schemas"]) == shipped and shipped
    assert all(name.endswith(f".v{v}.json") for name, v in found["schemas"].items())
    assert (installed / "schemas" / "README.md").is_file()
    assert (installed / "py.typed").is_file()  # type checkers read the hints of an install
