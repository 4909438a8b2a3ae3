"""The documents stay true to the code: the guide's config reference is config.py's fields, and the ES-only recipe
replays its stages, each from the previous stage's mean."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

from pinn_jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config_table = load_script(ROOT / "docs" / "config_table.py")


def test_the_guides_config_table_is_config_py():
    guide = (ROOT / "docs" / "guide.md").read_text()
    assert config_table.updated(guide) == guide, "docs/guide.md is out of date: run python docs/config_table.py"


def test_the_config_table_has_one_row_per_key_with_its_default_and_meaning():
    rows = [line.split(" | ") for line in config_table.table().splitlines()[2:]]
    keys = [row[0].strip("| `") for row in rows]
    expected = []
    for section in dataclasses.fields(config_lib.Config):
        if dataclasses.is_dataclass(section.default_factory):
            expected += [f"{section.name}.{f.name}" for f in dataclasses.fields(section.default_factory)]
        else:
            expected.append(section.name)
    assert keys == expected
    by_key = dict(zip(keys, rows))
    assert by_key["strategy.sigma_init"][1:3] == ["float", "`0.1`"]
    assert by_key["train.fall_after"][1:3] == ["int or null", "`null`"]
    assert by_key["policy.hidden_dim"][2] == "`16`"  # the policy class's own default, evaluated
    meaning = by_key["strategy.init_mean"][3]
    assert meaning.startswith('"zeros", "random"') and "staged ES" in meaning
    assert all(row[3].strip(" |") for row in rows)


def test_a_field_without_a_comment_is_refused_and_a_comment_after_a_blank_line_is_no_fields():
    source = ("class A:\n    x: int = 1  # the x\n    # more about x\n    y: float = 2.0\n\n    # a heading\n"
              "    z: str | None = None  # the z\n")
    assert config_table.field_comments(source) == {"A": {"x": ("int", "the x more about x"), "y": ("float", ""),
                                                         "z": ("str | None", "the z")}}
    assert config_table._type("tuple[int, ...]") == "list of int" and config_table._type("int | None") == "int or null"


TINY = ["strategy.population_size=8", "train.rollouts=2", "env.max_steps=20", "train.episode_steps=20",
        "train.eval_every=0"]


def test_the_es_only_recipe_chains_its_stages_resumes_a_stopped_one_and_skips_a_finished_one(tmp_path):
    import numpy as np

    from pinn_jax.training import checkpoint as ckpt
    from pinn_jax.training.metrics import read_csv

    recipe = load_script(ROOT / "docs" / "es_alone" / "recipe.py")
    stages = recipe.stages()
    assert [s["stage"] for s in stages] == list(range(1, 11))
    (stopped,) = recipe.replay(tmp_path, TINY + ["train.generations=1"], last=1)  # stage 1 stopped at generation 1
    before = read_csv(stopped)
    one, two = recipe.replay(tmp_path, TINY + ["train.generations=2"], last=2)
    assert one == stopped and one.name == "01_upright_fall_act10" and two.name == "02_bal_s2_easy_fall250"
    rows = read_csv(one)
    assert [r["generation"] for r in rows] == [1, 2] and rows[0] == before[0]  # resumed, not restarted
    # stage 2 starts from stage 1's last mean, with its own recorded settings
    assert np.array_equal(np.load(two / "init_mean.npz")["params"], np.load(one / "params.npz")["mean"])
    cfg = ckpt.load_config(two)
    assert cfg.strategy.init_mean == str(one / "checkpoints" / "2")
    assert (cfg.seed, cfg.env.start, cfg.train.fall_after) == (2, "easy", 250) == (
        stages[1]["seed"], stages[1]["config"]["env"]["start"], stages[1]["config"]["train"]["fall_after"])
    logs = [(d / "metrics.csv").read_bytes() for d in (one, two)]
    assert recipe.replay(tmp_path, TINY + ["train.generations=2"], last=2) == [one, two]
    assert [(d / "metrics.csv").read_bytes() for d in (one, two)] == logs  # both finished: nothing ran


def test_agents_md_presents_every_shipped_agent_and_the_docs_name_only_agents_that_exist():
    import re

    from pinn_jax.models import pretrained

    shipped = set(pretrained.available())
    text = (ROOT / "docs" / "agents.md").read_text()
    headings = {name for line in text.splitlines() if line.startswith("## ") for name in line[3:].split(" and ")}
    rows = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    assert shipped <= headings | rows, sorted(shipped - headings - rows)
    assert {h for h in headings if re.fullmatch(r"\w+", h)} <= shipped
    kept = {p.name for p in (ROOT / "docs" / "agents").iterdir()}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        body = doc.read_text()
        assert set(re.findall(r"pretrained:(\w+)", body)) - {"NAME"} <= shipped, doc
        assert set(re.findall(r"\bagents/(\w+)", body)) - {"NAME"} <= kept, doc


def test_the_readme_reads_as_a_document():
    """At most 220 lines, no line over 400 characters, no paragraph (or list item) over 150 words; tables and code
    blocks aside."""
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    assert max(len(line) for line in text.splitlines()) <= 400
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    long = [p[:60] for p in re.split(r"\n\s*\n|\n(?=- )", prose) if "|---" not in p and len(p.split()) > 150]
    assert not long, long
