"""Ray job: teacher pseudo-labeling of unlabeled shards into a ledger (``bigssl label``).

    python jobs/label.py --teacher s3://b/ft/run --shards s3://b/unlabeled --out s3://b/labels

Restartable per shard; another teacher or generation writes beside, never over.
"""

import sys

from bigssl.cli import main

COMMAND = "label"  # `bigssl label`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
