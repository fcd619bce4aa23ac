"""The defaults are for photos: base.yaml runs the pretrained photo models, which a writer job installs where the
registry lacks them; conf/scenes.yaml (the demo's setup) runs the scene models."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SCENES

from lakelens.cli import config_from_args, job_parser
from lakelens.config import SCENES_CONFIG, load_config
from models.registry import RegistryError, model_names
from stages.annotate import checked_manifest, install_missing_models

SCENE_MODELS = {
    "classify": "classifier", "detect": "detector", "segment": "segmenter", "caption": "captioner", "embed": "embedder",
    "search": "text-image", "colourise": "colouriser", "autoencode": "autoencoder",
}  # fmt: skip


def test_base_runs_the_photo_models_and_scenes_yaml_the_scene_models() -> None:
    photos = load_config()
    assert photos.annotate.tasks == ("classify", "embed")
    assert {t: photos.annotate.models[t] for t in photos.annotate.tasks} == {
        "classify": "efficientnet-lite0-imagenet",
        "embed": "mobilenet-v2-imagenet",
    }
    assert photos.annotate.precision == "float32"
    scenes = load_config(SCENES)
    assert scenes.annotate.tasks == tuple(SCENE_MODELS)  # every task, each by its scene model
    assert dict(scenes.annotate.models) == SCENE_MODELS


def test_the_demo_s_config_is_the_scene_setup_under_the_user_s_own_settings() -> None:
    args = job_parser("jobs.demo", "").parse_args(["--set", "annotate.models.embed=mine"])
    cfg = config_from_args(args, defaults=[SCENES_CONFIG])
    assert cfg.annotate.tasks == tuple(SCENE_MODELS)
    assert dict(cfg.annotate.models) == SCENE_MODELS | {"embed": "mine"}
    assert cfg.spark.conf["spark.sql.adaptive.enabled"] == "false"  # local.yaml still applies


def test_a_missing_photo_default_is_installed_and_another_missing_model_keeps_its_error(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f"models.registry={tmp_path / 'registry'}"])
    installed = install_missing_models(cfg, ["embed"])
    assert [(m.name, m.version) for m in installed] == [("mobilenet-v2-imagenet", "v1")]
    assert model_names(tmp_path / "registry") == ["mobilenet-v2-imagenet"]
    assert checked_manifest(cfg, "embed").architecture == "mobilenet_v2"
    assert install_missing_models(cfg, ["embed"]) == []  # there now: nothing to do

    for model in ("my-embedder", "embedder:v9"):  # not one that comes with lakelens; a version of one
        named = load_config(overrides=[f"models.registry={tmp_path / 'registry'}", f"annotate.models.embed={model}"])
        assert install_missing_models(named, ["embed"]) == []
        with pytest.raises(RegistryError, match=r"embed: no (model|version) .* To fix: train one \(python -m"):
            checked_manifest(named, "embed")
    assert model_names(tmp_path / "registry") == ["mobilenet-v2-imagenet"]
