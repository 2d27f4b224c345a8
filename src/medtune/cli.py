"""What the thin entry scripts share: turning user errors into one clear line and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue

from medtune.errors import MedtuneError

USER_ERROR_EXIT = 2


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print `medtune: error: <message>` and exit 2 for errors the user can fix; re-raise bugs."""
    try:
        yield
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err)
        _fail(f"config value {key} is required (it is ??? in its YAML): pass {key}=<value> on the command line")
    except MedtuneError as err:
        _fail(str(err))


def _fail(message: str) -> None:
    print(f"medtune: error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)
