"""Settings for the EntroQ site, read from the environment.

- ``DATABASE_URL``: the database (``postgres://user:pass@host:port/name`` or
  ``sqlite:///path``); the SQLite file ``db.sqlite3`` in the checkout by default.
- ``DJANGO_SECRET_KEY``: required when ``DJANGO_DEBUG`` is off.
- ``DJANGO_DEBUG``: ``1``/``true`` to turn debugging on, ``0`` off. Unset, the entry point
  decides: ``manage.py`` (so ``make run``) turns it on, the production ones
  (``entroq_site/wsgi.py`` and ``entroq_site/gunicorn.conf.py``) turn it off; a bare
  import of these settings (pytest, ``django-admin``) has it on.
- ``DJANGO_ALLOWED_HOSTS``: comma-separated host names.
- ``DJANGO_CONN_MAX_AGE``: seconds a database connection is kept between requests (60).
- ``DJANGO_HTTPS``: ``1`` behind HTTPS (a proxy that sets ``X-Forwarded-Proto``):
  secure cookies, HSTS, redirects to HTTPS.
- ``DJANGO_LOG_FORMAT``: ``json`` (the default with debugging off) or ``plain``.
- ``DJANGO_STATIC_ROOT``: where ``collectstatic`` puts files (``staticfiles/``).
- ``ENTROQ_MAX_VALUE_BYTES``: the largest task value accepted (10 MiB by default).
- ``DJANGO_LOGIN_FAILURE_LIMIT``: failed logins, for one account or from one address,
  that lock logging in for it (10).
- ``DJANGO_LOGIN_COOLOFF_MINUTES``: how long such a lockout lasts (15).
- ``DJANGO_TRUSTED_PROXY_COUNT``: proxies in front of the site whose
  ``X-Forwarded-For`` entries name the client (0: the connection's address does, and
  the header is ignored).
- ``DJANGO_SESSION_IDLE_SECONDS``: a session ends after this long without activity
  (43200, 12 hours).

With debugging off, the settings refuse to load without a strong secret key and an
explicit host list: a production server must not start on guessable defaults.
"""

import itertools
import math
import os
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _entropy(items: Sequence[object]) -> float:
    """Return the Shannon entropy, in bits an item, of how often each item occurs."""
    counts = Counter(items).values()
    return -sum(n / len(items) * math.log2(n / len(items)) for n in counts)


def _novel(items: Sequence[object], width: int = 3) -> int:
    """Return how many items start a ``width``-long run not seen earlier (plus the
    last ``width - 1``): a key repeated over and over counts its first copy only."""
    seen = {tuple(items[i : i + width]) for i in range(len(items) - width + 1)}
    return len(seen) + width - 1 if seen else len(items)


def weak_secret_key(key: str) -> str | None:
    """Return why ``key`` is too guessable to sign a production site's sessions, or
    None when it is not.

    Its entropy is estimated cautiously: each character that starts a three-character
    run not seen earlier in the key adds the entropy of the key's own characters, so
    repeating a pattern (``'abcde' * 10``) adds nothing; the same is measured on the
    steps between neighbouring characters, which catches runs such as ``'abcdef…'``,
    and the lower estimate counts. Keys from ``secrets.token_urlsafe(50)``, Django's
    ``get_random_secret_key()`` or 32 random bytes in hex estimate at well over 150
    bits; 128 are needed. Text (a sentence) can pass: make keys, do not write them.
    """
    if len(key) < 50:
        return f"it has {len(key)} characters, fewer than 50"
    if key.startswith("django-insecure"):
        return "it is Django's development key"
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(key)]
    bits = min(_entropy(key) * _novel(key), _entropy(steps) * _novel(steps))
    if bits < 128:
        return f"it repeats itself: about {bits:.0f} bits of entropy, fewer than 128"
    return None


DEBUG = env_flag("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not DEBUG and (weakness := weak_secret_key(SECRET_KEY)) is not None:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be a random key of 50 or more characters when DJANGO_DEBUG "
        f"is off ({weakness if SECRET_KEY else 'it is not set'}); make one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
SECRET_KEY = SECRET_KEY or "django-insecure-development-only-key"

if not DEBUG and not os.environ.get("DJANGO_ALLOWED_HOSTS", "").strip():
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must name the hosts this site answers to when DJANGO_DEBUG is off."
    )
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

