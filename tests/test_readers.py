"""Jobs that only read a lake: they refuse a lake that is not there, say in one line what is wrong with a query, and
say what is missing from a lake instead of answering nothing."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from conftest import SCENE_ARGS
from images import encode, rgb, write_files

from jobs.index import main as index_main
from jobs.query import main as query_main
from jobs.sql import main as sql_main
from lakelens.cli import setup_logging
from lakelens.config import Config
from lakelens.errors import InputError
from lakelens.lake import ensure_database
from stages.ingest import ingest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "job", [["jobs.sql", "SELECT 1"], ["jobs.query", "--id", "abc"], ["jobs.report", "--out", "REPORT"]]
)
def test_readers_refuse_a_lake_that_is_not_there_in_one_line(tmp_path: Path, job: list[str]) -> None:
    typo = tmp_path / "lkae"
    args = [a.replace("REPORT", str(tmp_path / "report")) for a in job]
    result = subprocess.run(
        [sys.executable, "-m", *args, "--lake", str(typo)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: NoLakeError: no lake at file:{typo} (no database lake there): check --lake; a lake is made by "
        "python -m jobs.ingest or jobs.nightly --source DIR, or by ./build.sh demo"
    ]
    assert not typo.exists() and not (tmp_path / "report").exists()


def sql(cfg: Config, *queries: str) -> None:
    sql_main([*queries, "--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}"])


def test_a_bad_query_is_said_in_one_line_without_the_jvm_s_stack(
    spark, cfg: Config, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_database(spark, cfg)
    setup_logging()
    with pytest.raises(InputError) as parse:
        sql(cfg, "SELEC oops")
    assert parse.value.label == "ParseException"
    assert str(parse.value) == "[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601 (line 1, pos 0)"
    assert capsys.readouterr().err.splitlines() == ["== SQL ==", "SELEC oops", "^^^"]  # where, in the query

    with caplog.at_level(logging.INFO), pytest.raises(InputError) as unresolved:
        sql(cfg, "SELECT 1 AS one", "SELECT nope FROM range(3)")
    assert unresolved.value.label == "AnalysisException"
    assert str(unresolved.value).startswith(
        "query 2 of 2: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `nope` "
        "cannot be resolved."
    )
    assert not [r for r in caplog.records if r.name == "SQLQueryContextLogger"]  # the 11 KB JSON line


def test_query_says_what_the_lake_lacks_instead_of_answering_nothing(spark, cfg: Config, tmp_path: Path, capsys):
    write_files(tmp_path / "src", {"a.png": encode(rgb(seed=1), "PNG")})
    ingest(spark, cfg, str(tmp_path / "src"), ingest_date=date(2026, 1, 2))
    capsys.readouterr()
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}"]
    assert query_main([*args, "--image", str(tmp_path / "src" / "a.png")]) == 1
    assert "error: the lake has no near-duplicate index under the configured parameters" in capsys.readouterr().err


def test_index_without_an_embedder_writes_the_near_duplicates_and_skips_the_similar_lists(
    spark, cfg: Config, tmp_path: Path, capsys
) -> None:
    write_files(tmp_path / "src", {"a.png": encode(rgb(seed=1), "PNG"), "b.png": encode(rgb(seed=2), "PNG")})
    ingest(spark, cfg, str(tmp_path / "src"), ingest_date=date(2026, 1, 2))
    capsys.readouterr()
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}"]
    assert index_main([*args, *SCENE_ARGS, "--set", f"models.registry={tmp_path / 'no-models'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "hashed 2 new of 2 images" in out[0]
    assert out[1].startswith("similar: skipped (no model named 'embedder' in the registry at ")
    assert "python -m jobs.models install embedder" in out[1]
