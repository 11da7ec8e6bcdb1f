"""The false "Worker process died unexpectedly" after a normal close is dropped; a report while
a worker still runs is kept. Real distributed Scheduler and Worker in this process."""

from __future__ import annotations

import asyncio
import logging

import pytest
from distributed import Scheduler, Worker

from hpc_workflows.hpc.worker_exit_log import drop_false_death_reports


def _report(caplog: pytest.LogCaptureFixture) -> bool:
    caplog.clear()
    try:
        raise TypeError("'NoneType' object cannot be interpreted as an integer")
    except TypeError:
        logging.getLogger("distributed.nanny").exception("Worker process died unexpectedly")
    return any(r.getMessage() == "Worker process died unexpectedly" for r in caplog.records)


def test_death_report_kept_while_running_dropped_after_close(caplog: pytest.LogCaptureFixture) -> None:
    drop_false_death_reports()
    caplog.set_level(logging.INFO, logger="distributed.nanny")

    async def scenario() -> tuple[bool, bool]:
        async with Scheduler(host="127.0.0.1", dashboard_address=":0") as scheduler:
            worker = await Worker(scheduler.address, host="127.0.0.1", dashboard=False)
            while_running = _report(caplog)
            await worker.close()
            return while_running, _report(caplog)

    while_running, after_close = asyncio.run(scenario())
    assert while_running, "a report while the worker runs must be kept"
    assert not after_close, "the report after a normal close must be dropped"
