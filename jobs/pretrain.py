"""Ray job: self-supervised pre-training (wav2vec2 / BEST-RQ) on Ray Train (``bigssl pretrain``).

    python jobs/pretrain.py --config configs/xl.yaml --features s3://bucket/features \\
        --out s3://bucket/pretrain [key=value ...]

``scaling.use_gpu=true`` (as in configs/xl.yaml) puts one Ray Train worker on each GPU;
re-running the same ``run_name`` resumes from its newest checkpoint.
"""

import sys

from bigssl.cli import main

COMMAND = "pretrain"  # `bigssl pretrain`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
