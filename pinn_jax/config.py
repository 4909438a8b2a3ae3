"""Typed, validated experiment configuration loaded from YAML.

A config file is a nested mapping whose sections mirror the dataclasses below. Unknown keys,
wrong types and bad values raise :class:`ConfigError` with a one-line message naming the key.
``--set section.key=value`` overrides (values parsed as YAML) are applied before validation.
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any

import dacite
import yaml

from pinn_jax.errors import ConfigError



@dataclass(frozen=True)
class EnvConfig:
    """Environment: cart-pole swing-up (``start`` hard or easy) or any gymnax env by name."""

    name: str = "CartPoleSwingUp-v0"
    start: str = "hard"  # "hard" (paper's CartPoleSwingUpHarder) or "easy"
    max_steps: int = 1000

    def __post_init__(self) -> None:
        _check(self.start in ("hard", "easy"), "env.start", f"must be 'hard' or 'easy', got {self.start!r}")
        _check(self.max_steps >= 1, "env.max_steps", f"must be >= 1, got {self.max_steps}")


@dataclass(frozen=True)
class PolicyConfig:
    """Policy architecture. ``hidden`` is used by ``mlp``; the others by ``attention_neuron``."""

    name: str = "attention_neuron"  # attention_neuron | mlp | linear
    hidden: tuple[int, ...] = (16,)
    hidden_dim: int = 16
    msg_dim: int = 32
    pos_em_dim: int = 8
    scale: bool = False
    attention_gain: float = 1.0  # fixed factor on the attention logits (1 in the paper)

    def __post_init__(self) -> None:
        names = ("attention_neuron", "mlp", "linear")
        _check(self.name in names, "policy.name", f"must be one of {', '.join(names)}, got {self.name!r}")
        _check(all(h >= 1 for h in self.hidden), "policy.hidden", f"sizes must be >= 1, got {list(self.hidden)}")
        for k in ("hidden_dim", "msg_dim", "pos_em_dim"):
            _check(getattr(self, k) >= 1, f"policy.{k}", f"must be >= 1, got {getattr(self, k)}")
        _check(self.attention_gain > 0, "policy.attention_gain", f"must be > 0, got {self.attention_gain}")


@dataclass(frozen=True)
class StrategyConfig:
    """Evolution strategy: any evosax algorithm by name (CMA_ES by default)."""

    name: str = "CMA_ES"
    population_size: int = 256
    sigma_init: float = 0.1
    init_mean: str = "zeros"  # "zeros", "random" (the policy's own initialiser) or a .npz of flat params
    optimizer: str | None = None  # gradient-based ES (Open_ES, PGPE, SNES, ...): an optax name or "clipup"
    learning_rate: float = 0.01  # of that optimizer

    def __post_init__(self) -> None:
        _check(self.population_size >= 2, "strategy.population_size", f"must be >= 2, got {self.population_size}")
        _check(self.sigma_init > 0, "strategy.sigma_init", f"must be > 0, got {self.sigma_init}")
        _check(self.learning_rate > 0, "strategy.learning_rate", f"must be > 0, got {self.learning_rate}")
        _check(self.init_mean in ("zeros", "random") or self.init_mean.endswith(".npz"), "strategy.init_mean",
               f"must be 'zeros', 'random' or a .npz file of parameters, got {self.init_mean!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Evaluation protocol and loop lengths."""

    generations: int = 1000
    rollouts: int = 16
    episode_steps: int | None = None  # cut training episodes to this many steps (None: env.max_steps)
    common_random_numbers: bool = True  # every member sees the same starts and permutations
    shuffle: bool = False  # train-time augmentation: permute features once per episode
    shuffle_every: int = 0  # ... and again every k steps (0: never mid-episode)
    num_noise: int = 0  # append N Gaussian noise features
    log_every: int = 10  # generations folded into one compiled scan between log points
    checkpoint_every: int = 100
    eval_every: int = 0  # evaluate the distribution mean on held-out episodes every k generations (0: never)
    eval_episodes: int = 128  # number of those fixed held-out episodes

    def __post_init__(self) -> None:
        for k in ("generations", "rollouts", "log_every", "checkpoint_every", "eval_episodes"):
            _check(getattr(self, k) >= 1, f"train.{k}", f"must be >= 1, got {getattr(self, k)}")
        for k in ("shuffle_every", "num_noise", "eval_every"):
            _check(getattr(self, k) >= 0, f"train.{k}", f"must be >= 0, got {getattr(self, k)}")
        _check(self.episode_steps is None or self.episode_steps >= 1, "train.episode_steps",
               f"must be >= 1 or null, got {self.episode_steps}")


@dataclass(frozen=True)
class DistributedConfig:
    """Multi-process set-up through ``jax.distributed`` (off by default)."""

    enabled: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    seed: int = 0
    run_dir: str = "runs/default"
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        steps = self.train.episode_steps
        _check(steps is None or steps <= self.env.max_steps, "train.episode_steps",
               f"must be <= env.max_steps ({self.env.max_steps}), got {steps}")

    @property
    def train_steps(self) -> int:
        """Steps of a training episode: ``train.episode_steps``, else the task's ``env.max_steps``."""
        return self.train.episode_steps or self.env.max_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), suitable for YAML/JSON."""
        return _plain(dataclasses.asdict(self))


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {msg}")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _check_unknown(data: Any, cls: type, prefix: str = "") -> None:
    """Reject keys the dataclass does not define, naming the full dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        if k not in hints:
            valid = ", ".join(sorted(hints))
            raise ConfigError(f"unknown config key '{prefix}{k}' (valid keys here: {valid})")
        sub = _section_type(cls, k)
        if sub is not None:
            _check_unknown(v, sub, f"{prefix}{k}.")


def _section_type(cls: type, name: str) -> type | None:
    sections = {"env": EnvConfig, "policy": PolicyConfig, "strategy": StrategyConfig,
                "train": TrainConfig, "distributed": DistributedConfig}
    return sections.get(name) if cls is Config else None


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested mapping into a :class:`Config` (strict: no unknown keys, exact types)."""
    _check_unknown(data, Config)
    try:
        return dacite.from_dict(Config, data, config=dacite.Config(strict=True, cast=[tuple], type_hooks={float: _int_to_float}))
    except dacite.WrongTypeError as e:
        raise ConfigError(f"config key '{e.field_path}' has the wrong type: expected {_type_name(e.field_type)}, "
                          f"got {e.value!r} ({type(e.value).__name__})") from None
    except dacite.DaciteError as e:
        raise ConfigError(f"invalid config: {e}") from None


def _int_to_float(v: Any) -> Any:
    """Accept YAML integers (``sigma_init: 1``) where a float is expected; leave other types to the check."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested mapping, returning a copy."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.generations=50)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: '{p}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load(path: str | pathlib.Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply overrides and validate."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return from_dict(apply_overrides(data, overrides or []))
