#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "entroq_site.settings")
    # The development entry point (make run): debugging on unless DJANGO_DEBUG says
    # otherwise, where the production ones (wsgi.py, gunicorn.conf.py) turn it off.
    os.environ.setdefault("DJANGO_DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
