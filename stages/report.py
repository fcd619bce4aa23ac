"""The report of a lake: one HTML page with PNG figures (``jobs.report`` and the demo write it).

It shows sample images with their detection boxes, segmentation overlays, labels and captions; near-duplicate
groups side by side; the most similar images of a few images; a few captions as text queries with the images the
search model ranks first; 2-D maps (PCA and t-SNE) of the embeddings coloured by label;
and the latest run's counts, errors and timings per stage. It reads the rows the current configuration's models
and index parameters made. Open ``DIR/index.html`` in a browser; the folder can be copied anywhere.

A class has one colour on the whole page (boxes, masks, legends, map), set by its name among the classes the
configured models know, so it is the same in the report of every lake these models annotated.
"""

from __future__ import annotations

import html
import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.figures import (
    NO_LABEL,
    RGB,
    class_colours,
    extend_key,
    legend,
    pca_2d,
    scatter,
    tsne_2d,
    with_boxes,
    with_mask,
)
from lakelens.lake import has_rows, lake_uri, read_table
from lakelens.schemas import CAPTIONS, DETECTIONS, DUP_GROUPS, EMBEDDINGS, IMAGES, LABELS, RUNS, SEGMENTS, SIMILAR
from models.vocabulary import tokenize
from stages.annotate import configured_manifest
from stages.index import near_dup_params, similar_params
from stages.report_images import colour_section, unusual_section
from stages.report_page import SIDE, Page, file_name, pinned, rgb_of, thumb_figure
from stages.search import SearchError, best_k, lake_vectors, text_vectors

log = logging.getLogger("lakelens.report")


CLASS_TASKS = ("detect", "segment", "classify")  # the tasks whose models name classes


def colour_key(cfg: Config, names: Iterable[str] = ()) -> dict[str, RGB]:
    """One colour per class name for the whole page: a key of every class the configured detector, segmenter and
    classifier know (their manifests), then ``names`` they do not (which take free colours, moving none of theirs).
    Keying the models' whole vocabulary, not the classes this lake's rows show, keeps a class's colour the same in
    the reports of all lakes these models annotated."""
    known = [c for task in CLASS_TASKS if task in cfg.annotate.tasks for c in configured_manifest(cfg, task).classes]
    return extend_key(class_colours(known), names)


def lake_name(cfg: Config) -> str:
    """The name of the lake root's folder (``file:/data/lakes/cars`` -> ``cars``): what the page is titled."""
    uri = lake_uri(cfg)
    name = file_name(uri)
    return uri if not name or name.endswith(":") else name  # a root at "/" or a bare scheme has no folder name


