"""What a lake remembers of the settings it was made with (``<lake root>/lakelens.json``), and whether a lake is
there at all: jobs that only read refuse a lake that does not exist instead of making an empty one.

It keeps the model registry: a lake made with ``--set models.registry=PATH`` uses PATH in every later job that
does not name a registry itself. And it keeps the annotate tasks and models its last nightly run used (JSON values),
which ``lakelens.cli.config_from_args`` applies over ``base.yaml`` and under every file and ``--set`` a job is
given: the demo's lake goes on with the scene models and a photo lake with its photo models, with no ``--set``.

Example:
    >>> cfg = with_remembered(load_config(overrides=["lake.root=/data/lake"]))
    >>> cfg.models.registry          # what the lake's first job was given, or "" for <lake root>/models
    '/shared/registry'
    >>> remembered_annotate(cfg)     # what its last nightly run annotated with
    {'annotate.tasks': ['classify', 'embed'], 'annotate.models': {'classify': 'efficientnet-lite0-imagenet', ...}}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from lakelens.config import Config
from lakelens.errors import InputError
from lakelens.files import resolve
from lakelens.lake import database_location, lake_uri

log = logging.getLogger("lakelens.lake")
SETTINGS_FILE = "lakelens.json"
# What a nightly run keeps for the lake's later jobs: the tasks and models its tables are made with.
ANNOTATE_KEYS = ("annotate.tasks", "annotate.models")


class NoLakeError(InputError):
    """A job that reads a lake was pointed at a folder with no lake in it."""


def lake_exists(cfg: Config) -> bool:
    """Whether the lake's database folder (``<root>/warehouse/<database>.db``) exists: some job has written it."""
    fs, path = resolve(database_location(cfg))
    return fs.get_file_info(path).type == pafs.FileType.Directory


def require_lake(cfg: Config) -> None:
    """Raise :class:`NoLakeError` unless the lake exists, naming the jobs that make one."""
    if not lake_exists(cfg):
        raise NoLakeError(
            f"no lake at {lake_uri(cfg)} (no database {cfg.lake.database} there): check --lake; a lake is made by "
            "python -m jobs.ingest or jobs.nightly --source DIR, or by ./build.sh demo"
        )


def remembered(cfg: Config) -> dict[str, Any]:
    """The settings the lake keeps, ``dotted.key`` -> JSON value (empty for a lake without them)."""
    fs, path = resolve(f"{lake_uri(cfg)}/{SETTINGS_FILE}")
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"the lake's settings {lake_uri(cfg)}/{SETTINGS_FILE} cannot be read: {exc}") from exc
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def with_remembered(cfg: Config) -> Config:
    """``cfg`` with the lake's remembered registry where the configuration names none."""
    registry = str(remembered(cfg).get("models.registry") or "")
    if cfg.models.registry or not registry:
        return cfg
    return dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, registry=registry))


def remembered_annotate(cfg: Config) -> dict[str, Any]:
    """The annotate settings the lake keeps (of :data:`ANNOTATE_KEYS`; none for a lake that keeps only its
    registry), as ``load_config(remembered=...)`` takes them."""
    settings = remembered(cfg)
    return {key: settings[key] for key in ANNOTATE_KEYS if key in settings}


def remember(cfg: Config) -> None:
    """Keep the registry ``cfg`` names (as an absolute path) in the lake's settings, when it names one."""
    if not cfg.models.registry:
        return
    settings = remembered(cfg)
    registry = str(Path(cfg.models.registry).expanduser().resolve())
    if settings.get("models.registry") == registry:
        return
    _write(cfg, {**settings, "models.registry": registry})
    log.info("the lake %s now remembers its model registry: %s", lake_uri(cfg), registry)


def remember_annotate(cfg: Config) -> None:
    """Keep ``cfg``'s annotate tasks (a list) and models (task -> model) in the lake's settings, where they differ
    from those it keeps."""
    settings = remembered(cfg)
    annotate = {"annotate.tasks": list(cfg.annotate.tasks), "annotate.models": dict(cfg.annotate.models)}
    if all(settings.get(key) == value for key, value in annotate.items()):
        return
    _write(cfg, {**settings, **annotate})
    log.info(
        "the lake %s now remembers its annotate tasks %s and their models %s", lake_uri(cfg),
        ", ".join(cfg.annotate.tasks), ", ".join(cfg.annotate.models[t] for t in cfg.annotate.tasks),
    )  # fmt: skip


def _write(cfg: Config, settings: dict[str, Any]) -> None:
    fs, path = resolve(f"{lake_uri(cfg)}/{SETTINGS_FILE}")
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(settings, indent=2, sort_keys=True).encode())
