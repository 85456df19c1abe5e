"""Ray job: markdown table + WER-vs-labeled-hours plot of results tables (``bigssl report``).

    python jobs/report.py --results s3://b/sweep/results.parquet --out s3://b/report

Reads any number of results tables (merged by sweep and trial id).
"""

import sys

from bigssl.cli import main

COMMAND = "report"  # `bigssl report`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
