"""SQL views over the lake for common questions, pinned to the configured models and index parameters.

The tables keep every model version's and every signature scheme's rows; a view reads the ones the current
configuration makes, so ``SELECT * FROM image_summary`` needs no ``WHERE model_version = ...``. The nightly job
makes them again after a run whose configuration changed their SQL (a model or parameter change); each view keeps
a hash of its SQL as a property, so an unchanged one is left as it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakelens.config import Config
from lakelens.lake import ensure_table, qualified
from lakelens.schemas import CAPTIONS, DUP_GROUPS, IMAGES, LABELS, SIMILAR, TableSpec


@dataclass(frozen=True)
class ViewSources:
    """Which rows the views read: (name, version) of the classifier and captioner (None: not configured), and the
    params_id of the near-duplicate and similar-image schemes (None: not indexed)."""

    classifier: tuple[str, str] | None
    captioner: tuple[str, str] | None
    near_dup_params: str | None
    similar_params: str | None


def _rows_of(cfg: Config, spec: TableSpec, where: str | None, columns: str) -> str:
    """A subquery over ``spec`` restricted by ``where``; no rows where ``where`` is None (nothing configured)."""
    return f"SELECT {columns} FROM {qualified(cfg, spec)} WHERE {where or 'false'}"


SQL_HASH = "lakelens.sql_sha256"  # the view property holding the hash of the SQL the view was made with


def _model(pinned: tuple[str, str] | None) -> str | None:
    return None if pinned is None else f"model = '{pinned[0]}' AND model_version = '{pinned[1]}'"


def _params(params_id: str | None) -> str | None:
    return None if params_id is None else f"params_id = '{params_id}'"


def view_sql(cfg: Config, sources: ViewSources) -> dict[str, str]:
    """The SELECT of each view, by view name."""
    labels = _rows_of(cfg, LABELS, _model(sources.classifier), "image_id, label, score")
    captions = _rows_of(cfg, CAPTIONS, _model(sources.captioner), "image_id, caption")
    groups = _rows_of(cfg, DUP_GROUPS, _params(sources.near_dup_params), "image_id, group_id, group_size")
    similar = _rows_of(cfg, SIMILAR, _params(sources.similar_params), "image_id, count(*) AS n_similar")
    similar += " GROUP BY image_id"
    images = qualified(cfg, IMAGES)
    return {
        "image_summary": f"""
            SELECT i.image_id, i.uri, i.width, i.height, i.format, i.error, i.ingest_date,
                   l.label AS top_label, l.score AS label_score, c.caption,
                   g.group_id AS dup_group, coalesce(g.group_size, 1) AS dup_group_size,
                   coalesce(s.n_similar, 0) AS n_similar
            FROM {images} i
            LEFT JOIN ({labels}) l ON l.image_id = i.image_id
            LEFT JOIN ({captions}) c ON c.image_id = i.image_id
            LEFT JOIN ({groups}) g ON g.image_id = i.image_id
            LEFT JOIN ({similar}) s ON s.image_id = i.image_id""",
        "top_images_by_label": f"""
            SELECT label, rank, image_id, uri, score FROM (
                SELECT l.label, l.image_id, i.uri, l.score,
                       row_number() OVER (PARTITION BY l.label ORDER BY l.score DESC, l.image_id) AS rank
                FROM ({labels}) l JOIN {images} i ON i.image_id = l.image_id
                WHERE l.label IS NOT NULL)
            WHERE rank <= 10""",
        "dup_group_members": f"""
            SELECT g.group_id, g.group_size, i.image_id, i.uri
            FROM ({groups}) g JOIN {images} i ON i.image_id = g.image_id""",
    }


def create_views(spark: SparkSession, cfg: Config, sources: ViewSources) -> list[str]:
    """Create (or replace) every view of the lake database that is missing or was made with other SQL; returns
    their qualified names."""
    for spec in (IMAGES, LABELS, CAPTIONS, DUP_GROUPS, SIMILAR):
        ensure_table(spark, cfg, spec)
    made = []
    for name, select in view_sql(cfg, sources).items():
        view = f"{cfg.lake.database}.{name}"
        digest = hashlib.sha256(select.encode()).hexdigest()
        if _sql_hash(spark, view) != digest:
            spark.sql(f"CREATE OR REPLACE VIEW {view} TBLPROPERTIES ('{SQL_HASH}' = '{digest}') AS {select}")
        made.append(view)
    return made


def _sql_hash(spark: SparkSession, view: str) -> str | None:
    """The SQL hash a view was made with; None for a missing view (or one made without it)."""
    # Asked first: SHOW TBLPROPERTIES of a missing view raises, and PySpark logs each such error with its stack.
    if not spark.catalog.tableExists(view):
        return None
    found = spark.sql(f"SHOW TBLPROPERTIES {view} ('{SQL_HASH}')").first()
    return found["value"] if found is not None and found["key"] == SQL_HASH else None
