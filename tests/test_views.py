"""The lake's views: made once per SQL, made again when the configuration changes what they read."""

from __future__ import annotations

import logging

from lakelens.config import Config
from lakelens.views import ViewSources, create_views


def marked(spark, view: str) -> bool:
    return spark.sql(f"SHOW TBLPROPERTIES {view} ('marker')").first()["value"] == "left alone"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_view_is_made_again_only_when_its_sql_changes(spark, cfg: Config) -> None:
    nothing = ViewSources(None, None, None, None)
    for view in ("image_summary", "top_images_by_label", "dup_group_members"):
        spark.sql(f"DROP VIEW IF EXISTS {cfg.lake.database}.{view}")
    errors = Records()  # PySpark logs every failed SQL statement there, stack and all (its logger does not propagate)
    logging.getLogger("SQLQueryContextLogger").addHandler(errors)
    try:
        views = create_views(spark, cfg, nothing)
    finally:
        logging.getLogger("SQLQueryContextLogger").removeHandler(errors)
    assert errors.records == []  # views that are not there yet are no error
    assert views == [f"{cfg.lake.database}.{v}" for v in ("image_summary", "top_images_by_label", "dup_group_members")]
    for view in views:
        spark.sql(f"ALTER VIEW {view} SET TBLPROPERTIES ('marker' = 'left alone')")
    assert create_views(spark, cfg, nothing) == views
    assert all(marked(spark, view) for view in views)  # the same SQL: not made again

    classifier = ViewSources(("classifier", "v7"), None, None, None)
    create_views(spark, cfg, classifier)
    remade = {view for view in views if not marked(spark, view)}
    assert remade == {f"{cfg.lake.database}.image_summary", f"{cfg.lake.database}.top_images_by_label"}
    text = spark.sql(f"SHOW CREATE TABLE {cfg.lake.database}.top_images_by_label").first()[0]
    assert "model_version = 'v7'" in text
