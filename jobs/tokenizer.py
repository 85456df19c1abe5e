"""Ray job: sentencepiece tokenizer on a split's labeled text (``bigssl tokenizer``).

    python jobs/tokenizer.py --manifest s3://bucket/splits/labeled_100h.parquet --out s3://bucket/tok vocab_size=1024

Runs on the driver (no Ray tasks): the text of even 34 k h fits one process.
"""

import sys

from bigssl.cli import main

COMMAND = "tokenizer"  # `bigssl tokenizer`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
