"""Ray job: webdataset shards -> log-mel feature parquet (``bigssl featurize``).

    python jobs/featurize.py --shards s3://bucket/corpus --out s3://bucket/features [key=value ...]

Runs on Ray Data: one CPU task per shard (``num_cpus_per_task``), so on a cluster the
work lands on the CPU workers; restartable per shard.
"""

import sys

from bigssl.cli import main

COMMAND = "featurize"  # `bigssl featurize`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
