from pathlib import Path

import pyarrow as pa
import pytest

from bigssl import schemas


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
