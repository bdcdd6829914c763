"""`python -m handbook.bench`: the command line lives in `handbook.bench.cli`, importable without running it."""

import sys

from handbook.bench.cli import main

sys.exit(main())
