"""The lake's model registry: ``python -m jobs.models install [NAME ...] | list | show NAME | register FILE``.

``install`` puts the models that come with lakelens into the lake's registry: the small scene models of
``models/default/`` (classifier, detector, segmenter, captioner, embedder) and the ImageNet-pretrained photo models
(``mobilenet-v2-imagenet``, ``efficientnet-lite0-imagenet``: classify with 1000 classes, embed with pooled
features), each only where the registry has no model of that name, so it never replaces a user's own; with no NAME
it installs them all. ``list`` prints each model of the registry with its versions, one line each; ``show`` one
model's manifest. ``register FILE --manifest M`` adds a model trained elsewhere (``models.model_files``: this
project's safetensors, a torchvision-style ``.pth`` state dict, or an ONNX graph), checked against its manifest.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.errors import InputError
from lakelens.lake import registry_root
from models.model_files import register_model
from models.pretrained import install_models, installable
from models.registry import model_names, read_manifest, versions


def transform_listing(registry: str) -> list[str]:
    """One line per model of the registry at ``registry``: its name, versions and the latest one's architecture."""
    lines = []
    for name in model_names(registry):
        latest = read_manifest(registry, name)
        found = ", ".join(f"v{v}" for v in sorted(versions(registry, name)))
        lines.append(f"{name}: {found} (latest {latest.version}: {latest.architecture})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.models", __doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("install", "list", "show", "register"),
        help="install: models that come with lakelens into the lake's registry; list: the registry's models; "
        "show NAME[:vN]: one model's manifest; register FILE --manifest M: a model trained elsewhere",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"install: the models to install (default: all: {', '.join(installable())}); show: a model NAME or "
        "NAME:vN; register: the model FILE (.safetensors, .pth/.pt state dict, .onnx)",
    )
    parser.add_argument("--manifest", help="register: the model's manifest (JSON; README.md, 'Your own model')")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    registry = registry_root(cfg)
    if args.command == "list":
        print("\n".join(transform_listing(str(registry))) or f"no models in the registry at {registry}")
        return 0
    if args.command == "show":
        if len(args.names) != 1:
            raise InputError("show takes one model: python -m jobs.models show NAME[:vN]")
        name, _, version = args.names[0].partition(":")
        print(read_manifest(registry, name, version or None).to_json())
        return 0
    if args.command == "register":
        if len(args.names) != 1 or not args.manifest:
            raise InputError("register takes one model file and its manifest: register FILE --manifest MANIFEST.json")
        entry = register_model(registry, args.names[0], args.manifest)
        print(f"registered {entry.name} {entry.version} ({entry.architecture}) in {registry}")
        return 0
    unknown = sorted(set(args.names) - set(installable()))
    if unknown:
        raise InputError(f"no model named {', '.join(unknown)} comes with lakelens: it has {', '.join(installable())}")
    before = set(model_names(registry))
    copied = install_models(registry, names=args.names or None)
    for entry in copied:
        print(f"installed {entry.name} {entry.version} ({entry.architecture}) into {registry}")
    for name in sorted(set(args.names or installable()) & before):
        print(f"kept {name}: the registry at {registry} already has a model of that name")
    return 0


if __name__ == "__main__":
    run_job(main)
