"""The package behind the Semantic-ID Generative Recommendation Handbook notebooks."""

import os

# OpenMP threads (faiss's k-means and OPQ) busy-wait between parallel regions by default, which
# on a busy CPU steals the cores the other threads need: an OPQ fit took 134 s spinning and 7 s
# sleeping on a loaded 2-core machine, with the same result. OpenMP reads the variable once, when
# its library loads, so it is set here, before any module of the package imports faiss; a value
# the user chose wins. (torch loads its own OpenMP: imported before handbook, it keeps the default.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Denormal floats are computed as zero from here on, before torch starts its worker threads
# (`handbook.device.flush_denormals` says why). The price: `import handbook` imports torch (about
# 1 s), also for the modules that need none (runner, student, paths).
from handbook.device import flush_denormals  # noqa: E402

flush_denormals()

__version__ = "0.1.0"
