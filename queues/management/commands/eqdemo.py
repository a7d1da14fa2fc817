"""``manage.py eqdemo``: fill the database with sample queues, and keep them busy."""

from __future__ import annotations

import random
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from queues import demo
from queues.entroq import EntroQ, TaskData
from queues.entroq.modify import inserting


class Command(BaseCommand):
    help = (
        "Insert sample tasks (with failures, a scheduled task and odd values); with "
        "--feed, go on inserting a few tasks a second until stopped. For the workers, "
        "run: manage.py eqworker --handler queues.demo.work --queue emails/send "
        "--queue images/resize --queue billing/charge --max-attempts 3 --retry-delay 5"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=300, help="tasks per sample queue")
        parser.add_argument("--feed", action="store_true", help="keep inserting until stopped")
        parser.add_argument(
            "--user", help="create this superuser (password from --password) if missing"
        )
        parser.add_argument("--password", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["user"]:
            self._user(options["user"], options["password"])
        with EntroQ() as eq:
            if options["feed"]:
                self._feed(eq)
            elif eq.queues(match_prefix=list(demo.QUEUES)):
                self.stdout.write("The sample queues have tasks already; not adding more.")
            else:
                count = demo.seed(eq, options["tasks"])
                self.stdout.write(f"Inserted {count:,} sample tasks.")

    def _user(self, name: str, password: str) -> None:
        users = get_user_model()
        if users.objects.filter(username=name).exists():
            return
        users.objects.create_superuser(username=name, password=password, email="")
        self.stdout.write(f"Created the superuser {name!r} with the password {password!r}.")

    def _feed(self, eq: EntroQ) -> None:
        self.stdout.write("Feeding sample queues; stop with Ctrl-C.")
        number = 0
        try:
            while True:
                number += 1
                queue = random.choice(list(demo.QUEUES))
                eq.modify(inserting(TaskData(queue=queue, value=demo.sample_value(queue, number))))
                time.sleep(random.uniform(0.1, 0.6))
        except KeyboardInterrupt:
            self.stdout.write(f"Stopped after {number:,} tasks.")
