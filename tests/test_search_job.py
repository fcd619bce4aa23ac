"""jobs.search on a small lake: one query without Spark, a batch of queries into ``search_results``, the same
ranking both ways, exactly and through SimHash buckets, and clear refusals (a query with no words, a lake whose
text model has not run)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SCENE_ARGS
from pyspark.sql import functions as F

from jobs.search import main as search_main
from lakelens.config import Config, ModelsConfig
from lakelens.lake import append, read_table
from lakelens.lsh import hyperplanes, simhash_codes
from lakelens.scenes import generate_scenes
from lakelens.schemas import EMBEDDINGS, IMAGES, LSH_BUCKETS, SEARCH_RESULTS
from lakelens.spark import local_frame
from models.data import Preprocessing
from models.registry import Manifest, install_bundled, save_model
from models.text_image import TextImage
from models.vocabulary import Vocabulary
from stages.annotate import annotate, configured_manifest
from stages.index import index_search, search_params
from stages.ingest import ingest
from stages.search import SearchError, best_k, probed_images, query_id, search_text, text_vectors

QUERIES = ["a small red circle", "a large blue square left of a green star", "a purple elephant"]


@pytest.fixture
def search_lake(spark, cfg: Config, tmp_path: Path) -> Config:
    """Eight scenes and one corrupt file ingested; a small text-image model (untrained: these tests are about the
    plumbing, bench.text_search about quality) as the search task's model, and its image vectors annotated."""
    folder = tmp_path / "scenes"
    generate_scenes(folder, n=8, seed=31, workers=1)
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    lake = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")))
    install_bundled(lake.models.registry)
    captions = pd.read_parquet(folder / "ground_truth.parquet")["caption"].tolist()
    vocabulary = Vocabulary.build(captions)
    torch.manual_seed(3)
    arch_args = {"dim": 16, "widths": [8, 16], "vocab_size": len(vocabulary), "text_width": 16}
    model = TextImage(**arch_args)
    model.image.centre.running_var.fill_(0.01)  # untrained batch norm would squash every vector to one point
    manifest = Manifest.new("tiny-text", "text_image", arch_args, vocabulary=vocabulary.words,
                            preprocessing=Preprocessing(32).to_manifest())  # fmt: skip
    save_model(model.eval(), manifest, lake.models.registry)
    models = dict(lake.annotate.models, search="tiny-text")
    lake = dataclasses.replace(lake, annotate=dataclasses.replace(lake.annotate, tasks=("search",), models=models))
    assert ingest(spark, lake, str(folder / "images")).good == 8
    return lake


def args(cfg: Config, *more: str) -> list[str]:
    return ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", *SCENE_ARGS,
            "--set", f"models.registry={cfg.models.registry}", "--set", "annotate.models.search=tiny-text",
            *more]  # fmt: skip


def test_one_query_ranks_the_lake_s_vectors_and_a_batch_ranks_them_the_same(spark, search_lake: Config, capsys,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    with pytest.raises(SearchError, match="no image vectors from the text model tiny-text v1 yet: run"):
        search_main(args(search_lake, "--text", QUERIES[0]))

    counts = annotate(spark, search_lake, ["search"])
    assert [(c.task, c.annotated, c.good, c.errors) for c in counts.tasks] == [("search", 9, 8, 1)]
    vectors = read_table(spark, search_lake, EMBEDDINGS).where(F.col("model") == "tiny-text").collect()
    assert len(vectors) == 9 and sum(r.vector is None for r in vectors) == 1
    by_id = {r.image_id: np.asarray(r.vector) for r in vectors if r.vector is not None}

    single = {}
    for query in QUERIES:
        capsys.readouterr()
        assert search_main(args(search_lake, "--text", query, "--k", "5")) == 0
        single[query] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    hits = single[QUERIES[0]]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert set(hits[0]) == {"rank", "image_id", "uri", "score"} and all("/scenes/images/s" in h["uri"] for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(single["a purple elephant"]) == 5  # names nothing in the lake: still its nearest images

    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join([QUERIES[0], "", QUERIES[1], QUERIES[0], QUERIES[2]]) + "\n")
    for _ in range(2):  # a re-run replaces the model version's results
        capsys.readouterr()
        assert search_main(args(search_lake, "--queries", str(queries), "--k", "5")) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["queries"], summary["images"], summary["model"]) == (3, 8, "tiny-text:v1")
        results = read_table(spark, search_lake, SEARCH_RESULTS).toPandas()
        assert len(results) == 15 and set(results["model_version"]) == {"v1"}
    for query in QUERIES:
        mine = results[results["query"] == query].sort_values("rank")
        assert mine["rank"].tolist() == [1, 2, 3, 4, 5]
        assert mine["image_id"].tolist() == [h["image_id"] for h in single[query]]
        assert np.allclose(mine["score"], [h["score"] for h in single[query]], atol=1e-4)
        assert set(mine["query_id"]) == {query_id(query)}
        # Each score is the cosine of the image's stored vector with the query's, and no other image scores higher.
        (vector,), _ = text_vectors(search_lake, [query])
        cosines = {image_id: float(v @ vector) for image_id, v in by_id.items()}
        assert np.allclose(mine["score"], [cosines[i] for i in mine["image_id"]], atol=1e-5)
        assert mine["score"].iloc[0] == pytest.approx(max(cosines.values()), abs=1e-5)


