"""What a lake remembers of the settings it was made with (``<lake root>/lakelens.json``), and whether a lake is
there at all: jobs that only read refuse a lake that does not exist instead of making an empty one.

Today it keeps the model registry: a lake made with ``--set models.registry=PATH`` uses PATH in every later job
that does not name a registry itself.

Example:
    >>> cfg = with_remembered(load_config(overrides=["lake.root=/data/lake"]))
    >>> cfg.models.registry          # what the lake's first job was given, or "" for <lake root>/models
    '/shared/registry'
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pyarrow.fs as pafs

from lakelens.config import Config
from lakelens.errors import InputError
from lakelens.files import resolve
from lakelens.lake import database_location, lake_uri

log = logging.getLogger("lakelens.lake")
SETTINGS_FILE = "lakelens.json"


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


def remembered(cfg: Config) -> dict[str, str]:
    """The settings the lake keeps (empty for a lake without them)."""
    fs, path = resolve(f"{lake_uri(cfg)}/{SETTINGS_FILE}")
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"the lake's settings {lake_uri(cfg)}/{SETTINGS_FILE} cannot be read: {exc}") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def with_remembered(cfg: Config) -> Config:
    """``cfg`` with the lake's remembered registry where the configuration names none."""
    registry = remembered(cfg).get("models.registry", "")
    if cfg.models.registry or not registry:
        return cfg
    return dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, registry=registry))


def remember(cfg: Config) -> None:
    """Keep the registry ``cfg`` names (as an absolute path) in the lake's settings, when it names one."""
    if not cfg.models.registry:
        return
    settings = remembered(cfg)
    registry = str(Path(cfg.models.registry).expanduser().resolve())
    if settings.get("models.registry") == registry:
        return
    fs, path = resolve(f"{lake_uri(cfg)}/{SETTINGS_FILE}")
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({**settings, "models.registry": registry}, indent=2, sort_keys=True).encode())
    log.info("the lake %s now remembers its model registry: %s", lake_uri(cfg), registry)
