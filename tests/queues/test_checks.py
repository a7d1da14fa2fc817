"""The system checks name what a project lacks for the app, and what to add."""

from __future__ import annotations

import pytest
from django.core import checks
from pytest_django.fixtures import Settings


def entroq_checks() -> dict[str, str]:
    return {message.id or "": str(message.hint) for message in checks.run_checks(tags=["entroq"])}


def test_this_site_has_all_the_app_needs() -> None:
    assert entroq_checks() == {}


def test_a_missing_app_is_named(settings: Settings) -> None:
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_htmx"]
    assert entroq_checks()["queues.E001"] == 'Add "django_htmx" to INSTALLED_APPS.'


def test_missing_middleware_is_named(settings: Settings) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Htmx" not in m and "Timeout" not in m]
    found = entroq_checks()
    assert found["queues.E002"] == 'Add "django_htmx.middleware.HtmxMiddleware" to MIDDLEWARE.'
    assert "StatementTimeoutMiddleware" in found["queues.W003"]


def test_the_timeout_middleware_must_come_last(settings: Settings) -> None:
    timeout = "queues.middleware.StatementTimeoutMiddleware"
    settings.MIDDLEWARE = [timeout, *(m for m in settings.MIDDLEWARE if m != timeout)]
    assert "Move it to the end of MIDDLEWARE" in entroq_checks()["queues.W004"]


def test_a_missing_context_processor_is_named(settings: Settings) -> None:
    engine = {**settings.TEMPLATES[0]}
    processors = engine["OPTIONS"]["context_processors"]
    engine["OPTIONS"] = {"context_processors": [p for p in processors if "messages" not in p]}
    settings.TEMPLATES = [engine]
    assert "django.contrib.messages.context_processors.messages" in entroq_checks()["queues.E004"]


# Only the checks read these databases.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_sqlite_without_its_concurrency_options_is_warned_of(settings: Settings) -> None:
    settings.DATABASES = {
        **settings.DATABASES,
        "plain": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "no-wait": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        },
    }
    found = entroq_checks()
    assert "DATABASES['plain']" in found["queues.W005"]
    assert "DATABASES['no-wait']" in found["queues.W006"]


def test_a_project_whose_tasks_go_elsewhere_is_told_how(settings: Settings) -> None:
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert "queues.tasks_backend.EntroQBackend" in entroq_checks()["queues.I001"]
