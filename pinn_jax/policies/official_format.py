"""The authors' flat weight format for the attention neuron: their released cart-pole vector (PyTorch
layout, 913 floats) to and from a params pytree of :class:`AttentionNeuronPolicy`."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from pinn_jax.policies.attention_neuron import AttentionNeuronPolicy

__all__ = ["OFFICIAL_NUM_PARAMS", "fold_gains", "from_official_flat", "to_official", "load_official"]

OFFICIAL_NUM_PARAMS = 913


def _walk(tree: dict, path: tuple) -> Any:
    """The node of a nested params dict / list at ``path``."""
    for part in path:
        tree = tree[part]
    return tree


def _official_slices(policy: AttentionNeuronPolicy) -> list[tuple[tuple, tuple[int, ...], bool]]:
    """(param path, torch shape, transpose?) in the authors' flat order (their ``net`` is a Sequential of
    ``head_layers`` Linear + Tanh pairs, then the output Linear)."""
    h, m = policy.pos_em_dim, policy.hidden_dim
    hidden = [item for i in range(policy.head_layers)
              for item in ((("head_hidden", i, "kernel"), (m, m), True), (("head_hidden", i, "bias"), (m,), False))]
    return [
        (("lstm", "weight_ih"), (4 * h, 1 + policy.act_dim), False),
        (("lstm", "weight_hh"), (4 * h, h), False),
        (("lstm", "bias_ih"), (4 * h,), False),
        (("lstm", "bias_hh"), (4 * h,), False),
        (("w_q",), (policy.msg_dim, h), True),  # proj_q.weight
        (("w_k",), (policy.msg_dim, h), True),  # proj_k.weight
        *hidden,  # net.0 ... net.2(L-1)
        (("head", "kernel"), (policy.act_dim, m), True),  # net.2L.weight
        (("head", "bias"), (policy.act_dim,), False),
    ]


def fold_gains(params: dict, policy: AttentionNeuronPolicy, unfold: bool = False) -> dict:
    """``W_q`` times ``attention_gain`` and the output layer times ``action_gain``: the policy's fixed gains
    folded into the parameters (the authors' layout has none); ``unfold`` divides them out instead."""
    def scaled(x: Any, gain: float) -> Any:
        return x / gain if unfold else x * gain

    params = {**params, "w_q": scaled(params["w_q"], policy.attention_gain)}
    return {**params, "head": {k: scaled(v, policy.action_gain) for k, v in params["head"].items()}}


def from_official_flat(flat: np.ndarray, policy: AttentionNeuronPolicy | None = None) -> dict:
    """Convert the authors' flat vector (PyTorch layout) into a params pytree.

    The authors' model has no ``attention_gain`` or ``action_gain``: for a policy with a gain, ``W_q`` (or
    the output layer) is divided by it so that the policy computes the same actions.
    """
    policy = policy or AttentionNeuronPolicy()
    flat = np.asarray(flat)
    expected = policy.num_params()
    if flat.ndim != 1 or flat.size != expected:
        raise ValueError(f"expected a flat vector of {expected} parameters, got shape {flat.shape}")
    params: dict = {"lstm": {}, "head": {}}
    if policy.head_layers:
        params["head_hidden"] = [{} for _ in range(policy.head_layers)]
    off = 0
    for path, shape, transpose in _official_slices(policy):
        size = int(np.prod(shape))
        arr = flat[off : off + size].reshape(shape)  # C order, as torch .ravel()
        off += size
        arr = jnp.asarray(arr.T if transpose else arr, jnp.float32)
        _walk(params, path[:-1])[path[-1]] = arr
    assert off == expected
    return fold_gains(params, policy, unfold=True)


def to_official(params: dict, policy: AttentionNeuronPolicy | None = None) -> np.ndarray:
    """Inverse of :func:`from_official_flat`: params -> authors' flat float32 vector (``attention_gain``
    folded into ``W_q``, ``action_gain`` into the output layer)."""
    policy = policy or AttentionNeuronPolicy()
    params = fold_gains(params, policy)
    parts = []
    for path, shape, transpose in _official_slices(policy):
        arr = np.asarray(_walk(params, path), np.float32)
        arr = arr.T if transpose else arr
        if arr.shape != shape:
            raise ValueError(f"param {'/'.join(map(str, path))} has shape {arr.shape}, expected {shape} (torch layout)")
        parts.append(arr.ravel())
    return np.concatenate(parts)


def load_official(path: str | os.PathLike, policy: AttentionNeuronPolicy | None = None) -> dict:
    """Read the authors' released cart-pole weights (``np.savez`` with key ``params``).

    Args:
        path: the ``model.npz`` file (:func:`pinn_jax.models.official.weights_path` finds or fetches it).
        policy: the config to load into (default config; must have 913 params).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable npz (empty, torn), or lacks the single ``params`` key, or has the
            wrong size.
    """
    policy = policy or AttentionNeuronPolicy()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official AttentionNeuron weights not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if keys != ["params"]:
                raise ValueError(f"{path}: expected an npz with the single key 'params', found keys {keys}")
            flat = np.asarray(data["params"])
    except (EOFError, zipfile.BadZipFile, zlib.error) as e:  # empty or torn
        raise ValueError(f"{path} is not a readable .npz file ({type(e).__name__})") from None
    expected = policy.num_params()
    if flat.ndim != 1 or flat.size != expected:
        raise ValueError(f"{path}: expected 'params' to be a flat vector of {expected} values, got shape {flat.shape}")
    return from_official_flat(flat.astype(np.float32), policy)
