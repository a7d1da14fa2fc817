"""The kind of a task's error: its text with what varies between failures taken out.

IDs, timestamps, long hex strings and long numbers differ from one failure to the
next; short numbers (HTTP 503, errno 13) tell kinds apart and stay. The Django backend
stores each task's kind beside its error, so an error queue of any size is grouped
by kind in one query, and the dashboard's triage never reads error texts.
"""

from __future__ import annotations

import re

#: The longest kind, in characters; longer kinds are cut.
MAX_KIND = 300
NORMALIZERS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<id>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\d{4,}|\d+\.\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def error_kind(err: str) -> str:
    """Return the kind of the error ``err``; "" for no error.

    A many-line error (a traceback) is known by its first and last lines: the last
    names the exception, which a cut of the whole text would lose.
    """
    if not err:
        return ""
    lines = [line for line in err.splitlines() if line.strip()]
    if len(lines) > 2:
        err = f"{lines[0][:MAX_KIND]} … {lines[-1][:MAX_KIND]}"
    err = err[: 4 * MAX_KIND]  # what is cut here cannot reach the kind anyway
    for pattern, replacement in NORMALIZERS:
        err = pattern.sub(replacement, err)
    return err.strip()[:MAX_KIND]
