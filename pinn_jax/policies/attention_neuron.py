"""Permutation-invariant AttentionNeuron policy (Tang & Ha, 2021), cart-pole config.

Per time step, with observation ``o`` of any length ``N`` and previous action
``a_prev`` (``act_dim``,):

1. every feature ``o_i`` is paired with ``a_prev``; ``[o_i, a_prev]`` goes
   through ONE shared LSTM cell (PyTorch ``LSTMCell`` semantics, hidden size
   ``pos_em_dim``) that keeps its own ``(h_i, c_i)`` per feature.  The new
   hidden states form the keys ``K`` (N, pos_em_dim);
2. the queries ``Q`` are a FIXED sinusoidal table (hidden_dim, pos_em_dim);
3. attention ``A = tanh((Q W_q)(K W_k)^T / s)`` (hidden_dim, N), no softmax,
   ``s = 1`` or ``sqrt(msg_dim)`` when ``scale=True``;
4. latent ``m = tanh(A @ o)`` (hidden_dim,) (identity value projection);
5. ``head_layers`` tanh layers ``m <- tanh(m @ W_l + b_l)`` of width hidden_dim (0 in the paper's
   cart-pole agent; the authors' fully connected solution calls them ``num_hidden_layers``);
6. action ``a = tanh(m @ W + b)`` (act_dim,).

Parameter pytree (plain nested dict of float32 arrays, PyTorch shapes for the
LSTM so the authors' weights map over one-to-one)::

    {
      "lstm": {"weight_ih": (4H, 1 + act_dim), "weight_hh": (4H, H),
               "bias_ih": (4H,), "bias_hh": (4H,)},      # gate rows i, f, g, o
      "w_q": (H, msg_dim),        # = proj_q.weight.T
      "w_k": (H, msg_dim),        # = proj_k.weight.T
      "head": {"kernel": (hidden_dim, act_dim), "bias": (act_dim,)},
      "head_hidden": [{"kernel": (hidden_dim, hidden_dim), "bias": (hidden_dim,)}, ...],  # head_layers > 0
    }

with ``H = pos_em_dim``.  The default config has 913 parameters
(LSTM 384, W_q 256, W_k 256, head 17), independent of the number of features.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax.policies.base import PolicyBase, head_output

__all__ = [
    "AttentionNeuronPolicy",
    "LSTMState",
    "BatchState",
    "pos_table",
    "lstm_cell",
    "attention_logits_reference",
    "reference_step",
]

class LSTMState(NamedTuple):
    """Per-feature LSTM state of one agent: ``h``, ``c`` both (n_features, H)."""

    h: jax.Array
    c: jax.Array


class BatchState(NamedTuple):
    """State of ``B`` episodes of one agent stepped in lockstep by ``step_batch``.

    Feature-major layout: column ``n * B + b`` holds feature ``n`` of episode ``b``, so every
    array has one long contiguous minor axis (``N * B``), which XLA's CPU loop emitter
    vectorises (minor axes of 8 or 16, as in the per-agent ``(N, H)`` layout, compile to
    scalar code).

    ``h``, ``c``: (H, N * B) LSTM states; ``action``: (act_dim, N * B), episode ``b``'s
    previous action repeated in each of its columns (zeros at episode start).
    """

    h: jax.Array
    c: jax.Array
    action: jax.Array


@functools.lru_cache(maxsize=None)
def _pos_table_cached(n_pos: int, dim: int) -> np.ndarray:
    table = pos_table(n_pos, dim)
    table.setflags(write=False)
    return table


def pos_table(n_pos: int, dim: int) -> np.ndarray:
    """Fixed sinusoidal position table (n_pos, dim), float32.

    ``angle(i, j) = i / 10000 ** (2 * (j // 2) / dim)``; sin on even columns,
    cos on odd columns.  Computed in float64 then cast.
    """
    i = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim)[None, :]
    angle = i / np.power(10000.0, 2.0 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


def lstm_cell(lstm: dict, x: jax.Array, h: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PyTorch ``LSTMCell`` on a batch: x (B, in), h, c (B, H) -> (h', c').

    ``gates = x W_ih^T + b_ih + h W_hh^T + b_hh`` split in row blocks i, f, g, o.
    Unfused reference implementation (the policy's ``step`` uses a fused one).
    """
    gates = x @ lstm["weight_ih"].T + lstm["bias_ih"] + h @ lstm["weight_hh"].T + lstm["bias_hh"]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
    return h_new, c_new


def attention_logits_reference(params: dict, keys: jax.Array, queries: jax.Array, scale: float = 1.0) -> jax.Array:
    """Unfolded logits ``(Q W_q)(K W_k)^T / scale`` (n_queries, n_features)."""
    q = queries @ params["w_q"]
    k = keys @ params["w_k"]
    return (q @ k.T) / scale


@dataclasses.dataclass(frozen=True)
class AttentionNeuronPolicy(PolicyBase):
    """AttentionNeuron permutation-invariant policy (paper's cart-pole config).

    Parameter count: ``4H(1 + act_dim) + 4H*H + 8H`` (LSTM) ``+ 2*H*msg_dim``
    (W_q, W_k) ``+ head_layers*(hidden_dim**2 + hidden_dim)`` ``+ hidden_dim*act_dim + act_dim`` (head),
    ``H = pos_em_dim``.
    **913** for the defaults (act_dim=1, hidden_dim=16, msg_dim=32,
    pos_em_dim=8) = LSTM 384 + W_q 256 + W_k 256 + head 17, for any number of
    observation features.

    Attributes:
        act_dim: action size.
        hidden_dim: number of query rows M = size of the latent ``m``.
        msg_dim: projection dimension of W_q / W_k.
        pos_em_dim: query embedding size, also the LSTM hidden size.
        scale: divide attention logits by ``sqrt(msg_dim)`` when True.
        attention_gain: multiply attention logits by this fixed factor (1 in the paper). With a gain ``c``
            the parameters act like the paper's with ``W_q`` multiplied by ``c``; a gain above 1 lets ES
            reach saturated attention (the regime of the authors' weights) with small weights.
        action_gain: multiply the output layer's pre-activation by this fixed factor (1 in the paper), the
            same as its kernel and bias multiplied by it; a gain above 1 starts the search among near
            bang-bang actions (the authors' agent acts at ``|pre-activation|`` ~ 2 near the top).
        head_layers: tanh layers of width ``hidden_dim`` before the output layer (0 in the paper's cart-pole
            agent): a nonlinear head over the latent, which a linear head combines almost additively.
        init_forget_bias: added to the LSTM forget-gate bias (half to ``bias_ih``, half to ``bias_hh``) of the
            starting parameters, ``init`` and the zeros search start (0 in the paper; Keras' ``unit_forget_bias``
            adds 1). At 5 the forget gate starts at sigmoid(5) = 0.993, a memory of ~150 steps instead of ~1.
            It changes no parameter count and no trained policy.
        discrete: ``act_dim`` logits, the action their argmax (one-hot as the previous action).
    """

    act_dim: int = 1
    hidden_dim: int = 16
    msg_dim: int = 32
    pos_em_dim: int = 8
    scale: bool = False
    attention_gain: float = 1.0
    action_gain: float = 1.0
    head_layers: int = 0
    init_forget_bias: float = 0.0
    discrete: bool = False

    batch_obs_axis = 1  # step_batch takes feature-major observations (N, B)

    # ------------------------------------------------------------------ basics
    @property
    def kind(self) -> str:
        return "attention_neuron"

    @property
    def queries(self) -> np.ndarray:
        """Fixed (not learned) query table Q, (hidden_dim, pos_em_dim)."""
        return _pos_table_cached(self.hidden_dim, self.pos_em_dim)

    @property
    def logit_scale(self) -> float:
        """Divisor of the attention logits: ``sqrt(msg_dim)`` (when ``scale``) over ``attention_gain``."""
        return (float(np.sqrt(self.msg_dim)) if self.scale else 1.0) / self.attention_gain

    def num_params(self, obs_dim: int | None = None) -> int:
        """913 for the defaults; ``obs_dim`` is accepted and ignored."""
        h = self.pos_em_dim
        lstm = 4 * h * (1 + self.act_dim) + 4 * h * h + 2 * 4 * h
        proj = 2 * h * self.msg_dim
        m = self.hidden_dim
        head = self.head_layers * (m * m + m) + m * self.act_dim + self.act_dim
        return lstm + proj + head

    def init(self, key: jax.Array, obs_dim: int | None = None) -> dict:
        """PyTorch-default-like uniform init; ``obs_dim`` is irrelevant."""
        h, m = self.pos_em_dim, self.hidden_dim
        ks = jax.random.split(key, 8 + 2 * self.head_layers)

        def u(k, shape, fan_in):
            bound = 1.0 / np.sqrt(fan_in)
            return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

        params = {
            "lstm": {
                "weight_ih": u(ks[0], (4 * h, 1 + self.act_dim), h),
                "weight_hh": u(ks[1], (4 * h, h), h),
                "bias_ih": u(ks[2], (4 * h,), h),
                "bias_hh": u(ks[3], (4 * h,), h),
            },
            "w_q": u(ks[4], (h, self.msg_dim), h),
            "w_k": u(ks[5], (h, self.msg_dim), h),
            "head": {
                "kernel": u(ks[6], (m, self.act_dim), m),
                "bias": u(ks[7], (self.act_dim,), m),
            },
        }
        if self.head_layers:
            params["head_hidden"] = [{"kernel": u(ks[8 + 2 * i], (m, m), m), "bias": u(ks[9 + 2 * i], (m,), m)}
                                     for i in range(self.head_layers)]
        return self._with_forget_bias(params)

    def search_start(self, template: dict) -> dict:
        """Zeros, but for ``init_forget_bias`` on the forget gates."""
        return self._with_forget_bias(jax.tree.map(jnp.zeros_like, template))

    def _with_forget_bias(self, params: dict) -> dict:
        h = self.pos_em_dim
        lstm = {**params["lstm"]}
        for name in ("bias_ih", "bias_hh"):  # gate rows i, f, g, o
            lstm[name] = lstm[name].at[h:2 * h].add(0.5 * self.init_forget_bias)
        return {**params, "lstm": lstm}

    def initial_state(self, obs_dim: int) -> LSTMState:
        """Zero per-feature LSTM state, ``h`` and ``c`` of shape (obs_dim, H)."""
        z = jnp.zeros((int(obs_dim), self.pos_em_dim), jnp.float32)
        return LSTMState(h=z, c=z)

    # --------------------------------------------------------------- stepping
    def prepare(self, params: dict) -> dict:
        """Hoist parameter-only work out of the time loop.

        Folds the fixed queries and both projections into
        ``P = (Q W_q) W_k^T / s`` (hidden_dim, H) so the per-step logits are
        ``P @ K^T``; splits the LSTM input weights into observation and action
        parts and sums the two LSTM biases.

        The sigmoid gates (i, f, o) are computed as ``sigmoid(x) = (1 + tanh(x / 2)) / 2``
        (XLA's CPU logistic is several times slower than its tanh), so their rows are
        pre-scaled by 1/2 here and ``step`` applies a single ``tanh`` to all gates.
        ``w_hh`` is ``w_hh_t`` transposed, materialised here because a transposed operand inside
        ``step_batch``'s time loop makes XLA CPU fall back from its fast GEMM to a slow dot.
        """
        lstm = params["lstm"]
        q = jnp.asarray(self.queries)
        p = ((q @ params["w_q"]) @ params["w_k"].T) / self.logit_scale
        h = self.pos_em_dim
        gate_scale = jnp.concatenate([jnp.full(2 * h, 0.5), jnp.ones(h), jnp.full(h, 0.5)]).astype(jnp.float32)
        w_ih = lstm["weight_ih"] * gate_scale[:, None]
        return {
            "w_obs": w_ih[:, 0],  # (4H,)
            "w_act_t": w_ih[:, 1:].T,  # (act_dim, 4H)
            "w_hh_t": lstm["weight_hh"].T * gate_scale,  # (H, 4H)
            "w_hh": lstm["weight_hh"] * gate_scale[:, None],  # (4H, H), the same for step_batch's GEMM
            "bias": (lstm["bias_ih"] + lstm["bias_hh"]) * gate_scale,  # (4H,)
            "p": p,  # (hidden_dim, H)
            "head_kernel": params["head"]["kernel"] * self.action_gain,
            "head_bias": params["head"]["bias"] * self.action_gain,
            "hidden_t": [(layer["kernel"].T, layer["bias"]) for layer in params.get("head_hidden", [])],
        }

    def _check(self, state: LSTMState, obs: jax.Array, prev_action: jax.Array) -> None:
        if obs.ndim != 1:
            raise ValueError(f"AttentionNeuronPolicy.step expects obs of shape (n_features,), got {obs.shape}")
        if state.h.shape != (obs.shape[0], self.pos_em_dim) or state.c.shape != state.h.shape:
            raise ValueError(
                f"AttentionNeuronPolicy state has shape h{state.h.shape}/c{state.c.shape} but obs has "
                f"{obs.shape[0]} features (expected ({obs.shape[0]}, {self.pos_em_dim}))"
            )
        if prev_action.shape != (self.act_dim,):
            raise ValueError(f"prev_action must have shape ({self.act_dim},), got {prev_action.shape}")

    def step(self, prepared: dict, state: LSTMState, obs: jax.Array, prev_action: jax.Array):
        """One step; returns ``(new_state, action (act_dim,), aux)``.

        ``aux = {"attention": A (hidden_dim, n_features), "latent": m (hidden_dim,)}``.
        """
        obs = jnp.asarray(obs, jnp.float32)
        prev_action = jnp.asarray(prev_action, jnp.float32)
        self._check(state, obs, prev_action)
        # LSTM gates: x W_ih^T = o_i * W_ih[:, 0] + a_prev W_ih[:, 1:]^T (action part shared).
        shared = prev_action @ prepared["w_act_t"] + prepared["bias"]  # (4H,)
        gates = obs[:, None] * prepared["w_obs"][None, :] + shared[None, :] + state.h @ prepared["w_hh_t"]
        i, f, g, o = jnp.split(jnp.tanh(gates), 4, axis=-1)  # i, f, o pre-halved: sigmoid = (1 + tanh) / 2
        c = (0.5 + 0.5 * f) * state.c + (0.5 + 0.5 * i) * g
        h = (0.5 + 0.5 * o) * jnp.tanh(c)
        attn = jnp.tanh(prepared["p"] @ h.T)  # (hidden_dim, n)
        latent = jnp.tanh(attn @ obs)  # (hidden_dim,)
        x = _head_hidden(prepared, latent[:, None])[:, 0]
        action = head_output(x @ prepared["head_kernel"] + prepared["head_bias"], self.discrete)
        return LSTMState(h=h, c=c), action, {"attention": attn, "latent": latent}

    # ------------------------------------------------------- lockstep batches
    def initial_batch_state(self, obs_dim: int, batch: int) -> BatchState:
        """Zero state of ``batch`` episodes with ``obs_dim`` features for ``step_batch``."""
        cols = int(obs_dim) * int(batch)
        z = jnp.zeros((self.pos_em_dim, cols), jnp.float32)
        return BatchState(h=z, c=z, action=jnp.zeros((self.act_dim, cols), jnp.float32))

    def step_batch(self, prepared: dict, state: BatchState, obs: jax.Array) -> tuple[BatchState, jax.Array]:
        """One step of ``B`` episodes of the same agent in lockstep (the fitness-evaluation path).

        ``obs`` is feature-major, (n_features, B); returns ``(new_state, actions (B, act_dim))``.
        The previous action fed back to the LSTM is the one this method returned last time
        (kept in ``state``), exactly as in a closed-loop rollout with ``step``; each episode's
        results equal ``step``'s up to float32 rounding (summation order).

        Every contraction is a small GEMM over the ``N * B`` columns (gates ``(4H, H) @ (H, N*B)``,
        logits ``(M, H) @ (H, N*B)``) and every element-wise stage works on whole rows of
        ``N * B`` contiguous values; the gate blocks i, f, g, o are row blocks, so slicing them
        keeps rows contiguous.
        """
        n, b = obs.shape
        hdim, cols = state.h.shape
        if cols != n * b:
            raise ValueError(f"BatchState has {cols} columns but obs {obs.shape} needs {n * b}")
        o = jnp.asarray(obs, jnp.float32).reshape(1, cols)
        gates = prepared["w_hh"] @ state.h + prepared["w_obs"][:, None] * o + prepared["bias"][:, None]
        for a in range(self.act_dim):  # previous action, already repeated per column
            gates = gates + prepared["w_act_t"][a][:, None] * state.action[a][None, :]
        t = jnp.tanh(gates)  # i, f, o rows pre-halved: sigmoid = (1 + tanh) / 2
        i, f, g, og = t[:hdim], t[hdim:2 * hdim], t[2 * hdim:3 * hdim], t[3 * hdim:]
        c = (0.5 + 0.5 * f) * state.c + (0.5 + 0.5 * i) * g
        h = (0.5 + 0.5 * og) * jnp.tanh(c)
        attn = jnp.tanh(prepared["p"] @ h)  # (M, N*B), column n*B + b
        pre_latent = attn[:, :b] * obs[0][None, :]
        for k in range(1, n):  # sum over features: contiguous column blocks
            pre_latent = pre_latent + attn[:, k * b:(k + 1) * b] * obs[k][None, :]
        latent = _head_hidden(prepared, jnp.tanh(pre_latent))  # (M, B)
        kernel = prepared["head_kernel"]  # (M, act_dim)
        pre = prepared["head_bias"][:, None] + kernel[0][:, None] * latent[0][None, :]
        for m in range(1, latent.shape[0]):
            pre = pre + kernel[m][:, None] * latent[m][None, :]
        action = head_output(pre, self.discrete, axis=0)  # (act_dim, B)
        if self.discrete:
            repeated = jnp.broadcast_to(action[:, None, :], (self.act_dim, n, b)).reshape(self.act_dim, cols)
        else:  # tanh of the repeated pre-activations: the same values, vectorised over the long rows
            repeated = jnp.tanh(jnp.broadcast_to(pre[:, None, :], (self.act_dim, n, b)).reshape(self.act_dim, cols))
        return BatchState(h=h, c=c, action=repeated), action.T


def _head_hidden(prepared: dict, cols: jax.Array) -> jax.Array:
    """The head's hidden tanh layers on latents stored as columns (M, B): one (M, M) @ (M, B) GEMM each."""
    for kernel_t, bias in prepared["hidden_t"]:
        cols = jnp.tanh(kernel_t @ cols + bias[:, None])
    return cols


def reference_step(policy: AttentionNeuronPolicy, params: dict, state: LSTMState, obs: jax.Array, prev_action: jax.Array):
    """Unfused, unfolded single step straight from the paper's formulas (for tests)."""
    obs = jnp.asarray(obs, jnp.float32)
    n = obs.shape[0]
    x = jnp.concatenate([obs[:, None], jnp.broadcast_to(prev_action, (n, policy.act_dim))], axis=1)
    h, c = lstm_cell(params["lstm"], x, state.h, state.c)
    logits = attention_logits_reference(params, h, jnp.asarray(policy.queries), policy.logit_scale)
    attn = jnp.tanh(logits)
    x = latent = jnp.tanh(attn @ obs)
    for layer in params.get("head_hidden", []):
        x = jnp.tanh(x @ layer["kernel"] + layer["bias"])
    pre = (x @ params["head"]["kernel"] + params["head"]["bias"]) * policy.action_gain
    action = head_output(pre, policy.discrete)
    return LSTMState(h=h, c=c), action, {"attention": attn, "latent": latent}
