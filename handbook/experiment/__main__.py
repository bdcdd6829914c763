"""`python -m handbook.experiment` (and `torchrun ... -m handbook.experiment`): the command line lives in `handbook.experiment.cli`."""

import sys

from handbook.experiment.cli import main

sys.exit(main())
