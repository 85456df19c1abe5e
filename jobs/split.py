"""Ray job: nested label budgets, dev/test and the unlabeled pool (``bigssl split``).

    python jobs/split.py --manifest s3://bucket/corpus/manifest.parquet \\
        --out s3://bucket/splits hours=100,1000 test_hours=10

Runs in the driver process (reading and writing manifests, no Ray tasks); budgets and
held-out hours are ``key=value`` settings of ``SplitConfig``.
"""

import sys

from bigssl.cli import main

COMMAND = "split"  # `bigssl split`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
