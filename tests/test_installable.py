"""The app inside another Django project: built as a wheel, installed into a fresh
virtual environment beside a host project of its own, and used there for real.

The host has its own app and custom user model, its own base and login templates,
its own login URL, middleware order and CSP, and mounts the dashboard under
``/ops/queues/`` and the API under ``/ops/api/``. Nothing of this checkout is on its
path: if the wheel missed a template, a static file or a migration, this fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection
from playwright.sync_api import Browser, expect

from queues.entroq import EntroQ, HTTPBackend
from tests.helpers import ROOT, database_url

pytestmark = [pytest.mark.postgres, pytest.mark.browser, pytest.mark.timeout(900)]

PASSWORD = "a long host password"

SETTINGS = """
import os
from pathlib import Path

from urllib.parse import unquote, urlsplit

from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "host-project-test-key-" + "x" * 40
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "shop",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "queues",
]
# Another order than the EntroQ site's, and a CSP of the host's own.
MIDDLEWARE = [
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "queues.middleware.StatementTimeoutMiddleware",
]
SECURE_CSP = {"default-src": [CSP.SELF], "script-src": [CSP.SELF, CSP.NONCE]}
ROOT_URLCONF = "hostsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]
url = urlsplit(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(url.path[1:]),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "",
        "PORT": url.port or "",
    }
}
AUTH_USER_MODEL = "shop.Customer"
LOGIN_URL = "/sign-in/"
LOGIN_REDIRECT_URL = "/"
STATIC_URL = "/assets/"
USE_TZ = True
TASKS = {"default": {"BACKEND": "queues.tasks_backend.EntroQBackend"}}
"""

URLS = """
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path

from queues import monitoring

urlpatterns = [
    path("", lambda request: HttpResponse("the host's home")),
    path("sign-in/", auth_views.LoginView.as_view(), name="login"),
    path("admin/", admin.site.urls),
    path("ops/queues/", include("queues.urls")),
    path("ops/api/", include("queues.api_urls")),
    path("ops/health", monitoring.healthz),
]
"""

MODELS = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class Customer(AbstractUser):
    loyalty = models.IntegerField(default=0)
"""

TASKS = """
from django.tasks import task


@task
def greet(name):
    return f"hello {name}"


@task
def charge(card):
    raise RuntimeError(f"card {card} declined")
"""

HANDLERS = """
from queues.entroq import MoveTaskError


def charge(task):
    raise MoveTaskError("card declined")
"""

HOST_BASE = """<!doctype html><title>Host</title>
<body>HOST BASE {% block content %}{% endblock %}</body>"""
HOST_LOGIN = """{% extends "base.html" %}{% block content %}
<form method="post">{% csrf_token %}{{ form.as_p }}<button>Sign in</button></form>
{% endblock %}"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def build_host(tmp: Path) -> Path:
    """Write the host project and return its folder."""
    host = tmp / "host"
    write(
        host / "manage.py",
        """
        import os, sys
        from django.core.management import execute_from_command_line
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
        execute_from_command_line(sys.argv)
        """,
    )
    write(host / "hostsite" / "__init__.py", "")
    write(host / "hostsite" / "settings.py", SETTINGS)
    write(host / "hostsite" / "urls.py", URLS)
    write(host / "shop" / "__init__.py", "")
    write(host / "shop" / "models.py", MODELS)
    write(host / "shop" / "tasks.py", TASKS)
    write(host / "shop" / "handlers.py", HANDLERS)
    write(host / "shop" / "migrations" / "__init__.py", "")
    write(host / "templates" / "base.html", HOST_BASE)
    write(host / "templates" / "registration" / "login.html", HOST_LOGIN)
    return host


def build_wheel(tmp: Path) -> Path:
    """Build the wheel from a copy of what it is made of (no build files in the checkout)."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    skipped = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "queues", source / "queues", ignore=skipped)
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), "."],
        cwd=source,
        check=True,
    )
    (wheel,) = wheels.glob("*.whl")
    return wheel


