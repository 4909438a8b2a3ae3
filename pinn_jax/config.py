"""Typed, validated experiment configuration loaded from YAML.

A config file is a nested mapping whose sections mirror the dataclasses below. Unknown keys,
wrong types and bad values raise :class:`ConfigError` with a one-line message naming the key.
Types are exact: a bool is not an int, a string is not a list; float fields also take numeric strings
(PyYAML reads ``3e-4`` as one); ints must fit in int32 (``seed``: uint32, for ``jax.random.PRNGKey``).
``--set section.key=value`` overrides (values parsed as YAML) are applied before validation.

YAML is read one way, by :func:`read_yaml` and :func:`parse_yaml`: a key given twice in one mapping is refused
(PyYAML would keep the last silently), and numbers read the way a person writes them: ``010`` is ten (not octal
eight) and ``1:05`` is the text ``1:05`` (never base 60, 65).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pathlib
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import dacite
import yaml

from pinn_jax import configs
from pinn_jax.errors import INT32_MAX, UINT32_MAX, ConfigError
from pinn_jax.policies import POLICY_NAMES, AttentionNeuronPolicy, MLPPolicy, VisionAttentionPolicy

# (lowest, highest, why) of an int field; every other int field must fit in int32
_INT_RANGES: dict[str, tuple[int, int, str]] = {"seed": (0, UINT32_MAX, "a uint32 seed for jax.random.PRNGKey")}
_INT32 = (-INT32_MAX - 1, INT32_MAX, "int32")


STARTS = ("hard", "easy", "upright")  # the swing-up's start distributions (env.start, --env-start)


@dataclass(frozen=True)
class EnvConfig:
    """Environment: cart-pole swing-up (``start`` hard, easy or upright) or any gymnax env by name."""

    name: str = "CartPoleSwingUp-v0"  # the swing-up (CartPoleSwingUp-v0, -easy, -hard) or a gymnax env id
    start: str = "hard"  # "hard" (paper's CartPoleSwingUpHarder), "easy" or "upright" (balance only)
    max_steps: int = 1000  # steps of an episode (held-out and reported episodes are this long)
    patch_size: int | tuple[int, ...] | None = None  # image envs only: cut frames into patches of this side, or [height, width] (envs/patches.py)

    def __post_init__(self) -> None:
        _check(self.start in STARTS, "env.start", f"must be 'hard', 'easy' or 'upright', got {self.start!r}")
        _check(self.max_steps >= 1, "env.max_steps", f"must be >= 1, got {self.max_steps}")
        size = (self.patch_size,) if isinstance(self.patch_size, int) else self.patch_size
        _check(size is None or (len(size) in (1, 2) and min(size) >= 1), "env.patch_size",
               f"must be >= 1, [height, width] of ints >= 1, or null, got {self.patch_size}")


_AN = AttentionNeuronPolicy  # whose dataclass defaults are PolicyConfig's
_VA = VisionAttentionPolicy


@dataclass(frozen=True)
class PolicyConfig:
    """Policy architecture. ``hidden`` is used by ``mlp``; ``frames`` to ``head_hidden`` by ``vision_attention``;
    the others by ``attention_neuron``. The defaults are the policy classes' own."""

    name: str = "attention_neuron"  # attention_neuron | mlp | linear
    hidden: tuple[int, ...] = MLPPolicy.hidden  # mlp: widths of its tanh hidden layers
    hidden_dim: int = _AN.hidden_dim  # number of queries: the width of the latent and of head layers
    msg_dim: int = _AN.msg_dim  # width of the key and query projections W_k, W_q
    pos_em_dim: int = _AN.pos_em_dim  # size of the per-feature LSTM state and of the fixed query table
    scale: bool = _AN.scale  # divide the attention logits by sqrt(msg_dim)
    attention_gain: float = _AN.attention_gain  # fixed factor on the attention logits (1 in the paper)
    action_gain: float = _AN.action_gain  # fixed factor on the output layer's pre-activation (1 in the paper)
    head_layers: int = _AN.head_layers  # tanh layers of width hidden_dim before the output layer (0 in the paper's
    # cart-pole)
    init_forget_bias: float = _AN.init_forget_bias  # added to the LSTM forget-gate bias of the starting parameters
    # (0 in the paper)
    frames: int = _VA.frames  # frames per patch (>= 2: the keys are their differences)
    grid: int = _VA.grid  # side of the latent grid (grid**2 queries)
    query_dim: int = _VA.query_dim  # size of the fixed 2-D sinusoidal query embedding (even)
    key_dim: int = _VA.key_dim  # size of queries and keys
    value_dim: int = _VA.value_dim  # size of values and latent cells
    head_hidden: int = _VA.head_hidden  # tanh units of the head (0: linear head)
    key_frame: bool = _VA.key_frame  # the keys also see each patch's latest frame, not only its differences

    def __post_init__(self) -> None:
        _check(self.name in POLICY_NAMES, "policy.name", f"must be one of {', '.join(POLICY_NAMES)}, got {self.name!r}")
        _check(all(h >= 1 for h in self.hidden), "policy.hidden", f"sizes must be >= 1, got {list(self.hidden)}")
        for k in ("hidden_dim", "msg_dim", "pos_em_dim"):
            _check(getattr(self, k) >= 1, f"policy.{k}", f"must be >= 1, got {getattr(self, k)}")
        _check_positive("policy.attention_gain", self.attention_gain)
        _check_positive("policy.action_gain", self.action_gain)
        _check(self.head_layers >= 0, "policy.head_layers", f"must be >= 0, got {self.head_layers}")
        _check(math.isfinite(self.init_forget_bias), "policy.init_forget_bias",
               f"must be a finite number, got {self.init_forget_bias}")
        _check(self.frames >= 2, "policy.frames", f"must be >= 2 (the keys are frame differences), got {self.frames}")
        for k in ("grid", "key_dim", "value_dim"):
            _check(getattr(self, k) >= 1, f"policy.{k}", f"must be >= 1, got {getattr(self, k)}")
        _check(self.query_dim >= 2 and self.query_dim % 2 == 0, "policy.query_dim",
               f"must be even and >= 2 (half rows, half columns), got {self.query_dim}")
        _check(self.head_hidden >= 0, "policy.head_hidden", f"must be >= 0, got {self.head_hidden}")


