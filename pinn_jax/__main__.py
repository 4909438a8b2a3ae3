"""``python -m pinn_jax CMD [ARGS]``: every command line tool of the package under one name.

    python -m pinn_jax train --config quick          # also python -m pinn_jax.train
    python -m pinn_jax evaluate pretrained:cartpole_pi_catch --episodes 200
    python -m pinn_jax --help                        # the commands, one line each
"""

from __future__ import annotations

import importlib
import sys

# command -> the module whose ``main(argv)`` runs it (each is also a console script, ``pinn-CMD``)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("pinn_jax.train", "train a policy with an evolution strategy; exact --resume"),
    "evaluate": ("pinn_jax.study.evaluate", "returns under shuffling and noise; videos, attention maps"),
    "diagnose": ("pinn_jax.study.diagnose", "how a swing-up agent earns and loses its return"),
    "study": ("pinn_jax.study.across_envs", "the shuffle / noise study across environments"),
    "curves": ("pinn_jax.study.curves", "held-out learning curves of runs and stages"),
    "pretrained": ("pinn_jax.models.pretrained", "list, export and fetch trained agents"),
    "distill": ("pinn_jax.tools.distill", "DAgger behaviour cloning from a teacher"),
    "pycma_reference": ("pinn_jax.tools.pycma_reference", "pycma's CMA-ES on the trainer's own fitness"),
    "bench": ("pinn_jax.tools.bench", "generations per second and scaling"),
    "demo": ("pinn_jax.tools.demo", "the swing-up and its agents in the browser"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {c:<{width}}  {why}" for c, (_, why) in COMMANDS.items())
    return f"usage: python -m pinn_jax CMD [ARGS]  (python -m pinn_jax CMD --help for its options)\n\n{rows}"


def main(argv: list[str] | None = None) -> int:
    """Run ``CMD``'s ``main`` with the remaining arguments; exit code 2 for an unknown command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}; use one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])  # only the command's own modules are loaded
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
