"""`python -m handbook.experiment` (and `torchrun ... -m handbook.experiment`): runs `handbook.experiment.main`."""

import sys

from handbook.experiment import main

sys.exit(main())