PRETRAINED_PREFIX = "pretrained:"  # a shipped agent, in model specs and in strategy.init_mean


def pretrained_name(spec: str) -> str | None:
    """NAME of a ``pretrained:NAME`` spec (stripped, possibly empty); None for any other spec."""
    spec = str(spec)
    return spec[len(PRETRAINED_PREFIX):].strip() if spec.startswith(PRETRAINED_PREFIX) else None


@dataclass(frozen=True)
class StrategyConfig:
    """Evolution strategy: any evosax algorithm by name (CMA_ES by default)."""

    name: str = "CMA_ES"  # an evosax algorithm (CMA_ES, Sep_CMA_ES, PGPE, Open_ES, SNES, ...)
    population_size: int = 256  # members per generation
    sigma_init: float = 0.1  # the search distribution's initial step size
    init_mean: str = "zeros"  # "zeros", "random" (the policy's own initialiser), a .npz of flat params, a run
    # directory (its newest checkpoint's mean: staged ES) or "pretrained:NAME" (runs from a pip install)
    optimizer: str | None = None  # gradient-based ES (Open_ES, PGPE, SNES, ...): an optax name or "clipup"
    learning_rate: float = 0.01  # that optimizer's learning rate

    def __post_init__(self) -> None:
        _check(self.population_size >= 2, "strategy.population_size", f"must be >= 2, got {self.population_size}")
        _check_positive("strategy.sigma_init", self.sigma_init)
        _check_positive("strategy.learning_rate", self.learning_rate)
        _check(bool(self.init_mean.strip()) and pretrained_name(self.init_mean) != "",  # paths are checked on use
               "strategy.init_mean", f"must be 'zeros', 'random', a .npz file of parameters, a run directory "
               f"(or RUN_DIR/checkpoints/N) or pretrained:NAME, got {self.init_mean!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Evaluation protocol and loop lengths."""

    generations: int = 1000  # train until this generation (a resume may raise it)
    rollouts: int = 16  # episodes per member; its fitness is their mean return
    episode_steps: int | None = None  # cut training episodes to this many steps (None: env.max_steps)
    common_random_numbers: bool = True  # every member sees the same starts and permutations
    shuffle: bool = False  # train-time augmentation: permute features once per episode
    shuffle_every: int = 0  # train-time augmentation: permute them again every k steps (0: never mid-episode)
    num_noise: int = 0  # append N Gaussian noise features

    # the training fitness's knobs: what they do, their neutral values and envs live in pinn_jax/envs/fitness.py
    reward_power: float = 1.0  # swing-up only: the fitness's pole reward raised to this power (held-out: 1)
    fall_after: int | None = None  # swing-up only: training episodes end when the pole falls below horizontal
    # after this many steps (None: never; held-out episodes never do)
    fall_credit: float = 0.0  # with fall_after: an episode ended by the fall, the cart on the track, is paid this
    # much per training step it had left (0: nothing), so a lost cart costs more than a fallen pole
    start_scale: float = 1.0  # hard start only: training episodes start in its ranges scaled by this (held-out: 1)
    cart_only_steps: int = 0  # swing-up only: the first N steps of a training episode pay only the cart factor
    # (the paper's reward after them)
    alive_bonus: float = 0.0  # any env: every training step taken pays this much more (the time kept in play)
    log_every: int = 10  # generations folded into one compiled scan between log points
    checkpoint_every: int = 100  # generations between orbax checkpoints (orbax keeps the newest 3)
    keep_every: int = 0  # also keep for good every checkpoint whose generation is a multiple of this (0: the newest 3 only)
    eval_every: int = 0  # evaluate the distribution mean on held-out episodes every k generations (0: never)
    eval_episodes: int = 128  # number of those fixed held-out episodes (whole env.max_steps episodes)

    def __post_init__(self) -> None:
        for k in ("generations", "rollouts", "log_every", "checkpoint_every", "eval_episodes"):
            _check(getattr(self, k) >= 1, f"train.{k}", f"must be >= 1, got {getattr(self, k)}")
        for k in ("shuffle_every", "num_noise", "eval_every", "keep_every"):
            _check(getattr(self, k) >= 0, f"train.{k}", f"must be >= 0, got {getattr(self, k)}")
        _check(self.episode_steps is None or self.episode_steps >= 1, "train.episode_steps",
               f"must be >= 1 or null, got {self.episode_steps}")
        _check_positive("train.reward_power", self.reward_power)
        _check(self.fall_after is None or self.fall_after >= 0, "train.fall_after",
               f"must be >= 0 or null, got {self.fall_after}")
        _check(0.0 <= self.fall_credit <= 1.0, "train.fall_credit", f"must be in [0, 1], got {self.fall_credit}")
        _check(self.fall_credit == 0.0 or self.fall_after is not None, "train.fall_credit",
               f"pays episodes ended by train.fall_after, which is null; set it or use 0, got {self.fall_credit}")
        _check_positive("train.start_scale", self.start_scale)
        _check(self.start_scale <= 1.0, "train.start_scale", f"must be <= 1, got {self.start_scale}")
        _check(self.cart_only_steps >= 0, "train.cart_only_steps", f"must be >= 0, got {self.cart_only_steps}")
        _check(math.isfinite(self.alive_bonus) and self.alive_bonus >= 0, "train.alive_bonus",
               f"must be finite and >= 0, got {self.alive_bonus}")


LOSSES = ("mse", "bce")  # distill.loss: squared action error, or cross-entropy for bang-bang teachers


@dataclass(frozen=True)
class DistillConfig:
    """Behaviour cloning with DAgger (``python -m pinn_jax distill``); training runs ignore it."""

    teacher: str | None = None  # model spec: run directory, FILE.npz, pretrained:NAME or official
    lqr_above: float | None = None  # cart-pole: an LQR balancer labels the steps where cos θ > this (null: none)
    init: str = "random"  # the student's start, as strategy.init_mean ("random": its policy's initialiser)
    rounds: int = 8  # DAgger rounds (round 0 records the teacher's episodes)
    episodes: int = 64  # episodes recorded per round
    updates: int = 100  # Adam updates per round
    batch: int = 32  # episodes per update
    learning_rate: float = 3e-3  # Adam's learning rate
    loss: str = "mse"  # "mse" (squared action error) or "bce" (cross-entropy, for bang-bang teachers)
    eval_episodes: int = 128  # fixed held-out episodes scored after every round

    def __post_init__(self) -> None:
        _check(self.teacher is None or (bool(self.teacher.strip()) and pretrained_name(self.teacher) != ""),
               "distill.teacher", f"must be a run directory, a .npz file, pretrained:NAME, official or null, "
               f"got {self.teacher!r}")
        _check(self.lqr_above is None or -1.0 < self.lqr_above < 1.0, "distill.lqr_above",
               f"must lie in (-1, 1) or be null, got {self.lqr_above}")
        _check(bool(self.init.strip()) and pretrained_name(self.init) != "", "distill.init",
               f"must be 'random', 'zeros', a .npz file of parameters, a run directory or pretrained:NAME, "
               f"got {self.init!r}")
        for k in ("rounds", "episodes", "updates", "batch", "eval_episodes"):
            _check(getattr(self, k) >= 1, f"distill.{k}", f"must be >= 1, got {getattr(self, k)}")
        _check_positive("distill.learning_rate", self.learning_rate)
        _check(self.loss in LOSSES, "distill.loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")


@dataclass(frozen=True)
class DistributedConfig:
    """Multi-process set-up through ``jax.distributed`` (off by default)."""

    enabled: bool = False  # initialise jax.distributed and shard the population over every process's devices
    coordinator_address: str | None = None  # host:port of process 0 (None: JAX_COORDINATOR_ADDRESS or
    # cluster detection)
    num_processes: int | None = None  # None: JAX_NUM_PROCESSES or cluster detection
    process_id: int | None = None  # this process's rank (None: JAX_PROCESS_ID or cluster detection)


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    seed: int = 0  # the run's PRNG seed: training and held-out episodes, the search
    run_dir: str = "runs/default"  # where the run lives (--out)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        _check(bool(self.run_dir.strip()), "run_dir", f"must name a directory, got {self.run_dir!r}")
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


def _check_positive(key: str, value: float) -> None:
    _check(math.isfinite(value) and value > 0, key, f"must be a finite number > 0, got {value}")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _validate(data: Any, cls: type, prefix: str = "") -> dict[str, Any]:
    """``data`` checked against dataclass ``cls`` (no unknown keys, exact types), with values coerced."""
    if not isinstance(data, dict):
        section = prefix.rstrip(".") or "<root>"
        raise ConfigError(f"config section '{section}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in data.items():
        if k not in hints:
            raise ConfigError(f"unknown config key '{prefix}{k}' (valid keys here: {', '.join(sorted(hints))})")
        tp = hints[k]
        out[k] = _validate(v, tp, f"{prefix}{k}.") if dataclasses.is_dataclass(tp) else _coerce(v, tp, f"{prefix}{k}")
    return out


def _coerce(v: Any, tp: Any, key: str, expected: str = "") -> Any:
    """``v`` as a value of field type ``tp`` (bool, int, float, str, ``tuple[int, ...]`` or ``X | None``)."""
    expected = expected or _type_name(tp)
    args = typing.get_args(tp)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return None if v is None else _coerce(v, inner[0] if len(inner) == 1 else typing.Union[tuple(inner)], key,
                                              expected)
    if len(args) > 1 and typing.get_origin(tp) is not tuple:  # X | Y: the first that takes v
        for a in args[:-1]:
            try:
                return _coerce(v, a, key, expected)
            except ConfigError:
                pass
        return _coerce(v, args[-1], key, expected)
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if typing.get_origin(tp) is tuple:
        if isinstance(v, (list, tuple)) and all(isinstance(h, int) and not isinstance(h, bool) for h in v):
            return tuple(_int_in_range(h, key) for h in v)
    elif tp is int and is_int:
        return _int_in_range(v, key)
    elif tp is float and (is_int or isinstance(v, (float, str))):
        try:
            return float(v)
        except (ValueError, OverflowError):
            pass
    elif tp in (bool, str) and isinstance(v, tp):
        return v
    raise ConfigError(f"config key '{key}' has the wrong type: expected {expected}, got {v!r} ({type(v).__name__})")


def _int_in_range(v: int, key: str) -> int:
    lo, hi, what = _INT_RANGES.get(key, _INT32)
    _check(v >= lo, key, f"must be >= {lo} ({what}), got {v}")
    _check(v <= hi, key, f"must be <= {hi} ({what}), got {v}")
    return v


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if len(args) > 1 and typing.get_origin(tp) is not tuple:
        return " or ".join(_type_name(a) for a in args)
    return "a list of ints" if typing.get_origin(tp) is tuple else tp.__name__


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested mapping into a :class:`Config` (strict: no unknown keys, exact types)."""
    try:
        return dacite.from_dict(Config, _validate(data, Config), config=dacite.Config(strict=True))
    except dacite.DaciteError as e:  # not expected after _validate: kept one line all the same
        raise ConfigError(f"invalid config: {str(e).splitlines()[0]}") from None


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without its surprises: duplicate keys are an error, an int with leading zeros is
    decimal, and nothing is read in base 60."""

    yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeConstructor refuses it in its own words
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_number(kind: type) -> typing.Callable[[_Loader, yaml.ScalarNode], int | float]:
    def construct(loader: _Loader, node: yaml.ScalarNode) -> int | float:
        text = str(loader.construct_scalar(node)).replace("_", "")
        try:
            if kind is float:
                special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
                return special[text.lower()] if text.lower() in special else float(text)
            return int(text, 0) if re.match(r"[-+]?0[bx]", text) else int(text, 10)
        except ValueError:
            what = "a float" if kind is float else "an int"
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not {what}", node.start_mark) from None
    return construct


_Loader.add_implicit_resolver(  # decimal (leading zeros too), 0b binary, 0x hexadecimal; no base 60
    _INT_TAG, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?[0-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(  # YAML 1.1's floats less its base 60
    _FLOAT_TAG, re.compile(r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
                           r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Loader.add_constructor(_INT_TAG, _construct_number(int))
_Loader.add_constructor(_FLOAT_TAG, _construct_number(float))


def parse_yaml(text: str) -> Any:
    """A YAML document read by the rules above; ``yaml.YAMLError`` when it is not valid YAML."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (``line L, column C``)."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark
        return f"{e.problem}" + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")
    return str(e).splitlines()[0]


def read_yaml(path: str | pathlib.Path) -> Any:
    """The YAML document in ``path`` (a config file, a run's ``config.yaml``); a one-line :class:`ConfigError`
    naming the file when it cannot be read, is not UTF-8 text or not valid YAML."""
    try:
        return parse_yaml(pathlib.Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or type(e).__name__}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(e)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested mapping, returning a copy."""
    data = copy.deepcopy(data) or {}
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
        try:
            node[parts[-1]] = parse_yaml(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {_yaml_problem(e)}") from None
    return data


def read(path: str | pathlib.Path) -> Config:
    """A config saved with a run or a distillation (its ``config.yaml``), as written there: every error is one
    :class:`ConfigError` line naming the file."""
    data = read_yaml(path)
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load(path: str | pathlib.Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (or the shipped config of that name, :mod:`pinn_jax.configs`), apply
    overrides and validate."""
    path = configs.resolve(path)
    data = read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections and keys, got {type(data).__name__}")
    if not data:
        raise ConfigError(f"config file {path} is empty (it sets no keys): refusing to run on all defaults; "
                          f"start from configs/quick.yaml")
    return from_dict(apply_overrides(data, overrides or []))
