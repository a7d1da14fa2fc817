"""Every page: a login and a role first, never cached, regions for htmx, a strict
security policy."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import URLPattern, reverse
from django.urls.resolvers import RoutePattern
from pytest_django.fixtures import Settings

from queues import urls
from queues.entroq import EntroQ
from queues.models import BulkRun
from tests.queues.views.helpers import html, htmx, insert

# Who may see what.

PAGES = ["/", "/claims", "/audit", "/queue/jobs", f"/tasks/{uuid.uuid4()}"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_pages_need_a_login_without_the_sites_login_middleware(
    client: Client, settings: Settings
) -> None:
    # As in a project of its own, whose LOGIN_URL is elsewhere.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "LoginRequired" not in m]
    settings.LOGIN_URL = "/sign-in/"
    for path in [*PAGES, "/go?q=jobs"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == "/sign-in/?next=" + quote(path, safe="/"), path
    refreshed = client.get("/claims", headers={**htmx("claims"), "HX-Current-URL": "/claims"})
    assert refreshed["HX-Redirect"] == "/sign-in/?next=/claims"
    assert client.post(f"/tasks/{uuid.uuid4()}/retry").status_code == 302


@pytest.mark.django_db
def test_actions_check_csrf_without_the_sites_csrf_middleware(
    operator: Client, settings: Settings
) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Csrf" not in m]
    checked = Client(enforce_csrf_checks=True)
    checked.cookies = operator.cookies
    assert checked.post(f"/tasks/{uuid.uuid4()}/retry").status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_a_user_without_a_role_sees_no_page(nobody: Client, path: str) -> None:
    assert nobody.get(path).status_code == 403


def test_a_viewer_reads_stats_and_metadata_but_not_values(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash, value=b'{"secret": "s3cr3t"}')

    assert "jobs" in html(viewer.get("/"))
    page = html(viewer.get("/queue/jobs"))
    assert str(task.id)[:8] in page
    assert "s3cr3t" not in page
    task_page = viewer.get(f"/tasks/{task.id}")
    assert "s3cr3t" not in html(task_page)
    assert "Can see task values" in html(task_page)
    assert viewer.get(f"/tasks/{task.id}/value").status_code == 403
    assert viewer.get(f"/tasks/{task.id}/edit").status_code == 403


def test_a_viewer_cannot_act_even_by_posting_directly(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash)
    for action in ("retry", "release", "move", "delete"):
        data = {"version": task.version, "queue": "elsewhere", "confirmed": "yes"}
        assert viewer.post(f"/tasks/{task.id}/{action}", data).status_code == 403
        assert viewer.post(f"/tasks/{action}", {"task": f"{task.id}:0"}).status_code == 403
    assert dash.tasks("jobs") == [task]


def test_an_expired_session_sends_htmx_to_the_login_page(client: Client) -> None:
    headers = {**htmx("queues"), "HX-Current-URL": "http://testserver/queue/a?state=claimed"}
    response = client.get("/?refresh=5", headers=headers)
    assert response["HX-Redirect"] == "/accounts/login/?next=/queue/a%3Fstate%3Dclaimed"


# Pages in general.


def test_pages_send_a_strict_security_policy(viewer: Client) -> None:
    response = viewer.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce
    assert f'nonce="{nonce[1]}"' in html(response)
    config = re.search(r"name=\"htmx-config\" content='([^']+)'", html(response))
    assert config
    assert json.loads(config[1])["allowEval"] is False
    assert " style=" not in html(response)


@pytest.mark.parametrize(
    ("path", "region"),
    [
        ("/", "queues"),
        ("/queue/p", "tasks"),
        ("/tasks/{id}", "task"),
        ("/claims", "claims"),
        ("/audit", "entries"),
    ],
)
def test_each_page_serves_its_region_to_htmx_and_the_whole_page_otherwise(
    operator: Client, dash: EntroQ, path: str, region: str
) -> None:
    task = insert(dash, "p")
    url = path.format(id=task.id)
    full = html(operator.get(url))
    assert full.startswith("<!doctype html>")
    assert f'id="{region}"' in full
    partial = html(operator.get(url, headers=htmx(region)))
    assert partial.lstrip().startswith(f'<section id="{region}"')
    assert "<html" not in partial


# Never cached.


def test_every_dashboard_url_forbids_caching_its_answers(supervisor: Client, dash: EntroQ) -> None:
    task = insert(dash, "jobs")
    run = BulkRun.objects.create(
        username="supervisor", action="retry", queue="jobs", status=BulkRun.Status.DONE
    )
    arguments = {"name": "jobs", "id": task.id, "pk": run.pk, "key_id": "x", "action": "retry"}
    seen = 0
    for pattern in urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        assert isinstance(pattern.pattern, RoutePattern)
        kwargs = {name: arguments[name] for name in pattern.pattern.converters}
        path = reverse(f"queues:{pattern.name}", kwargs=kwargs)
        # A GET of a page, or the 405 of an action: neither may be kept by any cache.
        response = supervisor.get(path)
        assert response.status_code in (200, 302, 404, 405), path
        cache_control = response["Cache-Control"]
        assert "no-cache" in cache_control, path
        assert "no-store" in cache_control, path
        seen += 1
    assert seen == len(urls.urlpatterns) > 20
