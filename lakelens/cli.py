"""The options every job shares: ``--lake PATH``, ``--config FILE`` (repeatable) and ``--set key=value``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from lakelens.config import Config, ConfigError, load_config

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


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config that ``--config``, ``--set`` and ``--lake`` describe (``--lake`` wins)."""
    overrides = list(args.overrides)
    if args.lake:
        overrides.append(f"lake.root={args.lake}")
    return load_config(args.config, overrides)


def setup_logging(level: int = logging.INFO) -> None:
    """One plain log format for every job, on stderr so stdout stays for results."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for chatty in ("py4j", "petastorm"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run_job(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a job's ``main`` and exit: 0 on success, 2 with one line for a bad config, 1 with one line on failure."""
    setup_logging()
    try:
        code = main(argv)
    except ConfigError as exc:
        print(f"error: bad configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        log.error("job failed", exc_info=True)
        first_line = next(iter(str(exc).splitlines()), "")
        print(f"error: {type(exc).__name__}: {first_line}", file=sys.stderr)
        sys.exit(1)
    finally:
        _stop_spark()
    sys.exit(code)


def _stop_spark() -> None:
    """Stop the job's session before the interpreter exits: executors then stop in order instead of being killed
    (a cluster's workers would start new ones for an application that is ending)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
