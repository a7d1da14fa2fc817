"""``manage.py eqworker``: run EntroQ workers on named queues with a handler."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils.module_loading import import_string

from queues import entroq, liveness
from queues.entroq.worker import Work
from queues.models import WorkerProcess

logger = logging.getLogger("queues.eqworker")

MAX_BACKOFF = 30.0
# How often a running worker logs how many tasks it did.
PROGRESS_EVERY = 60.0


class Command(BaseCommand):
    help = (
        "Claim tasks from the given queues and run a handler on each. SIGTERM or SIGINT "
        "stops claiming and lets the tasks in hand finish; a second signal exits at once. "
        "For more processes, start the command several times (each is independent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--handler", help="dotted path of a function work(task) -> list of modify arguments"
        )
        parser.add_argument("--queue", action="append", help="a queue to claim from (repeat)")
        parser.add_argument(
            "--django-tasks",
            action="store_true",
            help="run django.tasks enqueued with queues.tasks_backend.EntroQBackend",
        )
        parser.add_argument(
            "--backend", default="default", help="with --django-tasks: the TASKS alias"
        )
        parser.add_argument(
            "--queue-name",
            action="append",
            help=(
                "with --django-tasks: a task queue name (repeat; default: the backend's "
                "QUEUES, or every queue under its prefix when QUEUES is empty)"
            ),
        )
        parser.add_argument("--lease", type=float, default=30.0, help="seconds (default 30)")
        parser.add_argument(
            "--max-attempts", type=int, default=0, help="retries before moving to the error queue"
        )
        parser.add_argument(
            "--retry-delay", type=float, default=30.0, help="seconds before a retry (default 30)"
        )
        parser.add_argument(
            "--concurrency", type=int, default=1, help="workers in this process (threads)"
        )
        parser.add_argument(
            "--prefetch",
            type=int,
            default=0,
            help="hold up to this many claimed tasks, claimed in batches and renewed while "
            "they wait, and apply finished tasks' modifications together (0: one claim and "
            "one modification a task)",
        )
        parser.add_argument(
            "--batch", action="store_true", help="exit once the queues have nothing to claim"
        )
        parser.add_argument(
            "--max-tasks", type=int, default=0, help="exit after this many tasks (all workers)"
        )
        parser.add_argument(
            "--beat",
            type=float,
            default=liveness.BEAT_SECONDS,
            help="seconds between this process's beats, which show it on the dashboard's "
            f"workers page (default {liveness.BEAT_SECONDS:g}; 0: do not announce it)",
        )
        parser.add_argument(
            "--url",
            default=os.environ.get("ENTROQ_URL", ""),
            help="work through the HTTP API at this URL (or ENTROQ_URL): a server's address "
            "for its /api/v1, or the root where a project mounted the API; with the API "
            "token in ENTROQ_TOKEN, instead of through the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["django_tasks"]:
            work, options["queue"], client = self._django_tasks(options)
        else:
            work, client = self._handler(options), entroq.EntroQ
        if options["url"]:
            client = self._http_client(options["url"])
        options["client"] = client
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["max_tasks"] < 0:
            raise CommandError("--max-tasks must not be negative")
        if not 0 <= options["prefetch"] <= entroq.MAX_CLAIM:
            raise CommandError(f"--prefetch must be from 0 to {entroq.MAX_CLAIM}")
        beat = options["beat"]
        if beat and not liveness.MIN_BEAT_SECONDS <= beat <= liveness.MAX_BEAT_SECONDS:
            raise CommandError(
                f"--beat must be 0 or from {liveness.MIN_BEAT_SECONDS:g} "
                f"to {liveness.MAX_BEAT_SECONDS:g} seconds"
            )
        queues: list[str] = options["queue"]
        try:  # every setting checked here, not in the worker threads
            entroq.EntroQ(entroq.MemoryBackend()).new_worker(
                *queues,
                lease=options["lease"],
                max_attempts=options["max_attempts"],
                retry_delay=options["retry_delay"],
            )
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

        if options["verbosity"] >= 2:  # each task done, not only failures and progress
            logging.getLogger("queues.entroq.worker").setLevel(logging.DEBUG)
            logging.getLogger("django.tasks").setLevel(logging.INFO)
        stop = threading.Event()
        previous = self._install_signal_handlers(stop)
        try:
            self._run(work, queues, options, stop)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(
        self, work: Work, queues: list[str], options: dict[str, Any], stop: threading.Event
    ) -> None:
        prefetcher = acks = None
        if options["prefetch"]:
            # One claimant for the process: the workers run what it claimed.
            shared = options["client"]()
            options["client"] = lambda: shared
            prefetcher = entroq.Prefetcher(
                shared, queues, size=options["prefetch"], lease=options["lease"]
            )
            acks = entroq.Acks(shared.backend)
        options["prefetcher"], options["acks"] = prefetcher, acks
        try:
            self._run_workers(work, queues, options, stop)
        finally:
            if prefetcher is not None and acks is not None:
                prefetcher.close()
                acks.close()

    def _run_workers(
        self, work: Work, queues: list[str], options: dict[str, Any], stop: threading.Event
    ) -> None:
        budget = _Budget(options["max_tasks"], stop, options["concurrency"])
        failures: list[BaseException] = []
        threads = [
            threading.Thread(
                target=self._worker_thread,
                args=(work, queues, options, stop, budget.counting(work, i), failures),
                name=f"eqworker-{i}",
            )
            for i in range(options["concurrency"])
        ]
        heart = self._heart(queues, options, stop, budget)
        logger.info(
            "eqworker: %d worker(s) on %s, handler %s",
            len(threads),
            ", ".join(queues),
            options["handler"],
        )
        if heart is not None:
            heart.start()
        for thread in threads:
            thread.start()
        try:
            self._watch(threads, budget)
        finally:
            if heart is not None:
                heart.close()
        if failures:
            raise CommandError(f"a worker failed: {failures[0]!r}")

    def _watch(self, threads: list[threading.Thread], budget: _Budget) -> None:
        """Wait for the worker threads, logging progress now and then."""
        reported, reported_at = 0, time.monotonic()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.5)  # wake regularly so that signals are handled
            # Each task is logged only at DEBUG (see Worker._log): say how it goes.
            if time.monotonic() - reported_at >= PROGRESS_EVERY:
                done = budget.done
                logger.info(
                    "eqworker: %d task(s) in the last %.0f s, %d in all",
                    done - reported,
                    time.monotonic() - reported_at,
                    done,
                )
                reported, reported_at = done, time.monotonic()
        logger.info("eqworker: stopped after %d task(s)", budget.done)

    def _heart(
        self, queues: list[str], options: dict[str, Any], stop: threading.Event, budget: _Budget
    ) -> liveness.Heart | None:
        """Return the thread that announces this process and beats for it (none if
        ``--beat 0``): one small write every few seconds, never in the task loop."""
        if not options["beat"]:
            return None
        beats: liveness.Beats
        if options["url"]:
            from queues.liveness_http import HttpBeats

            kind = WorkerProcess.Kind.HTTP
            beats = HttpBeats(options["url"], os.environ.get("ENTROQ_TOKEN", ""))
        else:
            kind = (
                WorkerProcess.Kind.DJANGO_TASKS
                if options["django_tasks"]
                else WorkerProcess.Kind.DATABASE
            )
            beats = liveness.DatabaseBeats()
        worker = liveness.Announcement.of_this_process(
            kind,
            queues,
            concurrency=options["concurrency"],
            prefetch=options["prefetch"],
            handler=str(options["handler"])[:255],
            beat_seconds=options["beat"],
        )
        prefetcher: entroq.Prefetcher | None = options["prefetcher"]

        def pulse() -> liveness.Pulse:
            held = [id for id in budget.in_hand if id is not None]
            if prefetcher is not None:
                held += prefetcher.waiting_ids()
            failed = budget.failed
            return liveness.Pulse.of(budget.done - failed, failed, held)

        logger.info("eqworker: announced as worker %s", worker.id)
        return liveness.Heart(worker, pulse, stop, beats)

    def _http_client(self, url: str) -> Callable[[], entroq.EntroQ]:
        token = os.environ.get("ENTROQ_TOKEN", "")
        if not token:
            raise CommandError("--url needs the API token in the ENTROQ_TOKEN variable")
        return lambda: entroq.EntroQ(entroq.HTTPBackend(url, token=token))

    def _handler(self, options: dict[str, Any]) -> Work:
        """Return the handler named by --handler."""
        if not options["handler"] or not options["queue"]:
            raise CommandError("give --handler and --queue, or --django-tasks")
        try:
            work: Work = import_string(options["handler"])
        except ImportError as exc:
            raise CommandError(f"cannot import handler {options['handler']!r}: {exc}") from exc
        if not callable(work):
            raise CommandError(f"handler {options['handler']!r} is not callable")
        return work

    def _django_tasks(
        self, options: dict[str, Any]
    ) -> tuple[Work, list[str], Callable[[], entroq.EntroQ]]:
        """Return the tasks backend's runner, its queues, and clients on its database."""
        from django.tasks import task_backends
        from django.tasks.exceptions import InvalidTaskBackend

        from queues.entroq.pauses import is_outcome
        from queues.tasks_backend import EntroQBackend

        if options["handler"] or options["queue"]:
            raise CommandError("--django-tasks takes --queue-name, not --handler or --queue")
        try:
            backend = task_backends[options["backend"]]
        except InvalidTaskBackend as exc:
            raise CommandError(str(exc)) from exc
        if not isinstance(backend, EntroQBackend):
            raise CommandError(f"TASKS[{options['backend']!r}] is not an EntroQBackend")
        try:
            queues = [backend.queue_for(name) for name in options["queue_name"] or ()] or (
                backend.served_queues()
            )
        except ValueError as exc:
            raise CommandError(f"TASKS[{options['backend']!r}]: {exc}") from exc
        results = [q for q in queues if is_outcome(q)]
        if results:
            raise CommandError(f"{results[0]} is a queue of results, not of tasks to run")
        options["handler"] = f"django.tasks on {options['backend']!r}"
        return backend.run, queues, backend.client

    def _install_signal_handlers(self, stop: threading.Event) -> dict[int, Any]:
        """Make SIGTERM and SIGINT stop claiming; return the handlers they replace."""

        signals = 0  # counted apart from stop, which --max-tasks and failures also set

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                logger.warning("eqworker: second signal, exiting now")
                os._exit(1)
            logger.info("eqworker: %s, finishing the tasks in hand", signal.Signals(signum).name)
            stop.set()

        return {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _worker_thread(
        self,
        work: Work,
        queues: Sequence[str],
        options: dict[str, Any],
        stop: threading.Event,
        counted: Work,
        failures: list[BaseException],
    ) -> None:
        client: entroq.EntroQ | None = None
        worker = None
        backoff = 1.0
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if worker is None:  # here: over HTTP it asks the server who it is
                        client = options["client"]()
                        worker = client.new_worker(
                            *queues,
                            lease=options["lease"],
                            max_attempts=options["max_attempts"],
                            retry_delay=options["retry_delay"],
                        )
                    worker.run(
                        counted,
                        stop,
                        until_empty=options["batch"],
                        prefetcher=options["prefetcher"],
                        acks=options["acks"],
                    )
                    if options["batch"]:
                        return
                except (DatabaseError, entroq.BackendUnavailable) as exc:
                    outage = isinstance(exc, entroq.BackendUnavailable)
                    if client is not None and not outage and _connection_usable(client):
                        raise  # the handler's own database error, not an outage
                    if time.monotonic() - started > MAX_BACKOFF:
                        backoff = 1.0  # it ran well for a while: a new outage
                    # The database went away (restart, network): drop the connection and
                    # try again later; claims held meanwhile lapse and are redelivered.
                    logger.warning(
                        "eqworker: database error (%s); retrying in %.0f s", exc, backoff
                    )
                    if client is not None:
                        client.backend.release_thread()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        except BaseException as exc:
            logger.exception("eqworker: worker stopped by an error")
            failures.append(exc)
            stop.set()
        finally:
            if client is not None:
                client.backend.release_thread()


def _connection_usable(client: entroq.EntroQ) -> bool:
    """Return whether this thread's connection to the client's database still works."""
    from django.db import connections

    connection = connections[getattr(client.backend, "using", "default")]
    try:
        return connection.connection is not None and connection.is_usable()
    except Exception:
        return False


class _Budget:
    """Counts tasks across the workers of a process; sets ``stop`` at the limit.

    It also keeps what a beat reports: the tasks whose work failed, and the task in
    each worker's hands (one slot a worker, written only by that worker: no lock).
    """

    def __init__(self, limit: int, stop: threading.Event, workers: int = 1) -> None:
        self.limit = limit
        self.stop = stop
        self.done = 0
        self.failed = 0
        self.in_hand: list[uuid.UUID | None] = [None] * workers
        self._lock = threading.Lock()

    def counting(self, work: Work, slot: int = 0) -> Work:
        in_hand = self.in_hand

        def counted(task: entroq.Task) -> Any:
            in_hand[slot] = task.id
            failed = True
            try:
                result = work(task)
                failed = False
                return result
            finally:
                in_hand[slot] = None
                with self._lock:
                    self.done += 1
                    self.failed += failed
                    if self.limit and self.done >= self.limit:
                        self.stop.set()

        return counted
