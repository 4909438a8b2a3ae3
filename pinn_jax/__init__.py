"""pinn_jax: permutation-invariant neural networks (the attention neuron) for RL, trained with
evolution strategies in JAX. See README.md for the tour."""

__version__ = "0.1.0"
