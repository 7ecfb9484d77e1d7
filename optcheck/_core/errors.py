"""The exception classes of optcheck: ``except optcheck.Error`` catches every one of them."""

from __future__ import annotations

__all__ = ["Error", "UsageError", "UsageTypeError"]


class Error(Exception):
    """The base class of every exception optcheck raises on purpose.

    Subclasses also derive from the built-in exception a user would expect, so existing
    ``except ValueError`` / ``except FloatingPointError`` / ``except AssertionError`` code keeps
    working: :class:`UsageError` is a ``ValueError``, :class:`~optcheck.InvariantError` a
    ``FloatingPointError`` and :class:`~optcheck.GradientError` an ``AssertionError``.
    """


class UsageError(Error, ValueError):
    """A call to optcheck was given a bad argument.

    The message names the argument (or the key inside it), what was expected and what was given.
    """


class UsageTypeError(UsageError, TypeError):
    """A bad argument of the wrong type (a string where a number was expected, ``None`` for an array).

    Both a :class:`UsageError` (so a ``ValueError``) and a ``TypeError``: ``except TypeError`` and
    ``except ValueError`` written against earlier versions keep working.
    """
