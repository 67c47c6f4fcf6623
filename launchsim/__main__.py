"""``python -m launchsim``: the same command line as ``launchsim`` and ``run_sim.py``."""

import sys

from launchsim.cli import main

sys.exit(main())
