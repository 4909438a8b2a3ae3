"""The vision attention neuron: a permutation-invariant policy over a set of image patches.

It observes what :class:`~pinn_jax.envs.patches.PatchWrapper` gives, ``(N, F)``: ``N`` patches in any order,
each the last ``frames`` frames of its ``D = F / frames`` pixels, oldest first. Per step, with previous
action ``a`` (``act_dim``,):

1. keys ``K = tanh([d_i, a] W_k + b_k)`` (N, key_dim), ``d_i`` patch i's ``frames - 1`` differences of
   consecutive frames (with ``key_frame``, followed by its latest frame: ``[d_i, x_i^last, a]``);
2. values ``V = LN(x_i) W_v + b_v`` (N, value_dim), ``LN(x_i)`` patch i's frames each layer-normalised
   over its ``D`` pixels (no learned scale or shift);
3. queries ``Q = (E W_q + b_q) / sqrt(key_dim)`` (M, key_dim): ``E`` a fixed 2-D sinusoidal embedding of the
   cells of a ``grid x grid`` latent grid (``M = grid**2``; a cell's row and column, ``query_dim / 2`` each,
   with :func:`~pinn_jax.policies.attention_neuron.pos_table`'s encoding);
4. attention ``A = softmax(Q K^T)`` over the patches (M, N), latent ``L = LN(relu(A V))`` (M, value_dim);
5. head: the latent grid flattened, one tanh layer of ``head_hidden`` units (none when 0), then a linear
   layer to the action (:func:`~pinn_jax.policies.base.head_output`: argmax for discrete actions).

Every patch goes through the same key and value maps and the patches meet only in the sum ``A V`` over
patches, so the action does not depend on their order; their layout lives in the queries, one per latent
cell. The design is the authors' ``VisionAttentionNeuronLayer`` (google/brain-tokyo-workshop,
``AttentionNeuron/solutions/torch_modules.py``): keys from frame differences and the previous action, values
the layer-normalised patch, fixed sinusoidal queries through a learned linear map, softmax over patches
scaled by ``1/sqrt(d)``, then relu and a layer norm giving the latent grid. Two departures: the keys go
through a ``tanh`` (with a linear key and a softmax over patches, the action's term and the key bias add the
same logit to every patch of a query and cancel, so the authors' previous action has no effect), and the
head is a small MLP instead of their top-k self-attention and LSTM (CarRacing) or CNN (Puzzle Pong), to stay
at a few thousand parameters for ES. ``key_frame`` (off by default, as theirs) is a third, optional one: keys
from differences alone cannot tell a still object from the background (MinAtar's paddle between moves, its
bricks), so no query can single it out; with the latest frame in the key input, one can. The queries'
embedding is 2-D (row and column halves) where theirs is a 1-D table over the cells.

Parameter pytree (plain nested dict of float32 arrays)::

    {"w_q": (query_dim, key_dim), "b_q": (key_dim,),
     "w_k": ((frames - 1 + key_frame) * D + act_dim, key_dim), "b_k": (key_dim,),  # differences[, frame], action
     "w_v": (frames * D, value_dim), "b_v": (value_dim,),
     "head_hidden": {"kernel": (M * value_dim, head_hidden), "bias": (head_hidden,)},  # head_hidden > 0
     "head": {"kernel": (head_hidden or M * value_dim, act_dim), "bias": (act_dim,)}}

2611 parameters for the defaults on Breakout-MinAtar with 2x2 patches (D = 16, act_dim = 3): queries 72,
keys 160, values 264, head 2115.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax.policies.attention_neuron import pos_table
from pinn_jax.policies.base import PolicyBase, head_output

__all__ = ["VisionAttentionPolicy", "grid_embedding", "layer_norm", "reference_step"]

LN_EPS = 1e-5  # PyTorch's LayerNorm default, as the authors'


def layer_norm(x: jax.Array) -> jax.Array:
    """Normalise the last axis to zero mean and unit variance (no learned scale or shift)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LN_EPS)


