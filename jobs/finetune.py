"""Ray job: CTC fine-tuning on a label budget on Ray Train (``bigssl finetune``).

    python jobs/finetune.py --config configs/finetune-tiny.yaml --features s3://b/features \\
        --manifest s3://b/splits/labeled_100h.parquet --tokenizer s3://b/tok/tokenizer.model \\
        --init s3://b/pretrain/run --out s3://b/ft [key=value ...]

``scaling.use_gpu=true`` puts one Ray Train worker per GPU; the same ``run_name`` resumes.
"""

import sys

from bigssl.cli import main

COMMAND = "finetune"  # `bigssl finetune`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
