"""Trained models by name: a policy, its parameters and the config it was trained with.

    load_model("official")                     # the authors' released weights (pinn_jax.models.official)
    load_model("pretrained:cartpole_pi")       # a shipped agent (pinn_jax.models.pretrained)
    load_model("runs/pi", params="eval_best")  # a run directory (or RUN_DIR/checkpoints/<gen>)
    load_model("runs/distill/rounds/038.npz")  # a flat parameter file with a config.yaml beside or above it

Every failure is a one-line :class:`~pinn_jax.errors.ModelError`.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import jax.numpy as jnp

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import Config, EnvConfig
from pinn_jax.errors import ConfigError, ModelError, UserError, one_line
from pinn_jax.experiment import setup
from pinn_jax.models import official, pretrained
from pinn_jax.policies import AttentionNeuronPolicy, Policy, load_official
from pinn_jax.training.runs import run_params

__all__ = ["Model", "load_model", "unique_names"]


@dataclass(frozen=True, eq=False)
class Model:
    """A policy with its parameters and the environment config it was trained on."""

    name: str
    policy: Policy
    params: Any
    env_cfg: EnvConfig = field(default_factory=EnvConfig)
    source: str = ""  # where it came from (path, file), for reports
    config: Config | None = None  # the full training config when known

    @property
    def kind(self) -> str:
        """The policy's registry name (``attention_neuron``, ``mlp``, ``linear``, ...)."""
        return self.policy.kind

    @property
    def input_size(self) -> int | None:
        """The fixed number of observation features the model takes, or None if it takes any number."""
        return self.policy.input_size(self.params)


def load_model(spec: str, params: str = "mean", name: str | None = None) -> Model:
    """Load a model from a spec (see the module docstring).

    For a run directory ``params`` picks the search distribution's ``"mean"`` (default), the ``"best"``
    member seen, or ``"eval_best"``, the mean that scored best on the held-out episodes during training.
    """
    if params not in artifacts.PARAM_CHOICES:
        raise ModelError(f"params must be one of {', '.join(artifacts.PARAM_CHOICES)}, got {params!r}")
    spec = str(spec)
    name = name or spec
    if spec == "official":
        return _load_official(name)
    key = config_lib.pretrained_name(spec)
    if key is not None:
        return _load_pretrained(spec, key, name)
    if spec.endswith(".npz"):
        return _load_flat(spec, name)
    try:
        return _load_run(spec, params, name)
    except UserError as e:
        raise ModelError(one_line(e)) from None


def unique_names(models: Sequence[Model]) -> list[str]:
    """The models' names, a repeated one suffixed ``#2``, ``#3``, ..."""
    seen: dict[str, int] = {}
    names = []
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        names.append(m.name if seen[m.name] == 1 else f"{m.name}#{seen[m.name]}")
    return names


def _load_official(name: str) -> Model:
    policy = AttentionNeuronPolicy()
    path = official.weights_path()
    try:
        model_params = load_official(path, policy=policy)
    except (OSError, ValueError) as e:
        raise ModelError(f"official weights unreadable: {path}: {one_line(e)}") from None
    return Model(name=name, policy=policy, params=model_params, env_cfg=EnvConfig(), source=str(path))


def _load_pretrained(spec: str, key: str, name: str) -> Model:
    if not key:
        raise ModelError(f"{spec!r}: give a name after {config_lib.PRETRAINED_PREFIX!r}, "
                         f"e.g. {config_lib.PRETRAINED_PREFIX}cartpole_pi")
    policy, model_params, cfg = pretrained.load(key)
    return Model(name=name, policy=policy, params=model_params, env_cfg=cfg.env, source=spec, config=cfg)


def _load_flat(spec: str, name: str) -> Model:
    path = pathlib.Path(spec)
    if not path.exists():
        raise ModelError(f"parameter file not found: {spec}")
    cfg_path = next((artifacts.config_file(d) for d in (path.parent, path.parent.parent)
                     if artifacts.config_file(d).is_file()), None)
    if cfg_path is None:
        raise ModelError(f"{spec}: no config.yaml beside it or one directory up to say which policy it holds")
    try:
        cfg = config_lib.load(cfg_path)
    except ConfigError as e:
        raise ModelError(f"cannot load {spec}: {cfg_path}: {one_line(e)}") from None
    exp = setup(cfg)
    flat = artifacts.load_flat(path, exp.num_params)
    return Model(name=name, policy=exp.policy, params=exp.unravel(jnp.asarray(flat)), env_cfg=cfg.env,
                 source=spec, config=cfg)


def _load_run(spec: str, which: str, name: str) -> Model:
    flat, exp, source, _ = run_params(spec, which)
    return Model(name=name, policy=exp.policy, params=exp.unravel(jnp.asarray(flat)), env_cfg=exp.cfg.env,
                 source=source, config=exp.cfg)
