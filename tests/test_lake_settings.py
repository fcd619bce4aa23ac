"""A lake remembers the model registry it was made with and the annotate tasks and models of its nightly runs, so
later jobs need no --set for them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from conftest import SCENES

from lakelens.cli import config_from_args, job_parser
from lakelens.config import load_config
from lakelens.lake_settings import (
    SETTINGS_FILE,
    lake_exists,
    remember,
    remember_annotate,
    remembered_annotate,
    with_remembered,
)

REPO = Path(__file__).resolve().parent.parent


def test_a_remembered_registry_fills_in_where_the_config_names_none(tmp_path: Path) -> None:
    plain = load_config(overrides=[f"lake.root={tmp_path / 'lake'}"])
    assert with_remembered(plain) == plain and not lake_exists(plain)
    named = dataclasses.replace(plain, models=dataclasses.replace(plain.models, registry=str(tmp_path / "reg")))
    remember(named)
    saved = json.loads((tmp_path / "lake" / SETTINGS_FILE).read_text())
    assert saved == {"models.registry": str(tmp_path / "reg")}
    assert with_remembered(plain).models.registry == str(tmp_path / "reg")
    other = dataclasses.replace(plain, models=dataclasses.replace(plain.models, registry=str(tmp_path / "mine")))
    assert with_remembered(other) == other  # a registry named on the command line wins for that job


def test_a_lake_made_with_a_registry_uses_it_in_later_jobs(tmp_path: Path) -> None:
    lake, registry = tmp_path / "lake", tmp_path / "registry"
    (tmp_path / "src").mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", "--source", str(tmp_path / "src"), "--lake", str(lake),
         "--set", f"models.registry={registry}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    installed = subprocess.run(
        [sys.executable, "-m", "jobs.models", "install", "embedder", "--lake", str(lake)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith(f"installed embedder v2 (embedder) into {registry}")
    assert (registry / "embedder" / "v2" / "manifest.json").is_file() and not (lake / "models").exists()


def test_a_nightly_run_s_tasks_and_models_are_remembered_and_a_later_job_s_own_settings_win(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    scenes = load_config(SCENES, [f"lake.root={lake}"])
    remember_annotate(scenes)
    saved = json.loads((tmp_path / "lake" / SETTINGS_FILE).read_text())
    assert saved == {"annotate.tasks": list(scenes.annotate.tasks), "annotate.models": dict(scenes.annotate.models)}

    later = config_from_args(job_parser("jobs.report", "").parse_args(["--lake", lake]))  # no --config, no --set
    assert (later.annotate.tasks, later.annotate.models) == (scenes.annotate.tasks, scenes.annotate.models)
    mine = config_from_args(
        job_parser("jobs.query", "").parse_args(["--lake", lake, "--set", "annotate.models.embed=mine"])
    )
    assert mine.annotate.tasks == scenes.annotate.tasks
    assert dict(mine.annotate.models) == dict(scenes.annotate.models) | {"embed": "mine"}
    assert load_config(overrides=[f"lake.root={lake}"]).annotate == load_config().annotate  # it reads no lake


def test_a_file_that_keeps_only_the_registry_still_reads_and_keeps_it(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / SETTINGS_FILE).write_text(json.dumps({"models.registry": str(tmp_path / "reg")}))
    cfg = config_from_args(job_parser("jobs.report", "").parse_args(["--lake", str(lake)]))
    assert cfg.models.registry == str(tmp_path / "reg") and remembered_annotate(cfg) == {}
    assert cfg.annotate == load_config().annotate  # base.yaml's photo models
    remember_annotate(cfg)
    saved = json.loads((lake / SETTINGS_FILE).read_text())
    assert saved["models.registry"] == str(tmp_path / "reg") and saved["annotate.tasks"] == ["classify", "embed"]
