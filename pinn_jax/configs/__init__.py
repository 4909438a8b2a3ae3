"""The experiment configs shipped with the package (``pinn_jax/configs/NAME.yaml``; ``configs/`` in a
checkout is the same folder). ``--config NAME`` picks one by name, ``--config PATH`` any YAML file.

    python -m pinn_jax.train --list-configs
"""

from __future__ import annotations

import pathlib

from pinn_jax.errors import ConfigError

__all__ = ["HERE", "available", "resolve", "describe"]

HERE = pathlib.Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped configs."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def resolve(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """An existing YAML file as given, else the shipped config of that name (with or without ``.yaml``)."""
    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    shipped = HERE / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == pathlib.Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name_or_path} (nor a shipped config of that name; shipped: "
                      f"{', '.join(available())})")


def describe(name: str) -> str:
    """The first comment line of a shipped config: what it trains."""
    for line in (HERE / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
