"""The operator dashboard: pages and actions over the client API (``queues.entroq``).

Each page is one URL. An htmx request aimed at one of a page's regions (its
``HX-Target``) gets only that region, ``template.html#region``; every other request
gets the whole page, so the dashboard works without JavaScript. Actions are POSTs
that carry the task versions the operator saw: a task that changed since is reported
as a conflict and left alone. After an action the browser is redirected (303) to the
page it came from, which htmx follows and swaps in.

Every view is declared with ``base.dashboard_view``: its permissions, its methods, and
never a cached response. What the pages list (queue rows, pages of tasks, searches)
is ``queues.browsing``'s; the permissions are ``queues.permissions``'s, the actions
and their wording ``queues.actions``'s.

- ``queues``: the overview of every queue, and the tasks held right now;
- ``tasks``: a queue's tasks, one task, its value, and going to either;
- ``actions``: retry, release, move, delete and edit;
- ``audit``, ``tokens``, ``bulk``, ``triage``: the audit log, API tokens, bulk runs
  and error triage.
"""

from queues.browsing import encode_cursor
from queues.views.actions import bulk_action, task_action, task_edit
from queues.views.audit import audit_log
from queues.views.bulk import bulk_cancel, bulk_plan, bulk_run, bulk_runs, bulk_start
from queues.views.queues import claims, overview
from queues.views.tasks import go, queue, task, task_value
from queues.views.tokens import api_tokens, revoke_api_token
from queues.views.triage import error_triage

__all__ = [
    "api_tokens",
    "audit_log",
    "bulk_action",
    "bulk_cancel",
    "bulk_plan",
    "bulk_run",
    "bulk_runs",
    "bulk_start",
    "claims",
    "encode_cursor",
    "error_triage",
    "go",
    "overview",
    "queue",
    "revoke_api_token",
    "task",
    "task_action",
    "task_edit",
    "task_value",
]
