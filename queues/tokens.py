"""API tokens: created for a user, limited to actions on queue prefixes, stored hashed.

A token reads ``eq_<key id>_<secret>``. The key ID finds the token; the SHA-256 of the
whole token is compared in constant time. Secrets have 256 bits of entropy, so a
plain hash is enough (a slow password hash would only slow every request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from queues.conf import app_settings
from queues.entroq.pauses import split_patterns
from queues.models import ApiToken
from queues.permissions import TOKEN_READ, TOKEN_WRITE

ACTIONS = ("read", "claim", "insert", "change", "delete", "pause")
PREFIX = "eq_"
LAST_USED_EVERY = timedelta(minutes=1)


class Forbidden(Exception):
    """The token may not do what the request asks."""


@dataclass(frozen=True)
class Grant:
    """Actions allowed on every queue whose name starts with ``prefix`` ("" for all)."""

    prefix: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Grant:
        """Parse ``PREFIX=ACTION,ACTION`` (``=read`` grants reading every queue).

        The actions follow the last ``=``: a prefix may hold one, as queue names may.
        """
        prefix, sep, actions = text.rpartition("=")
        if not sep:
            raise ValueError(f"a grant reads PREFIX=ACTION,ACTION (got {text!r})")
        if "\x00" in prefix:
            raise ValueError("a grant's prefix must not contain NUL characters")
        wanted = frozenset(a.strip() for a in actions.split(",") if a.strip())
        if not wanted:
            raise ValueError(f"the grant {text!r} names no action")
        unknown = wanted - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown action {sorted(unknown)[0]!r}; use {', '.join(ACTIONS)}")
        return cls(prefix.strip(), wanted)

    def __str__(self) -> str:
        return f"{self.prefix}={','.join(a for a in ACTIONS if a in self.actions)}"

    def as_json(self) -> dict[str, object]:
        return {"prefix": self.prefix, "actions": [a for a in ACTIONS if a in self.actions]}


def grants_of(token: ApiToken) -> list[Grant]:
    return [Grant(g["prefix"], frozenset(g["actions"])) for g in token.grants]


def allows(token: ApiToken, action: str, queue: str) -> bool:
    """Return whether ``token`` may do ``action`` on ``queue`` (and its user still may).

    A pattern (``billing/*``, ``*``) is every queue under its prefix: the token needs
    the action on all of them, so a grant's prefix must start the pattern's.
    """
    return allows_under(token, action, _area(queue))


def allows_under(token: ApiToken, action: str, prefix: str) -> bool:
    """Return whether ``token`` may do ``action`` on every queue that starts with
    ``prefix`` (and its user still may)."""
    if not _user_may(token.user, action):
        return False
    return any(prefix.startswith(g.prefix) and action in g.actions for g in grants_of(token))


def sees(token: ApiToken, queue: str) -> bool:
    """Return whether ``token`` has any grant at all for ``queue`` (or all of a pattern's)."""
    area = _area(queue)
    return any(area.startswith(g.prefix) for g in grants_of(token))


def _area(queue: str) -> str:
    """Return the queue, or the prefix of every queue a pattern names."""
    _, prefixes = split_patterns([queue])
    return prefixes[0] if prefixes else queue


def readable_prefixes(token: ApiToken) -> tuple[str, ...]:
    """Return the prefixes of the queues ``token`` may read ("" for all)."""
    if not _user_may(token.user, "read"):
        return ()
    return tuple(dict.fromkeys(g.prefix for g in grants_of(token) if "read" in g.actions))


def require(token: ApiToken, action: str, queues: Iterable[str]) -> None:
    """Raise ``Forbidden`` unless ``token`` may do ``action`` on every one of ``queues``."""
    for queue in queues:
        if not allows(token, action, queue):
            raise Forbidden(f"this token may not {action} in queue {queue!r}")


def _user_may(user: AbstractBaseUser, action: str) -> bool:
    # What the user must be allowed in the dashboard for its token to do ``action``.
    needed = TOKEN_READ if action == "read" else TOKEN_WRITE
    return bool(user.is_active and user.has_perms(needed))  # type: ignore[attr-defined]


def create(user: AbstractBaseUser, name: str, grants: Sequence[Grant]) -> tuple[ApiToken, str]:
    """Create a token for ``user`` and return it with its secret, which is shown only now.

    Raise ``ValueError`` if a grant allows more than the user may do in the dashboard.
    """
    name = name.strip()
    if not name:
        raise ValueError("a token needs a name")
    if "\x00" in name:
        raise ValueError("a token's name must not contain NUL characters")
    if not grants:
        raise ValueError("a token needs at least one grant")
    for grant in grants:
        for action in grant.actions:
            if not _user_may(user, action):
                raise ValueError(
                    f"{user.get_username()} may not {action} tasks, so neither may a token"
                )
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user_id=user.pk,
        name=name[:100],
        key_id=key_id,
        key_hash=_hash(secret),
        claimant=uuid.uuid4(),
        grants=[g.as_json() for g in grants],
    )
    return token, secret


_recent: dict[str, tuple[float, ApiToken]] = {}
_recent_lock = threading.Lock()


def authenticate(secret: str) -> ApiToken | None:
    """Return the live token ``secret`` is, or None.

    A token found is remembered for ``API_TOKEN_CACHE_SECONDS`` with its user's
    permissions, so a busy worker's requests cost no lookups; revoking a token, or
    taking a role away, reaches the other server processes within that time.
    """
    hashed = _hash(secret)
    now = time.monotonic()
    with _recent_lock:
        remembered = _recent.get(hashed)
    if remembered is not None and now - remembered[0] < app_settings().API_TOKEN_CACHE_SECONDS:
        return remembered[1]
    token = _find(secret, hashed)
    with _recent_lock:
        if token is None:
            _recent.pop(hashed, None)
        else:
            if len(_recent) > 10_000:
                _recent.clear()
            _recent[hashed] = (now, token)
    return token


def _find(secret: str, hashed: str) -> ApiToken | None:
    if not secret.startswith(PREFIX):
        return None
    key_id = secret[len(PREFIX) :].partition("_")[0]
    token = (
        ApiToken.objects.select_related("user").filter(key_id=key_id, revoked__isnull=True).first()
    )
    if token is None or not hmac.compare_digest(token.key_hash, hashed):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token


def revoke(token: ApiToken) -> None:
    """Revoke ``token``: at once in this process, within the cache time in others."""
    if token.revoked is None:
        token.revoked = timezone.now()
        token.save(update_fields=["revoked"])
    with _recent_lock:
        for key, (_, remembered) in list(_recent.items()):
            if remembered.pk == token.pk:
                del _recent[key]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
