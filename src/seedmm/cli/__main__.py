"""`python -m seedmm.cli …` runs the command line as `seedmm …` does."""

import sys

from . import main

sys.exit(main())
