"""What every ``jobs/NAME.py`` shares: its arguments, the Ray connection, its exit code.

A job is ``python jobs/NAME.py [inputs] --out DIR [--config FILE] [--address ADDR] [key=value ...]``,
usually as the entrypoint of ``ray job submit`` (see jobs/README.md). The rules, the same
for every stage:

- Input paths are flags named as in ``bigssl NAME`` (``--shards``, ``--manifest``,
  ``--features``, ...); every setting is a ``key=value`` override of the stage's typed
  config, over the YAML of ``--config``. Paths and URIs may be local or ``s3://``.
- Ray: ``--address``, else ``$RAY_ADDRESS`` (``ray job submit`` sets it for the driver,
  so the job attaches to the cluster it was submitted to), else a fresh local Ray. The
  library connects (``bigssl.stages.runtime.init_ray``, the CLI's rule) only once it
  needs Ray, so a missing input fails in a second, not after a Ray start.
- Exit codes are the CLI's, and a Ray job SUCCEEDS only on 0: 0 done; 1 nothing usable
  remained (or anything quarantined under ``--strict``); 2 bad config or arguments (the
  message names the field); 3 missing input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bigssl.config import ConfigError
from bigssl.summary import NothingUsable, TrainingFailed

EXIT_OK = 0
EXIT_NOTHING_USABLE = 1
EXIT_CONFIG = 2  # also argparse's own code for bad arguments
EXIT_MISSING_INPUT = 3
EXIT_TRAINING_FAILED = 4  # the message names the rank and the checkpoint a re-run resumes from


def parser(stage: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=description)


def add_common(p: argparse.ArgumentParser, strict: bool = True) -> None:
    """The flags every job takes, and the trailing overrides (so: after the job's own positionals)."""
    p.add_argument("--out", required=True, help="output folder: local path or s3://bucket/prefix")
    p.add_argument("--config", help="YAML config file (a short diff over the typed defaults)")
    p.add_argument(
        "--address",
        "--ray-address",
        dest="address",
        help="Ray cluster address (default: $RAY_ADDRESS, which `ray job submit` sets; "
        "else a local Ray)",
    )
    if strict:
        p.add_argument("--strict", action="store_true", help="exit 1 if any input is quarantined")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. fbank.dither=0"
    )


def overrides(args: argparse.Namespace, **flags: object) -> list[str]:
    """``key=value`` overrides: the flags given (None = not given), --strict, then the trailing ones."""
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if getattr(args, "strict", False):
        extra.append("strict=true")
    return extra + list(args.overrides)


def run(stage: str, work: Callable[[], dict], result_at: Callable[[dict], str]) -> int:
    """Run ``work`` (one library call returning the stage summary); the exit code of the job."""
    start = time.perf_counter()
    try:
        summary = work()
    except ConfigError as err:
        print(f"jobs/{stage}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except NothingUsable as err:
        print(f"jobs/{stage}: {err}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    except (FileNotFoundError, NotADirectoryError) as err:
        print(f"jobs/{stage}: input not found: {err}", file=sys.stderr)
        return EXIT_MISSING_INPUT
    except TrainingFailed as err:
        print(f"jobs/{stage}: {err}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    wall = time.perf_counter() - start
    print(f"jobs/{stage}: done in {wall:.1f} s; summary at {result_at(summary)}", flush=True)
    return EXIT_OK
