"""Configuration: YAML files and ``--set`` overrides loaded once into frozen, validated objects.

``conf/base.yaml`` names every key with its default; later files and ``--set key=value`` override it. An unknown
key, a missing key or a bad value raises :class:`ConfigError` naming the key and what is allowed.

Example:
    >>> cfg = load_config(overrides=["lake.database=analytics", "ingest.max_pixels=1000000"])
    >>> cfg.lake.database, cfg.ingest.max_pixels
    ('analytics', 1000000)
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import types
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import yaml

from lakelens.checks import model_ref, non_negative, one_of, positive, unit
from lakelens.perceptual import RECIPES
from lakelens.tasks import TASKS

# What jobs.annotate can do, in the order it does it (lakelens.tasks declares each).
ANNOTATE_TASKS = tuple(TASKS)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
BASE_CONFIG = CONF_DIR / "base.yaml"
LOCAL_CONFIG = CONF_DIR / "local.yaml"
SCENES_CONFIG = CONF_DIR / "scenes.yaml"  # the synthetic-scene models for every task (the demo's setup)
# The models' arithmetic on a CPU (annotate.precision); a GPU runs float16 either way.
PRECISIONS = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message names the key and what is allowed."""


def _identifier(value: Any) -> str | None:
    return (
        None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) else "must be a SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"
    )


def _spark_keys(value: Any) -> str | None:
    bad = [k for k in value if not k.startswith("spark.")]
    return None if not bad else f"keys must start with 'spark.' (got {', '.join(bad)})"


def _tasks(value: Any) -> str | None:
    bad = [t for t in value if t not in ANNOTATE_TASKS]
    if bad or not value:
        return f"must be a non-empty list of {', '.join(ANNOTATE_TASKS)} (unknown: {', '.join(bad) or 'none'})"
    return None


def _check(fn: Callable[[Any], str | None]) -> Any:
    return field(metadata={"check": fn})


def _coerced(fn: Callable[[Any, str], Any]) -> Any:
    """A field whose value ``fn(value, key)`` checks and completes (raising ConfigError) instead of the type's rule."""
    return field(metadata={"coerce": fn})


def _task_models(value: Any, name: str) -> Mapping[str, str]:
    """annotate.models: every task's registry model, the task's default where none is given."""
    given = _task_mapping(value, name)
    for task, ref in given.items():
        problem = model_ref(ref)
        if problem:
            raise ConfigError(f"config key '{name}.{task}' {problem} (got {ref!r})")
    return types.MappingProxyType({t: given.get(t, TASKS[t].default_model) for t in TASKS})


def _task_options(value: Any, name: str) -> Mapping[str, Mapping[str, Any]]:
    """annotate.options: every task's settings (``{task: {option: value}}``, or ``task.option`` keys from --set),
    each checked against the task's declaration, its default where none is given."""
    given = _task_mapping(value, name, nested=True)
    options = {}
    for task, declared in TASKS.items():
        chosen = given.get(task, {})
        unknown = sorted(set(chosen) - set(declared.options))
        if unknown:
            allowed = ", ".join(declared.options) or "none"
            raise ConfigError(f"unknown config key '{name}.{task}.{unknown[0]}'; {task} takes: {allowed}")
        values = {}
        for option, spec in declared.options.items():
            key, got = f"{name}.{task}.{option}", chosen.get(option, spec.default)
            kind = type(spec.default)
            if kind is float and isinstance(got, int) and not isinstance(got, bool):
                got = float(got)
            if not isinstance(got, kind) or isinstance(got, bool) != isinstance(spec.default, bool):
                raise ConfigError(f"config key '{key}' must be {kind.__name__} (got {got!r})")
            problem = spec.check(got)
            if problem:
                raise ConfigError(f"config key '{key}' {problem} (got {got!r})")
            values[option] = got
        options[task] = types.MappingProxyType(values)
    return types.MappingProxyType(options)