def test_queries_without_words_are_refused_with_where_they_are(spark, search_lake: Config, tmp_path: Path,
                                                               capsys) -> None:  # fmt: skip
    annotate(spark, search_lake, ["search"])
    with pytest.raises(Exception, match="has no words"):
        search_main(args(search_lake, "--text", "  "))
    file = tmp_path / "queries.txt"
    file.write_text("a red circle\n?!\n")
    with pytest.raises(Exception, match=r"line 2 of .*queries.txt\) has no words"):
        search_main(args(search_lake, "--queries", str(file)))
    with pytest.raises(Exception, match="no such file, nor a table"):
        search_main(args(search_lake, "--queries", str(tmp_path / "missing.txt")))


def test_verify_compares_two_images_by_the_embedder_s_cosine(spark, search_lake: Config, capsys) -> None:
    annotate(spark, search_lake, ["embed"])
    rows = read_table(spark, search_lake, EMBEDDINGS).where(F.col("model") == "embedder").toPandas()
    rows = rows.dropna(subset=["vector"]).sort_values("image_id")
    uris = read_table(spark, search_lake, IMAGES).select("image_id", "uri").toPandas().set_index("image_id")["uri"]
    first, second = rows.iloc[0], rows.iloc[1]
    file = uris[first.image_id].removeprefix("file:")

    def verdict(*more: str) -> dict:
        capsys.readouterr()
        assert search_main(args(search_lake, "--verify", *more)) == 0
        return json.loads(capsys.readouterr().out)

    same = verdict(file, first.image_id, "--threshold", "0.9")  # a file against its own stored vector
    assert same["same"] and same["score"] == pytest.approx(1.0, abs=1e-4) and same["false_accept_rate"] is None
    other = verdict(first.image_id, second.image_id, "--threshold", "0.9")
    assert other["score"] == pytest.approx(float(np.dot(first.vector, second.vector)), abs=1e-4)
    assert other["same"] == (other["score"] >= 0.9) and other["model"].startswith("embedder:")
    with pytest.raises(SearchError, match="has no verification threshold"):  # the bundled embedder chose none
        search_main(args(search_lake, "--verify", first.image_id, second.image_id))
    with pytest.raises(SearchError, match="not a readable image file, nor a lake image"):
        search_main(args(search_lake, "--verify", "no-such-id", first.image_id, "--threshold", "0.5"))


