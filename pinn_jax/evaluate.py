"""``python -m pinn_jax.evaluate``: the evaluate CLI (:mod:`pinn_jax.study.evaluate`), as ``python -m pinn_jax
evaluate``. A command only: in Python, ``pinn_jax.evaluate`` is the API's function, so importing this module does
nothing (and would hide that function: use the API)."""

import sys

if __name__ == "__main__":
    from pinn_jax.study.evaluate import main

    sys.exit(main())
