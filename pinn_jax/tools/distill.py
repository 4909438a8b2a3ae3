"""Behaviour cloning with DAgger: teach a student policy (e.g. the attention neuron) to act like a
trained teacher (e.g. an MLP), then fine-tune it with ES (``strategy.init_mean: <out>/student.npz``).

    python -m pinn_jax distill --teacher pretrained:cartpole_mlp --student configs/cartpole_pi_short.yaml \\
        --out runs/cartpole_pi_bc [--rounds 8 --episodes 64 --updates 100 --batch 32 --lr 3e-3]
    python -m pinn_jax distill --config runs/cartpole_pi_bc/config.yaml --out runs/again   # the same student

The settings are the config's ``distill:`` section (:class:`pinn_jax.config.DistillConfig`); the options
override it, as ``--set distill.KEY=VALUE`` does.

Round 0 records episodes played by the teacher (by the student when it starts from ``--init``); every
later round records episodes played by the current student, each step labelled with the action the teacher would have taken there (DAgger,
Ross et al. 2011), and adds them to the data set. After each round the student is trained with Adam on
the mean squared error between its actions and the labels, replaying whole recorded episodes through its
recurrent state (back-propagation through time) with the previous actions that were actually executed.
The authors of the paper trained their Ant attention-neuron agent by behaviour cloning in the same spirit.

With ``--lqr-above C`` the labels near the top (``cos θ > C``) come from an LQR balancer instead
(:mod:`pinn_jax.tools.lqr`): ``--teacher pretrained:cartpole_pi --lqr-above 0.8`` teaches a student the shipped
attention neuron's swing-up and a balance that ES alone never found.

Writes ``OUT/student.npz`` (``params``: flat student parameters, the format ``strategy.init_mean`` and
``pretrained`` read), a copy after every round in ``OUT/rounds/NNN.npz`` (to choose a round on episodes of
your own), ``OUT/distill.csv`` (per round: loss, the student's mean return on fixed held-out episodes — the same
as the trainer's ``eval.csv`` for that seed —, wall time) and ``OUT/config.yaml`` (the student's config with
the ``distill:`` section as run: ``--config OUT/config.yaml`` reruns it).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import LOSSES, Config, DistillConfig
from pinn_jax.envs import is_swingup, make, same_task
from pinn_jax.errors import ArgumentParser, ConfigError, TrainingError, cli, uint32
from pinn_jax.experiment import setup
from pinn_jax.models import load_model
from pinn_jax.policies import Policy, PolicyBase
from pinn_jax.rollout import episode, member_returns
from pinn_jax.tools import lqr
from pinn_jax.training.progress import Tracker
from pinn_jax.training.runs import resolve_start
from pinn_jax.training.trainer import held_out_keys


class Episodes(NamedTuple):
    """Recorded episodes, time-major per episode: arrays ``(E, T, ...)``."""

    obs: jax.Array  # observation seen at step t
    prev_action: jax.Array  # action executed at step t - 1 (zeros at t = 0)
    label: jax.Array  # the teacher's action at step t
    valid: jax.Array  # step t happened (the episode was not over yet)


@dataclasses.dataclass(frozen=True)
class _SideBySide(PolicyBase):
    """Student and teacher stepped on the same inputs; acts as one of them, reports the teacher's action.

    Parameters are ``(student_params, teacher_params, teacher_acts)``; ``aux["label"]`` is the teacher's action.
    """

    student: Policy
    teacher: Policy

    @property
    def act_dim(self) -> int:
        return self.student.act_dim

    @property
    def kind(self) -> str:
        return "side_by_side"

    def prepare(self, params: tuple[Any, Any, jax.Array]) -> tuple[Any, Any, jax.Array]:
        student_params, teacher_params, teacher_acts = params
        return self.student.prepare(student_params), self.teacher.prepare(teacher_params), teacher_acts

    def initial_state(self, obs_dim: int) -> tuple[Any, Any]:
        return self.student.initial_state(obs_dim), self.teacher.initial_state(obs_dim)

    def step(self, prepared: tuple[Any, Any, jax.Array], state: tuple[Any, Any], obs: jax.Array,
             prev_action: jax.Array) -> tuple[tuple[Any, Any], jax.Array, dict]:
        sp, tp, teacher_acts = prepared
        s_state, a_s, _ = self.student.step(sp, state[0], obs, prev_action)
        t_state, a_t, _ = self.teacher.step(tp, state[1], obs, prev_action)
        return (s_state, t_state), jnp.where(teacher_acts, a_t, a_s), {"label": a_t}


def labelled_episode(student: Policy, student_params: Any, teacher: Policy, teacher_params: Any, env: Any,
                     env_params: Any, key: jax.Array, num_steps: int, teacher_acts: jax.Array) -> Episodes:
    """One episode played by the teacher (``teacher_acts`` true) or the student, labelled by the teacher.

    Both policies see the same observations and the executed previous action, so the student's recurrent
    state follows the recorded trajectory exactly as it will when the episode is replayed in training.
    Recorded with :func:`pinn_jax.rollout.episode`.
    """
    pair = _SideBySide(student, teacher)
    traj = episode(pair, env, env_params, (student_params, teacher_params, teacher_acts), key, num_steps,
                   record=True).trajectory
    acts = traj["action"]
    prev = jnp.concatenate([jnp.zeros_like(acts[:1]), acts[:-1]])
    return Episodes(traj["obs"], prev, traj["aux"]["label"], ~traj["done"])


def imitation_loss(student: Policy, params: Any, batch: Episodes, kind: str = "mse") -> jax.Array:
    """Mean over all valid steps of the error between the student's actions and the labels.

    ``mse``: squared error. ``bce``: cross-entropy between ``(1 + a) / 2`` and ``(1 + label) / 2``, which
    keeps its gradient where a tanh action saturates on the wrong side (teachers that act bang-bang).
    """

    prepared = student.prepare(params)

    def one(ep: Episodes) -> jax.Array:
        def body(state, x):
            obs, prev = x
            state, act, _ = student.step(prepared, state, obs, prev)
            return state, act

        _, acts = jax.lax.scan(body, student.initial_state(ep.obs.shape[-1]), (ep.obs, ep.prev_action))
        if kind == "bce":
            p = jnp.clip((1 + acts) / 2, 1e-6, 1 - 1e-6)
            q = jnp.clip((1 + ep.label) / 2, 0.0, 1.0)
            err = -(q * jnp.log(p) + (1 - q) * jnp.log1p(-p)) + (q * jnp.log(jnp.clip(q, 1e-6)) +
                                                                 (1 - q) * jnp.log(jnp.clip(1 - q, 1e-6)))
        else:
            err = (acts - ep.label) ** 2
        return jnp.sum(err.sum(-1) * ep.valid)

    total = jax.vmap(one)(batch).sum()
    return total / jnp.maximum(batch.valid.sum(), 1)


def load_teacher(cfg: Config) -> tuple[Policy, Any]:
    """The teacher ``distill.teacher`` names (run directory, FILE.npz, ``pretrained:NAME`` or ``official``), with
    its LQR catch when ``distill.lqr_above`` is set; it must act in the student's task, with the same actions."""
    spec = cfg.distill.teacher
    if spec is None:
        raise ConfigError("config key 'distill.teacher' is not set: name the teacher with --teacher MODEL")
    model = load_model(spec)
    if not same_task(model.env_cfg.name, cfg.env.name) or model.policy.act_dim != setup(cfg).policy.act_dim:
        raise ConfigError(f"config key 'distill.teacher': {spec} acts in {model.env_cfg.name} "
                          f"({model.policy.act_dim} action outputs), the student in {cfg.env.name}: they must share "
                          f"the task")
    teacher = model.policy
    if cfg.distill.lqr_above is not None:
        teacher = with_lqr_catch(teacher, cfg, cfg.distill.lqr_above)
    return teacher, model.params


