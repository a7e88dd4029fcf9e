"""`python -m adaptive_jax.examples.ctr`: see `run.main`."""

import sys

from adaptive_jax.examples.ctr import run

sys.exit(run.main())