@pytest.fixture
def host_database() -> Iterator[str]:
    """Yield the URL of a new, empty database on the test's PostgreSQL server."""
    name = f"host_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    settings = connection.settings_dict
    yield database_url().rsplit("/", 1)[0] + "/" + quote(name)
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert settings  # the test database itself is left as it was


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_host_project_runs_the_app_from_its_wheel(
    tmp_path: Path,
    host_database: str,
    browser: Browser,
) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    host = build_host(tmp_path)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    env.update(DATABASE_URL=host_database, PYTHONDONTWRITEBYTECODE="1")

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [python, "manage.py", *args], cwd=host, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def shell(code: str) -> str:
        return manage("shell", "--no-imports", "-c", textwrap.dedent(code)).stdout.strip()

    # The app comes from the wheel, not from this checkout.
    where = shell("import queues; print(queues.__file__)")
    assert where.startswith(str(venv)), where
    checked = manage("check")
    assert "System check identified no issues" in checked.stdout, checked.stdout + checked.stderr

    manage("makemigrations", "shop")
    manage("migrate", "--no-input")

    # django.tasks on EntroQ: enqueue, run with the project's own eqworker, read results.
    ids = json.loads(
        shell(
            """
            import json
            from shop.tasks import charge, greet
            print(json.dumps([greet.enqueue("host").id, charge.enqueue("4242").id]))
            """
        )
    )
    manage("eqworker", "--django-tasks", "--batch")
    outcome = json.loads(
        shell(
            f"""
            import json
            from shop.tasks import charge, greet
            done, failed = greet.get_result({ids[0]!r}), charge.get_result({ids[1]!r})
            print(json.dumps([done.status, done.return_value, failed.status]))
            """
        )
    )
    assert outcome == ["SUCCESSFUL", "hello host", "FAILED"]

    # A worker of the project's own that fails its task into the error queue.
    payment = shell(
        """
        from queues import entroq
        inserted, _ = entroq.EntroQ().modify(entroq.inserting_into("payments", value=b"{}"))
        print(inserted[0].id)
        """
    )
    manage("eqworker", "--handler", "shop.handlers.charge", "--queue", "payments", "--batch")

    # A user of the host's own model, in the roles migrate created.
    shell(
        f"""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        user = get_user_model().objects.create_user("olga", password={PASSWORD!r}, loyalty=3)
        user.groups.add(*Group.objects.filter(name__in=["EntroQ viewers", "EntroQ operators"]))
        """
    )
    secret = manage(
        "eqtoken", "create", "--user", "olga", "--name", "reader", "--grant", "=read"
    ).stdout.split()[-1]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=host,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(base + "/ops/health")
        # The mounted API, through this checkout's client.
        api = EntroQ(HTTPBackend(base + "/ops/api/", token=secret))
        assert [str(task.id) for task in api.tasks("django-tasks/default/err")] == [ids[1]]
        assert len(api.tasks("payments/err")) == 1
        with urllib.request.urlopen(base + "/ops/api/openapi.json") as answer:
            assert json.load(answer)["servers"] == [{"url": base + "/ops/api"}]

        page = browser.new_page()
        page.set_default_timeout(15_000)
        refused: list[str] = []
        page.on("console", lambda message: refused.append(message.text))
        page.goto(base + "/ops/queues/")
        # The host's login page, then back to the dashboard.
        assert page.url == base + "/sign-in/?next=/ops/queues/"
        page.get_by_label("Username").fill("olga")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/ops/queues/")
        expect(page.get_by_role("link", name="EntroQ", exact=True)).to_be_visible()
        expect(page.get_by_text("HOST BASE")).to_have_count(0)

        page.get_by_role("link", name="payments/err").click()
        page.wait_for_url(base + "/ops/queues/queue/payments/err")
        (failure,) = api.tasks("payments/err")
        page.get_by_label(f"Select task {failure.id}").check()
        page.get_by_role("button", name="Retry selected").click()
        expect(page.get_by_text("Retried 1 task.")).to_be_visible()
        assert page.url == base + "/ops/queues/queue/payments/err"
        # Back where it failed, with its own ID.
        assert [str(task.id) for task in api.tasks("payments")] == [payment]
        assert not [text for text in refused if "Content Security Policy" in text], refused
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
