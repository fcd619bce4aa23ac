"""The nightly report, opened in headless Chromium: every figure loads and the page is not blank."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.nightly import nightly
from jobs.report import write_report
from lakelens.config import Config, ModelsConfig
from lakelens.lake import read_table
from lakelens.scenes import generate_scenes
from lakelens.schemas import DUP_GROUPS, IMAGES, SIMILAR
from models.registry import install_bundled


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium here (./build.sh test installs Debian's chromium where it can)")
    return found


def browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args]
    return subprocess.run([*command, page.as_uri()], capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.slow
def test_report_shows_every_section_and_loads_in_a_browser(spark, cfg: Config, tmp_path: Path) -> None:
    lake = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")))
    install_bundled(lake.models.registry)
    generate_scenes(tmp_path / "scenes", n=14, seed=12, workers=1, dup_fraction=0.3)
    nightly(spark, lake, str(tmp_path / "scenes" / "images"))

    page = write_report(spark, lake, tmp_path / "report", samples=4, groups=3, similar=2)
    text = page.read_text()
    for heading in ("Latest run", "Sample images", "Near-duplicate groups", "Most similar images", "Embedding map"):
        assert f"<h2>{heading}</h2>" in text
    for stage in ("ingest", "annotate", "index:near_dup", "index:similar", "nightly"):
        assert f"<td>{stage}</td><td>done</td>" in text
    figures = re.findall(r'<img src="([^"]+)"', text)
    assert all((page.parent / f).is_file() for f in figures)
    group_sizes = [r.group_size for r in read_table(spark, lake, DUP_GROUPS).select("group_id", "group_size")
                   .distinct().orderBy("group_size", ascending=False).limit(3).collect()]  # fmt: skip
    assert group_sizes and max(group_sizes) > 1
    samples = [r.image_id for r in read_table(spark, lake, IMAGES).where("error IS NULL").orderBy("image_id")
               .limit(4).collect()]  # fmt: skip
    listed = Counter(r.image_id for r in read_table(spark, lake, SIMILAR).where("rank <= 5").collect())
    shown = sorted(i for i in samples if listed[i])[:2]
    assert shown
    # 4 samples x (boxes, mask) + 2 colour keys + group members + each shown image and its neighbours + the map.
    members = sum(min(6, s) for s in group_sizes if s > 1)
    assert len(figures) == 4 * 2 + 2 + members + sum(1 + listed[i] for i in shown) + 1

    dom = browse(page, "--virtual-time-budget=10000", "--dump-dom").stdout
    assert f'data-images="{len(figures)}/{len(figures)}"' in dom
    shot = tmp_path / "shot.png"
    browse(page, f"--screenshot={shot}", "--window-size=1200,1600")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
