"""System checks: what a project needs for the app, said in terms of what to add.

``manage.py check`` runs them (tag ``entroq``). A project that lacks an app, a
middleware or a template setting the dashboard relies on gets an error naming the
setting and the entry; a choice that works but costs safety or correctness under load
(no statement timeout, SQLite without its concurrency options) gets a warning.
"""

from __future__ import annotations

from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from queues.conf import KNOWN, app_settings

# Apps whose models, templates or tags the app uses.
REQUIRED_APPS = {
    "django.contrib.auth": "users, permissions and the roles",
    "django.contrib.contenttypes": "permissions",
    "django.contrib.sessions": "the dashboard's logins",
    "django.contrib.messages": "the dashboard's reports of what an action did",
    "django.contrib.staticfiles": "the dashboard's stylesheet and scripts",
    "django.contrib.humanize": "the dashboard's numbers",
    "django_htmx": "the dashboard's live regions",
}
# Middleware the dashboard cannot work without (subclasses count).
REQUIRED_MIDDLEWARE = {
    "django.contrib.sessions.middleware.SessionMiddleware": "logins",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "logins",
    "django.contrib.messages.middleware.MessageMiddleware": "reports of actions",
    "django_htmx.middleware.HtmxMiddleware": "partial pages (request.htmx)",
}
TIMEOUT_MIDDLEWARE = "queues.middleware.StatementTimeoutMiddleware"
CONTEXT_PROCESSORS = {
    "django.template.context_processors.request": "links that keep the page's filters",
    "django.contrib.auth.context_processors.auth": "the user and their permissions",
    "django.contrib.messages.context_processors.messages": "reports of actions",
}
TASKS_BACKEND = "queues.tasks_backend.EntroQBackend"


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Warn of ``settings.ENTROQ`` keys this version does not know (a typo, or a
    setting renamed: ``DASHBOARD_MAX_QUEUES`` became ``DASHBOARD_QUEUES_PER_PAGE``)."""
    problems: list[CheckMessage] = []
    try:
        app_settings()
    except ImproperlyConfigured as error:
        problems.append(Error(str(error), id="queues.E006"))
    unknown = sorted(set(getattr(settings, "ENTROQ", {})) - KNOWN)
    return problems + [
        Warning(
            f"settings.ENTROQ[{name!r}] is not a setting of this version and is ignored.",
            hint=f"Known settings: {', '.join(sorted(KNOWN))}.",
            id="queues.W001",
        )
        for name in unknown
    ]


def check_client_addresses(**kwargs: Any) -> list[CheckMessage]:
    """Warn when the site throttles logins (django-axes) behind a proxy
    (``SECURE_PROXY_SSL_HEADER``) and trusts none of them to name clients: the throttle
    then counts every client as the proxy, and a few failed logins lock out all."""
    if (
        apps.is_installed("axes")
        and getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        and not getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    ):
        return [
            Warning(
                "Behind a proxy, every client has the proxy's address, so the login "
                "throttle counts everyone's failures as one address's.",
                hint="Set DJANGO_TRUSTED_PROXY_COUNT to the number of proxies in front "
                "that append the client's address to X-Forwarded-For.",
                id="queues.W002",
            )
        ]
    return []


def _has_middleware(path: str) -> bool:
    wanted = import_string(path)
    for entry in settings.MIDDLEWARE:
        try:
            installed = import_string(entry)
        except ImportError:  # Django's own check names a middleware that is missing
            continue
        if isinstance(installed, type) and issubclass(installed, wanted):
            return True
    return False


def check_project(**kwargs: Any) -> list[CheckMessage]:
    """Name each app, middleware and template setting the dashboard needs and the
    project lacks, and warn of what it would run without."""
    problems: list[CheckMessage] = []
    for app, why in REQUIRED_APPS.items():
        if not apps.is_installed(app):
            problems.append(
                Error(
                    f"EntroQ needs {app!r} in INSTALLED_APPS ({why}).",
                    hint=f'Add "{app}" to INSTALLED_APPS.',
                    id="queues.E001",
                )
            )
    for middleware, why in REQUIRED_MIDDLEWARE.items():
        if not _has_middleware(middleware):
            problems.append(
                Error(
                    f"EntroQ's dashboard needs {middleware!r} in MIDDLEWARE ({why}).",
                    hint=f'Add "{middleware}" to MIDDLEWARE.',
                    id="queues.E002",
                )
            )
    if not _has_middleware(TIMEOUT_MIDDLEWARE):
        problems.append(
            Warning(
                "The dashboard's queries run without a statement timeout: a page on a "
                "big table could hold a server thread and the database for minutes.",
                hint=f'Add "{TIMEOUT_MIDDLEWARE}" as the last entry of MIDDLEWARE.',
                id="queues.W003",
            )
        )
    elif not settings.MIDDLEWARE[-1].endswith("StatementTimeoutMiddleware"):
        problems.append(
            Warning(
                f"{TIMEOUT_MIDDLEWARE!r} calls the views itself, so middleware after it "
                "do not see them.",
                hint=f"Move it to the end of MIDDLEWARE (now: {settings.MIDDLEWARE[-1]!r}).",
                id="queues.W004",
            )
        )
    problems += _check_templates()
    problems += _check_sqlite()
    problems += _check_tasks()
    return problems


def _check_templates() -> list[CheckMessage]:
    django_engines = [
        engine
        for engine in settings.TEMPLATES
        if engine["BACKEND"] == "django.template.backends.django.DjangoTemplates"
    ]
    if not any(_finds_app_templates(engine) for engine in django_engines):
        return [
            Error(
                "EntroQ's dashboard needs a DjangoTemplates engine that finds the "
                "templates of apps.",
                hint='Set "APP_DIRS": True on a DjangoTemplates engine in TEMPLATES.',
                id="queues.E003",
            )
        ]
    given: set[str] = set()
    for engine in django_engines:
        options = cast(dict[str, Any], engine.get("OPTIONS", {}))
        given.update(options.get("context_processors", []))
    return [
        Error(
            f"EntroQ's dashboard needs the context processor {processor!r} ({why}).",
            hint=f'Add "{processor}" to TEMPLATES[...]["OPTIONS"]["context_processors"].',
            id="queues.E004",
        )
        for processor, why in CONTEXT_PROCESSORS.items()
        if processor not in given
    ]


def _finds_app_templates(engine: dict[str, Any]) -> bool:
    """Return whether a DjangoTemplates engine finds templates in apps: ``APP_DIRS``, or
    the app directories loader among its loaders (perhaps inside the cached one)."""
    if engine.get("APP_DIRS"):
        return True
    pending = list(cast(dict[str, Any], engine.get("OPTIONS", {})).get("loaders", []))
    while pending:
        loader = pending.pop()
        if isinstance(loader, list | tuple):  # (name, *arguments): the cached loader's
            loader, arguments = loader[0], loader[1:]  # first argument is its loaders
            for argument in arguments:
                if isinstance(argument, list | tuple):
                    pending.extend(argument)
        if loader == "django.template.loaders.app_directories.Loader":
            return True
    return False


def _entroq_databases() -> set[str]:
    """Return the database aliases EntroQ uses: the default, and the TASKS backends'."""
    used = {"default"}
    for config in getattr(settings, "TASKS", {}).values():
        if config.get("BACKEND") == TASKS_BACKEND:
            used.add(config.get("OPTIONS", {}).get("DATABASE", "default"))
    return used


