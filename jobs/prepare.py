"""Ray job: import a corpus into webdataset shards + manifest + quarantine (``bigssl prepare``).

    python jobs/prepare.py tts --out s3://bucket/tts tts.hours=1
    python jobs/prepare.py dir --manifest /data/list.jsonl --out s3://bucket/corpus
    python jobs/prepare.py librispeech --root /data/LibriSpeech/train-clean-100 --out s3://bucket/ls100

Runs in the driver process (FLAC encoding, restartable per chunk), so the input list or
folder must be readable where the driver runs; give the driver CPUs
(``ray job submit --entrypoint-num-cpus 8``) so it lands on a worker, not the 0-CPU head.
"""

import sys

from bigssl.cli import main

COMMAND = "prepare"  # `bigssl prepare`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
