"""The lake's model registry: ``python -m jobs.models install [NAME ...] | list``.

``install`` copies the models that ship with lakelens (``models/default/``: classifier, detector, segmenter,
captioner, embedder) into the lake's registry, each only where the registry has no model of that name, so it never
replaces a user's own; with no NAME it installs them all. ``list`` prints each model of the registry with its
versions, one line each.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.errors import InputError
from lakelens.lake import registry_root
from models.registry import BUNDLED, install_bundled, model_names, read_manifest, versions


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
        choices=("install", "list"),
        help="install: copy bundled models into the lake's registry; list: the registry's models and their versions",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"install: the bundled models to install (default: all: {', '.join(model_names(BUNDLED))})",
    )
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    registry = registry_root(cfg)
    if args.command == "list":
        print("\n".join(transform_listing(str(registry))) or f"no models in the registry at {registry}")
        return 0
    unknown = sorted(set(args.names) - set(model_names(BUNDLED)))
    if unknown:
        raise InputError(
            f"no bundled model named {', '.join(unknown)}: the bundled ones are {', '.join(model_names(BUNDLED))}"
        )
    before = set(model_names(registry))
    copied = install_bundled(registry, names=args.names or None)
    for entry in copied:
        print(f"installed {entry.name} {entry.version} ({entry.architecture}) into {registry}")
    for name in sorted(set(args.names or model_names(BUNDLED)) & before):
        print(f"kept {name}: the registry at {registry} already has a model of that name")
    return 0


if __name__ == "__main__":
    run_job(main)
