"""The nightly report, opened in headless Chromium: every figure loads and the page is not blank; its title, its
captions, and one colour per class on the whole page and from lake to lake."""

from __future__ import annotations

import dataclasses
import html
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SCENES
from PIL import Image
from pyspark.sql import functions as F

from lakelens.config import Config, ModelsConfig, load_config
from lakelens.figures import class_colour
from lakelens.lake import lake_uri, read_table
from lakelens.scenes import generate_scenes
from lakelens.schemas import ANNOTATE_LEFT_OUT, CAPTIONS, COLOURISED, DUP_GROUPS, IMAGES, SIMILAR
from models.registry import BUNDLED, install_bundled
from stages.nightly import nightly
from stages.report import colour_key, page_html, write_report

SHAPES = ["circle", "cross", "diamond", "hexagon", "square", "star", "triangle"]  # the bundled models' classes


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
    for heading in ("Latest run", "Sample images", "Near-duplicate groups", "Most similar images", "Search by text",
                    "Colourisation", "Most unusual images", "Embedding map"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in text
    for stage in ("ingest", "annotate", "index:near_dup", "index:similar", "nightly"):
        assert f"<td>{stage}</td><td>done</td>" in text
    figures = re.findall(r'<img src="([^"]+)"', text)
    assert all((page.parent / f).is_file() for f in figures)
    assert f"<title>lakelens report: {lake_uri(lake).rsplit('/', 1)[-1]}</title>" in text  # the lake root's folder
    group_sizes = [r.group_size for r in read_table(spark, lake, DUP_GROUPS).select("group_id", "group_size")
                   .distinct().orderBy("group_size", ascending=False).limit(3).collect()]  # fmt: skip
    assert group_sizes and max(group_sizes) > 1
    samples = [r.image_id for r in read_table(spark, lake, IMAGES).where("error IS NULL").orderBy("image_id")
               .limit(4).collect()]  # fmt: skip
    listed = Counter(r.image_id for r in read_table(spark, lake, SIMILAR).where("rank <= 5").collect())
    shown = sorted(i for i in samples if listed[i])[:2]
    assert shown
    # 4 samples x (boxes, mask) + 2 colour keys + group members + each shown image and its neighbours + 3 text
    # queries x their 4 best images + up to 6 coloured images (a scene of one hue throughout is tinted) beside their
    # colours + up to 6 colour scenes as grey, coloured and original + the 10 most unusual images and their
    # reconstructions + the two maps.
    members = sum(min(6, s) for s in group_sizes if s > 1)
    coloured = min(6, read_table(spark, lake, COLOURISED).where("error IS NULL").count())
    left_out = min(6, read_table(spark, lake, ANNOTATE_LEFT_OUT).count())
    assert left_out == 6  # the scenes are mostly in colour
    assert len(figures) == (4 * 2 + 2 + members + sum(1 + listed[i] for i in shown) + 3 * 4 + 2 * coloured
                            + 3 * left_out + 10 * 2 + 2)  # fmt: skip
    unusual = text.split("<h2>Most unusual images</h2>")[1].split("</section>")[0]
    ranks = re.findall(r"<figcaption>#(\d+) [^<]*<br>unusualness ([0-9.]+), error [0-9.]+</figcaption>", unusual)
    assert [int(r) for r, _ in ranks] == list(range(1, 11))
    errors = [float(e) for _, e in ranks]
    assert errors == sorted(errors, reverse=True)
    # The text queries are the first sample images' captions, each with 4 images ranked by cosine, best first.
    searched = text.split("<h2>Search by text</h2>")[1].split("</section>")[0]
    captions = read_table(spark, lake, CAPTIONS).where(F.col("image_id").isin(samples)).orderBy("image_id").collect()
    queries = re.findall(r"<p>&ldquo;(.*?)&rdquo;</p>", searched)
    assert queries == list(dict.fromkeys(html.escape(r.caption) for r in captions))[:3]
    ranked = re.findall(r"<br>#(\d) cosine (-?[0-9.]+)</figcaption>", searched)
    assert [int(r) for r, _ in ranked] == [1, 2, 3, 4] * 3
    for block in range(3):
        scores = [float(c) for _, c in ranked[4 * block : 4 * block + 4]]
        assert scores == sorted(scores, reverse=True)
    # Each image of the similar rows is captioned with its file name, as a near-duplicate group's members are.
    similar = text.split("<h2>Most similar images</h2>")[1].split("</section>")[0]
    captioned = re.findall(r'<figure><img [^>]*alt="([^"]+)"[^>]*><figcaption>(.*?)</figcaption></figure>', similar)
    assert len(captioned) == sum(1 + listed[i] for i in shown)
    for alt, caption in captioned:
        assert caption.startswith(html.escape(html.unescape(alt).rsplit("/", 1)[-1]) + "<br>")
    # One colour per class on the whole page: the box key, the mask key and the map's key agree, by class name, with
    # the key of the models' vocabulary; and no key shows one colour for two classes. A key's alt names its rows.
    key = colour_key(lake)
    shown_keys = re.findall(r'<img src="([^"]+)" alt="(?:box|mask) colours: ([^"]+)"', text)
    maps = re.findall(r'<img src="([^"]+)" alt="embeddings, ([^,"]+)[^"]*colours: ([^"]+)"', text)
    assert [how for _, how, _ in maps] == ["first two principal components", "t-SNE"]
    assert len(shown_keys) == 2
    plotted = [(src, names, 720 - 170, 10) for src, _, names in maps]
    for src, names, left, top in [(s, n, 0, 0) for s, n in shown_keys] + plotted:
        pixels, rows = np.asarray(Image.open(page.parent / src).convert("RGB")), html.unescape(names).split(", ")
        swatches = [tuple(pixels[top + 11 + 16 * row, left + 11]) for row in range(len(rows))]
        assert swatches == [key[name] for name in rows] and len(set(swatches)) == len(rows)

    dom = browse(page, "--virtual-time-budget=10000", "--dump-dom").stdout
    assert f'data-images="{len(figures)}/{len(figures)}"' in dom
    shot = tmp_path / "shot.png"
    browse(page, f"--screenshot={shot}", "--window-size=1200,1600")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_the_page_is_titled_by_the_lake_folder_and_gives_its_uri(tmp_path: Path) -> None:
    """It was titled by the catalog database, so every page of a default lake read "the lake lake"."""
    cfg = load_config(overrides=[f"lake.root={tmp_path / 'harbour-cams'}", "lake.database=lake"])
    page = page_html(cfg, ["<h2>Latest run</h2>"])
    assert "<title>lakelens report: harbour-cams</title>" in page
    assert re.search(r"<h1>[^<]*harbour-cams[^<]*</h1>", page)
    assert html.escape(lake_uri(cfg)) in page and lake_uri(cfg).endswith("/harbour-cams")
    assert "the lake lake" not in page and "the lake <code>" not in page
    remote = load_config(overrides=["lake.root=s3a://bucket/lakes/north/", "lake.database=lake"])
    assert "<title>lakelens report: north</title>" in page_html(remote, [])


def test_a_class_has_the_same_colour_in_the_report_of_every_lake(tmp_path: Path) -> None:
    """The page's key is the configured models' vocabulary: which classes a lake's rows show does not move a colour.
    A key of only a lake's classes would: a class whose own slot an earlier class takes in the full vocabulary
    would get that slot in a lake without the earlier class."""
    cfg = load_config(SCENES, [f"lake.root={tmp_path / 'lake'}", f"models.registry={BUNDLED}"])
    full = colour_key(cfg)
    assert set(SHAPES) <= full.keys() and "background" in full
    assert len(set(full.values())) == len(full)
    moved = [n for n in SHAPES if full[n] != class_colour(n)] or SHAPES[-2:]  # lost their own slot to another
    for lake in (moved, SHAPES[:3], [SHAPES[0], *moved]):
        assert colour_key(cfg, lake) == full
    # A class no configured model declares (another model's rows) gets a colour of its own; the others keep theirs.
    extra = colour_key(cfg, ["kayak", "aardvark"])
    assert {k: v for k, v in extra.items() if k in full} == full
    assert len(set(extra.values())) == len(extra) == len(full) + 2
