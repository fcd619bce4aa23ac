"""One session-scoped local Spark with a Hive catalog in a temporary lake; each test gets its own database."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from lakelens.config import LOCAL_CONFIG, SCENES_CONFIG, Config, load_config

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# The tests' lakes run the synthetic-scene models for every task (the demo's setup), not base.yaml's photo models.
SCENES = [LOCAL_CONFIG, SCENES_CONFIG]
SCENE_ARGS = [arg for path in SCENES for arg in ("--config", str(path))]  # the same on a job's command line

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pyspark.testing imports pandas-on-Spark, which wants it


@pytest.fixture(scope="session")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def spark(lake_root: Path):
    from lakelens.spark import build_session

    cfg = load_config(SCENES, ["spark.master=local[2]", f"lake.root={lake_root}", "lake.database=test_session"])
    session = build_session(cfg)
    yield session
    session.stop()


@pytest.fixture
def cfg(spark, lake_root: Path) -> Config:
    """A config whose lake database is new for this test, inside the session's lake."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    return load_config(SCENES, ["spark.master=local[2]", f"lake.root={lake_root}", f"lake.database={database}"])


def shared_folder(*parts: str) -> Path:
    """A folder under ../shared/data, or a skip when this checkout has none (a user's machine)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
