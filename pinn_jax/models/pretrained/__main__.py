import sys

from pinn_jax.models.pretrained import main

sys.exit(main())
