"""The benchmark's image-env part (``python -m pinn_jax bench --vision``): what it measures and its floor.

Per game (the MinAtar games on 2x2 patches, ``Pong-misc``'s 30x40x3 frames on 5x5 patches) and per policy (the
vision attention neuron, and the MLP baseline on the flattened frame, each as its shipped Breakout config has
it), one generation of ``population x rollouts`` episodes of ``steps`` steps is timed as ``bench`` times the
vector policies, and so are its parts, each alone in one compiled call of the generation's size
(:func:`part_fns`): the game's step, the patching (:class:`~pinn_jax.envs.patches.PatchWrapper`'s own work on
a frame), the policy's step and the strategy's ask + tell.

The floor (:func:`step_cost`, :func:`floor`): the policy step's FLOPs counted from the shapes, and the bytes it
must move (its observation in, its action out, its member's parameters once per step for all the member's
rollouts), times the generation's environment steps, at the machine's measured peak matmul FLOP/s and memory
bandwidth. XLA's own count (:func:`xla_step_cost`) confirms the FLOPs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from pinn_jax import config as config_lib
from pinn_jax import configs
from pinn_jax.envs import PatchWrapper
from pinn_jax.policies import Policy
from pinn_jax.policies.mlp import MLPPolicy
from pinn_jax.policies.vision_attention import VisionAttentionPolicy
from pinn_jax.tools.bench_report import _device_line, load_text
from pinn_jax.tools.bench_report import g as _g

__all__ = ["GAMES", "POLICIES", "VisionSettings", "VISION_SETTINGS", "make_config", "part_fns", "step_cost",
           "xla_step_cost", "floor", "markdown", "PARTS"]

GAMES = {  # name -> (gymnax id, the vision attention neuron's patch size)
    "breakout": ("Breakout-MinAtar", 2), "asterix": ("Asterix-MinAtar", 2), "freeway": ("Freeway-MinAtar", 2),
    "space_invaders": ("SpaceInvaders-MinAtar", 2), "pong": ("Pong-misc", 5),
}
POLICIES = {"vision_attention": "breakout_minatar_vision", "mlp": "breakout_minatar_mlp"}  # shipped configs
PARTS = ("env", "patching", "policy", "ask_tell")  # timed alone; with the whole evaluation, in this order


@dataclasses.dataclass(frozen=True)
class VisionSettings:
    """What ``bench --vision`` measures: every game x policy at ``population`` x ``rollouts`` x ``steps``."""

    mode: str = "full"
    games: tuple[str, ...] = tuple(GAMES)
    policies: tuple[str, ...] = tuple(POLICIES)
    population: int = 256
    rollouts: int = 8
    steps: int = 100
    repeats: int = 5
    seed: int = 0


VISION_SETTINGS = {
    "full": VisionSettings(),
    "tiny": VisionSettings(mode="tiny", games=("breakout",), population=4, rollouts=2, steps=10, repeats=2),
}


def make_config(game: str, policy: str, population: int, rollouts: int, steps: int, seed: int = 0
                ) -> config_lib.Config:
    """The shipped Breakout config of ``policy`` (``POLICIES``: its policy, strategy and shuffling) on ``game``, at
    ``population`` x ``rollouts`` episodes of ``steps`` steps; patches of ``GAMES``' size (the MLP's: 1x1)."""
    d = config_lib.load(configs.resolve(POLICIES[policy])).to_dict()
    name, patch = GAMES[game]
    d["env"].update(name=name, max_steps=steps, patch_size=1 if policy == "mlp" else patch)
    d["strategy"]["population_size"] = population
    d["train"].update(rollouts=rollouts)
    return config_lib.from_dict({**d, "seed": seed, "run_dir": "unused"})


# ------------------------------------------------------------------------------------------ parts
@struct.dataclass
class _FrameState:
    frame: jax.Array
    time: jax.Array


class _Replay(environment.Environment):
    """An image env that shows its first frame at every step, scaled by ``1 + 1e-6 t`` so that XLA cannot hoist
    the patching of it out of the time loop: a :class:`PatchWrapper` around it does its own work alone."""

    def __init__(self, game: environment.Environment) -> None:
        super().__init__()
        self.game = game

    @property
    def default_params(self) -> Any:
        return self.game.default_params

    def observation_space(self, params: Any) -> Any:
        return self.game.observation_space(params)

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, _FrameState]:
        frame, state = self.game.reset_env(key, params)
        return frame, _FrameState(frame=jnp.asarray(frame, jnp.float32), time=state.time)

    def step_env(self, key: jax.Array, state: _FrameState, action: Any, params: Any) -> tuple:
        frame = state.frame * (1.0 + 1e-6 * state.time)
        return frame, state.replace(time=state.time + 1), jnp.float32(0.0), jnp.bool_(False), {}


def part_fns(tr: Any, state: Any) -> dict[str, Callable[[], Any]]:
    """The evaluation's parts, each one compiled call over the generation's ``population x rollouts`` episodes and
    ``steps`` steps, each blocking on its result: ``env``, the game's step (its actions mapped from one-hot
    policy outputs, per-step keys folded in as in a rollout); ``patching``, the :class:`PatchWrapper`'s own step
    on a frame (cutting, frame stack, shuffling); ``policy``, each member's ``step_batch`` over its rollouts on
    observations that change by a factor ``1 + 1e-6 t`` per step (XLA fuses it into the step; unchanged ones
    would let it hoist work out of the loop). ``tr`` is a ``Trainer`` of an image env, ``state`` its state."""
    cfg, policy, env, params = tr.cfg, tr.policy, tr.env, tr.env_params
    pop, rollouts, steps = cfg.strategy.population_size, cfg.train.rollouts, cfg.train_steps
    game, replay = env.env, PatchWrapper(_Replay(env.env), env.patches, env.cfg)
    keys = jax.random.split(jax.random.PRNGKey(2), pop * rollouts)
    times = jnp.arange(steps)
    frame, game_state = jax.jit(jax.vmap(game.reset_env, in_axes=(0, None)))(keys, params)
    obs, patch_state = jax.jit(jax.vmap(replay.reset_env, in_axes=(0, None)))(keys, params)
    noop = jnp.zeros((pop * rollouts, policy.act_dim), jnp.float32)

    def stepped(wrapped: Any) -> Callable:
        step = lambda k, t, s, a: wrapped.step_env(jax.random.fold_in(k, t), s, a, params)[:2]  # noqa: E731
        return jax.vmap(step, in_axes=(0, None, 0, 0))

    game_step, replay_step = stepped(game), stepped(replay)

    @jax.jit
    def env_only(carry: tuple) -> tuple:
        def body(carry: tuple, t: jax.Array) -> tuple:
            act = jax.nn.one_hot((t + jnp.arange(pop * rollouts)) % policy.act_dim, policy.act_dim)
            return game_step(keys, t, carry[1], act), None
        return jax.lax.scan(body, carry, times)[0]

    @jax.jit
    def patching_only(carry: tuple) -> tuple:
        return jax.lax.scan(lambda c, t: (replay_step(keys, t, c[1], noop), None), carry, times)[0]

    axis = policy.batch_obs_axis
    member_obs = jnp.moveaxis(obs.reshape(pop, rollouts, *obs.shape[1:]), 1, 1 + axis)
    population, _ = jax.jit(tr.strategy.ask)(jax.random.PRNGKey(1), state.es_state)

    @jax.jit
    def policy_only(population: Any, obs: jax.Array) -> Any:
        def member(p: Any, obs: jax.Array) -> Any:
            prepared = policy.prepare(p)
            body = lambda s, t: (policy.step_batch(prepared, s, obs * (1.0 + 1e-6 * t))[0], None)  # noqa: E731
            return jax.lax.scan(body, policy.initial_batch_state(tr.obs_dim, rollouts), times)[0]
        return jax.vmap(member)(population, obs)

    return {"env": lambda: jax.block_until_ready(env_only((frame, game_state))),
            "patching": lambda: jax.block_until_ready(patching_only((obs, patch_state))),
            "policy": lambda: jax.block_until_ready(policy_only(population, member_obs))}


# ------------------------------------------------------------------------------------------ the floor
def _layer_norm(rows: int, n: int) -> tuple[int, int]:
    """FLOPs and transcendentals of layer-normalising ``rows`` rows of ``n``: mean (n + 1), centre (n), square
    (n), variance (n + 1), epsilon (1), divide (n); one square root per row."""
    return rows * (5 * n + 3), rows


def step_cost(policy: Policy, obs_shape: Sequence[int], num_params: int, rollouts: int) -> dict[str, float]:
    """One policy step on an observation of ``obs_shape``, counted from the shapes: ``flops`` (a multiply-add 2, any
    other arithmetic 1; the head's argmax left out), ``transcendentals`` (tanh, exp, square roots) and ``bytes``,
    the least it must move: its observation in, its previous and new action, and its member's ``num_params``
    parameters, read once per step for all ``rollouts`` episodes stepped together (float32). XLA's count is 0-3%
    higher, mostly in the layer norms, whose centring it counts twice, as the code writes it."""
    a = policy.act_dim
    if isinstance(policy, VisionAttentionPolicy):
        (n, f), k, v, m, h = obs_shape, policy.key_dim, policy.value_dim, policy.grid ** 2, policy.head_hidden
        d = policy.patch_pixels(f)
        diff = (policy.frames - 1) * d
        norm_x, norm_l = _layer_norm(n * policy.frames, d), _layer_norm(m, v)
        flops = (n * diff  # frame differences
                 + 2 * a * k + k + 2 * n * diff * k + n * k  # keys: action and bias once, differences per patch
                 + norm_x[0] + 2 * n * f * v + n * v  # values
                 + 2 * m * n * k + 4 * m * n  # logits, softmax (max, subtract, sum, divide)
                 + 2 * m * n * v + m * v + norm_l[0]  # A V, relu, layer norm
                 + (2 * m * v * h + h if h else 0) + 2 * (h or m * v) * a + a)  # head
        transcendentals = n * k + norm_x[1] + m * n + norm_l[1] + h
    elif isinstance(policy, MLPPolicy):
        widths = [int(np.prod(obs_shape)), *policy.hidden, a]
        flops = sum(2 * i * o + o for i, o in zip(widths, widths[1:]))
        transcendentals = sum(policy.hidden)
    else:
        raise ValueError(f"step_cost counts the vision attention neuron and the MLP, not {type(policy).__name__}")
    nbytes = 4 * (int(np.prod(obs_shape)) + 2 * a + num_params / rollouts)
    return {"flops": float(flops), "transcendentals": float(transcendentals), "bytes": nbytes}


def xla_step_cost(policy: Policy, params: Any, obs_shape: Sequence[int]) -> dict[str, float]:
    """XLA's cost analysis of one compiled ``policy.step`` on ``obs_shape`` (``flops``, ``transcendentals``,
    ``bytes accessed``: every operation's operands and results, an upper figure beside :func:`step_cost`'s)."""
    def step(prepared: Any, obs: jax.Array, prev: jax.Array) -> jax.Array:
        return policy.step(prepared, policy.initial_state(obs_shape[-1]), obs, prev)[1]
    obs = jnp.zeros(tuple(obs_shape), jnp.float32)
    cost = jax.jit(step).lower(policy.prepare(params), obs, jnp.zeros((policy.act_dim,))).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one dict per computation
    return {"flops": float(cost.get("flops", 0.0)), "transcendentals": float(cost.get("transcendentals", 0.0)),
            "bytes": float(cost.get("bytes accessed", 0.0))}


def floor(cost: dict[str, float], env_steps: int, peak: dict[str, float]) -> dict[str, float]:
    """The generation's policy work at the machine's ``peak`` (``flops_per_s``, ``bytes_per_s``): seconds for its
    FLOPs, for its bytes, and the floor, the larger of the two."""
    compute = cost["flops"] * env_steps / peak["flops_per_s"]
    memory = cost["bytes"] * env_steps / peak["bytes_per_s"]
    return {"compute_s": compute, "memory_s": memory, "floor_s": max(compute, memory)}


# ------------------------------------------------------------------------------------------ report
def markdown(report: dict[str, Any]) -> str:
    """The vision tables quoted in the guide: per game and policy, speed and floor, then where the time goes."""
    m, s, pk = report["meta"], report["settings"], report["peak"]
    lines = [
        "# pinn_jax benchmark: image envs", "",
        f"Device: **{_device_line(m)}**; jax {m['jax']}; load average (1/5/15 min) at start "
        f"{load_text(m['loadavg_start'])}, at end {load_text(m['loadavg_end'])}; mode `{s['mode']}`; medians of "
        f"{s['repeats']} timed repetitions after a warm-up; whole run {m['wall_s']:.0f} s.", "",
        f"Peak assumed: **{pk['flops_per_s'] / 1e9:.3g} GFLOP/s** (float32 {pk['matmul_n']}² matmul, best of "
        f"{pk['n']}; median {pk['flops_median'] / 1e9:.3g}), **{pk['bytes_per_s'] / 1e9:.3g} GB/s** (x + 1 in place on "
        f"{pk['stream_bytes'] / 2**20:.0f} MiB, read + write; median {pk['bytes_median'] / 1e9:.3g}).", "",
        f"## One generation: population {s['population']} × {s['rollouts']} rollouts × {s['steps']} steps", "",
        "Floor: the policy step's FLOPs (counted from the shapes; XLA's count beside it) and its least bytes "
        "(observation in, action out, parameters once per member and step), times the generation's env steps, "
        "at the peak above; the larger of the two. ratio = s / generation ÷ floor.", "",
        "| game | policy | params | observation | env steps / s | s / generation | FLOP / step (XLA) "
        "| bytes / step | floor s | ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        c, x, f = r["step_cost"], r["xla_step_cost"], r["floor"]
        lines.append(f"| {r['game']} | {r['policy']} | {r['num_params']} | {r['obs_shape']} | "
                     f"{r['env_steps_per_sec']:.3g} | {_g(r['sec_per_gen']['median'])} | {c['flops']:,.0f} "
                     f"({x['flops']:,.0f}) | {c['bytes']:,.0f} | {_g(f['floor_s'])} | "
                     f"×{r['sec_per_gen']['median'] / f['floor_s']:,.0f} |")
    lines += ["", "## Where the time goes (seconds per generation, each part alone in one compiled call)", "",
              "env: the game's step; patching: the patch wrapper's own step (cut, stack, shuffle); policy: "
              "each member's lockstep policy step; ask + tell: the strategy's update; rest: the generation less "
              "these parts (the time loop's own work, freezing finished episodes and the returns; below 0 where "
              "the parts alone took longer than fused in the whole, or the load changed).", "",
              "| game | policy | generation | env | patching | policy | ask + tell | rest | policy ÷ its floor |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        parts = [r[f"{p}_sec"]["median"] for p in PARTS]
        gen = r["sec_per_gen"]["median"]
        lines.append(f"| {r['game']} | {r['policy']} | {_g(gen)} | " + " | ".join(_g(p) for p in parts)
                     + f" | {_g(gen - sum(parts))} | ×{parts[2] / r['floor']['floor_s']:,.0f} |")
    return "\n".join(lines) + "\n"
