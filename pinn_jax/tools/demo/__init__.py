"""A static web page that runs the cart-pole swing-up and its policies live in the browser.

    python -m pinn_jax demo OUT_DIR --model pretrained:cartpole_pi_catch --model pretrained:cartpole_mlp
    python -m pinn_jax demo --out OUT_DIR --serve [--port 8000]    # and serve it on 127.0.0.1

OUT_DIR gets ``index.html``, ``demo.js`` (a small float32 JavaScript port of the swing-up's step and of the
attention-neuron, MLP and linear policies) and ``models.js`` (the models' parameters, configs and the env's
physics as JSON, assigned to ``window.PINN_DEMO``). The page needs no server and no network: open
``OUT_DIR/index.html`` from disk. ``tests/test_demo.py`` checks in headless Chromium that the port follows
pinn_jax's JAX env and policies (``index.html?test=FILE.js``).

Only cart-pole swing-up models (``pinn_jax.envs.CARTPOLE_NAMES``) with one continuous action, trained from
the page's starts (``STARTS``) are supported; attention neurons without hidden head layers. Their fixed gains
(``attention_gain``, ``action_gain``) are folded into the exported parameters, as the authors' format has them.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np

from pinn_jax import artifacts
from pinn_jax.envs import CARTPOLE_NAMES, is_swingup, make
from pinn_jax.errors import ArgumentParser, ModelError, UserError, cli, int_range, uint32
from pinn_jax.models import Model, load_model, unique_names
from pinn_jax.policies.base import count_params
from pinn_jax.policies.official_format import fold_gains

__all__ = ["ASSETS", "DATA_FILE", "DEFAULT_MODELS", "KINDS", "STARTS", "check_model", "export_model", "page_data",
           "write_page", "serve", "main"]

HERE = pathlib.Path(__file__).resolve().parent
ASSETS = ("index.html", "demo.js")  # copied from the package
DATA_FILE = "models.js"  # written: window.PINN_DEMO = {...};
DEFAULT_MODELS = ("pretrained:cartpole_pi_catch", "pretrained:cartpole_mlp")
KINDS = ("attention_neuron", "mlp", "linear")
STARTS = ("hard", "easy")  # the start distributions of the page's "start" menu (index.html)
PHYSICS = ("gravity", "masscart", "masspole", "length", "force_mag", "friction", "dt", "x_threshold")


def check_model(model: Model) -> None:
    """Raise a one-line :class:`ModelError` unless the page can run ``model`` (swing-up, one action)."""
    env = model.env_cfg.name
    act_dim = int(getattr(model.policy, "act_dim", 0))
    if not is_swingup(env):
        raise ModelError(f"{model.name}: the demo runs cart-pole swing-up models ({', '.join(CARTPOLE_NAMES)}); "
                         f"this one was trained on {env}")
    if act_dim != 1 or getattr(model.policy, "discrete", False):
        raise ModelError(f"{model.name}: the demo runs policies with one continuous action, this one has "
                         f"{'a discrete action' if getattr(model.policy, 'discrete', False) else f'act_dim {act_dim}'}")
    if model.kind not in KINDS:
        raise ModelError(f"{model.name}: the demo has no JavaScript port of {model.kind!r} policies "
                         f"(only {', '.join(KINDS)})")
    if model.input_size is not None and model.input_size < 5:
        raise ModelError(f"{model.name}: takes {model.input_size} inputs, fewer than the swing-up's 5 features")
    if getattr(model.policy, "head_layers", 0):
        raise ModelError(f"{model.name}: the demo's attention neuron has no hidden head layers, this one has "
                         f"policy.head_layers {model.policy.head_layers}")
    if model.env_cfg.start not in STARTS:
        raise ModelError(f"{model.name}: the demo starts episodes {' or '.join(STARTS)}, this model was trained "
                         f"from the {model.env_cfg.start!r} start")


def _f32(v: np.float32) -> float:
    """The float32 ``v`` as the shortest decimal that JavaScript reads back (then ``Math.fround``) exactly."""
    if not np.isfinite(v):
        raise ModelError(f"parameter value {v} is not finite")
    short = float(str(v))
    return short if np.float32(short) == v else float(v)


def _nested(a: Any) -> Any:
    arr = np.asarray(a, np.float32)
    if arr.ndim == 0:
        return _f32(arr[()])
    return [_nested(x) for x in arr]


def _tree(params: Any) -> Any:
    if isinstance(params, dict) or hasattr(params, "items"):
        return {str(k): _tree(v) for k, v in params.items()}
    return _nested(params)


def export_model(model: Model, name: str | None = None) -> dict[str, Any]:
    """What the page needs of one model: its kind, config, environment and parameters (nested lists), an
    attention neuron's gains folded into its parameters (its exported config has gains 1)."""
    check_model(model)
    params = model.params
    policy = dataclasses.asdict(model.policy)
    if model.kind == "attention_neuron":
        params = fold_gains(params, model.policy)
        unit = dataclasses.replace(model.policy, attention_gain=1.0, action_gain=1.0)
        policy = {**dataclasses.asdict(unit), "logit_scale": float(unit.logit_scale)}
    train = model.config.train if model.config is not None else None
    return {
        "name": name or model.name,
        "kind": model.kind,
        "source": model.source,
        "num_params": count_params(model.params),
        "env": {"name": model.env_cfg.name, "start": model.env_cfg.start, "max_steps": model.env_cfg.max_steps},
        "policy": policy,
        "trained_with": {"shuffle": bool(getattr(train, "shuffle", False)),
                         "shuffle_every": int(getattr(train, "shuffle_every", 0)),
                         "num_noise": int(getattr(train, "num_noise", 0))},
        "params": _tree(params),
    }


