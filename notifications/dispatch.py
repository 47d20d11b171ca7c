"""Handing deliveries to whoever sends them, without ever holding up the caller.

After the event's transaction commits, delivery ids are handed over here:

- with a broker (production), a per-process publisher thread queues a
  ``notifications.deliver`` task for each. The web request only appends to an
  in-memory queue, so a slow or unreachable broker costs it nothing; a publish
  that fails is logged, and the row stays pending until the sweep job
  (``notifications.sweep_deliveries``, Celery beat) queues it again;
- without one (the embedded default, Celery eager), a short-lived daemon thread
  sends them in this process, and a timer thread runs each retry when it is due.

``AGENTKEY_NOTIFICATIONS_DISPATCH = "manual"`` (the test settings) hands nothing
over: rows are written and a test drives the task itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import connections, transaction

logger = logging.getLogger(__name__)

MANUAL = "manual"
BACKGROUND = "background"
MODES = (BACKGROUND, MANUAL)


def _mode() -> str:
    return str(getattr(settings, "AGENTKEY_NOTIFICATIONS_DISPATCH", BACKGROUND))


def _eager() -> bool:
    from notifications.tasks import deliver

    return bool(deliver.app.conf.task_always_eager)


def after_commit(delivery_ids: Iterable[uuid.UUID]) -> None:
    """Hand the deliveries over once the current transaction commits (at once outside one)."""
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    if ids:
        transaction.on_commit(lambda: hand_over(ids))


def hand_over(ids: list[str], *, countdown: float = 0.0) -> None:
    """From a web request: never blocks on the broker or the network."""
    if _mode() == MANUAL or not ids:
        return
    if _eager():
        _run_in_thread(ids, countdown)
    else:
        _publisher.put(ids, countdown)


def requeue(delivery_id: str, *, countdown: float = 0.0) -> bool:
    """From a worker (a retry, the sweep job): publish now. False when the broker refused;
    the row then waits for the sweep job."""
    if _mode() == MANUAL:
        return False
    if _eager():
        _run_in_thread([delivery_id], countdown)
        return True
    return publish(delivery_id, countdown=countdown)


def publish(delivery_id: str, *, countdown: float = 0.0) -> bool:
    from notifications.tasks import deliver

    try:
        deliver.apply_async(args=[delivery_id], countdown=countdown or None)
    except Exception as exc:  # noqa: BLE001 (any broker failure: the sweep job queues the row again)
        logger.warning(
            "Could not queue notification delivery %s (%s); the sweep job will queue it again.",
            delivery_id,
            type(exc).__name__,
        )
        return False
    return True


class _Publisher:
    """One daemon thread per process draining a queue of ids into the broker.

    Started lazily and again after a fork (gunicorn and Celery fork their workers).
    Ids still queued when the process exits are not lost: their rows are pending,
    and the sweep job queues them again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[str], float]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def put(self, ids: list[str], countdown: float) -> None:
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                if self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._drain, args=(self._queue,), name="agentkey-notify-publisher", daemon=True
                )
                self._thread.start()
            self._queue.put((ids, countdown))

    @staticmethod
    def _drain(work: queue.SimpleQueue[tuple[list[str], float]]) -> None:
        while True:
            ids, countdown = work.get()
            for delivery_id in ids:
                publish(delivery_id, countdown=countdown)


_publisher = _Publisher()


def _run_in_thread(ids: list[str], countdown: float) -> None:
    if countdown > 0:
        runner: threading.Thread = threading.Timer(countdown, _run, args=(ids,))
    else:
        runner = threading.Thread(target=_run, args=(ids,))
    runner.name = "agentkey-notify-eager"
    runner.daemon = True
    runner.start()


def _run(ids: list[str]) -> None:
    """Send in this process (no broker): the work a worker would do, then close this thread's
    database connections. Also sweeps, so rows a restart left behind go out with the next event."""
    from notifications.services import deliveries_sweep, delivery_attempt

    try:
        swept = [str(delivery_id) for delivery_id in deliveries_sweep().requeue]
        for delivery_id in dict.fromkeys([*ids, *swept]):
            attempt = delivery_attempt(delivery_id=uuid.UUID(delivery_id))
            if attempt.retry_in is not None:
                _run_in_thread([delivery_id], attempt.retry_in)
    except Exception as exc:  # noqa: BLE001 (a daemon thread has nobody to raise to)
        logger.error("Sending notifications in the background failed (%s).", type(exc).__name__)
    finally:
        connections.close_all()
