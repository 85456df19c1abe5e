"""The cluster files are valid for the tools that read them, and keep the security choices.

- cluster/aws.yaml goes through what `ray up` runs before touching AWS: Ray's
  ``prepare_config`` (defaults merged) and ``validate_config`` (Ray's JSON schema).
- The KubeRay manifests hold the fields KubeRay requires (no operator here, so they are
  asserted one by one).
- jobs/runtime_env.yaml is a valid Ray runtime environment, and every job command line
  in the manifests parses with its job's own argument parser.
- ``init_ray`` joins the cluster it is told to, and a local Ray's dashboard listens on
  loopback only.
"""

from __future__ import annotations

import copy
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def aws() -> dict:
    return _load(CLUSTER / "aws.yaml")


def _validate_like_ray_up(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_aws_config_passes_rays_own_validation(aws):
    prepared = _validate_like_ray_up(aws)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_rays_validation_is_live(aws):
    # The check above must be able to fail: a misspelt key and a node type without
    # resources are both refused.
    import jsonschema

    typo = copy.deepcopy(aws)
    typo["idle_timeout_minutess"] = 5
    with pytest.raises(jsonschema.ValidationError):
        _validate_like_ray_up(typo)
    missing = copy.deepcopy(aws)
    del missing["available_node_types"]["cpu_data"]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        _validate_like_ray_up(missing)


def test_aws_head_takes_no_work_and_serves_loopback_with_token_auth(aws):
    head_type = aws["available_node_types"][aws["head_node_type"]]
    assert head_type["resources"]["CPU"] == 0
    head_start = " ".join(aws["head_start_ray_commands"])
    assert "--num-cpus=0" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    for commands in (aws["head_start_ray_commands"], aws["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in " ".join(commands)
    # The token reaches every node by file mount, from the launching user's token file.
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("pip install" in c and "-e ~/bigssl" in c for c in aws["setup_commands"])


def test_aws_node_types_cover_data_training_inference_and_autoscale(aws):
    types = aws["available_node_types"]
    workers = {n: t for n, t in types.items() if n != aws["head_node_type"]}
    cpu_only = [t for t in workers.values() if not t["resources"].get("GPU")]
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    assert cpu_only and len(gpu) >= 2
    assert any(t["resources"].get("GPU") == 8 for t in gpu)  # an 8-GPU training type
    spot = [t for t in workers.values() if "InstanceMarketOptions" in t["node_config"]]
    assert spot and all(
        t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in spot
    )
    for node_type in workers.values():
        assert 0 == node_type["min_workers"] < node_type["max_workers"] <= aws["max_workers"]
    assert aws["idle_timeout_minutes"] > 0


def _no_credentials(text: str) -> None:
    assert not re.search(r"AKIA[0-9A-Z]{12,}", text)
    for word in ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "aws_access_key_id"):
        assert word not in text


def test_no_file_holds_credentials():
    for path in [*CLUSTER.rglob("*.yaml"), REPO / "jobs" / "runtime_env.yaml"]:
        _no_credentials(path.read_text())


@pytest.fixture(scope="module")
def raycluster() -> dict:
    return _load(CLUSTER / "kuberay" / "raycluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return _load(CLUSTER / "kuberay" / "rayjob.yaml")


def _check_cluster_spec(spec: dict) -> dict[str, dict]:
    """The RayCluster spec fields KubeRay requires; returns the worker groups by name."""
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["rayStartParams"]["num-cpus"] == "0"  # rayStartParams values are strings
    head_containers = head["template"]["spec"]["containers"]
    assert head_containers and all(c["name"] and c["image"] for c in head_containers)
    groups = {}
    for group in spec["workerGroupSpecs"]:
        for key in ("groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"):
            assert key in group, (group.get("groupName"), key)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers)
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        groups[group["groupName"]] = group
    assert len(groups) == len(spec["workerGroupSpecs"])  # names are unique
    return groups


def _gpus(group: dict) -> int:
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    return int(limits.get("nvidia.com/gpu", 0))


def test_raycluster_manifest(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1"
    assert raycluster["kind"] == "RayCluster"
    assert raycluster["metadata"]["name"]
    groups = _check_cluster_spec(raycluster["spec"])
    assert any(_gpus(g) == 0 for g in groups.values())  # a CPU group for data work
    assert sum(_gpus(g) > 0 for g in groups.values()) >= 2  # training and inference
    for group in groups.values():
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert resources["limits"].get("nvidia.com/gpu") == resources["requests"].get(
            "nvidia.com/gpu"
        )


def _job_argv(job: Path, argv: list[str], monkeypatch) -> list[str]:
    """Run ``python jobs/NAME.py ARGV`` as ``__main__`` with the CLI's ``main`` recorded, not run:
    the arguments the job hands to the one front door."""
    from bigssl import cli

    handed: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda args: handed.append(list(args)) or 0)
    monkeypatch.setattr(sys, "argv", [str(job), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(job), run_name="__main__")
    assert exit_.value.code == 0 and len(handed) == 1, job
    return handed[0]


def _check_entrypoint(command: str, monkeypatch) -> None:
    """``python jobs/NAME.py ...``: the job file exists, hands ``NAME ...`` to ``bigssl.cli``,
    and the CLI's parser accepts it."""
    from bigssl import cli

    words = shlex.split(command)
    assert words[0] == "python" and words[1].startswith("jobs/"), command
    job = REPO / words[1]
    assert job.is_file(), command
    argv = _job_argv(job, words[2:], monkeypatch)
    assert argv == [job.stem, *words[2:]]
    args = cli.build_parser().parse_args(argv)
    assert args.command == job.stem and args.out


def test_rayjob_manifest(rayjob, monkeypatch):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"]
    spec = rayjob["spec"]
    _check_entrypoint(spec["entrypoint"], monkeypatch)
    assert "rayClusterSpec" in spec or "clusterSelector" in spec
    if "rayClusterSpec" in spec:
        _check_cluster_spec(spec["rayClusterSpec"])
        assert spec["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["PYTHONPATH"] == "platform"


def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    raw = _load(REPO / "jobs" / "runtime_env.yaml")
    env = RuntimeEnv(**raw)  # Ray's own field validation
    assert env["working_dir"] == "."
    assert all(isinstance(v, str) for v in raw["env_vars"].values())  # Ray requires strings
    assert raw["env_vars"]["PYTHONPATH"] == "platform"  # workers import the shipped code
    assert "pip" not in raw  # dependencies come with the nodes (see the file's comment)


@pytest.mark.parametrize(
    "command",
    [
        "python jobs/prepare.py tts --out s3://b/tts tts.hours=1",
        "python jobs/prepare.py dir --manifest /data/list.jsonl --out s3://b/c --strict",
        "python jobs/split.py --manifest s3://b/c/manifest.parquet --out s3://b/s hours=100,1000",
        "python jobs/featurize.py --shards s3://b/c --out s3://b/f fbank.num_mel_bins=80",
        "python jobs/pretrain.py --config configs/xl.yaml --features s3://b/f --out s3://b/p",
        "python jobs/tokenizer.py --manifest s3://b/s/labeled_100h.parquet --out s3://b/t",
        "python jobs/finetune.py --config configs/finetune-tiny.yaml --features s3://b/f "
        "--manifest s3://b/s/labeled_100h.parquet --tokenizer s3://b/t/tokenizer.model "
        "--init s3://b/p/pretrain-xl --out s3://b/ft",
        "python jobs/evaluate.py --checkpoint s3://b/ft/run --manifest s3://b/s/test.parquet "
        "--out s3://b/e",
        "python jobs/label.py --teacher s3://b/ft/run --manifest s3://b/s/unlabeled.parquet "
        "--out s3://b/l generation=2",
        "python jobs/student.py --out s3://b/nst teacher=s3://b/ft/run generations=2",
        "python jobs/sweep.py --config configs/sweep-demo.yaml --corpus s3://b/c --out s3://b/w",
        "python jobs/report.py --results s3://b/w/results.parquet --out s3://b/r",
        "python jobs/pipeline.py --tts-hours 10 --config configs/sweep-demo.yaml --out s3://b/x",
    ],
)
def test_documented_job_command_lines_parse(command, monkeypatch):
    _check_entrypoint(command, monkeypatch)


def test_every_cli_command_but_demo_is_a_job_and_nothing_else_is():
    from bigssl import cli

    assert {p.stem for p in (REPO / "jobs").glob("*.py")} == set(cli.COMMANDS) - {"demo"}


@pytest.mark.parametrize("job", sorted((REPO / "jobs").glob("*.py")), ids=lambda p: p.stem)
def test_a_job_parses_nothing_itself(job, monkeypatch):
    """One front door: whatever a job is given, the CLI gets it unchanged (its parser, its
    overrides, its exit codes), so the two cannot drift."""
    argv = ["--out", "s3://b/x", "--no-such-flag", "a.b=1"]
    assert _job_argv(job, argv, monkeypatch) == [job.stem, *argv]


@pytest.mark.parametrize(
    ("address", "env", "expected"),
    [
        (None, None, "local"),
        (None, "ray://head:10001", "ray://head:10001"),
        ("auto", "ray://head:10001", "auto"),
    ],
)
def test_init_ray_picks_the_cluster_and_a_local_dashboard_on_loopback(
    monkeypatch, address, env, expected
):
    """A local Ray serves its dashboard (and the state API Ray Train's cleaner polls) on
    loopback only; joining a cluster leaves its dashboard to the cluster's own config."""
    import ray

    from bigssl.stages import runtime

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    runtime.init_ray(address, num_cpus=2)
    (kwargs,) = calls
    assert kwargs["address"] == expected
    if expected == "local":
        assert kwargs["include_dashboard"] is True
        assert kwargs["dashboard_host"] == "127.0.0.1"
        assert kwargs["_node_ip_address"] == "127.0.0.1"  # every other server too
        assert kwargs["num_cpus"] == 2
    else:
        assert "dashboard_host" not in kwargs and "include_dashboard" not in kwargs
        assert "num_cpus" not in kwargs and "_node_ip_address" not in kwargs


def test_report_takes_its_results_as_a_flag_or_positional_and_needs_some(tmp_path, capsys):
    from bigssl import cli

    parser = cli.build_parser()
    flag = parser.parse_args(["report", "--results", "a.parquet", "b", "--out", "o"])
    positional = parser.parse_args(["report", "a.parquet", "b", "--out", "o"])
    assert [*flag.results, *flag.results_flag] == [*positional.results] == ["a.parquet", "b"]
    assert cli.main(["report", "--out", str(tmp_path / "r")]) == 2  # a bad argument, named
    assert "results" in capsys.readouterr().err
