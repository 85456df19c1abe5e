"""Connecting to Ray: one place decides which cluster a stage runs on.

``ray.init()`` with no address attaches to whatever cluster was started last on
the machine, which surprises people; here the address is explicit: the
``--ray-address`` flag, else ``RAY_ADDRESS`` (set by ``ray job submit``), else a
fresh local Ray owned by this process.
"""

from __future__ import annotations

import os

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when Ray is already up."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict = {"address": address, "log_to_driver": True}
    if address == "local":
        # A local Ray gets the machine's cores unless told otherwise, and its dashboard
        # listens on loopback only. The dashboard also serves Ray's state API, which Ray
        # Train's placement-group cleaner polls every second: without it a local run
        # logged "Failed to query Ray Train Controller actor state" once per second and
        # the cleaner could not tell a dead controller from a live one. It costs ~1 % of
        # 2 cores (0.55 core-s in a 30 s featurize run).
        kwargs.update(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
    ray.init(**kwargs)
