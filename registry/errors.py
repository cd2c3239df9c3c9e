"""The registry's errors: one base class and a few subclasses that carry what went wrong.

The library raises only these for user mistakes; the CLI turns each into a one-line message
and a non-zero exit. Anything else that escapes is a bug.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry reports to its user. ``code`` names its kind
    for machines (``registry ... --json`` prints ``{"error": code, "detail": message}``)."""

    code = "error"


class InputError(RegistryError):
    """Bad input: a file, a row, a value or a parameter that cannot be used.

    ``source`` names the file and ``row`` the 1-based row, when known; ``param`` the
    parameter of the library's call at fault (``niter``), which the message starts with.
    Messages name parameters as they are spelled in Python, between backquotes (`refine`),
    so that the command line can put its option names in their place.
    """

    code = "input"

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 param: str | None = None):
        self.source = source
        self.row = row
        self.param = param
        self.detail = message
        where = source if source is not None else param
        if where is not None:
            where += (f" row {row}" if row is not None else "") + ": "
        super().__init__((where or "") + message)

    def __reduce__(self):  # pickled whole, as assign's worker processes send it back
        return _rebuild_input, (self.detail, self.source, self.row, self.param)


class NotFoundError(RegistryError):
    """A version, alias, item key or ID that does not exist (``message`` replaces the
    sentence made of the others, for several kinds at once)."""

    code = "not_found"

    def __init__(self, kind: str, what: object, hint: str = "", message: str | None = None):
        self.kind = kind
        self.what = what
        super().__init__(message or f"unknown {kind}: {what!s}" + (f" ({hint})" if hint else ""))

    def __reduce__(self):  # pickled whole, as assign's worker processes send it back
        return type(self), (self.kind, self.what, "", str(self))


class StateError(RegistryError):
    """An action that the current state forbids, e.g. changing a frozen version."""

    code = "state"


class DatabaseError(RegistryError):
    """The database cannot be used: unreachable, not initialised, or at another schema."""

    code = "database"


def extra_hint(extra: str, first: str = "") -> str:
    """How to install one of the package's extras, for an error's hint: from the checkout and
    with its lock (the name `registry` on PyPI is another project's)."""
    before = f"pip install -c constraints.txt {first} && " if first else ""
    return f"{before}pip install -c constraints.txt -e '.[{extra}]' in the registry checkout"


def _rebuild_input(message: str, source: str | None, row: int | None,
                   param: str | None) -> InputError:
    return InputError(message, source=source, row=row, param=param)


def listed(items: list[str], most: int = 5) -> str:
    """Some of ``items`` (keys, say) for a message: quoted, long ones cut, and how many more."""
    text = ", ".join(repr(k if len(k) <= 60 else k[:60] + "...") for k in items[:most])
    return text + (f" and {len(items) - most} more" if len(items) > most else "")
