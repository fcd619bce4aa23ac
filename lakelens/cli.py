"""The options every job shares: ``--lake PATH``, ``--config FILE`` (repeatable) and ``--set key=value``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lakelens.config import LOCAL_CONFIG, Config, ConfigError, load_config
from lakelens.errors import InputError
from lakelens.lake_settings import remembered_annotate, require_lake, with_remembered

log = logging.getLogger("lakelens")


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser that already knows the common job options."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--lake", help="lake root (default: lake.root from config, ./lake)")
    parser.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="YAML config over conf/base.yaml; repeatable, later wins (default: conf/local.yaml)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one config key, e.g. --set ingest.max_pixels=50000000; repeatable",
    )
    return parser


def config_from_args(args: argparse.Namespace, lake_must_exist: bool = False, defaults: Sequence[Path] = ()) -> Config:
    """The validated config that ``--config``, ``--set`` and ``--lake`` describe (``--lake`` wins), over what the
    lake remembers: its annotate tasks and models (a layer right over ``base.yaml``, under every file and ``--set``)
    and its registry where they name none.

    Args:
        lake_must_exist: a job that only reads the lake refuses one that is not there (a typo in ``--lake``)
            instead of making an empty one.
        defaults: files of the job's own setup, applied after ``base.yaml`` and what the lake remembers, before
            ``--config`` (the demo's ``conf/scenes.yaml``).
    """
    overrides = list(args.overrides)
    if args.lake:
        overrides.append(f"lake.root={args.lake}")
    files = [*defaults, *(args.config or [LOCAL_CONFIG])]
    cfg = load_config(files, overrides)
    if lake_must_exist:
        require_lake(cfg)
    kept = remembered_annotate(cfg)
    if kept:  # the lake is known only once the config is: load it again with the lake's own layer
        cfg = load_config(files, overrides, remembered=kept)
    return with_remembered(cfg)


def setup_logging(level: int = logging.INFO) -> None:
    """One plain log format for every job, on stderr so stdout stays for results."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for chatty in ("py4j", "petastorm"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # PySpark logs each failed SQL statement with the JVM's whole stack as one JSON line (11 KB); the error itself
    # still reaches the job, which says it in one line.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)


def run_job(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a job's ``main`` and exit: 0 on success, 2 with one line for a bad config, 1 with one line on failure."""
    setup_logging()
    try:
        code = main(argv)
    except ConfigError as exc:
        print(f"error: bad configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    except InputError as exc:  # the user's input, checked before any work: the line says it all
        print(f"error: {exc.label}: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        log.error("job failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    finally:
        _stop_spark()
    sys.exit(code)


def one_line(exc: BaseException) -> str:
    """The first line of an error's message that says something (Spark's start with a blank line)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def _stop_spark() -> None:
    """Stop the job's session before the interpreter exits: executors then stop in order instead of being killed
    (a cluster's workers would start new ones for an application that is ending)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
