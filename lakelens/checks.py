"""Checks of a setting's value, shared by the configuration and the task declarations: each returns None when the
value is allowed, else what is allowed ("must be > 0")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def unit(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be in [0, 1]"


def one_of(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def model_ref(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]+(:v\d+)?", value):
        return None
    return "must be a registry model name, optionally with a version: NAME or NAME:vN"
