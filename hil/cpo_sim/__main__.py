import sys

from hil.cpo_sim import main

sys.exit(main())
