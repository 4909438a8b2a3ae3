"""The architecture, checked: every module imports only its own layer or the layers below it, the training core
reads nothing from disk, and the only function-local import of our own modules is the lazy trainer import."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pinn_jax"

# lowest first; a module belongs to the first layer one of whose prefixes it starts with
LAYERS: list[tuple[str, ...]] = [
    ("pinn_jax.errors",),
    ("pinn_jax.envs", "pinn_jax.policies"),
    ("pinn_jax.config", "pinn_jax.configs", "pinn_jax.artifacts"),
    ("pinn_jax.experiment", "pinn_jax.rollout"),
    ("pinn_jax.training",),
    ("pinn_jax.models",),
    ("pinn_jax.study",),
    ("pinn_jax.tools",),
    ("pinn_jax.train", "pinn_jax.api", "pinn_jax.__main__", "pinn_jax"),
]
DISK = ("pinn_jax.training.checkpoint", "pinn_jax.training.rundir", "pinn_jax.training.runs", "pinn_jax.artifacts",
        "pinn_jax.models", "orbax", "threadpoolctl", "tensorboardX")
CORE = "pinn_jax.training.trainer"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    return next(i for i, prefixes in enumerate(LAYERS)
                if any(module == p or module.startswith(p + ".") for p in prefixes))


def imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import statement of a file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in in_function) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import y: relative to this module's package
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found += [(f"{base}.{a.name}" if base.startswith("pinn_jax") else base, id(node) in in_function)
                      for a in node.names]
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def own(name: str) -> str | None:
    """The module of ours that an imported name is, or lives in (``pinn_jax.training.es.make_strategy`` -> es)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_or_lower(module):
    above = [name for name, _ in imports(MODULES[module])
             if (target := own(name)) and target != module and layer(target) > layer(module)]
    assert not above, f"{module} (layer {layer(module)}) imports from a higher layer: {above}"


def test_the_layers_are_enforced_by_this_test():
    """The check itself can fail: a study module above a training one, or a tool under the models."""
    assert layer("pinn_jax.study.evaluate") > layer("pinn_jax.training.trainer") > layer("pinn_jax.rollout")
    assert layer("pinn_jax.tools.distill") > layer("pinn_jax.models.pretrained") > layer("pinn_jax.config")


def test_the_training_core_reads_nothing_from_disk():
    """The module that defines Trainer and make_generation imports no checkpoint, run directory, file format, shipped
    agent, orbax, threadpoolctl or TensorBoard writer, directly or through our own modules it imports."""
    seen, todo = set(), [CORE]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name, _ in imports(MODULES[m]):
            assert not any(name == d or name.startswith(d + ".") for d in DISK), f"{CORE} reaches {name} through {m}"
            target = own(name)
            if target:
                todo.append(target)


def test_one_function_local_import_of_our_own_modules_the_lazy_trainer_import():
    local = [(m, name) for m, p in MODULES.items() for name, inside in imports(p) if inside and own(name)]
    assert local == [("pinn_jax.train", "pinn_jax.training.loop")]


def test_at_most_ten_top_level_modules():
    top = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 10, top