def run_section(spark: SparkSession, cfg: Config) -> str:
    """The latest nightly run's stages as a table, with the lake's totals."""
    images = read_table(spark, cfg, IMAGES)
    totals = images.agg(F.count("*").alias("images"), F.count("error").alias("errors")).first()
    head = f"<p>{totals['images']} images in the lake, {totals['errors']} of them error rows.</p>"
    if not has_rows(spark, cfg, RUNS):
        return head + "<p>No nightly run recorded yet (python -m jobs.nightly).</p>"
    runs = read_table(spark, cfg, RUNS)
    latest = runs.orderBy(F.desc("started_at")).first()["run_id"]
    rows = runs.where(F.col("run_id") == latest).orderBy("ended_at").collect()
    cells = "".join(
        f"<tr><td>{html.escape(r.stage)}</td><td>{r.status}</td><td>{_n(r.rows_in)}</td><td>{_n(r.rows_out)}</td>"
        f"<td>{_n(r.errors)}</td><td>{(r.ended_at - r.started_at).total_seconds():.1f}</td>"
        f"<td>{'' if r.images_per_s is None else f'{r.images_per_s:.1f}'}</td>"
        f"<td>{html.escape(r.models or '')}</td></tr>"
        for r in rows
    )
    return (
        f"{head}<p>Run <code>{html.escape(latest)}</code> of <code>{html.escape(rows[0].source)}</code>, config "
        f"<code>{rows[0].config_hash}</code>.</p><table><tr><th>stage</th><th>status</th><th>rows in</th>"
        f"<th>rows out</th><th>errors</th><th>seconds</th><th>rows in/s</th><th>models</th></tr>{cells}</table>"
    )


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def sample_section(spark: SparkSession, cfg: Config, page: Page, n: int) -> list[str]:
    """``n`` images (the first by image_id, a random draw of content hashes) with what the models said."""
    chosen = read_table(spark, cfg, IMAGES).where(F.col("error").isNull()).select("image_id", "uri", "bytes")
    chosen = chosen.orderBy("image_id").limit(n)
    detect = pinned(read_table(spark, cfg, DETECTIONS), "detect", cfg).select("image_id", "objects")
    segment = pinned(read_table(spark, cfg, SEGMENTS), "segment", cfg).select("image_id", "mask", "mask_classes")
    label = pinned(read_table(spark, cfg, LABELS), "classify", cfg).select("image_id", "label", "score")
    caption = pinned(read_table(spark, cfg, CAPTIONS), "caption", cfg).select("image_id", "caption")
    rows = chosen
    for extra in (detect, segment, label, caption):
        rows = rows.join(extra, "image_id", "left")
    rows = rows.orderBy("image_id").collect()
    labels = sorted({o["label"] for r in rows for o in (r.objects or [])})
    classes = sorted({c for r in rows for c in (r.mask_classes or [])} - {"background"})
    key = page.colours([*labels, *classes])
    cards = []
    for r in rows:
        rgb = rgb_of(r.bytes, cfg)
        if rgb is None:
            continue
        objects = [o.asDict() for o in (r.objects or [])]
        pictures = [page.figure(with_boxes(rgb, objects, SIDE, key), f"detections on {r.uri}")]
        if r.mask is not None:
            overlay = with_mask(rgb, r.mask, list(r.mask_classes), SIDE, key)
            pictures.append(page.figure(overlay, f"segments of {r.uri}"))
        said = [f"<b>{html.escape(r.label)}</b> {r.score:.2f}" if r.label else "", html.escape(r.caption or "")]
        cards.append(f'<div class="card">{"".join(pictures)}<p>{"<br>".join(s for s in said if s)}</p>'
                     f'<p class="uri">{html.escape(r.uri)}</p></div>')  # fmt: skip
    keys = []  # the alt text names the rows of a legend, in order: for a reader that sees no picture, and for checks
    for names, what, caption in ((labels, "box", "boxes"), (classes, "mask", "segments")):
        if names:
            swatches = page.figure(legend(names, key), f"{what} colours: {', '.join(names)}")
            keys.append(f"<figure>{swatches}<figcaption>{caption}</figcaption></figure>")
    page.sections.append(f'<h2>Sample images</h2><div class="row">{"".join(keys)}</div>'
                         f'<div class="grid">{"".join(cards) or "<p>No images yet.</p>"}</div>')  # fmt: skip
    return [r.image_id for r in rows]


def groups_section(spark: SparkSession, cfg: Config, page: Page, n: int, per_group: int = 6) -> None:
    """The ``n`` largest near-duplicate groups, their members side by side."""
    pid = near_dup_params(cfg).params_id
    groups = read_table(spark, cfg, DUP_GROUPS).where((F.col("params_id") == pid) & (F.col("group_size") > 1))
    biggest = groups.select("group_id", "group_size").distinct().orderBy(F.desc("group_size"), "group_id").limit(n)
    members = groups.join(biggest.select("group_id"), "group_id").join(
        read_table(spark, cfg, IMAGES).select("image_id", "uri", "bytes"), "image_id"
    )
    rows = members.orderBy(F.desc("group_size"), "group_id", "image_id").collect()
    blocks, by_group = [], {}
    for r in rows:  # in Spark's order: largest group first
        by_group.setdefault((r.group_size, r.group_id), []).append(r)
    for (size, group_id), found in by_group.items():
        pictures = [thumb_figure(page, cfg, r, html.escape(file_name(r.uri))) for r in found[:per_group]]
        blocks.append(f'<div class="row"><p>group {html.escape(group_id[:12])}: {size} images</p>'
                      f'{"".join(pictures)}</div>')  # fmt: skip
    page.sections.append(f"<h2>Near-duplicate groups</h2>{''.join(blocks) or '<p>No near-duplicates found.</p>'}")


