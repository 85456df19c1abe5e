"""Ray job: markdown table + WER-vs-labeled-hours plot of results tables (``bigssl report``).

    python jobs/report.py --results s3://b/sweep/results.parquet --out s3://b/report

Reads any number of results tables (merged by sweep and trial id).
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("report", __doc__.split("\n\n")[0])
    p.add_argument("--results", nargs="+", required=True, help="results.parquet files or folders")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import report

        return report.report_main(args.results, args.out)

    return _common.run("report", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