if env_flag("DJANGO_HTTPS", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health checks come over plain HTTP from inside the network. Not /metrics: its
    # token must not travel in clear.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31_536_000

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "queues",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the URL: a NUL in it is a 400, never a database error.
    "queues.middleware.RefuseNulMiddleware",
    # Answers the API's operations; the rest serves pages.
    "queues.middleware.ApiMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends a session idle for SESSION_COOKIE_AGE, before the login is checked.
    "queues.middleware.IdleSessionMiddleware",
    # Every page needs a login; views open to all say so with @login_not_required.
    "queues.middleware.HtmxLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Answers a login refused by the throttle (inside the CSP middleware: its page
    # carries a nonce).
    "axes.middleware.AxesMiddleware",
    # Last: it calls the dashboard's views itself, under a statement timeout.
    "queues.middleware.StatementTimeoutMiddleware",
]

ROOT_URLCONF = "entroq_site.urls"

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

WSGI_APPLICATION = "entroq_site.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        # A kept connection is checked before each request, so one broken by a
        # database restart fails no request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent workers on the embedded database: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock when a transaction starts (so two
    # writers never deadlock upgrading from read locks), and the timeout makes a
    # writer wait for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database is a file, not memory, so that worker processes share it
    # (ENTROQ_TEST_SQLITE names another, for a second test run at once).
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("ENTROQ_TEST_SQLITE", str(BASE_DIR / "var" / "test.sqlite3"))
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
# In development whitenoise serves straight from the apps' and project's static folders;
# in production, from STATIC_ROOT with compressed, content-hashed names cached forever.
WHITENOISE_USE_FINDERS = DEBUG
if not DEBUG:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queues:overview"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes), for the dashboard's login and the admin's alike.
# The first backend refuses every login while its account or address is locked out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failures are counted per account (from any address) and per address (for any
# account, existing or not); either reaching the limit locks logging in for it.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = int(os.environ.get("DJANGO_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("DJANGO_LOGIN_COOLOFF_MINUTES", "15")))
# A lockout lasts the cool-off from the failure that reached the limit: attempts
# meanwhile are refused without a look at the password and do not prolong it, so the
# page can say when to try again.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the failures: it would let anyone with an account clear
# the count of the guesses at other accounts made from their address.
AXES_RESET_ON_SUCCESS = False
# The client's address: the connection's, unless proxies are trusted to name it.
TRUSTED_PROXY_COUNT = int(os.environ.get("DJANGO_TRUSTED_PROXY_COUNT", "0"))
AXES_CLIENT_IP_CALLABLE = "entroq_site.logins.client_address"
# The login page again, saying so, with 429 and Retry-After.
AXES_LOCKOUT_CALLABLE = "entroq_site.logins.lockout_response"

# An operator's session ends after this long without activity (IdleSessionMiddleware
# keeps it alive while the operator works; Django then forgets it in the database and
# the browser its cookie).
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_SESSION_IDLE_SECONDS", str(12 * 3600)))

# A strict policy: scripts only from our static files or with the page's nonce, no
# inline styles, no framing. htmx runs without eval (see templates/base.html).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# Django's background tasks (@task) are EntroQ tasks; run them with
# `manage.py eqworker --django-tasks`.
TASKS: dict[str, dict[str, Any]] = {"default": {"BACKEND": "queues.tasks_backend.EntroQBackend"}}

ENTROQ = {
    "MAX_VALUE_BYTES": int(os.environ.get("ENTROQ_MAX_VALUE_BYTES", str(10 * 1024 * 1024))),
}

LOG_FORMAT = os.environ.get("DJANGO_LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # One JSON object a line, for log shippers.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["asctime", "levelname", "name", "message", "process"],
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "queues": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Django logs each task call's start and end at INFO: in a worker at thousands
        # a second, the log would cost more than the calls. Failures are ERRORs;
        # eqworker -v 2 shows the rest.
        "django.tasks": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