def similar_section(spark: SparkSession, cfg: Config, page: Page, image_ids: Sequence[str], n: int, k: int = 5):
    """For ``n`` of ``image_ids`` that have a top-k list: the image, then its ``k`` most similar images."""
    if "embed" not in cfg.annotate.tasks:
        return
    pid = similar_params(cfg, configured_manifest(cfg, "embed")).params_id
    lists = read_table(spark, cfg, SIMILAR).where(
        (F.col("params_id") == pid) & F.col("image_id").isin(list(image_ids)) & (F.col("rank") <= k)
    )
    firsts = sorted({r.image_id for r in lists.select("image_id").distinct().collect()})[:n]
    lists = lists.where(F.col("image_id").isin(firsts)).collect()
    wanted = set(firsts) | {r.neighbor_id for r in lists}
    images = read_table(spark, cfg, IMAGES).where(F.col("image_id").isin(sorted(wanted)))
    found = {r.image_id: r for r in images.select("image_id", "uri", "bytes").collect()}
    blocks = []
    for image_id in firsts:
        shown = [(found[image_id], "query")] + [
            (found[r.neighbor_id], f"#{r.rank} cosine {r.cosine:.3f}")
            for r in sorted((r for r in lists if r.image_id == image_id), key=lambda r: r.rank)
        ]
        pictures = [thumb_figure(page, cfg, r, f"{html.escape(file_name(r.uri))}<br>{text}") for r, text in shown]
        blocks.append(f'<div class="row">{"".join(pictures)}</div>')
    page.sections.append(f"<h2>Most similar images</h2>{''.join(blocks) or '<p>No top-k lists yet.</p>'}")


def search_section(spark: SparkSession, cfg: Config, page: Page, image_ids: Sequence[str], n: int, k: int = 4):
    """Search by text: the captions of the first ``n`` of ``image_ids`` that have one (else their labels) as
    queries, each with the ``k`` images the search model ranks first (``stages.search``)."""
    if "search" not in cfg.annotate.tasks or n < 1:
        return
    said = pinned(read_table(spark, cfg, CAPTIONS), "caption", cfg).where(F.col("image_id").isin(list(image_ids)))
    queries = [r.caption for r in said.where(F.col("caption").isNotNull()).orderBy("image_id").collect()]
    if not queries:
        labelled = pinned(read_table(spark, cfg, LABELS), "classify", cfg).where(
            F.col("image_id").isin(list(image_ids))
        )
        queries = [r.label for r in labelled.where(F.col("label").isNotNull()).orderBy("image_id").collect()]
    queries = list(dict.fromkeys(q for q in queries if tokenize(q)))[:n]
    if not queries:
        page.sections.append("<h2>Search by text</h2><p>No captions or labels to search by yet.</p>")
        return
    try:
        vectors, manifest = text_vectors(cfg, queries)
        ids, images = lake_vectors(cfg, manifest)
    except SearchError as exc:
        page.sections.append(f"<h2>Search by text</h2><p>{html.escape(str(exc))}</p>")
        return
    best = best_k(vectors, ids, images, k)
    wanted = sorted({image_id for hits in best for image_id, _ in hits})
    found = {r.image_id: r for r in read_table(spark, cfg, IMAGES).where(F.col("image_id").isin(wanted))
             .select("image_id", "uri", "bytes").collect()}  # fmt: skip
    blocks = []
    for query, hits in zip(queries, best, strict=True):
        pictures = [
            thumb_figure(page, cfg, found[i], f"{html.escape(file_name(found[i].uri))}<br>#{rank} cosine {score:.3f}")
            for rank, (i, score) in enumerate(hits, 1)
        ]
        blocks.append(f'<div class="row"><p>&ldquo;{html.escape(query)}&rdquo;</p>{"".join(pictures)}</div>')
    page.sections.append(f"<h2>Search by text</h2><p>The sample images' captions (or labels) as queries, each with "
                         f"the {k} images {html.escape(manifest.name)} {manifest.version} ranks first (jobs.search "
                         "--text)."
                         f"</p>{''.join(blocks)}")  # fmt: skip


