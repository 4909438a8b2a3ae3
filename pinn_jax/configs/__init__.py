"""The experiment configs shipped with the package (``pinn_jax/configs/NAME.yaml``; ``configs/`` in a
checkout is the same folder). ``--config NAME`` picks one by name, ``--config PATH`` any YAML file.

    python -m pinn_jax.train --list-configs
"""

from __future__ import annotations

import pathlib
import re

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
    if path.is_dir():
        raise ConfigError(f"config file {name_or_path} is a directory, not a YAML file")
    raise ConfigError(f"config file not found: {name_or_path} (nor a shipped config of that name; shipped: "
                      f"{', '.join(available())})")


def describe(name: str) -> str:
    """What a shipped config trains: the first sentence of its leading comment block, whole however many lines it
    spans."""
    lines = []
    for line in (HERE / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(" ".join(lines).split())
    match = re.match(r".+?[.!?](?=\s|$)", text)
    return match.group(0) if match else text
