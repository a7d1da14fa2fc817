"""The site itself: the login, the admin, and the client API without Django."""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core import checks
from django.core.management.utils import get_random_secret_key
from django.test import Client
from pytest_django.fixtures import Settings

from entroq_site.settings import weak_secret_key
from scripts.pgcluster import free_port
from tests.helpers import ROOT


def test_the_client_api_imports_without_django_configured() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys\n"
        "from queues import entroq\n"
        "eq = entroq.EntroQ(entroq.MemoryBackend())\n"
        "eq.modify(entroq.inserting_into('q', value=b'v'))\n"
        "assert eq.try_claim('q').value == b'v'\n"
        "assert 'django.db' not in sys.modules, 'Django is loaded only for DjangoBackend'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_the_home_page_asks_for_a_login_and_says_how_to_get_one(client: Client) -> None:
    response = client.get("/", follow=True)
    assert response.redirect_chain == [("/accounts/login/?next=/", 302)]
    assert b"createsuperuser" in response.content


@pytest.mark.django_db
def test_the_admin_asks_for_a_login(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_an_unknown_entroq_setting_is_named(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MAX_QUEUES": 10, "DASHBOARD_PAGE_SIZE": 20}
    warnings = checks.run_checks(tags=["entroq"])
    named = [w for w in warnings if w.id == "queues.W001"]
    assert [w.msg for w in named] == [
        "settings.ENTROQ['DASHBOARD_MAX_QUEUES'] is not a setting of this version and is ignored."
    ]


def test_a_proxy_that_names_no_client_is_warned_of(settings: Settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXY_COUNT = 0
    warned = [w.id for w in checks.run_checks(tags=["entroq"])]
    settings.TRUSTED_PROXY_COUNT = 1
    trusted = [w.id for w in checks.run_checks(tags=["entroq"])]

    assert "queues.W002" in warned
    assert "queues.W002" not in trusted


# Production entry points: debugging off unless asked for, and no start on weak secrets.

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
GUNICORN_CONF = str(ROOT / "entroq_site" / "gunicorn.conf.py")
STRONG_KEY = secrets.token_urlsafe(50)


def bare_env(**extra: str) -> dict[str, str]:
    """Return this process's environment without any of the site's settings: the
    shell of an operator who starts the site by hand."""
    ours = ("DJANGO_", "ENTROQ_", "GUNICORN_", "DATABASE_URL", "WEB_CONCURRENCY", "PROMETHEUS_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ours)}, **extra}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )


def test_the_wsgi_module_refuses_to_load_without_a_secret() -> None:
    done = run_python("import entroq_site.wsgi", bare_env(DJANGO_ALLOWED_HOSTS="example.com"))
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr
    assert "secrets.token_urlsafe(50)" in done.stderr, "the error says how to make one"


def test_the_wsgi_module_refuses_to_load_without_hosts() -> None:
    done = run_python("import entroq_site.wsgi", bare_env(DJANGO_SECRET_KEY=STRONG_KEY))
    assert done.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in done.stderr


def test_the_wsgi_module_refuses_a_guessable_secret() -> None:
    env = bare_env(DJANGO_SECRET_KEY="abcde" * 10, DJANGO_ALLOWED_HOSTS="example.com")
    done = run_python("import entroq_site.wsgi", env)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr
    assert "secrets.token_urlsafe(50)" in done.stderr


def test_the_wsgi_module_loads_with_debugging_off_given_a_secret_and_hosts() -> None:
    code = "import entroq_site.wsgi\nfrom django.conf import settings\nprint(settings.DEBUG)"
    env = bare_env(DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS="example.com")
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    "key",
    [
        "abcde" * 10,
        "ab" * 30,
        "x" * 64,
        string.ascii_letters + string.digits,  # a run, however long
        "0123456789" * 6,
        "qwertyuiopasdfghjklzxcvbnm1234567890qwertyuiopasdfghjkl",
        "django-insecure-" + secrets.token_urlsafe(50),
        secrets.token_urlsafe(20),  # random, but short
    ],
)
def test_guessable_secret_keys_are_named_as_such(key: str) -> None:
    assert weak_secret_key(key) is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(50),
        get_random_secret_key,
        lambda: secrets.token_hex(32),  # openssl rand -hex 32
    ],
    ids=["token_urlsafe(50)", "get_random_secret_key()", "token_hex(32)"],
)
def test_generated_secret_keys_pass(make: Callable[[], str]) -> None:
    weak = [key for key in (make() for _ in range(2000)) if weak_secret_key(key)]
    assert weak == []


def wait_for_exit(server: subprocess.Popen[str], seconds: float = 60) -> str:
    try:
        output, _ = server.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        server.kill()
        output, _ = server.communicate()
        pytest.fail(f"gunicorn still runs after {seconds} s:\n{output}")
    return output


@pytest.mark.parametrize(
    "command",
    [
        [GUNICORN, "entroq_site.wsgi"],
        # The config alone turns debugging off, whatever the application.
        [GUNICORN, "-c", GUNICORN_CONF, "django.core.wsgi:get_wsgi_application()"],
    ],
    ids=["wsgi module", "gunicorn config"],
)
def test_gunicorn_started_by_hand_refuses_to_serve_without_a_secret(command: list[str]) -> None:
    env = bare_env(DJANGO_SETTINGS_MODULE="entroq_site.settings")
    bind = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [*command, "--bind", bind, "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = wait_for_exit(server)
    assert server.returncode != 0
    assert "DJANGO_SECRET_KEY" in output


def wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"gunicorn did not answer within 60 s:\n{log.read_text()}")


@pytest.mark.parametrize(
    "config", [[], ["-c", GUNICORN_CONF]], ids=["gunicorn alone", "gunicorn config"]
)
def test_gunicorn_serves_with_debugging_off_given_a_secret_and_hosts(
    config: list[str], tmp_path: Path
) -> None:
    env = bare_env(
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    port = free_port()
    command = [GUNICORN, *config, "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with open(tmp_path / "gunicorn.log", "w") as log:
        server = subprocess.Popen(
            [*command, "entroq_site.wsgi"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, tmp_path / "gunicorn.log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=10)
            pytest.fail("an unknown page answered")
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode()
    finally:
        server.terminate()
        server.wait(30)
    assert status == 404
    assert "URLconf" not in body, "Django's technical page, with debugging on"
    assert "Not Found" in body


def test_manage_py_keeps_the_development_defaults() -> None:
    """``make run`` (manage.py runserver) needs no variable at all."""
    env = bare_env()
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    code = "from django.conf import settings; print(settings.DEBUG)"
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == "True"
