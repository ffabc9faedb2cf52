import sys

from hil.bench.cli import main

sys.exit(main())
