"""Ray job: the data-efficiency ablation as a Ray Tune grid (``bigssl sweep``).

    python jobs/sweep.py --config configs/sweep-demo.yaml --corpus s3://b/tts --out s3://b/sweep \\
        grid.seeds=0,1,2 finetune.scaling.use_gpu=true finetune.scaling.num_workers=8

Upstream artifacts (splits, features, tokenizer, one pre-training per preset) are
cached by content under ``cache=`` (default OUT/cache); re-submitting the same sweep
resumes its Tune experiments and runs only the trials without a result.
"""

import sys

from bigssl.cli import main

COMMAND = "sweep"  # `bigssl sweep`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
