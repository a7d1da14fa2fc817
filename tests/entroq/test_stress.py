"""Several worker processes drain one queue: every task processed exactly once."""

from __future__ import annotations

import json

import pytest

from queues import entroq
from queues.entroq import EntroQ
from tests.helpers import start_python

WORKER = """
import json, sys, time
from queues import entroq
eq = entroq.EntroQ()
done = []
while True:
    task = eq.try_claim("stress", duration=60)
    if task is None:
        if eq.queues_empty(match_exact="stress"):
            break
        time.sleep(0.01)  # the rest is claimed by others; they may yet fail
        continue
    eq.modify(task.as_deletion())
    done.append(str(task.id))
print(json.dumps(done))
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_worker_processes_process_every_task_exactly_once() -> None:
    eq = EntroQ(entroq.DjangoBackend())
    total, processes = 3000, 4
    inserted: set[str] = set()
    for _ in range(total // 500):
        tasks, _ = eq.modify(*(entroq.inserting_into("stress") for _ in range(500)))
        inserted.update(str(t.id) for t in tasks)

    workers = [start_python(WORKER) for _ in range(processes)]
    processed: list[str] = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        processed += json.loads(out)

    assert len(processed) == total, "no task lost, none processed twice"
    assert set(processed) == inserted
    assert eq.queues() == {}
