"""User-facing errors: each message names the file, line or config key at fault.

Entry scripts turn these into one clear line on stderr and exit status 2 (see medtune.cli);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedtuneError(Exception):
    """Bad input or configuration that the user can fix; the message says how."""


class ConfigError(MedtuneError, ValueError):
    """A config that cannot run; the message names the keys and why."""


class DataError(MedtuneError, ValueError):
    """A bad data file or record, located by file, line and field."""

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        where = ":".join(str(p) for p in (path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field!r})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.path, self.line, self.field = path, line, field
