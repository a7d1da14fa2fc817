"""The system checks name what a project lacks for the app, and what to add."""

from __future__ import annotations

import pytest
from django.core import checks
from pytest_django.fixtures import Settings

APP_LOADER = "django.template.loaders.app_directories.Loader"


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
def test_sqlite_without_its_concurrency_options_is_named(settings: Settings) -> None:
    plain = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    no_wait = {**plain, "OPTIONS": {"transaction_mode": "IMMEDIATE"}}
    settings.DATABASES = {**settings.DATABASES, "tasks": plain, "cache": plain}
    settings.TASKS = {
        "default": {
            "BACKEND": "queues.tasks_backend.EntroQBackend",
            "OPTIONS": {"DATABASE": "tasks"},
        }
    }
    found = entroq_checks()
    assert "DATABASES['tasks']" in found["queues.E005"]
    assert all("cache" not in hint for hint in found.values()), "EntroQ does not use it"
    settings.DATABASES = {**settings.DATABASES, "tasks": no_wait}
    assert "DATABASES['tasks']" in entroq_checks()["queues.W006"]


def test_a_cached_app_directories_loader_finds_the_templates(settings: Settings) -> None:
    engine = {**settings.TEMPLATES[0], "APP_DIRS": False}
    loaders = ["django.template.loaders.filesystem.Loader"]
    engine["OPTIONS"] = {**engine["OPTIONS"], "loaders": [loaders]}
    settings.TEMPLATES = [engine]
    assert "queues.E003" in entroq_checks()
    cached = ("django.template.loaders.cached.Loader", [*loaders, APP_LOADER])
    engine["OPTIONS"] = {**engine["OPTIONS"], "loaders": [cached]}
    settings.TEMPLATES = [engine]
    assert "queues.E003" not in entroq_checks()


def test_a_setting_of_the_wrong_kind_fails_the_check(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_PAGE_SIZE": "fifty"}
    messages = checks.run_checks(tags=["entroq"])
    assert [m.id for m in messages] == ["queues.E006"]
    assert "DASHBOARD_PAGE_SIZE" in messages[0].msg


def test_a_project_whose_tasks_go_elsewhere_is_told_how(settings: Settings) -> None:
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert "queues.tasks_backend.EntroQBackend" in entroq_checks()["queues.I001"]
