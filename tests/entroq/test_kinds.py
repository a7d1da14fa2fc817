"""Error kinds: what varies between failures of one kind taken out."""

from __future__ import annotations

import pytest

from queues.entroq.kinds import error_kind


@pytest.mark.parametrize(
    ("err", "key"),
    [
        ("timeout after 30 s (request 4411)", "timeout after 30 s (request <n>)"),
        ("task 6f1c2a34-1111-4a2b-9c3d-0123456789ab not found", "task <id> not found"),
        ("at 2026-11-29T02:15:00.123Z: disk full", "at <time>: disk full"),
        ("bad checksum deadbeefcafe  in\n  block 7", "bad checksum <hex> in block 7"),
        ("HTTP 503 from billing", "HTTP 503 from billing"),
        (
            "Traceback (most recent call last):\n  File x, line 12\nKeyError: 'sku'",
            "Traceback (most recent call last): … KeyError: 'sku'",
        ),
        ("", ""),
    ],
)
def test_errors_are_normalized_to_their_kind(err: str, key: str) -> None:
    assert error_kind(err) == key
