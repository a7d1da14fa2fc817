"""The API's undo: GET /undoable and POST /undo, with the grants the undo needs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User

from queues import bulk, undo
from queues.entroq import EntroQ, Task, inserting_into, ops
from queues.models import AuditEntry, Undoable
from queues.service import client
from tests.conftest import Api

pytestmark = pytest.mark.django_db(transaction=True)


def kept(action: str, tasks: list[Task], *, forced: bool = False) -> Undoable:
    """Delete (or move to ``elsewhere``) ``tasks`` as an operator would: kept for undo."""
    keeping = undo.begin(client(), action, username="operator", forced=forced)
    assert keeping is not None
    act = ops.delete if action == "delete" else ops.moving("elsewhere")
    result = ops.apply_to_versions(keeping, [t.id_version() for t in tasks], act, values=True)
    assert len(result.done) == len(tasks)
    undoable = keeping.finish()
    assert undoable is not None
    return undoable


def fill(queue: str, count: int = 1) -> list[Task]:
    return EntroQ().modify(*(inserting_into(queue, value=b"v") for _ in range(count)))[0]


def test_a_token_lists_what_it_may_read_and_undoes_a_delete(
    make_api: Callable[..., Api],
) -> None:
    billing = kept("delete", fill("billing/cards", 2) + fill("billing/refunds"))
    mail = kept("delete", fill("mail"))
    api = make_api("billing/=read,insert")

    listed = api.get("undoable").json()["undoable"]
    done = api.post("undo", {"undoable": billing.pk})

    assert [u["id"] for u in listed] == [billing.pk], "not mail's"
    assert listed[0] | {"created": None} == {
        "id": billing.pk,
        "created": None,
        "user": "operator",
        "action": "delete",
        "scope": "billing/",
        "forced": False,
        "remaining": 3,
        "undone": None,
    }
    assert done.status_code == 200
    assert (len(done.json()["done"]), done.json()["conflicts"], done.json()["remaining"]) == (
        3,
        [],
        0,
    )
    assert EntroQ().queues(match_prefix="billing/") == {"billing/cards": 2, "billing/refunds": 1}
    entry = AuditEntry.objects.get(action="undo")
    assert entry.username == "root"
    assert api.get("undoable").json()["undoable"][0]["remaining"] == 0
    assert api.post("undo", {"undoable": mail.pk}).status_code == 404, "unseen is missing"


@pytest.mark.parametrize(
    ("action", "grants"),
    [
        ("delete", ["billing/=read,change,delete"]),  # no insert to put back
        ("delete", ["billing/cards=read,insert"]),  # not over all it touched
        ("move", ["=read,insert,delete"]),  # a move is undone by a change
    ],
)
def test_an_undo_beyond_the_token_s_grants_is_403(
    make_api: Callable[..., Api], action: str, grants: list[str]
) -> None:
    undoable = kept(action, fill("billing/cards") + fill("billing/refunds"))

    response = make_api(*grants).post("undo", {"undoable": undoable.pk})

    assert response.status_code == (404 if grants[0].startswith("billing/cards") else 403)
    assert undo.pending(undoable) == 2
    assert not AuditEntry.objects.filter(action="undo").exists()


def test_a_forced_action_is_undone_only_by_a_user_who_may_force(
    make_api: Callable[..., Api],
) -> None:
    undoable = kept("delete", fill("jobs"), forced=True)
    operator = User.objects.create_user("operator")
    operator.groups.add(*Group.objects.filter(name__in=["EntroQ viewers", "EntroQ operators"]))

    refused = make_api("=read,insert", user=operator).post("undo", {"undoable": undoable.pk})
    allowed = make_api("=read,insert").post("undo", {"undoable": undoable.pk})

    assert refused.status_code == 403
    assert "force" in refused.json()["message"]
    assert allowed.status_code == 200
    assert len(allowed.json()["done"]) == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"undoable": "1"}, {"undoable": 0}, {"undoable": True}, {"undoable": 2**70}, {"x": 1}],
)
def test_a_bad_undo_body_is_400(api: Api, body: dict[str, object]) -> None:
    response = api.post("undo", body)
    assert response.status_code == 400, response.content


def test_undo_of_a_bulk_run_still_running_is_409(api: Api, superuser: User) -> None:
    fill("many", 3)
    run = bulk.start(superuser, "delete", bulk.Scope("many"))
    undoable = Undoable.objects.create(
        run=run, username="root", action="delete", scope="many", left=3
    )

    response = api.post("undo", {"undoable": undoable.pk})

    assert response.status_code == 409
    assert "still running" in response.json()["message"]


def test_a_scope_that_differs_only_in_case_is_not_seen(make_api: Callable[..., Api]) -> None:
    secret = kept("delete", fill("BILLING/secret"))
    api = make_api("billing/=read,insert")

    assert api.get("undoable").json()["undoable"] == []
    assert api.post("undo", {"undoable": secret.pk}).status_code == 404