def grid_embedding(grid: int, dim: int) -> np.ndarray:
    """Fixed 2-D sinusoidal embedding of a ``grid x grid`` grid's cells, row by row: (grid**2, dim), float32;
    a cell's row encoding in the first ``dim / 2`` columns, its column encoding in the rest."""
    table = pos_table(grid, dim // 2)
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    return np.concatenate([table[rows], table[cols]], axis=1)


@dataclasses.dataclass(frozen=True)
class VisionAttentionPolicy(PolicyBase):
    """The vision attention neuron (module docstring) on ``(patches, frames * D)`` observations.

    Attributes:
        act_dim: action size.
        discrete: ``act_dim`` logits, the action their argmax (one-hot as the previous action).
        frames: frames per patch in the observation (>= 2: the keys are their differences).
        grid: side of the latent grid, ``grid**2`` queries.
        query_dim: size of the fixed 2-D query embedding (even: half rows, half columns).
        key_dim: size of queries and keys.
        value_dim: size of the values, and of each latent cell.
        head_hidden: width of the head's tanh layer (0: a linear head on the latent grid).
        key_frame: the keys also see each patch's latest frame, not only its differences.
    """

    act_dim: int = 1
    discrete: bool = False
    frames: int = 2
    grid: int = 4
    query_dim: int = 8
    key_dim: int = 8
    value_dim: int = 8
    head_hidden: int = 16
    key_frame: bool = False

    takes_patches = True

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"the vision attention neuron keys patches by frame differences: frames must be >= 2, "
                             f"got {self.frames}")
        if self.query_dim < 2 or self.query_dim % 2:
            raise ValueError(f"query_dim must be even and >= 2 (half rows, half columns), got {self.query_dim}")

    @property
    def kind(self) -> str:
        return "vision_attention"

    @property
    def queries(self) -> np.ndarray:
        """The fixed query embedding ``E`` (grid**2, query_dim)."""
        return grid_embedding(self.grid, self.query_dim)

    def patch_pixels(self, obs_dim: int) -> int:
        """``D``, the pixels of one frame of a patch, for ``obs_dim`` features per patch."""
        if obs_dim % self.frames:
            raise ValueError(f"{obs_dim} features per patch are not {self.frames} frames of equal size")
        return obs_dim // self.frames

    def _shapes(self, obs_dim: int) -> dict[str, tuple[int, ...]]:
        d, m = self.patch_pixels(obs_dim), self.grid ** 2 * self.value_dim
        shapes = {"w_q": (self.query_dim, self.key_dim), "b_q": (self.key_dim,),
                  "w_k": ((self.frames - 1 + self.key_frame) * d + self.act_dim, self.key_dim),
                  "b_k": (self.key_dim,),
                  "w_v": (self.frames * d, self.value_dim), "b_v": (self.value_dim,)}
        if self.head_hidden:
            shapes |= {"head_hidden/kernel": (m, self.head_hidden), "head_hidden/bias": (self.head_hidden,)}
        return shapes | {"head/kernel": (self.head_hidden or m, self.act_dim), "head/bias": (self.act_dim,)}

    def num_params(self, obs_dim: int) -> int:
        """2611 for the defaults with act_dim=3 on 2x2 patches of 4 channels, 2 frames (obs_dim 32)."""
        return sum(int(np.prod(s)) for s in self._shapes(obs_dim).values())

    def init(self, key: jax.Array, obs_dim: int) -> dict:
        """PyTorch-default-like uniform init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases."""
        shapes = self._shapes(obs_dim)
        params: dict = {}
        for k, (name, shape) in zip(jax.random.split(key, len(shapes)), shapes.items()):
            fan_in = shapes[name.replace("b_", "w_").replace("/bias", "/kernel")][0]
            bound = 1.0 / np.sqrt(fan_in)
            leaf = jax.random.uniform(k, shape, jnp.float32, -bound, bound)
            if "/" in name:
                layer, part = name.split("/")
                params.setdefault(layer, {})[part] = leaf
            else:
                params[name] = leaf
        return params

    def initial_state(self, obs_dim: int) -> tuple:
        """No recurrent state: the frame history is in the observation."""
        return ()

    def prepare(self, params: dict) -> dict:
        """The scaled queries ``(E W_q + b_q) / sqrt(key_dim)`` and the key weights split into difference and
        action rows."""
        q = (jnp.asarray(self.queries) @ params["w_q"] + params["b_q"]) / np.sqrt(self.key_dim)
        return {**params, "q": q, "w_diff": params["w_k"][:-self.act_dim], "w_act": params["w_k"][-self.act_dim:]}

    def step(self, prepared: dict, state: tuple, obs: jax.Array, prev_action: jax.Array):
        """One step on ``obs`` (N, frames * D); returns ``((), action (act_dim,), aux)`` with
        ``aux = {"attention": A (M, N), "latent": L (M, value_dim)}``."""
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim != 2:
            raise ValueError(f"VisionAttentionPolicy.step expects patches (N, features), got shape {obs.shape}")
        n, f = obs.shape
        x = obs.reshape(n, self.frames, self.patch_pixels(f))
        diffs = (x[:, 1:] - x[:, :-1]).reshape(n, -1)
        if self.key_frame:
            diffs = jnp.concatenate([diffs, x[:, -1]], axis=1)
        shared = jnp.asarray(prev_action, jnp.float32) @ prepared["w_act"] + prepared["b_k"]  # the same for all
        keys = jnp.tanh(diffs @ prepared["w_diff"] + shared)
        values = layer_norm(x).reshape(n, -1) @ prepared["w_v"] + prepared["b_v"]
        attn = jax.nn.softmax(prepared["q"] @ keys.T, axis=-1)
        latent = layer_norm(jax.nn.relu(attn @ values))
        h = latent.reshape(-1)
        if self.head_hidden:
            h = jnp.tanh(h @ prepared["head_hidden"]["kernel"] + prepared["head_hidden"]["bias"])
        pre = h @ prepared["head"]["kernel"] + prepared["head"]["bias"]
        return state, head_output(pre, self.discrete), {"attention": attn, "latent": latent, "pre": pre}