def test_lsh_search_scores_the_probed_buckets_and_the_images_not_bucketed_yet(spark, search_lake: Config, capsys,
                                                                              tmp_path: Path) -> None:  # fmt: skip
    annotate(spark, search_lake, ["search"])
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")

    def ranked(cfg: Config, *settings: str) -> tuple[dict, dict]:
        """Each query's ranked ids by --text, and by --queries (from search_results)."""
        more = [item for s in settings for item in ("--set", s)]
        single = {}
        for query in QUERIES:
            capsys.readouterr()
            assert search_main(args(cfg, *more, "--text", query, "--k", "8")) == 0
            single[query] = [json.loads(line)["image_id"] for line in capsys.readouterr().out.splitlines()]
        assert search_main(args(cfg, *more, "--queries", str(queries), "--k", "8")) == 0
        method = json.loads(capsys.readouterr().out)["method"]
        rows = read_table(spark, cfg, SEARCH_RESULTS).toPandas().sort_values("rank")
        return single, {q: rows[rows["query"] == q]["image_id"].tolist() for q in QUERIES} | {"method": method}

    exact_single, exact_batch = ranked(search_lake)
    assert exact_batch.pop("method") == "exact" and all(len(ids) == 8 for ids in exact_single.values())
    # One bit per band, one probe: every bucket is probed, so the rankings are the exact ones, before the index
    # (no image is bucketed yet: all are scored) and after.
    every = ["index.search.method=lsh", "index.search.bands=2", "index.search.rows=1", "index.search.probes=1"]
    lsh_lake = dataclasses.replace(search_lake, index=dataclasses.replace(
        search_lake.index, search=dataclasses.replace(search_lake.index.search, method="lsh", bands=2, rows=1,
                                                      probes=1)))  # fmt: skip
    for _ in range(2):
        single, batch = ranked(search_lake, *every)
        assert batch.pop("method").startswith("simhash-")
        assert single == exact_single and batch == exact_batch
        counts = index_search(spark, lsh_lake)
    assert (counts.embedded, counts.indexed) == (8, 0)  # the second run found every image bucketed
    buckets = read_table(spark, search_lake, LSH_BUCKETS).where(F.col("params_id") == counts.params_id).toPandas()
    assert len(buckets) == 16 and buckets.groupby("image_id")["band"].apply(sorted).tolist() == [[0, 1]] * 8

    # Sixteen bits in one band, no probes: a query scores only the images of its own bucket. The untrained model's
    # vectors all share one bucket; 24 spread vectors make buckets a query does not probe.
    spread = np.random.default_rng(7).standard_normal((24, 16)).astype(np.float32)
    extra = pd.DataFrame({"image_id": [f"spread{i:02d}" for i in range(24)],
                          "vector": list(spread / np.linalg.norm(spread, axis=1, keepdims=True)), "error": None,
                          "annotated_at": pd.Timestamp("2026-12-07"), "model": "tiny-text",
                          "model_version": "v1"})  # fmt: skip
    append(local_frame(spark, extra, EMBEDDINGS.schema), search_lake, EMBEDDINGS)
    narrow = dataclasses.replace(lsh_lake.index.search, bands=1, rows=16, probes=0)
    narrow_lake = dataclasses.replace(lsh_lake, index=dataclasses.replace(lsh_lake.index, search=narrow))
    assert index_search(spark, narrow_lake).indexed == 32
    vectors = read_table(spark, search_lake, EMBEDDINGS).where(F.col("model") == "tiny-text").toPandas()
    vectors = vectors.dropna(subset=["vector"])
    ids, stored = vectors["image_id"].to_numpy(object), np.stack(vectors["vector"]).astype(np.float32)
    params = search_params(narrow_lake, configured_manifest(narrow_lake, "search"))
    codes = simhash_codes(stored, hyperplanes(params), 1, 16)[:, 0]
    for row, vector in enumerate(stored):  # an image's own vector as the query: its bucket holds it
        assert probed_images(narrow_lake, params, vector, ids).tolist() == (codes == codes[row]).tolist()
    assert len(set(codes.tolist())) > 10  # so most buckets hold few images
    for query in QUERIES:
        (vector,), _ = text_vectors(search_lake, [query])
        own = simhash_codes(vector[None], hyperplanes(params), 1, 16)[0, 0]
        mine = codes == own
        expected = best_k(vector[None], ids[mine], stored[mine], 8)[0] if mine.any() else []
        assert [(h.image_id, round(h.score, 5)) for h in search_text(narrow_lake, query, 8)] == [
            (i, round(score, 5)) for i, score in expected
        ]
