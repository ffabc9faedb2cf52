"""``python -m tools.study ...``: the ``gridwarden study`` command, standalone."""

import sys

from tools.study.cli import main

sys.exit(main(["study", *sys.argv[1:]]))