def map_section(spark: SparkSession, cfg: Config, page: Page, n: int) -> None:
    """2-D maps (PCA and t-SNE) of up to ``n`` embeddings, coloured by the classifier's label."""
    if "embed" not in cfg.annotate.tasks:
        return
    vectors = pinned(read_table(spark, cfg, EMBEDDINGS), "embed", cfg).where(F.col("vector").isNotNull())
    label = pinned(read_table(spark, cfg, LABELS), "classify", cfg).select("image_id", "label")
    rows = vectors.select("image_id", "vector").join(label, "image_id", "left").orderBy("image_id").limit(n).collect()
    if len(rows) < 3:
        page.sections.append("<h2>Embedding map</h2><p>Too few embeddings for a map.</p>")
        return
    labels = [r.label or NO_LABEL for r in rows]
    vectors = np.array([r.vector for r in rows], np.float32)
    names = sorted(set(labels))
    key = page.colours(names)
    pictures = [
        page.figure(scatter(points, labels, key), f"embeddings, {how}, colours: {', '.join(names)}")
        for points, how in ((pca_2d(vectors), "first two principal components"), (tsne_2d(vectors), "t-SNE"))
    ]
    page.sections.append(f"<h2>Embedding map</h2><p>{len(rows)} embeddings coloured by label: their first two "
                         "principal components (PCA), and t-SNE (neighbours kept neighbours).</p>"
                         f'<div class="row">{"".join(pictures)}</div>')  # fmt: skip


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child, td:last-child, th:last-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; } .card { width: 530px; }
.card img { margin-right: 6px; } .uri { color: #777; font-size: 11px; word-break: break-all; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; margin-bottom: 12px; }
.row > p { width: 100%; margin: 4px 0; } figure { margin: 0; } figcaption { font-size: 11px; color: #555; }
#broken { color: #b00; }
"""

# After load, the page counts its figures that loaded, for a person (a warning) and for checks (data-images).
CHECK = """
window.addEventListener("load", () => {
  const all = Array.from(document.images), ok = all.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = ok + "/" + all.length;
  if (ok < all.length) document.getElementById("broken").hidden = false;
});
"""


def page_html(cfg: Config, sections: Sequence[str]) -> str:
    """The report page around its ``sections`` (HTML): titled by the lake root's folder, which it gives in full."""
    name = html.escape(lake_name(cfg))
    body = "\n".join(f"<section>{s}</section>" for s in sections)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>lakelens report: {name}</title>'
        f'<style>{STYLE}</style></head>\n<body data-images="loading"><h1>lakelens report: {name}</h1>'
        f"<p>Lake <code>{html.escape(lake_uri(cfg))}</code>, database <code>{html.escape(cfg.lake.database)}</code>."
        f'</p><p id="broken" hidden>Some figures did not load.</p>\n{body}\n<script>{CHECK}</script></body></html>\n'
    )


def write_report(spark: SparkSession, cfg: Config, out: Path, samples: int = 8, groups: int = 6, similar: int = 4,
                 map_points: int = 3000, searches: int = 3) -> Path:  # fmt: skip
    """Write ``out/index.html`` and its figures (replacing an earlier report there); returns the page's path."""
    if (out / "figures").exists():
        shutil.rmtree(out / "figures")
    (out / "figures").mkdir(parents=True)
    page = Page(out, colour_key(cfg))
    page.sections.append(f"<h2>Latest run</h2>{run_section(spark, cfg)}")
    shown = sample_section(spark, cfg, page, samples)
    groups_section(spark, cfg, page, groups)
    similar_section(spark, cfg, page, shown, similar)
    search_section(spark, cfg, page, shown, searches)
    colour_section(spark, cfg, page)
    unusual_section(spark, cfg, page)
    map_section(spark, cfg, page, map_points)
    (out / "index.html").write_text(page_html(cfg, page.sections))
    log.info("report: %d figures in %s", page.figures, out)
    return out / "index.html"