def with_lqr_catch(teacher: Policy, cfg: Config, threshold: float) -> Policy:
    """The teacher, with an LQR balancer (:mod:`pinn_jax.tools.lqr`) acting where ``cos θ > threshold``."""
    if not is_swingup(cfg.env.name):
        raise ConfigError(f"config key 'distill.lqr_above' needs a cart-pole swing-up env, got {cfg.env.name!r}")
    _, env_params = make(cfg.env.name)
    gain = tuple(float(g) for g in lqr.lqr_gain(env_params))
    return lqr.CatchWithLQR(teacher, gain, threshold)


def distill(cfg: Config, out: str | pathlib.Path, log=print) -> tuple[Any, list[dict[str, float]]]:
    """Train the student described by ``cfg`` (policy, env, observation transform) to imitate the teacher of
    its ``distill`` section, as that section says; write ``out``, a new or empty directory (see the module's
    docstring).

    The student starts from ``distill.init`` (as ``strategy.init_mean`` reads it; ``random``: its policy's
    initialiser). Episodes run ``cfg.train_steps`` steps; the held-out score uses whole ``env.max_steps``
    episodes. Returns the student's parameters and one log row per round.
    """
    d = cfg.distill
    if cfg.train.shuffle or cfg.train.shuffle_every or cfg.train.num_noise:
        raise ConfigError("distillation shows the teacher the student's observations: train.shuffle, "
                          "train.shuffle_every and train.num_noise must be off")
    teacher, teacher_params = load_teacher(cfg)
    exp = setup(cfg)
    student, env, env_params = exp.policy, exp.env, exp.env_params
    key = jax.random.PRNGKey(cfg.seed)
    key, k_init = jax.random.split(key)
    params = resolve_start(d.init, exp, k_init).mean
    opt = optax.adam(d.learning_rate)
    opt_state = opt.init(params)
    steps = cfg.train_steps

    collect = jax.jit(jax.vmap(
        lambda sp, k, use_t: labelled_episode(student, sp, teacher, teacher_params, env, env_params, k, steps,
                                              use_t), in_axes=(None, 0, None)))
    held_out = held_out_keys(cfg.seed, d.eval_episodes)
    score = jax.jit(lambda p: member_returns(student, env, env_params, p, held_out, cfg.env.max_steps))

    @jax.jit
    def update(params, opt_state, data: Episodes, idx: jax.Array):
        mb = jax.tree.map(lambda x: x[idx], data)
        value, grads = jax.value_and_grad(lambda p: imitation_loss(student, p, mb, d.loss))(params)
        upd, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, value

    out = artifacts.output_dir(out, "--out", empty=True)  # no other distillation's rounds mixed in
    artifacts.output_dir(out / artifacts.ROUNDS_DIR, "--out")  # made now, for every round's student
    artifacts.write_config(out, cfg.to_dict())
    data: Episodes | None = None
    rows: list[dict[str, float]] = []
    start = time.perf_counter()
    for r in range(d.rounds):
        key, k_col, k_mb = jax.random.split(key, 3)
        new = collect(params, jax.random.split(k_col, d.episodes), jnp.asarray(r == 0 and d.init == "random"))
        data = new if data is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b]), data, new)
        size = data.obs.shape[0]
        losses = []
        for k in jax.random.split(k_mb, d.updates):
            idx = jax.random.choice(k, size, (min(d.batch, size),), replace=False)
            params, opt_state, value = update(params, opt_state, data, idx)
            losses.append(float(value))
        if not np.isfinite(losses[-1]):
            raise TrainingError(f"imitation loss is not finite in round {r}; lower distill.learning_rate (--lr, "
                                f"now {d.learning_rate})")
        returns = np.asarray(score(params))
        row = {"round": r, "episodes": size, "loss": float(np.mean(losses[-10:])), "return_mean": returns.mean(),
               "return_std": returns.std(), "wall_time": time.perf_counter() - start}
        rows.append(row)
        log(f"round {r}: {size} episodes, loss {row['loss']:.4f}, held-out return {row['return_mean']:.1f} "
            f"± {row['return_std']:.1f} ({row['wall_time']:.0f} s)")
        _save(out, params, rows)
    return params, rows


