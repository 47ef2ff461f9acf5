"""`python -m seedmm …` and `torchrun --nproc_per_node N -m seedmm train …` run the command line as `seedmm …` does."""

import sys

from .cli import main

sys.exit(main())
