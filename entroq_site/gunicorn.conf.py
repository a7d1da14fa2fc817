"""gunicorn's settings for production serving (``make serve``); the environment tunes them.

- ``GUNICORN_BIND``: where to listen (``127.0.0.1:8000``).
- ``WEB_CONCURRENCY``: worker processes (2).
- ``GUNICORN_THREADS``: threads per process (32), each with a database connection
  (``DJANGO_CONN_MAX_AGE`` keeps them). A long-poll claim holds a thread for up to
  ``API_MAX_WAIT_SECONDS``; at most half of a process's threads wait at once
  (``API_MAX_WAITING_CLAIMS``, see ``queues/waiting.py``), so the rest always answer.

Debugging is off unless ``DJANGO_DEBUG`` says otherwise, whatever application it
serves, so the settings refuse to load without a strong ``DJANGO_SECRET_KEY`` and
``DJANGO_ALLOWED_HOSTS``, and gunicorn exits.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Read before any worker loads the settings: the workers inherit it.
os.environ.setdefault("DJANGO_DEBUG", "0")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
# Longer than the longest claim wait (30 s), so a waiting claim is never killed.
timeout = 75
graceful_timeout = 40
keepalive = 75
# Listings send up to 100 task IDs in the query string.
limit_request_line = 8190
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(L)s'
# gunicorn's own log lines and its access log as JSON objects, like the site's: the
# formatter escapes what a client sent, so a request line cannot forge fields.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["asctime", "levelname", "name", "message", "process"],
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}


def on_starting(server: Any) -> None:
    # Counters of every worker process, added up on /metrics (prometheus_client's
    # multiprocess mode needs the folder before any worker imports it).
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="entroq-metrics-")
        os.environ["ENTROQ_OWNS_METRICS_DIR"] = "1"
    else:  # files of a previous run would count its processes as alive
        for stale in Path(folder).glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if os.environ.pop("ENTROQ_OWNS_METRICS_DIR", None):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# The API bounds waiting claims by the threads a process has (queues.waiting.bounds):
# tell each worker the number in effect, --threads included.
def post_fork(server: Any, worker: Any) -> None:
    os.environ["ENTROQ_SERVER_THREADS"] = str(worker.cfg.threads)
