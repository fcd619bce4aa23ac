"""Every option of every job says what it does in --help."""

from __future__ import annotations

import argparse
import importlib

import pytest

from jobs.launch import JOBS


@pytest.mark.parametrize("job", [*JOBS, "demo"])
def test_every_option_has_help_text(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsers: list[argparse.ArgumentParser] = []

    def captured(self: argparse.ArgumentParser, *args, **kwargs):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", captured)
    with pytest.raises(SystemExit):
        importlib.import_module(f"jobs.{job}").main([])
    silent = [a.dest for a in parsers[0]._actions if not a.help]
    assert silent == []
