"""Errors that stop a job before or instead of its work for a reason the user can act on (a source, a lake path, a
query, a model file, a lake another job holds), as opposed to a failure of the job itself: the job says in one line
what is wrong and what to do, with no traceback."""

from __future__ import annotations


class InputError(Exception):
    """The job cannot run as asked; the message says why and what to do about it. ``label`` names it for the
    user (default: the class's name)."""

    def __init__(self, message: str, label: str | None = None) -> None:
        super().__init__(message)
        self._label = label

    @property
    def label(self) -> str:
        """The name a user sees before the message."""
        return self._label or type(self).__name__


class SourceNotFoundError(InputError, FileNotFoundError):
    """``--source`` names nothing that exists."""

    @property
    def label(self) -> str:
        return "FileNotFoundError"
