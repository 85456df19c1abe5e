"""Ray job: noisy-student generations: label -> student (``bigssl student``).

    python jobs/student.py --config student.yaml --out s3://b/student generations=2

Teacher, features, manifests and init are config keys (``teacher=... features=...``).
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("student", __doc__.split("\n\n")[0])

    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import student

        return student.student_main(args.config, _common.overrides(args), args.out, args.address)

    return _common.run("student", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
