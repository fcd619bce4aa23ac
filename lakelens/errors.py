"""Errors that a user's input caused (a source, a lake path, a query, a model file), as opposed to a failure of the
job: the job stops before it starts any work and says in one line what to do, with no traceback."""

from __future__ import annotations


class InputError(Exception):
    """The job's input is wrong; the message says what it is and what to do about it."""

    @property
    def label(self) -> str:
        """The name a user sees before the message: the class's, or the builtin error it also is."""
        generic = (Exception, BaseException, object)
        builtin = next((c for c in type(self).__mro__ if c.__module__ == "builtins" and c not in generic), None)
        return (builtin or type(self)).__name__


class SourceNotFoundError(InputError, FileNotFoundError):
    """``--source`` names nothing that exists."""
