"""How the dashboard shows a task value: pretty JSON, UTF-8 text or a hex dump.

Values are bytes from anyone who can insert a task, so nothing here produces HTML:
templates escape the text this returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from queues.entroq.tasks import parse_json

# A hex dump is four times the size of its bytes; this many is enough to recognise one.
HEX_DUMP_BYTES = 16 * 1024
PREVIEW_CHARS = 80


@dataclass(frozen=True)
class ShownValue:
    """A value as the task page shows it."""

    size: int
    #: "empty", "json", "text", "binary" or "large" (over the inline limit: download only)
    kind: str
    text: str = ""
    #: The text shows only the first bytes of the value.
    cut: bool = False


def show(value: bytes, inline_limit: int) -> ShownValue:
    """Return how to show ``value``, inlining at most ``inline_limit`` bytes."""
    size = len(value)
    if not size:
        return ShownValue(size, "empty")
    if size > inline_limit:
        return ShownValue(size, "large")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return ShownValue(size, "binary", hex_dump(value[:HEX_DUMP_BYTES]), size > HEX_DUMP_BYTES)
    try:
        parsed = parse_json(text)
        pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or too deep to print as such
        return ShownValue(size, "text", text)
    return ShownValue(size, "json", pretty)


def hex_dump(data: bytes) -> str:
    """Return ``data`` as lines of offset, 16 hex bytes and their printable ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        hex_part = " ".join(f"{byte:02x}" for byte in row)
        ascii_part = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in row)
        lines.append(f"{offset:08x}  {hex_part:<47}  |{ascii_part}|")
    return "\n".join(lines)


def preview(value: bytes, chars: int = PREVIEW_CHARS) -> str:
    """Return a one-line excerpt of ``value`` for lists (invalid UTF-8 replaced)."""
    text = " ".join(value.decode("utf-8", "replace").split())
    return text if len(text) <= chars else text[: chars - 1] + "…"
