"""A lake remembers the model registry it was made with, so later jobs need no --set for it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from lakelens.config import load_config
from lakelens.lake_settings import SETTINGS_FILE, lake_exists, remember, with_remembered

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
