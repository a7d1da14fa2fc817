"""``manage.py eq``: the operator's command line (the verbs of Go's ``eqc``)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from queues import audit, entroq, liveness, pausing, undo
from queues.actions import PAUSE, RESUME
from queues.entroq import EntroQ, Task, ops
from queues.entroq.errors import task_to_json_dict
from queues.models import Undoable

EXCERPT = 40


def _excerpt(data: bytes | str, width: int = EXCERPT) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _age(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        age = timedelta(seconds=float(number) * units[unit])
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"not an age: {text!r} (try 3600, 90m, 12h or 7d)"
        ) from None
    if age < timedelta(0):
        raise argparse.ArgumentTypeError(f"an age must not be negative: {text!r}")
    return age


def _task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(f"not a task ID: {text!r}") from None


class Command(BaseCommand):
    help = "Inspect and operate EntroQ queues: qs, ts, ins, claim, rm, mod, clear, retry, time."

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

        def verb(name: str, help: str, aliases: Sequence[str] = ()) -> Any:
            return verbs.add_parser(name, help=help, aliases=list(aliases))

        qs = verb("qs", "queues with their stats", aliases=["stats"])
        qs.add_argument("--prefix", action="append", default=[], help="queues starting so")
        qs.add_argument("--exact", action="append", default=[], help="a queue by name")
        qs.add_argument("--limit", type=int, default=0)
        qs.add_argument("--json", action="store_true")

        ts = verb("ts", "tasks of a queue")
        ts.add_argument("queue", nargs="?", default="")
        ts.add_argument("--id", action="append", default=[], help="only this task (repeat)")
        ts.add_argument("--limit", type=int, default=100, help="at most (default 100, 0: all)")
        ts.add_argument("--omit-values", action="store_true")
        ts.add_argument("--json", action="store_true")

        ins = verb("ins", "insert a task")
        ins.add_argument("queue")
        ins.add_argument("value", nargs="?", help="the value (or --file)")
        ins.add_argument("--file", help="read the value from a file, or - for standard input")
        ins.add_argument("--id", help="an explicit task ID")
        ins.add_argument("--arrival-in", type=float, help="seconds until the task is available")

        claim = verb("claim", "claim a task and print it")
        claim.add_argument("queue", nargs="+")
        claim.add_argument("--try", dest="try_only", action="store_true", help="do not wait")
        claim.add_argument("--duration", type=float, default=30.0, help="lease in seconds")
        claim.add_argument("--timeout", type=float, help="seconds to wait at most")

        rm = verb("rm", "delete a task at its current version")
        rm.add_argument("id")
        rm.add_argument("--force", action="store_true", help="act as the holding claimant")

        mod = verb("mod", "change a task: move it, replace its value, reset its attempts")
        mod.add_argument("id")
        mod.add_argument("--queue", help="move to this queue")
        mod.add_argument("--value", help="the new value")
        mod.add_argument("--file", help="read the new value from a file, or - for stdin")
        mod.add_argument("--reset", action="store_true", help="set attempt to 0, err to ''")
        mod.add_argument("--force", action="store_true", help="act as the holding claimant")

        clear = verb("clear", "delete every task of a queue")
        clear.add_argument("queue")
        clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        clear.add_argument("--force", action="store_true", help="delete held tasks too")

        retry = verb("retry", "put error-queue tasks back into their original queues")
        retry.add_argument("queue", help="the error queue")
        retry.add_argument("--id", action="append", default=[], help="this task (repeat)")
        retry.add_argument("--all", action="store_true", help="every task of the queue")

        prune = verb("prune", "delete the tasks of a queue not modified for a while")
        prune.add_argument("queue", help="for example django-tasks/default/done")
        prune.add_argument(
            "--older-than", required=True, type=_age, help="an age: 3600, 90m, 12h or 7d"
        )

        verb("time", "the queue's clock")

        undo_verb = verb("undo", "put back what an operator deleted, moved or retried")
        undo_verb.add_argument("id", type=int, help="the undoable action's number (see kept)")

        kept = verb("kept", "the latest deletions, moves and retries kept for undo")
        kept.add_argument("--limit", type=int, default=50)

        pause = verb("pause", "stop claims from queues (prefix/* for every queue under it)")
        pause.add_argument("queue", nargs="+", help="a queue, prefix/* or *")
        resume = verb("resume", "let claims take tasks of paused queues again")
        resume.add_argument("queue", nargs="+", help="as it was paused: a queue, prefix/* or *")
        paused = verb("paused", "the pauses in force")
        paused.add_argument("--json", action="store_true")

        workers = verb("workers", "the eqworker processes: what they consume, and if alive")
        workers.add_argument("--queue", default="", help="only those consuming this queue")
        workers.add_argument("--json", action="store_true")

        stop_worker = verb("stop-worker", "ask a worker to stop after the tasks in hand")
        stop_worker.add_argument("id", help="the worker's ID (or its first 8 characters)")

    def handle(self, *args: Any, **options: Any) -> None:
        verb = {"stats": "qs", "stop-worker": "stop_worker"}.get(options["verb"], options["verb"])
        with EntroQ() as eq:
            try:
                getattr(self, f"do_{verb}")(eq, options)
            except entroq.DependencyError as error:
                raise CommandError(f"conflict: {error}") from error
            except (ValueError, TypeError, OverflowError) as error:
                raise CommandError(str(error)) from error
            except DatabaseError as error:
                raise CommandError(f"database error: {error}".strip()) from error
            except KeyboardInterrupt:
                raise CommandError("interrupted") from None

    # Reading.

    def do_qs(self, eq: EntroQ, options: dict[str, Any]) -> None:
        stats = eq.queue_stats(
            match_prefix=options["prefix"], match_exact=options["exact"], limit=options["limit"]
        )
        if options["json"]:
            self._json({name: _stat(stat) for name, stat in stats.items()})
            return
        rows = [
            (s.name, s.size, s.available, s.claimed, s.future, s.max_claims) for s in stats.values()
        ]
        self.stdout.write(
            _table(rows, ("QUEUE", "SIZE", "AVAILABLE", "CLAIMED", "FUTURE", "MAX CLAIMS"))
        )

    def do_ts(self, eq: EntroQ, options: dict[str, Any]) -> None:
        ids = [_task_id(i) for i in options["id"]]
        if not (options["queue"] or ids):
            raise CommandError("give a queue, or --id")
        tasks = eq.tasks(
            options["queue"], ids=ids, limit=options["limit"], omit_values=options["omit_values"]
        )
        if options["json"]:
            self._json([task_to_json_dict(t) for t in tasks])
            return
        rows = [
            (
                t.id,
                t.version,
                t.at.isoformat(timespec="seconds"),
                t.claimant or "-",
                t.claims,
                t.attempt,
                _excerpt(t.err, 30) or "-",
                "-" if options["omit_values"] else _excerpt(t.value),
            )
            for t in tasks
        ]
        self.stdout.write(
            _table(rows, ("ID", "VERSION", "AT", "CLAIMANT", "CLAIMS", "ATTEMPT", "ERR", "VALUE"))
        )

    def do_time(self, eq: EntroQ, options: dict[str, Any]) -> None:
        self.stdout.write(eq.time().isoformat())

    # Pauses.

    def do_pause(self, eq: EntroQ, options: dict[str, Any]) -> None:
        self._pause(PAUSE, options["queue"], "paused", "already paused")

    def do_resume(self, eq: EntroQ, options: dict[str, Any]) -> None:
        self._pause(RESUME, options["queue"], "resumed", "was not paused")

    def _pause(self, action: str, texts: list[str], done: str, left: str) -> None:
        changed, unchanged = pausing.apply(
            action, texts, user_id=None, username=audit.command_line_user(), via="manage.py eq"
        )
        for pause in changed:
            self.stdout.write(f"{pause}: {done}")
        for pause in unchanged:
            self.stdout.write(f"{pause}: {left}")

    def do_paused(self, eq: EntroQ, options: dict[str, Any]) -> None:
        pauses = eq.paused()
        if options["json"]:
            self._json(
                [{"queue": str(p), "since": p.since and p.since.isoformat()} for p in pauses]
            )
            return
        rows = [(p, p.since.isoformat(timespec="seconds") if p.since else "-") for p in pauses]
        self.stdout.write(_table(rows, ("PAUSED", "SINCE")))

    def do_workers(self, eq: EntroQ, options: dict[str, Any]) -> None:
        now = eq.time()
        liveness.prune()
        found = liveness.workers(now, queue=options["queue"])
        if options["json"]:
            self._json([liveness.as_json(status) for status in found])
            return
        rows = [
            (
                s.row.id,
                s.state,
                f"{s.row.host}:{s.row.pid}",
                s.row.kind,
                ",".join(s.row.queues),
                f"{s.silent.total_seconds():.0f}s ago",
                s.row.done,
                s.row.failed,
                s.row.holding,
            )
            for s in found
        ]
        header = ("ID", "STATE", "PROCESS", "KIND", "QUEUES", "BEAT", "DONE", "FAILED", "HOLDING")
        self.stdout.write(_table(rows, header))

    def do_stop_worker(self, eq: EntroQ, options: dict[str, Any]) -> None:
        row = liveness.find(options["id"])
        if row is None:
            raise CommandError(f"no worker {options['id']!r} (see manage.py eq workers)")
        self.stdout.write(liveness.request_stop(row, eq.time(), by=audit.command_line_user()))

    # Writing.

    def do_ins(self, eq: EntroQ, options: dict[str, Any]) -> None:
        value = self._value(options, required=True) or b""
        [task], _ = eq.modify(
            entroq.inserting_into(
                options["queue"],
                value=value,
                id=None if options["id"] is None else _task_id(options["id"]),
                arrival_in=options["arrival_in"],
            )
        )
        self.stdout.write(f"{task.id}:{task.version}")

    def do_claim(self, eq: EntroQ, options: dict[str, Any]) -> None:
        queues, duration = options["queue"], options["duration"]
        if options["try_only"]:
            task = eq.try_claim(*queues, duration=duration)
            if task is None:
                raise CommandError(f"nothing to claim in {', '.join(queues)}")
        else:
            try:
                task = eq.claim(*queues, duration=duration, timeout=options["timeout"])
            except entroq.ClaimTimeout as error:
                raise CommandError(str(error)) from error
        self._json(task_to_json_dict(task))

    def do_rm(self, eq: EntroQ, options: dict[str, Any]) -> None:
        keeping = self._keeping(eq, "delete", options)
        task = self._one(keeping or eq, options["id"], values=keeping is not None)
        (keeping or eq).modify(task.as_deletion(), claimant=self._as(task, options))
        self.stdout.write(f"deleted {task.id}:{task.version}")
        self._audit("delete", ops.BulkResult([task.id_version()], queues={task.queue}), keeping)

    def do_mod(self, eq: EntroQ, options: dict[str, Any]) -> None:
        task = self._one(eq, options["id"])
        changes: dict[str, Any] = {}
        if options["queue"]:
            changes["queue"] = options["queue"]
        value = self._value(options, required=False)
        if value is not None:
            changes["value"] = value
        if options["reset"]:
            changes.update(attempt=0, err="")
        if not changes:
            raise CommandError("nothing to change: give --queue, --value, --file or --reset")
        _, [changed] = eq.modify(task.as_change(**changes), claimant=self._as(task, options))
        self.stdout.write(f"changed {changed.id}:{changed.version} in {changed.queue}")

    def do_clear(self, eq: EntroQ, options: dict[str, Any]) -> None:
        queue = options["queue"]
        size = eq.queues(match_exact=queue).get(queue, 0)
        if not size:
            self.stdout.write(f"{queue} is empty")
            return
        if not options["yes"]:
            self._confirm(f"Delete all {size} tasks of {queue}?")
        keeping = self._keeping(eq, "delete", options)
        result = ops.apply_each(
            keeping or eq,
            ops.walk(keeping or eq, queue, values=keeping is not None),
            lambda t: [t.as_deletion()],
            force=options["force"],
            progress=self._progress("deleted", size),
        )
        self._audit("delete", result, keeping, queue=queue)
        self._report("deleted", result)

    def do_retry(self, eq: EntroQ, options: dict[str, Any]) -> None:
        queue, ids = options["queue"], [_task_id(i) for i in options["id"]]
        if bool(ids) == options["all"]:
            raise CommandError("give --id (repeatable) or --all")
        tasks: Iterable[Task]
        keeping = self._keeping(eq, "retry", options)
        source = keeping or eq
        if ids:
            listed = source.tasks(queue, ids=ids)
            missing = set(ids) - {t.id for t in listed}
            if missing:
                raise CommandError(f"not in {queue}: {', '.join(map(str, sorted(missing)))}")
            tasks, size = listed, len(listed)
        else:
            tasks, size = ops.walk(source, queue), eq.queues(match_exact=queue).get(queue, 0)
        result = ops.apply_each(
            source, tasks, ops.retrying, progress=self._progress("retried", size)
        )
        self._audit("retry", result, keeping, queue=queue)
        self._report("retried", result)

    def do_prune(self, eq: EntroQ, options: dict[str, Any]) -> None:
        queue = options["queue"]
        cutoff = eq.time() - options["older_than"]
        old = (t for t in ops.walk(eq, queue, values=False) if t.modified < cutoff)
        size = eq.queues(match_exact=queue).get(queue, 0)
        result = ops.apply_each(
            eq, old, lambda t: [t.as_deletion()], progress=self._progress("pruned", size)
        )
        self._report("pruned", result)

    def do_undo(self, eq: EntroQ, options: dict[str, Any]) -> None:
        undoable = Undoable.objects.select_related("run").filter(pk=options["id"]).first()
        if undoable is None:
            hours = f"{undo.keep_seconds() / 3600:g}"
            raise CommandError(f"nothing to undo as #{options['id']} (kept for {hours} hours)")
        if not undo.pending(undoable):
            self.stdout.write(f"#{undoable.pk} is undone already: nothing left to put back")
            return
        total = ops.BulkResult()
        while True:  # a bounded number of tasks at a time, each chunk committed
            result = undo.undo(eq, undoable, username=audit.command_line_user())
            total.done += result.done
            total.conflicts += result.conflicts
            self.stderr.write(f"put back {len(total.done)}, {result.remaining} to go")
            if not result.remaining or not (result.done or result.conflicts):
                break
        self._report("put back", total)

    def do_kept(self, eq: EntroQ, options: dict[str, Any]) -> None:
        summary = undo.kept_summary()
        rows = [
            (
                u.pk,
                u.created.isoformat(timespec="seconds"),
                u.username,
                u.action,
                u.entry.queue if u.entry else "-",
                left,
                u.undone.isoformat(timespec="seconds") if u.undone else "-",
            )
            for u, left in undo.recent(options["limit"])
        ]
        self.stdout.write(
            _table(rows, ("UNDO", "WHEN", "WHO", "ACTION", "QUEUE", "TO PUT BACK", "UNDONE"))
        )
        self.stdout.write(
            f"kept: {summary.deleted} deleted tasks ({summary.bytes} bytes), "
            f"{summary.moved} moved or retried, for {summary.hours:g} hours"
        )

    # Helpers.

    def _keeping(self, eq: EntroQ, action: str, options: dict[str, Any]) -> undo.Keeping | None:
        """Return a client that keeps what ``action`` changes for undo, if it is kept."""
        forced = bool(options.get("force"))
        return undo.begin(eq, action, username=audit.command_line_user(), forced=forced)

    def _audit(
        self,
        action: str,
        result: ops.BulkResult,
        keeping: undo.Keeping | None,
        *,
        queue: str = "",
    ) -> None:
        """Write the audit entry of ``action``, and say how to undo what was kept."""
        user = audit.command_line_user()
        entry = audit.record(AnonymousUser(), action, result, queue=queue, username=user)
        undoable = keeping.finish(entry) if keeping is not None else None
        if undoable is not None:
            self.stderr.write(f"undo with: manage.py eq undo {undoable.pk}")

    def _one(self, eq: EntroQ, text: str, *, values: bool = False) -> Task:
        task_id = _task_id(text)
        found = eq.tasks(ids=[task_id], omit_values=not values)
        if not found:
            raise CommandError(f"no task {task_id}")
        return found[0]

    def _as(self, task: Task, options: dict[str, Any]) -> uuid.UUID | None:
        return ops.acting_claimant(task, options["force"])

    def _value(self, options: dict[str, Any], *, required: bool) -> bytes | None:
        if options["value"] is not None and options["file"]:
            raise CommandError("give the value or --file, not both")
        if options["file"] == "-":
            return sys.stdin.buffer.read()
        if options["file"]:
            try:
                with open(options["file"], "rb") as source:
                    return source.read()
            except OSError as error:
                raise CommandError(f"cannot read {options['file']}: {error.strerror}") from error
        if options["value"] is not None:
            return str(options["value"]).encode()
        return b"" if required else None

    def _confirm(self, question: str) -> None:
        if not sys.stdin.isatty():
            raise CommandError(f"{question} Not confirmed: pass --yes (no terminal to ask)")
        try:
            answer = input(f"{question} [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in {"y", "yes"}:
            raise CommandError("not confirmed")

    def _progress(self, verb: str, total: int) -> Any:
        """Return a progress callback: one line rewritten on a terminal, lines elsewhere."""
        tty = self.stderr.isatty()

        def show(result: ops.BulkResult) -> None:
            line = f"{verb} {len(result.done)} of {total}, {len(result.conflicts)} conflicts"
            self.stderr.write(f"\r{line}" if tty else line, ending="" if tty else "\n")

        return show

    def _report(self, verb: str, result: ops.BulkResult) -> None:
        if self.stderr.isatty():
            self.stderr.write("")  # end the progress line
        for task_id, why in result.conflicts:
            self.stderr.write(f"conflict {task_id}: {why}")
        self.stdout.write(f"{verb} {len(result.done)}, conflicts {len(result.conflicts)}")
        if result.conflicts:
            raise CommandError(f"{len(result.conflicts)} task(s) left alone (see above)")

    def _json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2))


def _stat(stat: entroq.QueueStat) -> dict[str, Any]:
    return {
        "name": stat.name,
        "size": stat.size,
        "available": stat.available,
        "claimed": stat.claimed,
        "future": stat.future,
        "maxClaims": stat.max_claims,
    }
