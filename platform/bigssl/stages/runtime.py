"""Ray's runtime: which cluster a stage runs on, and the Ray Data knobs stages set.

``ray.init()`` with no address attaches to whatever cluster was started last on
the machine, which surprises people; here the address is explicit: the
``--ray-address`` flag, else ``RAY_ADDRESS`` (set by ``ray job submit``), else a
fresh local Ray owned by this process.

Ray is imported inside the functions: a stage module imports this one to name what it
will run, and its config must load without Ray (sweep planning, the unit tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when Ray is already up."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict = {"address": address, "log_to_driver": True}
    start = contextlib.nullcontext()
    if address == "local":
        # A local Ray gets the machine's cores unless told otherwise, and its dashboard
        # listens on loopback only. The dashboard also serves Ray's state API, which Ray
        # Train's placement-group cleaner polls every second: without it a local run
        # logged "Failed to query Ray Train Controller actor state" once per second and
        # the cleaner could not tell a dead controller from a live one. It costs ~1 % of
        # 2 cores (0.55 core-s in a 30 s featurize run).
        kwargs.update(
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
        )
        start = loopback_node()
    with start:
        ray.init(**kwargs)


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Start a local Ray whose every server listens on loopback only (issue 25, item 9).

    A local Ray on Linux takes the machine's routable address as its node IP and binds
    GCS, raylet, object manager, workers' gRPC and the dashboard agent to all
    interfaces, with no auth in local mode: measured here, 11 sockets on ``*`` / ``::``.
    Ray 2.60 has no public switch for it: ``ray.init(_node_ip_address="127.0.0.1")`` is
    rewritten to the routable address (``services.resolve_ip_for_localhost``). What Ray
    does on macOS and Windows, where local clusters are loopback-only, is keyed on
    ``ray_constants.ENABLE_RAY_CLUSTER`` (the env var ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``,
    read at import, so too late to set here): false for the duration of the start, every
    server binds 127.0.0.1 and Ray Train's gloo rendezvous does too.
    ``tests/ray/test_listeners.py`` reads the sockets of a real run, so a Ray upgrade
    that moves this fails there, not silently.
    """
    from ray._private import ray_constants

    with _temporarily(ray_constants, "ENABLE_RAY_CLUSTER", False):
        yield


@contextlib.contextmanager
def no_op_reservation() -> Iterator[None]:
    """Ray Data reserves part of the CPUs per operator; with a one-operator plan that
    only throttled launches (each next task started later after the last ended; the
    ~1 s late second task that remains is Ray Data's asynchronous CPU count). Safe for a
    single map over in-memory items: it cannot starve another operator. Restored
    afterwards for the caller's pipelines."""
    import ray.data

    with _temporarily(ray.data.DataContext.get_current(), "op_resource_reservation_enabled", False):
        yield


@contextlib.contextmanager
def one_row_blocks() -> Iterator[None]:
    """Each row a task yields becomes a block at once (``target_max_block_size`` of 1
    byte) instead of being buffered to the task's end, so a task that yields its row
    before its work is seen to progress one executor poll sooner (see featurize's
    ``_featurize_batch``). For maps whose rows are tiny (a shard URI each): there is
    nothing to batch. Restored afterwards for the caller's pipelines."""
    import ray.data

    with _temporarily(ray.data.DataContext.get_current(), "target_max_block_size", 1):
        yield


@contextlib.contextmanager
def _temporarily(obj: object, name: str, value: object) -> Iterator[None]:
    """``obj.name = value`` for the duration of the block, the previous value restored after."""
    previous = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, previous)
