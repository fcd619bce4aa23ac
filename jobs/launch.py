"""Any lakelens job by name: ``python -m jobs.launch JOB [ARGS]``.

spark-submit takes a Python file, not a module: the package (``./build.sh package``) writes ``dist/lakelens_job.py``,
which calls this, so that one file submits every job with the code from ``--py-files``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from lakelens.cli import run_job

JOBS = (
    "ingest",
    "annotate",
    "index",
    "nightly",
    "query",
    "search",
    "report",
    "sql",
    "train",
    "models",
    "import_dataset",
    "synth",
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the job named by the first argument with the rest; exits as the job does (2 for an unknown job)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in JOBS:
        print(f"usage: lakelens_job.py JOB [ARGS], JOB one of: {', '.join(JOBS)}", file=sys.stderr)
        sys.exit(2)
    job = importlib.import_module(f"jobs.{args[0]}")
    run_job(job.main, args[1:])


if __name__ == "__main__":
    main()
