"""Configuration: defaults, layering, and loud failures that name the key."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from lakelens.config import CONF_DIR, ConfigError, load_config, read_text


def test_defaults_are_the_embedded_local_setup() -> None:
    cfg = load_config()
    assert (cfg.spark.master, cfg.lake.root, cfg.lake.database, cfg.lake.metastore) == (
        "local[*]",
        "./lake",
        "lake",
        "derby",
    )
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # YAML booleans reach Spark as its strings


def test_later_files_then_set_override(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("lake:\n  database: first\ningest:\n  max_pixels: 7\n")
    cfg = load_config([CONF_DIR / "local.yaml", mine], ["lake.database=second"])
    assert (cfg.lake.database, cfg.ingest.max_pixels, cfg.spark.master) == ("second", 7, "local[*]")


def test_cluster_example_loads_with_gpu_settings() -> None:
    cfg = load_config([CONF_DIR / "cluster.yaml"])
    assert cfg.spark.conf["spark.executor.resource.gpu.amount"] == "1"
    assert cfg.spark.conf["spark.task.resource.gpu.amount"] == "1"
    assert "spark.executor.resource.gpu.discoveryScript" in cfg.spark.conf
    assert cfg.lake.metastore == "external"


def test_spark_conf_keys_keep_their_dots() -> None:
    cfg = load_config(overrides=["spark.conf.spark.sql.shuffle.partitions=3"])
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lake.root = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.spark.conf["spark.x"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ingest.max_pixel=3", "unknown config key 'ingest.max_pixel'"),
        ("ingest.max_pixels=-1", "config key 'ingest.max_pixels' must be > 0"),
        ("ingest.max_pixels=many", "config key 'ingest.max_pixels' must be int"),
        ("ingest.max_pixels=true", "config key 'ingest.max_pixels' must be int"),
        ("lake.metastore=hive", "config key 'lake.metastore' must be one of derby, external"),
        ("lake.database=my-lake", "config key 'lake.database' must be a SQL identifier"),
        ("spark.conf.executor.cores=2", "keys must start with 'spark.'"),
        ("spark.log_level=LOUD", "must be one of ERROR, WARN, INFO, DEBUG"),
        ("ingest.patterns=[1, 2]", "config key 'ingest.patterns' must be a list of strings"),
        ("nothing", "--set expects key=value"),
        ("index.search.rows=65", "config key 'index.search.rows' must be in [1, 64]"),
        ("index.search.probes=-1", "config key 'index.search.probes' must be >= 0"),
        ("index.search.method=ivf", "config key 'index.search.method' must be one of exact, lsh"),
    ],
)
def test_bad_values_fail_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_unknown_key_lists_what_is_allowed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lake:\n  rooot: /x\n")
    with pytest.raises(ConfigError) as info:
        load_config([bad])
    assert "unknown config key 'lake.rooot' (from " in str(info.value)
    assert "allowed here: lake.root, lake.database, lake.metastore" in str(info.value)


def test_missing_and_malformed_files_fail(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config([tmp_path / "nope.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("lake: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([broken])


def test_digest_changes_with_the_config() -> None:
    assert load_config().digest() == load_config().digest()
    assert load_config().digest() != load_config(overrides=["ingest.max_pixels=5"]).digest()


def test_readme_submit_lines_carry_the_cluster_gpu_settings() -> None:
    """README.md's spark-submit lines for a standalone cluster, YARN and Kubernetes say what conf/cluster.yaml says
    for executors and tasks (the GPU, cores and memory settings), value for value."""
    readme = (CONF_DIR.parent / "README.md").read_text()
    blocks = [b for b in readme.split("```bash")[1:] if "spark-submit --master" in b.split("```")[0]]
    masters = [b.split("--master ")[1].split()[0] for b in blocks]
    assert masters == ["spark://MASTER:7077", "yarn", "k8s://https://K8S_API:6443"]
    cluster = load_config([CONF_DIR / "cluster.yaml"])
    wanted = {
        f"--conf {k}={v}" for k, v in cluster.spark.conf.items() if k.startswith(("spark.executor.", "spark.task."))
    }
    assert len(wanted) == 7
    for block in blocks:
        command = block.split("```")[0]
        assert {w for w in wanted if w not in command} == set()
        assert "--config conf/cluster.yaml" in command or "--config cluster.yaml" in command


def test_config_files_are_read_from_inside_the_code_zip(tmp_path: Path) -> None:
    """Under spark-submit the code, conf/ included, is a zip on sys.path: base.yaml is read from inside it."""
    zipped = tmp_path / "lakelens_code.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("conf/base.yaml", "lake:\n  database: zipped\n")
    assert read_text(zipped / "conf" / "base.yaml") == "lake:\n  database: zipped\n"
    with pytest.raises(FileNotFoundError, match="No such file"):
        read_text(zipped / "conf" / "local.yaml")
