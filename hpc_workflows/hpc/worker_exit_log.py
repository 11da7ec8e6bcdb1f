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

from distributed.core import Status

__all__ = ["drop_false_death_reports"]

_MESSAGE = "Worker process died unexpectedly"
_ALIVE = {Status.init, Status.starting, Status.running, Status.paused}


class _AfterCloseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != _MESSAGE:
            return True
        from distributed.worker import _global_workers

        return any(w.status in _ALIVE for w in list(_global_workers))


def drop_false_death_reports() -> None:
    """Install the filter on distributed's nanny logger in this process (idempotent)."""
    logger = logging.getLogger("distributed.nanny")
    if not any(isinstance(f, _AfterCloseFilter) for f in logger.filters):
        logger.addFilter(_AfterCloseFilter())