def page_data(models: Sequence[Model], seed: int = 0) -> dict[str, Any]:
    """The page's data: the env physics (``EnvParams`` of the first model's env) and every model."""
    if not models:
        raise ModelError("give at least one model (--model SPEC)")
    for m in models:  # before the physics are read from the first model's env
        check_model(m)
    _, env_params = make(models[0].env_cfg.name)
    physics = {k: float(getattr(env_params, k)) for k in PHYSICS}
    return {"version": 1, "seed": int(seed), "env": physics,
            "models": [export_model(m, n) for m, n in zip(models, unique_names(models))]}


def write_page(out_dir: str | pathlib.Path, models: Sequence[Model], seed: int = 0,
               force: bool = False) -> list[pathlib.Path]:
    """Write ``index.html``, ``demo.js`` and ``models.js`` into ``out_dir`` (created); returns their paths. One
    that exists already (a page of the user's own) is refused, unless ``force``."""
    data = page_data(models, seed)  # every model checked before anything is written
    out = artifacts.output_dir(out_dir, "OUT_DIR", (*ASSETS, DATA_FILE), force)
    paths = []
    for name in ASSETS:
        with artifacts.atomic(out / name) as tmp:
            shutil.copyfile(HERE / name, tmp)
        paths.append(out / name)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    paths.append(artifacts.write_text(out / DATA_FILE, "// written by python -m pinn_jax demo\nwindow.PINN_DEMO = "
                                      + text + ";\n"))
    return paths


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


def serve(out_dir: str | pathlib.Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``out_dir`` bound to 127.0.0.1 (``port`` 0: an ephemeral one); not yet serving:
    call ``serve_forever()`` (and ``shutdown()`` from another thread)."""
    handler = functools.partial(_QuietHandler, directory=str(out_dir))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    except OSError as e:
        raise UserError(f"cannot serve on 127.0.0.1:{port}: {e.strerror or e}") from None


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m pinn_jax demo", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="where to write the page (or --out)")
    p.add_argument("--out", default=None, metavar="DIR", help="the same as OUT_DIR")
    p.add_argument("--model", action="append", default=None, metavar="SPEC",
                   help=f"a model spec (pinn_jax.models.load_model), repeatable; default: {' '.join(DEFAULT_MODELS)}")
    p.add_argument("--params", choices=artifacts.PARAM_CHOICES, default="mean",
                   help="which parameters of a run directory")
    p.add_argument("--seed", type=uint32, default=0, help="seed of the page's start states, noise and shuffles")
    p.add_argument("--force", action="store_true", help="replace the page's files in OUT_DIR (index.html, demo.js, "
                   "models.js) when one exists (else it is refused before anything is written)")
    p.add_argument("--serve", action="store_true", help="then serve OUT_DIR on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int_range(0, 65535, "a TCP port"), default=0,
                   help="port for --serve (0: any free one)")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.out_dir and args.out and pathlib.Path(args.out_dir) != pathlib.Path(args.out):
        p.error(f"OUT_DIR {args.out_dir} and --out {args.out} differ")
    out = args.out or args.out_dir
    if not out:
        p.error("give OUT_DIR (or --out DIR)")
    specs = args.model or list(DEFAULT_MODELS)
    models = [load_model(spec, params=args.params) for spec in specs]
    paths = write_page(out, models, args.seed, args.force)
    total = sum(path.stat().st_size for path in paths)
    index = pathlib.Path(out).resolve() / "index.html"
    print(f"wrote {', '.join(path.name for path in paths)} ({total / 1024:.0f} KiB) to {out}: open {index.as_uri()}",
          flush=True)
    if args.serve:
        server = serve(out, args.port)
        print(f"serving {out} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0
