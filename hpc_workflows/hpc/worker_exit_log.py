"""Keep a false "Worker process died unexpectedly" out of worker logs after a normal close.

Inside a worker process, distributed's nanny plumbing has a thread blocked reading a queue
from the nanny. When the worker has closed normally (retired, or the run ended) and its
process exits, that queue is torn down under the thread, which logs "Worker process died
unexpectedly" at ERROR with a TypeError/EOFError traceback. Nothing died: the message is
dropped when no worker of this process is still running. A worker that is still running when
it is logged (its nanny really went away) keeps the message.
"""

from __future__ import annotations

import logging

__all__ = ["drop_false_death_reports"]

_MESSAGE = "Worker process died unexpectedly"


class _AfterCloseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != _MESSAGE:
            return True
        # Imported here, not with the module: the filter is installed in every process that
        # runs steps, the run's own process too, which on a run with nothing to do never
        # loads distributed (~0.8 s). Only distributed's nanny logs this message.
        from distributed.core import Status
        from distributed.worker import _global_workers

        alive = {Status.init, Status.starting, Status.running, Status.paused}
        return any(w.status in alive for w in list(_global_workers))


def drop_false_death_reports() -> None:
    """Install the filter on distributed's nanny logger in this process (idempotent)."""
    logger = logging.getLogger("distributed.nanny")
    if not any(isinstance(f, _AfterCloseFilter) for f in logger.filters):
        logger.addFilter(_AfterCloseFilter())