def _task_mapping(value: Any, name: str, nested: bool = False) -> dict[str, Any]:
    """A per-task mapping from YAML or --set: its keys checked to be tasks; with ``nested``, ``task.option`` keys
    (as --set gives them) folded into ``{task: {option: value}}``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{name}' must be a mapping of task names (got {value!r})")
    out: dict[str, Any] = {}
    for key, item in value.items():
        task, dot, option = str(key).partition(".")
        if task not in TASKS:
            raise ConfigError(f"unknown task '{task}' in config key '{name}'; tasks: {', '.join(TASKS)}")
        if not nested:
            out[task] = item
        elif dot:
            out.setdefault(task, {})[option] = item
        elif isinstance(item, Mapping):
            out.setdefault(task, {}).update(item)
        else:
            raise ConfigError(f"config key '{name}.{task}' must be a mapping of the task's settings (got {item!r})")
    return out


@dataclass(frozen=True)
class SparkConfig:
    """How the Spark session is built."""

    master: str  # used only when spark-submit did not choose one
    app_name: str
    log_level: str = _check(one_of("ERROR", "WARN", "INFO", "DEBUG"))
    conf: Mapping[str, str] = _check(_spark_keys)  # passed to the session builder as-is


@dataclass(frozen=True)
class LakeConfig:
    """Where the lake lives and how its catalog is kept."""

    root: str  # a local path or a Hadoop URI (hdfs://, s3a://, ...)
    database: str = _check(_identifier)
    # derby: an embedded metastore under the lake root; external: the cluster's own (hive-site.xml).
    metastore: str = _check(one_of("derby", "external"))


@dataclass(frozen=True)
class IngestConfig:
    """Image ingest: which files, and the limits that turn a file into an error row."""

    patterns: tuple[str, ...]  # file-name globs, case-insensitive, matched on the base name
    max_pixels: int = _check(positive)  # width * height above this is a decompression bomb
    max_bytes: int = _check(positive)  # larger files are error rows, never read into memory
    read_threads: int = _check(positive)  # threads per read task: overlap I/O waits (remote stores) and decode
    files_per_partition: int = _check(positive)  # read tasks: one per this many files, a multiple of the cores
    batch_bytes: int = _check(positive)  # image bytes per Arrow batch that Python sends back to Spark
    arrow_batch_rows: int = _check(positive)  # rows per Arrow batch into Python where rows already carry bytes
    broadcast_rows: int = _check(positive)  # up to this many files a run, dedup ids are broadcast, not shuffled


@dataclass(frozen=True)
class ModelsConfig:
    """Where trained models are kept."""

    registry: str  # a local folder; "" means <lake root>/models


@dataclass(frozen=True)
class AnnotateConfig:
    """jobs.annotate: which tasks, which models, and how the model UDFs batch, score and compute."""

    tasks: tuple[str, ...] = _check(_tasks)
    models: Mapping[str, str] = _coerced(_task_models)  # task -> registry model NAME (latest version) or NAME:vN
    options: Mapping[str, Mapping[str, Any]] = _coerced(_task_options)  # task -> its settings (lakelens.tasks)
    batch_size: int = _check(positive)  # images per model call, whatever the Arrow batch size
    arrow_batch_rows: int = _check(positive)  # rows (with their image bytes) per Arrow batch into Python
    decode_threads: int = _check(positive)  # per task: decode the next batch while the model runs
    precision: str = _check(one_of(*PRECISIONS))  # the models' arithmetic on a CPU (a GPU: float16)


def _recipe(value: Any) -> str | None:
    return None if value in RECIPES else f"must be a perceptual token recipe: {', '.join(RECIPES)}"


@dataclass(frozen=True)
class NearDupConfig:
    """jobs.index, near-duplicates: MinHash of perceptual tokens, banded as datasketch's MinHashLSH bands it."""

    num_perm: int = _check(positive)
    seed: int
    recipe: str = _check(_recipe)
    lsh_threshold: float = _check(unit)  # banding: (b, r) = datasketch's optimum for this Jaccard threshold
    threshold: float = _check(unit)  # a candidate pair is kept when its estimated Jaccard is at least this


@dataclass(frozen=True)
class SimilarConfig:
    """jobs.index, similar images: the exact top k by blocked matrix products, or random-hyperplane (SimHash)
    buckets whose candidates are then scored by exact cosine."""

    method: str = _check(one_of("exact", "lsh"))
    k: int = _check(positive)  # neighbours kept per image
    block: int = _check(positive)  # exact: vectors per block of the blocked matrix product
    bands: int = _check(positive)  # lsh: bands of random-hyperplane bits
    rows: int = _check(positive)  # lsh: bits per band
    seed: int  # lsh: seed of the hyperplanes


def _band_bits(value: Any) -> str | None:
    return None if 0 < value <= 64 else "must be in [1, 64]"


@dataclass(frozen=True)
class SearchIndexConfig:
    """Search by text (jobs.search): every image vector scored exactly, or SimHash buckets of the text model's
    image vectors (made by jobs.index) whose members alone are scored, the query probing nearby buckets too."""

    method: str = _check(one_of("exact", "lsh"))
    bands: int = _check(positive)  # lsh: bands of random-hyperplane bits
    rows: int = _check(_band_bits)  # lsh: bits per band (a band's key is read as one 64-bit integer)
    seed: int  # lsh: seed of the hyperplanes
    probes: int = _check(non_negative)  # lsh: per band, also the buckets of the query's key with one of its this
    # many least certain bits flipped (multi-probe LSH): recall for fewer bands


@dataclass(frozen=True)
class IndexConfig:
    """jobs.index: signatures, buckets, verified pairs, duplicate groups, top-k similar images and, for search by
    text, buckets of the text model's image vectors."""

    near_dup: NearDupConfig
    similar: SimilarConfig
    search: SearchIndexConfig
    hot_bucket_size: int = _check(positive)  # larger buckets link members to one leader instead of all pairs


@dataclass(frozen=True)
class NightlyConfig:
    """jobs.nightly: how its stages are run."""

    # Stages that do not read each other's tables (annotate and the near-duplicate index) run side by side, up to
    # this many at once; 1 runs them one after another.
    parallel_stages: int = _check(positive)