def _save(out: pathlib.Path, params: Any, rows: list[dict[str, float]]) -> None:
    """The student's flat parameters (``student.npz``, rewritten after every round, and a copy per round in
    ``rounds/NNN.npz`` to choose from on other episodes) and the log so far."""
    flat = np.asarray(ravel_pytree(params)[0], np.float32)
    artifacts.save_flat(artifacts.student_file(out), flat)
    artifacts.save_flat(artifacts.round_file(out, len(rows) - 1), flat)
    with artifacts.atomic(out / artifacts.DISTILL_LOG) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# the options that override the config's distill section: option -> (its key there, argparse keywords)
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "--teacher": ("teacher", dict(metavar="MODEL", help="run directory, FILE.npz, pretrained:NAME or official")),
    "--rounds": ("rounds", dict(type=int, help="DAgger rounds")),
    "--episodes": ("episodes", dict(type=int, help="episodes recorded per round")),
    "--updates": ("updates", dict(type=int, help="Adam updates per round")),
    "--batch": ("batch", dict(type=int, help="episodes per update")),
    "--lr": ("learning_rate", dict(type=float, metavar="LR", help="Adam learning rate")),
    "--loss": ("loss", dict(choices=LOSSES, help="mse, or bce for bang-bang teachers")),
    "--init": ("init", dict(metavar="FILE.npz", help="start the student from these flat parameters")),
    "--lqr-above": ("lqr_above", dict(type=float, metavar="C", help="near the top (cos θ > C) label with an LQR "
                                                                     "balancer instead of the teacher (cart-pole)")),
}


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", "--student", dest="config", required=True, metavar="CONFIG",
                   help="the student's config (name or YAML); its distill section holds the settings that the "
                        "options below override (a distillation's OUT/config.yaml reruns it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the config, e.g. distill.rounds=40 (repeatable)")
    p.add_argument("--seed", type=uint32, default=None, help="seed of the student's initialiser and episodes "
                   "(default: the config's seed)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist or be empty)")
    defaults = DistillConfig()
    for option, (key, kwargs) in OPTIONS.items():
        p.add_argument(option, dest=key, default=argparse.SUPPRESS, **{**kwargs, "help": (
            f"{kwargs['help']} (distill.{key}; default: the config's, else {getattr(defaults, key)})")})
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every 30 s instead")
    args = p.parse_args(argv)
    given = [(key, getattr(args, key)) for key, _ in OPTIONS.values() if hasattr(args, key)]
    overrides = (args.overrides + [f"distill.{key}={json.dumps(value)}" for key, value in given]
                 + ([f"seed={args.seed}"] if args.seed is not None else []))
    cfg = config_lib.load(args.config, overrides)
    with Tracker(cfg.distill.rounds, "round", bar=not args.no_progress) as bar:
        distill(cfg, args.out, log=lambda line: (bar.log(line), bar.advance(1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
