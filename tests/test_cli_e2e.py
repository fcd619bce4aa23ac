"""The job commands as a user runs them: separate processes sharing one lake through its catalog."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SCENE_ARGS
from images import encode, odd_files, rgb, write_files

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def table_rows(shown: str) -> list[list[str]]:
    """The rows of a ``DataFrame.show()`` table as lists of cells, header first."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in shown.splitlines() if line.startswith("|")]


def sql_results(lake: Path, queries: list[str]) -> dict[str, list[list[str]]]:
    """Every query's table rows, from one ``./build.sh sql`` (one Spark start), which prints each result after a
    ``-- QUERY`` line."""
    result = run("./build.sh", "sql", *queries, "--lake", str(lake), "--limit", "1000", "--truncate", "0")
    assert result.returncode == 0, result.stderr
    printed: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("-- ") and line[3:] in queries:
            lines = printed.setdefault(line[3:], [])
        else:
            lines.append(line)
    assert list(printed) == list(dict.fromkeys(queries))
    return {query: table_rows("\n".join(shown)) for query, shown in printed.items()}


def test_bad_config_fails_fast_naming_the_key(tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "jobs.ingest", "--source", str(tmp_path), "--set", "ingest.max_pixel=5")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: bad configuration: unknown config key 'ingest.max_pixel'")
    )


