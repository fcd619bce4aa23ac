"""Progress logs for long Spark stages: tasks done, rows done (estimated), throughput and time left."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

log = logging.getLogger("lakelens.progress")


@contextmanager
def stage_progress(spark: SparkSession, label: str, total_rows: int, every_s: float = 15.0) -> Iterator[None]:
    """While the block runs, log every ``every_s`` seconds how far the active Spark stages are.

    Progress is that of the widest stage seen in the block (the one that reads the rows; a final aggregation
    stage of one task says nothing). Rows done are estimated from its tasks done.
    """
    tracker = spark.sparkContext.statusTracker()
    # Where the calling thread has a job group (jobs.nightly gives each stage one), only its jobs' stages count:
    # another stage running beside it has stages of its own.
    group = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
    stop = threading.Event()
    started = time.monotonic()

    def active_stages() -> list[int]:
        active = tracker.getActiveStageIds()
        if group is None:
            return active
        mine = {s for j in tracker.getJobIdsForGroup(group) if (job := tracker.getJobInfo(j)) for s in job.stageIds}
        return [s for s in active if s in mine]

    def report() -> None:
        widest = None
        while not stop.wait(every_s):
            infos = [tracker.getStageInfo(s) for s in (*active_stages(), widest) if s is not None]
            infos = [s for s in infos if s is not None and s.numTasks > 0]
            if not infos:
                continue
            busiest = max(infos, key=lambda s: (s.numTasks, s.stageId))
            widest = busiest.stageId
            fraction = busiest.numCompletedTasks / busiest.numTasks
            elapsed = time.monotonic() - started
            done = int(total_rows * fraction)
            left = f", about {elapsed * (1 - fraction) / fraction:.0f}s left" if fraction else ""
            log.info(
                "%s: ~%d/%d rows (%d/%d tasks), %.0f rows/s%s",
                label, done, total_rows, busiest.numCompletedTasks, busiest.numTasks, done / elapsed, left,
            )  # fmt: skip

    thread = threading.Thread(target=report, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
