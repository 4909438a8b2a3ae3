"""``python -m pinn_jax demo``: write (and optionally serve) the browser demo."""

import sys

from pinn_jax.tools.demo import main

sys.exit(main())