def test_missing_source_exits_1_with_one_line_reason(tmp_path: Path) -> None:
    result = run(
        sys.executable, "-m", "jobs.ingest", "--source", str(tmp_path / "nope"), "--lake", str(tmp_path / "lake")
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: FileNotFoundError: source not found: {tmp_path / 'nope'}"


@pytest.mark.slow
def test_ingest_then_sql_from_another_process(tmp_path: Path) -> None:
    write_files(tmp_path / "src", {**odd_files(), "more/extra.png": encode(rgb(seed=9), "PNG")})
    lake = tmp_path / "lake"
    ingested = run(sys.executable, "-m", "jobs.ingest", "--source", str(tmp_path / "src"), "--lake", str(lake))
    assert ingested.returncode == 0, ingested.stderr
    assert "read 15 (good 10 + errors 5), new images 15" in ingested.stdout

    tables, errors = "SHOW TABLES IN lake", "SELECT count(*) AS bad FROM images WHERE error IS NOT NULL"
    shown = sql_results(lake, [tables, errors])
    assert shown[tables][0] == ["namespace", "tableName", "isTemporary"]
    assert {"images", "image_uris"} <= {row[1] for row in shown[tables][1:]}
    assert shown[errors] == [["bad"], ["5"]]


def test_synth_job_writes_scenes_and_ground_truth(tmp_path: Path) -> None:
    out = str(tmp_path / "s")
    result = run(sys.executable, "-m", "jobs.synth", "--out", out, "--n", "30", "--seed", "3", "--similar-fraction=0.3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["n_images"], summary["n_relayouts"], summary["skipped"]) == (30, 9, False)
    assert len(list((tmp_path / "s" / "images").iterdir())) == 30
    assert pq.read_table(tmp_path / "s" / "ground_truth.parquet").num_rows == 30


@pytest.mark.slow
def test_demo_builds_a_queryable_lake_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = run("./build.sh", "demo", "--n", "40", "--lake", str(lake))
    assert first.returncode == 0, first.stderr
    assert "read 40 (good 40 + errors 0), new images 40, duplicates 0, new uris 40" in first.stdout
    assert f"lake:         file:{lake}" in first.stdout
    assert f"report:       {lake}/report/index.html" in first.stdout and (lake / "report" / "index.html").is_file()
    for line in ("classify: classifier v1 -> labels", "detect: detector v1 -> detections", "segment: segmenter v1 ->",
                 "caption: captioner v2 -> captions", "embed: embedder v2 -> embeddings",
                 "search: text-image v1 -> embeddings",
                 "autoencode: autoencoder v1 -> reconstructions + embeddings"):  # fmt: skip
        assert line in first.stdout
    # The scenes are in colour, but a few have one hue throughout (tinted, as sepia is): those are coloured.
    coloured = re.search(
        r"colourise: colouriser v1 -> colourised: annotated (\d+) \(good \1 \+ errors 0\), already done 0, "
        r"left out (\d+) \(colour: no row\); kinds: grey 0, tinted \1, colour \2",
        first.stdout,
    )
    assert coloured and int(coloured[1]) + int(coloured[2]) == 40 and int(coloured[1]) < 8
    # conf/scenes.yaml's tasks but colourise.
    assert first.stdout.count("annotated 40 (good 40 + errors 0), already done 0") == 7
    assert "near-duplicates (minhash-" in first.stdout and "hashed 40 new of 40 images (0 error rows)" in first.stdout
    assert "similar (exact-" in first.stdout and "indexed 40 new of 40 embedded images" in first.stdout

    again = run("./build.sh", "demo", "--n", "40", "--lake", str(lake))
    assert again.returncode == 0, again.stderr
    assert "listed 40, unchanged 40, read 0 (good 0 + errors 0), new images 0" in again.stdout
    assert again.stdout.count("annotated 0 (good 0 + errors 0), already done 40") == 8
    assert "hashed 0 new of 40 images" in again.stdout and "indexed 0 new of 40 embedded images" in again.stdout

    counted = "SELECT count(*) AS n, count(DISTINCT uri) AS uris FROM images"
    markers = ("<!-- annotation queries -->", "<!-- lake queries -->", "<!-- index queries -->")
    shown = sql_results(lake, [counted, *(q for m in markers for q in readme_queries(m).values())])
    assert shown[counted] == [["n", "uris"], ["40", "40"]]
    check_readme_queries(lake, shown)
    check_lake_queries(lake, shown)
    check_index_queries(lake, shown)
    check_spark_sql(lake)


def check_spark_sql(lake: Path) -> None:
    """Spark's own ``spark-sql``, with the two settings README.md gives it, reads the lake's tables and views."""
    labels = pq.read_table(lake / "warehouse" / "lake.db" / "labels").to_pandas()
    query = "SELECT count(*) FROM lake.images; SELECT top_label, count(*) FROM lake.image_summary GROUP BY top_label"
    catalog = f"jdbc:derby:;databaseName={lake}/metastore_db;create=true"
    result = run(
        str(Path(sys.executable).parent / "spark-sql"), "--conf", f"spark.sql.warehouse.dir=file:{lake}/warehouse",
        "--conf", f"spark.hadoop.javax.jdo.option.ConnectionURL={catalog}", "-e", query, cwd=lake,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "40"
    assert dict(line.split("\t") for line in lines[1:]) == {k: str(v) for k, v in Counter(labels.label).items()}


def readme_queries(marker: str = "<!-- annotation queries -->") -> dict[str, str]:
    """The ``./build.sh sql`` examples of the README.md block after ``marker``, by their comment."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(marker) :]
    section = section[: section.index("```", section.index("```") + 3)]
    queries, comment = {}, None
    for line in section.splitlines():
        if line.startswith("# "):
            comment = line[2:]
        elif line.startswith("./build.sh sql "):
            queries[comment] = line[len("./build.sh sql ") :].strip().strip('"')
    return queries


def check_readme_queries(lake: Path, shown: dict[str, list[list[str]]]) -> None:
    """Each README query over the demo lake (``shown``: its printed rows) gives what the tables' Parquet files say
    it should."""
    warehouse = lake / "warehouse" / "lake.db"
    detections = pq.read_table(warehouse / "detections").to_pandas()
    segments = pq.read_table(warehouse / "segments").to_pandas()
    captions = pq.read_table(warehouse / "captions").to_pandas()
    queries = readme_queries()
    assert len(queries) == 3

    ranked = shown[queries["The ten most confident stars, best first"]]
    stars = sorted((o["score"] for objs in detections.objects for o in objs if o["label"] == "star"), reverse=True)
    assert ranked[0] == ["file", "conf"] and len(ranked) == 1 + min(10, len(stars)) > 1
    assert [float(r[1]) for r in ranked[1:]] == [round(s, 3) for s in stars[:10]]
    assert all(r[0].endswith((".jpg", ".png")) for r in ranked[1:])

    covered = shown[queries["Images more than 10 % covered by one shape"]]
    expected = {(i, c) for i, f in zip(segments.image_id, segments.fractions, strict=True)
                for c, share in dict(f).items() if c != "background" and share > 0.1}  # fmt: skip
    assert covered[0] == ["image_id", "class", "share"] and {(r[0], r[1]) for r in covered[1:]} == expected

    worded = shown[queries["Captions with the word 'star'"]]
    counts = captions[captions.caption.str.split().map(lambda w: "star" in w)].caption.value_counts()
    assert worded[0] == ["caption", "n"] and {r[0]: int(r[1]) for r in worded[1:]} == counts.to_dict()


def file_names(warehouse: Path) -> dict[str, str]:
    """image_id -> the file name of its uri, from the images table's Parquet files."""
    images = pq.read_table(warehouse / "images", columns=["image_id", "uri"]).to_pandas()
    return dict(zip(images.image_id, images.uri.str.rsplit("/", n=1).str[-1], strict=True))


def check_lake_queries(lake: Path, shown: dict[str, list[list[str]]]) -> None:
    """README's five queries over the views give what the tables' Parquet files say they should."""
    warehouse = lake / "warehouse" / "lake.db"
    files = file_names(warehouse)
    labels = pq.read_table(warehouse / "labels").to_pandas()
    captions = pq.read_table(warehouse / "captions").to_pandas()
    groups = pq.read_table(warehouse / "dup_groups").to_pandas()
    queries = readme_queries("<!-- lake queries -->")
    assert len(queries) == 5

    per_label = shown[queries["Images per top label, with the mean confidence"]]
    counted = labels.groupby("label").score.agg(["count", "mean"])
    assert per_label[0] == ["top_label", "images", "mean_score"]
    assert {r[0]: int(r[1]) for r in per_label[1:]} == counted["count"].to_dict()
    assert all(abs(float(r[2]) - counted["mean"][r[0]]) < 1e-3 for r in per_label[1:])

    best = shown[queries["The three most confident hexagons"]]
    hexagons = labels[labels.label == "hexagon"].sort_values(["score", "image_id"], ascending=[False, True]).head(3)
    assert best[0] == ["rank", "file", "score"]
    ranked = enumerate(zip(hexagons.image_id, hexagons.score, strict=True), start=1)
    assert best[1:] == [[str(i), files[h], str(round(float(s), 3))] for i, (h, s) in ranked]

    sizes = shown[queries["Images by the size of their near-duplicate group"]]
    size_of = dict(zip(groups.image_id, groups.group_size, strict=True))
    expected = Counter(int(size_of.get(i, 1)) for i in files)
    assert sizes[0] == ["dup_group_size", "images"] and {int(a): int(b) for a, b in sizes[1:]} == expected
    assert len(expected) > 1  # the demo plants near-duplicates

    largest = shown[queries["The largest near-duplicate groups and their files"]]
    members = groups.groupby("group_id").image_id.agg(lambda ids: " ".join(sorted(files[i] for i in ids)))
    top = groups.drop_duplicates("group_id").sort_values(["group_size", "group_id"], ascending=[False, True]).head(3)
    assert largest[0] == ["group_id", "group_size", "files"]
    assert largest[1:] == [[g[:12], str(n), members[g]] for g, n in zip(top.group_id, top.group_size, strict=True)]

    agree = shown[queries["How often the caption names the classifier's label"]]
    both = labels.merge(captions, on="image_id")
    named = sum(label in caption.split(" ") for label, caption in zip(both.label, both.caption, strict=True))
    assert agree == [["images", "caption_names_label"], [str(len(both)), str(named)]]


def check_index_queries(lake: Path, shown: dict[str, list[list[str]]]) -> None:
    """README's two index queries give what the dup_groups and similar Parquet files say they should."""
    warehouse = lake / "warehouse" / "lake.db"
    files = file_names(warehouse)
    groups = pq.read_table(warehouse / "dup_groups").to_pandas()
    similar = pq.read_table(warehouse / "similar").to_pandas()
    queries = readme_queries("<!-- index queries -->")
    assert len(queries) == 2

    largest = shown[queries["Near-duplicate groups, largest first"]]
    size = groups.groupby("group_id").size()
    assert largest[0] == ["group_id", "group_size", "files"] and len(largest) == 1 + min(5, len(size)) > 1
    for group_id, group_size, listed in largest[1:]:
        members = sorted(files[i] for i in groups[groups.group_id == group_id].image_id)
        assert int(group_size) == size[group_id] and sorted(listed.strip("[]").split(", ")) == members
    assert [int(r[1]) for r in largest[1:]] == sorted(size, reverse=True)[:5]

    closest = shown[queries["The five images most like one image"]]
    first = similar[similar.image_id == similar.image_id.min()].sort_values("rank").head(5)
    ranked = zip(first["rank"], first.neighbor_id, first.cosine, strict=True)
    assert closest == [["rank", "neighbor_id", "cosine"], *([str(r), n, str(round(float(c), 3))] for r, n, c in ranked)]


@pytest.mark.slow
def test_annotate_on_separate_executor_processes(tmp_path: Path) -> None:
    """local-cluster starts real executor JVMs: the weights travel as a broadcast, each executor's Python worker
    builds its own model, and a corrupt file is still one error row."""
    lake, scenes = tmp_path / "lake", tmp_path / "scenes"
    assert run(sys.executable, "-m", "jobs.synth", "--out", str(scenes), "--n", "12", "--seed", "4").returncode == 0
    (scenes / "images" / "cut.png").write_bytes(encode(rgb(64, 64, seed=3), "PNG")[:200])
    ingested = run(sys.executable, "-m", "jobs.ingest", "--source", str(scenes / "images"), "--lake", str(lake))
    assert "read 13 (good 12 + errors 1)" in ingested.stdout, ingested.stderr
    master = "spark.master=local-cluster[2,1,1024]"
    annotated = run(sys.executable, "-m", "jobs.annotate", "--tasks", "embed,segment", "--lake", str(lake), "--set",
                    master, "--set", f"models.registry={REPO / 'models' / 'default'}", *SCENE_ARGS)  # fmt: skip
    assert annotated.returncode == 0, annotated.stderr
    assert "segment: segmenter v1 -> segments: annotated 13 (good 12 + errors 1), already done 0" in annotated.stdout
    assert "embed: embedder v2 -> embeddings: annotated 13 (good 12 + errors 1), already done 0" in annotated.stdout


def test_launch_runs_a_job_by_name_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    unknown = run(sys.executable, "-m", "jobs.launch", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith(
        "usage: lakelens_job.py JOB [ARGS], JOB one of: ingest"
    )
    synth = run(sys.executable, "-m", "jobs.launch", "synth", "--out", str(tmp_path / "s"), "--n", "3", "--seed", "1")
    assert synth.returncode == 0, synth.stderr
    assert json.loads(synth.stdout)["n_images"] == 3


def test_a_missing_source_is_refused_before_spark_starts_in_one_line(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for job in ("jobs.ingest", "jobs.nightly"):
        result = run(sys.executable, "-m", job, "--source", str(tmp_path / "nope"), "--lake", str(lake))
        assert result.returncode == 1
        expected = f"error: FileNotFoundError: source not found: {tmp_path / 'nope'}"
        assert result.stderr.strip().splitlines() == [expected]
        assert not lake.exists()
