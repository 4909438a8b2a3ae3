"""``python -m pinn_jax.study``: the across-env study (:mod:`pinn_jax.study.across_envs`)."""

import sys

from pinn_jax.study.across_envs import main

sys.exit(main())
