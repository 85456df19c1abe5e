"""Ray job: WER/CER of a checkpoint on a manifest, Ray Data batch inference (``bigssl evaluate``).

    python jobs/evaluate.py --checkpoint s3://b/ft/run --manifest s3://b/splits/test.parquet --out s3://b/eval

One model replica per actor (``pool.replicas``; a GPU each when the cluster has GPUs).
"""

import sys

from bigssl.cli import main

COMMAND = "evaluate"  # `bigssl evaluate`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
