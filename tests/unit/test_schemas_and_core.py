import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from bigssl import schemas

CORE_MODULES = [
    "bigssl.config",
    "bigssl.storage",
    "bigssl.schemas",
    "bigssl.summary",
    "bigssl.audio",
    "bigssl.data.shards",
    "bigssl.data.importers",
    "bigssl.data.prepare",
    "bigssl.data.features",
    "bigssl.data.splits",
    "bigssl.data.bucketing",
    "bigssl.data.tts",
]


def test_core_never_imports_ray():
    code = "import sys; sys.modules['ray'] = None\n" + "".join(
        f"import {m}\n" for m in CORE_MODULES
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_schema_file_loads_with_its_version():
    files = sorted((Path(schemas.schemas_dir())).glob("*.v*.json"))
    assert {f.name.split(".")[0] for f in files} >= {"manifest", "quarantine", "features"}
    for f in files:
        schema = schemas.load(f.name.split(".")[0])
        assert schema.metadata[b"version"].decode() == f.name.split(".v")[1].split(".")[0]


def test_validate_rejects_missing_columns_and_nulls():
    good = {"id": ["a"], "source": ["s"], "stage": ["x"], "reason": ["r"]}
    assert schemas.validate(pa.table(good), "quarantine").num_rows == 1
    with pytest.raises(schemas.SchemaError, match="missing"):
        schemas.validate(pa.table({"id": ["a"]}), "quarantine")
    with pytest.raises(schemas.SchemaError, match="reason"):
        schemas.validate(pa.table({**good, "reason": pa.array([None], pa.string())}), "quarantine")
