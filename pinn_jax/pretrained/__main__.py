import sys

from pinn_jax.pretrained import main

sys.exit(main())
