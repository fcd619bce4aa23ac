"""Lake I/O and the session builder: declared schemas are enforced, the catalog lives under the lake root."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakelens.config import load_config
from lakelens.lake import (
    SchemaMismatchError,
    append,
    append_each,
    conform,
    database_location,
    has_rows,
    lake_uri,
    qualified,
    read_table,
    replace,
    replace_partition,
    staged,
    table_dataset,
    table_location,
)
from lakelens.schemas import DUP_GROUPS, FASHION_MNIST, IMAGE_URIS, RUNS, TABLES, TableSpec
from lakelens.spark import catalog_conf, hive_scratch, local_cores, local_frame, session_conf


def uri_rows(spark, n: int):
    return spark.range(n).select(
        F.sha2(F.col("id").cast("string"), 256).alias("image_id"),
        F.concat(F.lit("file:/x/"), F.col("id").cast("string")).alias("uri"),
        F.col("id").alias("size"),
        F.current_timestamp().alias("modified"),
        F.lit(date(2026, 1, 2)).alias("ingest_date"),
    )


def test_lake_uri_forms(tmp_path: Path) -> None:
    assert lake_uri(load_config(overrides=[f"lake.root={tmp_path}/l/"])) == f"file:{tmp_path}/l"
    assert lake_uri(load_config(overrides=["lake.root=s3a://bucket/lake"])) == "s3a://bucket/lake"


def test_derby_metastore_and_warehouse_under_the_lake_root(tmp_path: Path) -> None:
    conf = catalog_conf(load_config(overrides=[f"lake.root={tmp_path}"]))
    assert conf["spark.sql.warehouse.dir"] == f"file:{tmp_path}/warehouse"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={tmp_path}/metastore_db;create=true"
    )
    assert conf["spark.hadoop.datanucleus.cache.level2.type"] == "soft"
    external = catalog_conf(load_config(overrides=["lake.root=s3a://b/lake", "lake.metastore=external"]))
    assert "spark.hadoop.javax.jdo.option.ConnectionURL" not in external
    assert "spark.hadoop.datanucleus.cache.level2" not in external
    with pytest.raises(ValueError, match="lake.metastore=derby needs a local lake root"):
        catalog_conf(load_config(overrides=["lake.root=s3a://b/lake"]))


def test_a_local_master_shuffles_into_a_partition_per_core(spark, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    cores = {m: local_cores(m) for m in ("local", "local[3]", "local[*]", "local[4,2]", "local-cluster[2,3,1024]")}
    assert cores == {"local": 1, "local[3]": 3, "local[*]": 6, "local[4,2]": 4, "local-cluster[2,3,1024]": 6}
    assert local_cores("yarn") is None and local_cores("spark://127.0.0.1:7077") is None
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"  # the session fixture's local[2]
    assert spark.newSession().conf.get("spark.sql.shuffle.partitions") == "2"  # as jobs.nightly's stages have it


def test_hive_scratch_goes_to_a_folder_removed_at_exit(spark) -> None:
    spark.sql("SHOW DATABASES").collect()
    assert (hive_scratch() / "resources").is_dir()  # not a new /tmp/<session>_resources each run


def test_append_then_read_by_name(spark, cfg) -> None:
    assert not has_rows(spark, cfg, IMAGE_URIS)
    append(uri_rows(spark, 3), cfg, IMAGE_URIS)
    assert has_rows(spark, cfg, IMAGE_URIS)
    assert read_table(spark, cfg, IMAGE_URIS).count() == 3
    assert spark.sql(f"SELECT count(*) FROM {qualified(cfg, IMAGE_URIS)}").first()[0] == 3
    location = spark.sql(f"DESCRIBE DATABASE {cfg.lake.database}").filter("info_name = 'Location'").first()[1]
    assert location == f"{lake_uri(cfg)}/warehouse/{cfg.lake.database}.db"


def test_append_each_writes_every_table_and_then_raises_the_first_failure(spark, cfg) -> None:
    copies = TableSpec("image_uris_copy", IMAGE_URIS.schema, IMAGE_URIS.partition_by)
    broken = TableSpec("image_uris_broken", IMAGE_URIS.schema, IMAGE_URIS.partition_by)
    writes = [(uri_rows(spark, 3), IMAGE_URIS), (uri_rows(spark, 2).drop("uri"), broken), (uri_rows(spark, 2), copies)]
    with pytest.raises(SchemaMismatchError, match="missing column uri"):
        append_each(writes, cfg)
    columns = [c for c in IMAGE_URIS.columns if c != "modified"]  # uri_rows stamps the time it is computed
    assertDataFrameEqual(read_table(spark, cfg, IMAGE_URIS).select(columns), uri_rows(spark, 3).select(columns))
    assert read_table(spark, cfg, copies).count() == 2 and read_table(spark, cfg, broken).count() == 0


def test_conform_refuses_wrong_types_and_missing_columns(spark) -> None:
    rows = uri_rows(spark, 1)
    with pytest.raises(SchemaMismatchError, match="column size is string, declared bigint"):
        conform(rows.withColumn("size", F.col("size").cast("string")), IMAGE_URIS)
    with pytest.raises(SchemaMismatchError, match="missing column modified"):
        conform(rows.drop("modified"), IMAGE_URIS)
    assert conform(rows.withColumn("extra", F.lit(1)), IMAGE_URIS).columns == IMAGE_URIS.columns


def test_an_existing_table_with_another_schema_fails_loudly(spark, cfg) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.sql(f"CREATE TABLE {cfg.lake.database}.image_uris (uri string) USING parquet")
    with pytest.raises(SchemaMismatchError, match="existing table .*image_uris does not match"):
        read_table(spark, cfg, IMAGE_URIS)


def test_replace_remakes_a_table_of_an_older_schema(spark, cfg) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.sql(f"CREATE TABLE {cfg.lake.database}.fashion_mnist (image_id string, label int) USING parquet")
    rows = spark.createDataFrame([("a", b"x", 3, "dress", "test", 0)], FASHION_MNIST.schema)
    replace(rows, cfg, FASHION_MNIST)
    assertDataFrameEqual(read_table(spark, cfg, FASHION_MNIST), rows)


def test_partition_columns_come_last() -> None:
    for spec in TABLES.values():
        n = len(spec.partition_by)
        assert spec.columns[len(spec.columns) - n :] == list(spec.partition_by)
    with pytest.raises(ValueError, match="must come last"):
        TableSpec("bad", IMAGE_URIS.schema, partition_by=("uri",))


def test_session_conf_restores_the_setting(spark) -> None:
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    with session_conf(spark, key, "7"):
        assert spark.conf.get(key) == "7"
    assert spark.conf.get(key) == before


def test_local_frames_hold_the_rows_and_never_pass_through_a_python_worker(spark) -> None:
    now = datetime(2026, 12, 6, 23, 1, 2, 345678)
    done = {"run_id": "r", "stage": "ingest", "status": "done", "started_at": now, "ended_at": now, "rows_in": 3,
            "images_per_s": 1.5, "config_hash": "h", "source": "s"}  # fmt: skip
    failed = {"run_id": "r", "stage": "annotate", "status": "failed", "started_at": now, "ended_at": now,
              "config_hash": "h", "source": "s", "message": "boom"}  # fmt: skip
    as_tuples = [tuple(row.get(name) for name in RUNS.schema.names) for row in (done, failed)]
    buckets = [(1, b"\x00\x01", 5, "a"), (2, bytearray(b""), 7, None)]
    sizes = pd.DataFrame({"size": [7, 8], "leader": ["x", "y"]})  # columns by name, in any order
    with session_conf(spark, "spark.sql.session.timeZone", "America/New_York"):  # naive times are UTC whatever this
        frames = {
            "dicts": (local_frame(spark, [done, failed], RUNS.schema), spark.createDataFrame(as_tuples, RUNS.schema)),
            "ddl": (local_frame(spark, buckets, "band int, key binary, size long, leader string"),
                    spark.createDataFrame(buckets, "band int, key binary, size long, leader string")),
            "pandas": (local_frame(spark, sizes, "leader string, size long"),
                       spark.createDataFrame([("x", 7), ("y", 8)], "leader string, size long")),
            "empty": (local_frame(spark, [], RUNS.schema), spark.createDataFrame([], RUNS.schema)),
        }  # fmt: skip
        for name, (made, expected) in frames.items():
            assertDataFrameEqual(made, expected)
            assert made.schema == expected.schema, name
            # createDataFrame of a list goes through a Python worker (a PythonRDD); the Arrow table does not
            assert "PythonRDD" not in made._jdf.queryExecution().toRdd().toDebugString(), name
        started = frames["dicts"][0].select(F.date_format("started_at", "yyyy-MM-dd HH:mm:ss").alias("t")).first()
    assert started.t == "2026-12-06 18:01:02"  # 23:01 UTC seen from New York


def group_rows(spark, rows: list[tuple[str, str]], params_id: str):
    return spark.createDataFrame([(i, g, 2, params_id) for i, g in rows], DUP_GROUPS.schema)


def test_replace_partition_swaps_a_partition_whole_and_leaves_the_others(spark, cfg) -> None:
    append(group_rows(spark, [("a", "a"), ("b", "a")], "p"), cfg, DUP_GROUPS)
    append(group_rows(spark, [("x", "x")], "q"), cfg, DUP_GROUPS)
    replace_partition(group_rows(spark, [("c", "c"), ("d", "c")], "p"), cfg, DUP_GROUPS, params_id="p")
    replace_partition(group_rows(spark, [("e", "e")], "p"), cfg, DUP_GROUPS, params_id="p")
    want = [("e", "e", 2, "p"), ("x", "x", 2, "q")]
    assert sorted(tuple(r) for r in read_table(spark, cfg, DUP_GROUPS).collect()) == want
    outside = table_dataset(cfg, DUP_GROUPS).to_table().to_pandas()
    assert sorted(outside[DUP_GROUPS.columns].itertuples(index=False, name=None)) == want
    folder = Path(table_location(spark, qualified(cfg, DUP_GROUPS)).removeprefix("file:")) / "params_id=p"
    assert [p.name for p in folder.iterdir()] == [p.name for p in folder.glob("gen=*")]  # old files removed
    assert len(list(folder.iterdir())) == 1


def test_a_failed_replace_leaves_the_old_rows(spark, cfg) -> None:
    append(group_rows(spark, [("a", "a")], "p"), cfg, DUP_GROUPS)

    def explode(frames):
        for _ in frames:
            raise RuntimeError("executor lost")
            yield

    broken = group_rows(spark, [("z", "z")], "p").mapInPandas(explode, DUP_GROUPS.schema)
    with pytest.raises(Exception, match="executor lost"):
        replace_partition(broken, cfg, DUP_GROUPS, params_id="p")
    assert [tuple(r) for r in read_table(spark, cfg, DUP_GROUPS).collect()] == [("a", "a", 2, "p")]
    assert table_dataset(cfg, DUP_GROUPS).to_table().num_rows == 1


def test_staged_rows_are_computed_once_and_the_folder_goes_after(spark, cfg) -> None:
    append(uri_rows(spark, 3), cfg, IMAGE_URIS)
    sizes = read_table(spark, cfg, IMAGE_URIS).select((F.col("size") * 10).alias("ten"))
    staging = Path(database_location(cfg).removeprefix("file:")) / "_staging"
    recent = f"test-{datetime.now(UTC) - timedelta(hours=1):%Y%m%dT%H%M%S%f}-0a1b2c"
    left = ["test-20260101T000000000000-0a1b2c", recent, "other-20260101T000000000000-0a1b2c"]
    for name in left:
        (staging / name).mkdir(parents=True)
    with staged(sizes, cfg, "test") as rows:
        found = sorted(p.name for p in staging.iterdir())
        assert len(found) == 3 and found[:2] == sorted(left[1:])  # the day-old folder of this label went
        append(uri_rows(spark, 5), cfg, IMAGE_URIS)  # a cache of ``sizes`` would now be dropped and computed again
        assert sorted(r.ten for r in rows.collect()) == [0, 10, 20]
    assert sorted(p.name for p in staging.iterdir()) == sorted(left[1:])
    with pytest.raises(RuntimeError, match="append failed"), staged(sizes, cfg, "failed"):
        raise RuntimeError("append failed")
    assert sorted(p.name for p in staging.iterdir()) == sorted(left[1:])
