"""Progress logs while a Spark stage runs."""

from __future__ import annotations

import logging
import threading
import time

import pandas as pd
import pytest
from pyspark.util import inheritable_thread_target

from lakelens.progress import stage_progress


def test_a_long_stage_logs_rows_tasks_and_time_left(spark, caplog: pytest.LogCaptureFixture) -> None:
    def slow_rows(batches):  # defined here so that Spark pickles it by value, not as an import of this module
        for batch in batches:
            time.sleep(0.3)
            yield pd.DataFrame({"id": batch["id"]})

    df = spark.range(0, 40, 1, numPartitions=8).mapInPandas(slow_rows, "id long")
    with caplog.at_level(logging.INFO, logger="lakelens.progress"):
        with stage_progress(spark, "test: working", total_rows=40, every_s=0.2):
            assert df.count() == 40
    lines = [r.getMessage() for r in caplog.records if r.name == "lakelens.progress"]
    assert lines, "no progress line was logged during a 1 s stage"
    assert all(line.startswith("test: working: ~") and "/40 rows (" in line and "/8 tasks)" in line for line in lines)
    assert any("left" in line for line in lines)


def test_only_the_stages_of_the_callers_job_group_are_reported(spark, caplog: pytest.LogCaptureFixture) -> None:
    def slow_rows(batches):
        for batch in batches:
            time.sleep(0.3)
            yield pd.DataFrame({"id": batch["id"]})

    beside = spark.range(0, 60, 1, numPartitions=12).mapInPandas(slow_rows, "id long")
    mine = spark.range(0, 20, 1, numPartitions=4).mapInPandas(slow_rows, "id long")
    context = spark.sparkContext

    @inheritable_thread_target(spark)
    def other_stage() -> None:
        context.setJobGroup("test-beside", "a stage running beside")
        beside.count()

    thread = threading.Thread(target=other_stage)
    thread.start()
    context.setJobGroup("test-mine", "the stage that logs")
    try:
        with caplog.at_level(logging.INFO, logger="lakelens.progress"):
            with stage_progress(spark, "test: mine", total_rows=20, every_s=0.2):
                assert mine.count() == 20
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
        thread.join()
    lines = [r.getMessage() for r in caplog.records if r.name == "lakelens.progress"]
    assert lines and all("/4 tasks)" in line for line in lines)
