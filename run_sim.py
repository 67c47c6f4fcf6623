"""The launch simulator's command line in a source checkout (installed, the same command is ``launchsim``).

    python run_sim.py --help
    python run_sim.py train
"""

import sys

from launchsim.cli import main

if __name__ == "__main__":
    sys.exit(main())
