"""WSGI entry point for gunicorn and other WSGI servers.

It is how production serves, so debugging is off unless ``DJANGO_DEBUG`` says
otherwise, and the settings then refuse to load without a strong
``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``: a server started by hand must not
show tracebacks and settings to whoever asks.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "entroq_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")

application = get_wsgi_application()
