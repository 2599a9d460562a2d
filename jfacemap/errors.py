"""The one base class of jfacemap's user-facing errors.

A `JfacemapError` says the *input* is wrong (a file, an argument, a setting)
and its message, one line, says which and how. The `jfacemap` command prints
these (and OS errors) as one line, `jfacemap: error: ...`; any other exception
is a bug and keeps its traceback. It is a ValueError, so code that catches
ValueError keeps working.

Library messages name the function's parameters, not the command's flags.
"""

from __future__ import annotations

__all__ = ["JfacemapError"]


class JfacemapError(ValueError):
    """Bad user input; the message is one line naming the file or parameter at fault."""