@dataclass(frozen=True)
class Config:
    """The whole lakelens configuration."""

    spark: SparkConfig
    lake: LakeConfig
    ingest: IngestConfig
    models: ModelsConfig
    annotate: AnnotateConfig
    index: IndexConfig
    nightly: NightlyConfig

    def digest(self) -> str:
        """Short stable hash of the effective configuration, recorded with what a run writes."""
        blob = json.dumps(to_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def to_dict(obj: Any) -> Any:
    """The configuration as plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def load_config(
    files: Iterable[str | Path] | None = None,
    overrides: Iterable[str] = (),
    remembered: Mapping[str, Any] | None = None,
) -> Config:
    """Load ``base.yaml``, then what a lake ``remembered``, then ``files`` (``local.yaml`` when none are given), then
    ``key=value`` overrides.

    Args:
        files: YAML files applied in order after ``base.yaml``; later wins.
        overrides: ``dotted.key=value`` strings; the value is parsed as YAML (``8``, ``true``, ``[a, b]``).
        remembered: what a lake keeps of the settings it was made with (``lakelens.lake_settings``), as
            ``dotted.key`` -> value (``{"annotate.tasks": ["classify", "embed"]}``): applied right after
            ``base.yaml``, so that every file and override a job is given wins.

    Returns:
        The validated, frozen :class:`Config`.

    Raises:
        ConfigError: a file is unreadable, or a key is unknown, missing or has a bad value.
    """
    files = [LOCAL_CONFIG] if files is None else list(files)
    merged: dict[str, Any] = {}
    _merge(merged, _read_yaml(BASE_CONFIG), Config, prefix="", source=str(BASE_CONFIG))
    for key, value in (remembered or {}).items():
        _merge(merged, _nest(key, value), Config, prefix="", source="the lake's lakelens.json")
    for path in files:
        _merge(merged, _read_yaml(Path(path)), Config, prefix="", source=str(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        _merge(merged, _nest(key.strip(), yaml.safe_load(raw)), Config, prefix="", source="--set")
    return _build(Config, merged, prefix="")


def read_text(path: Path) -> str:
    """The text of ``path``, also where it lies inside a zip on ``sys.path`` (the packaged code that spark-submit
    ships with ``--py-files``: ``conf/base.yaml`` is then ``.../lakelens_code.zip/conf/base.yaml``)."""
    if not path.exists():
        for archive in path.parents:
            if archive.is_file() and zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as opened:
                    try:
                        return opened.read(path.relative_to(archive).as_posix()).decode()
                    except KeyError:
                        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
    return path.read_text()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    """``a.b.c=v`` as ``{"a": {"b": {"c": v}}}``; a map-typed field takes the rest of the key whole."""
    parts = dotted.split(".")
    node: Any = Config
    out: dict[str, Any] = {}
    cur = out
    for i, part in enumerate(parts):
        hints = get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        last = i == len(parts) - 1
        if part in hints and get_origin(hints[part]) in (Mapping, dict) and not last:
            cur[part] = {".".join(parts[i + 1 :]): value}
            return out
        if last:
            cur[part] = value
        else:
            cur = cur.setdefault(part, {})
            node = hints.get(part)
    return out


def _merge(into: dict[str, Any], new: Mapping[str, Any], cls: type, prefix: str, source: str) -> None:
    hints = get_type_hints(cls)
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in hints:
            allowed = ", ".join(f"{prefix}{k}" for k in hints)
            raise ConfigError(f"unknown config key '{name}' (from {source}); allowed here: {allowed}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{name}' (from {source}) must be a mapping of {hint.__name__} keys")
            _merge(into.setdefault(key, {}), value, hint, f"{name}.", source)
        elif get_origin(hint) in (Mapping, dict) and isinstance(value, Mapping):
            _deep_update(into.setdefault(key, {}), value)
        else:
            into[key] = value


def _deep_update(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge ``new`` into ``into``, mappings key by key (a later file's ``classify: {top_k: 3}`` keeps the threshold
    an earlier one set)."""
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if "coerce" in f.metadata:
            kwargs[f.name] = f.metadata["coerce"](data.get(f.name, {}), name)
            continue
        if f.name not in data:
            raise ConfigError(f"config key '{name}' is missing (base.yaml should define it)")
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, data[f.name], f"{name}.")
        else:
            value = _coerce(data[f.name], hint, name)
            problem = f.metadata.get("check", lambda _: None)(value)
            if problem:
                got = "" if isinstance(data[f.name], Mapping) else f" (got {data[f.name]!r})"
                raise ConfigError(f"config key '{name}' {problem}{got}")
        kwargs[f.name] = value
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = get_origin(hint)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{name}' must be a mapping (got {value!r})")
        bad = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if bad:
            raise ConfigError(f"config key '{name}.{bad[0]}' must be a scalar value")
        # Spark wants strings; YAML's true must read as Spark's "true".
        return types.MappingProxyType(
            {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        )
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"config key '{name}' must be a list of strings (got {value!r})")
        return tuple(items)
    expected = hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"config key '{name}' must be {expected.__name__} (got {value!r})")
    return value