def _check_sqlite() -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for alias in sorted(_entroq_databases()):
        database = settings.DATABASES.get(alias, {})
        if database.get("ENGINE") != "django.db.backends.sqlite3":
            continue
        options = database.get("OPTIONS", {})
        if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
            problems.append(
                Error(
                    f"EntroQ on SQLite database {alias!r} needs IMMEDIATE transactions: "
                    "without them concurrent workers would fail with 'database is "
                    "locked' (the backend refuses to run).",
                    hint=f'Set DATABASES[{alias!r}]["OPTIONS"]["transaction_mode"] = '
                    '"IMMEDIATE" (and a "timeout" of some seconds).',
                    id="queues.E005",
                )
            )
        elif not options.get("timeout"):
            problems.append(
                Warning(
                    f"On SQLite database {alias!r}, a writer that finds the database "
                    "busy fails at once instead of waiting for its turn.",
                    hint=f'Set DATABASES[{alias!r}]["OPTIONS"]["timeout"] = 30.',
                    id="queues.W006",
                )
            )
    return problems


def _check_tasks() -> list[CheckMessage]:
    backends = {alias: c.get("BACKEND") for alias, c in getattr(settings, "TASKS", {}).items()}
    if TASKS_BACKEND in backends.values():
        return []
    return [
        Info(
            "django.tasks calls do not go to EntroQ: no TASKS backend is EntroQ's.",
            hint=f'To run them on EntroQ, set TASKS = {{"default": {{"BACKEND": '
            f'"{TASKS_BACKEND}"}}}} and run "manage.py eqworker --django-tasks".',
            id="queues.I001",
        )
    ]
