"""The package that spark-submit ships to a cluster: ``./build.sh package [--out dist] [--python-prefix PREFIX]``.

It writes into ``--out``:

- ``lakelens_code.zip``, for ``--py-files``: the packages and the ``conf/`` files (the jobs read ``base.yaml`` from
  inside it);
- ``lakelens_env.tar.gz``, for ``--archives lakelens_env.tar.gz#environment``: this checkout's ``.venv`` packed
  by venv-pack, without Spark's jars (the cluster brings its own Spark). venv-pack does not copy the interpreter:
  ``environment/bin/python`` links to ``PREFIX/bin/python3.11``, the build machine's unless ``--python-prefix``
  names where the nodes have Python 3.11;
- ``models/``: a model registry with every model that comes with lakelens (the photo models ``conf/base.yaml``
  names and the scene models of ``conf/scenes.yaml``), for ``--set models.registry=dist/models`` where the driver
  runs here (client mode), and the same as ``lakelens_models.tar.gz`` for ``--archives ...#registry`` where it runs
  on the cluster (cluster mode);
- ``lakelens_job.py``: the file spark-submit runs, ``lakelens_job.py JOB [ARGS]`` (see ``jobs.launch``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import venv_pack

from lakelens.spark import REPO_ROOT, write_code_zip
from models.pretrained import install_models

CODE = "lakelens_code.zip"
ENV = "lakelens_env.tar.gz"
MODELS = "lakelens_models"
ENTRY = "lakelens_job.py"
PACKAGES = ("jobs", "lakelens", "models", "stages", "udfs")
CONF_FILES = ("conf/base.yaml", "conf/local.yaml", "conf/cluster.yaml", "conf/scenes.yaml", "conf/log4j2.properties")
# Spark's jars (440 MB) come with the cluster's Spark, and local-cluster runs leave executor folders in its work/;
# C++ headers are for building extensions only.
ENV_EXCLUDES = tuple(
    f"lib/python3*/site-packages/{folder}/*" for folder in ("pyspark/jars", "pyspark/work", "torch/include")
)
ENTRY_SCRIPT = '''"""lakelens under spark-submit: lakelens_job.py JOB [ARGS]; the code comes from --py-files."""

from jobs.launch import main

main()
'''


def build_dist(out: Path, venv: Path, python_prefix: str | None = None, compress_level: int = 1) -> list[Path]:
    """Write the package into ``out`` (replacing what a previous build left there); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    code = write_code_zip(out / CODE, PACKAGES, CONF_FILES)
    models = out / "models"
    shutil.rmtree(models, ignore_errors=True)
    # In cluster mode the registry is an archive unpacked afresh for each job: a model installed there is lost.
    install_models(models)
    models_archive = Path(shutil.make_archive(str(out / MODELS), "gztar", root_dir=models))
    entry = out / ENTRY
    entry.write_text(ENTRY_SCRIPT)
    env = out / ENV
    venv_pack.pack(
        prefix=str(venv), output=str(env), format="tar.gz", python_prefix=python_prefix, force=True,
        compress_level=compress_level, filters=[("exclude", pattern) for pattern in ENV_EXCLUDES],
    )  # fmt: skip
    return [code, env, models, models_archive, entry]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.sh package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "dist"), help="folder to write (default: dist)")
    parser.add_argument("--python-prefix", help="where the cluster's nodes have Python 3.11 (default: this one's)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    written = build_dist(Path(args.out), Path(sys.prefix), args.python_prefix)
    for path in written:
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{path}  {size / 2**20:.1f} MiB")
    print(f"package written in {time.monotonic() - started:.1f}s; submit it as README.md shows (spark-submit ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
