"""Settings for the worker benchmark: the project plus the peers it is measured against."""

from entroq_site.settings import *  # noqa: F403
from entroq_site.settings import INSTALLED_APPS, TASKS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db", "procrastinate.contrib.django", "bench"]
TASKS = {
    **TASKS,
    # django-tasks-db's backend, and this project's on the same queue name.
    "db": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["bench"]},
    "entroq": {"BACKEND": "queues.tasks_backend.EntroQBackend", "QUEUES": ["bench"]},
}
