"""Who may do what: the app's permissions, its roles, and what a token's user needs.

The permissions are those of the ``Task`` model (Django's ``view_task`` and the ones
its ``Meta.permissions`` adds) and of the audit log and API tokens. Every check names
them from here: the dashboard's views, the admin's actions, the API's tokens and the
role groups ``queues.apps`` creates after each migration.
"""

from __future__ import annotations

# Stats and metadata of queues and tasks (Django's own view permission of ``Task``).
VIEW = "queues.view_task"
# Task values, which may hold personal data.
VIEW_VALUE = "queues.view_task_value"
# Retry, release, move, edit and delete tasks.
OPERATE = "queues.operate_task"
# Act on tasks that another claimant holds.
FORCE = "queues.force_task"
# The audit log.
VIEW_AUDIT = "queues.view_auditentry"
# Any user's API tokens (the admin's change permission): revoke them from the dashboard.
CHANGE_TOKENS = "queues.change_apitoken"


def codename(permission: str) -> str:
    """Return the codename of ``permission`` (``"queues.force_task"`` -> ``"force_task"``)."""
    return permission.partition(".")[2]


# The dashboard's roles, group name -> permission codenames; each role holds the
# permissions of the ones before it.
ROLES: dict[str, list[str]] = {
    "EntroQ viewers": [codename(VIEW), codename(VIEW_AUDIT)],
    "EntroQ operators": [codename(VIEW_VALUE), codename(OPERATE)],
    "EntroQ supervisors": [codename(FORCE)],
}

# What a token's user must be allowed in the dashboard for the token to read, and to
# do anything else (claim, insert, change, delete).
TOKEN_READ = (VIEW, VIEW_VALUE)
TOKEN_WRITE = (*TOKEN_READ, OPERATE)
