"""Ray job: the whole recipe, prepare a corpus then sweep it (``bigssl pipeline``).

    python jobs/pipeline.py --librispeech /mnt/LibriSpeech/train-clean-100 \\
        --config configs/sweep-demo.yaml --out s3://b/run grid.seeds=0,1,2

One corpus flag (``--tts-hours H``, ``--manifest LIST`` or ``--librispeech ROOT``);
every other setting is a ``key=value`` override of the sweep config. Re-submitting
resumes: prepare per chunk, upstream stages from their content cache, trials from
their Tune experiments.
"""

import sys

from bigssl.cli import main

COMMAND = "pipeline"  # `bigssl pipeline`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
