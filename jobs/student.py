"""Ray job: noisy-student generations: label -> student (``bigssl student``).

    python jobs/student.py --config student.yaml --out s3://b/student generations=2

Inputs are flags as in ``bigssl student`` (``--teacher``, ``--features``, ``--manifest``,
``--unlabeled``, ``--init``) or the same config keys (``teacher=... features=...``).
"""

import sys

from bigssl.cli import main

COMMAND = "student"  # `bigssl student`: the same flags, overrides and exit codes

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