def reference_step(policy: VisionAttentionPolicy, params: dict, obs: np.ndarray, prev_action: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The module docstring's formulas one patch and one query at a time, in float64 NumPy (for tests):
    ``(head pre-activations (act_dim,), attention (M, N))``."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    obs, prev_action = np.asarray(obs, np.float64), np.asarray(prev_action, np.float64)
    d = policy.patch_pixels(obs.shape[1])

    def norm(v: np.ndarray) -> np.ndarray:
        return (v - v.mean()) / np.sqrt(v.var() + LN_EPS)

    keys, values = [], []
    for patch in obs:
        frames = [patch[j * d:(j + 1) * d] for j in range(policy.frames)]
        diffs = [frames[j + 1] - frames[j] for j in range(policy.frames - 1)] + frames[-1:] * policy.key_frame
        keys.append(np.tanh(np.concatenate([*diffs, prev_action]) @ p["w_k"] + p["b_k"]))
        values.append(np.concatenate([norm(fr) for fr in frames]) @ p["w_v"] + p["b_v"])
    half = policy.query_dim // 2
    latent, attention = [], []
    for cell in range(policy.grid ** 2):
        row, col = divmod(cell, policy.grid)
        angles = [pos / 10000 ** (2 * (j // 2) / half) for pos in (row, col) for j in range(half)]
        embedding = np.array([np.sin(a) if j % 2 == 0 else np.cos(a) for a, j in zip(angles, [*range(half)] * 2)])
        query = (embedding @ p["w_q"] + p["b_q"]) / np.sqrt(policy.key_dim)
        logits = np.array([query @ k for k in keys])
        weights = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        latent.append(norm(np.maximum(sum(w * v for w, v in zip(weights, values)), 0.0)))
        attention.append(weights)
    h = np.concatenate(latent)
    if policy.head_hidden:
        h = np.tanh(h @ p["head_hidden"]["kernel"] + p["head_hidden"]["bias"])
    return h @ p["head"]["kernel"] + p["head"]["bias"], np.array(attention)
