"""Failure classes the testbed cannot produce on demand (node failure, preemption) and PBS Pro's
``qstat -x -f`` (no PBS Pro server here): the scheduler's documented words, fed to the same
parsers the real jobs of test_accounting.py go through."""

from __future__ import annotations

import pytest

from hpc_workflows.hpc.accounting import SACCT_FIELDS, parse_qstat_f, parse_sacct
from hpc_workflows.hpc.failures import RETRY_RULES, FailureClass, classify


def _sacct_line(**values: str) -> str:
    row = dict.fromkeys(SACCT_FIELDS, "")
    row.update(values)
    return "|".join(row[f] for f in SACCT_FIELDS)


@pytest.mark.parametrize(("state", "exit_code", "expected"), [
    ("NODE_FAIL", "0:0", FailureClass.NODE_FAILURE),
    ("PREEMPTED", "0:15", FailureClass.PREEMPTED),
    ("OUT_OF_MEMORY", "0:125", FailureClass.OUT_OF_MEMORY),
    ("TIMEOUT", "0:0", FailureClass.WALLTIME),
    ("COMPLETED", "0:0", None),
])
def test_sacct_states_map_to_classes(state: str, exit_code: str, expected: FailureClass | None) -> None:
    text = _sacct_line(JobIDRaw="7", JobID="7", State=state, ExitCode=exit_code, DerivedExitCode="0:0",
                       AllocCPUS="2", ElapsedRaw="60", TotalCPU="01:00.000", ReqMem="1G")
    usage = parse_sacct(text)["7"]
    assert usage.failure is expected, usage
    assert usage.core_hours == pytest.approx(120 / 3600) and usage.cpu_efficiency == pytest.approx(0.5)


def test_every_class_has_a_rule_and_only_code_errors_and_oom_are_not_retried() -> None:
    assert set(RETRY_RULES) == set(FailureClass)
    assert {c for c, r in RETRY_RULES.items() if not r.retry} == {
        FailureClass.USER_ERROR, FailureClass.OUT_OF_MEMORY}
    # A signal with exit code 0 is a kill from outside; a non-zero exit code is the code's own.
    assert classify(["FAILED"], ["0:9"]) is FailureClass.KILLED
    assert classify(["FAILED"], ["0:9"], max_rss=95, req_mem=100) is FailureClass.OUT_OF_MEMORY
    assert classify(["FAILED"], ["2:0"]) is FailureClass.USER_ERROR


def test_pbs_pro_qstat_x_f_of_a_job_killed_at_its_walltime() -> None:
    # The fields PBS Pro prints for a finished job (qstat -x -f); -29 is JOB_EXEC_KILL_WALLTIME.
    text = """Job Id: 1234.pbsserver
    Job_Name = dagster-abcd1234
    job_state = F
    qtime = Wed Dec  2 13:31:57 2026
    stime = Wed Dec  2 13:32:07 2026
    exec_host = node12/0*2
    Resource_List.ncpus = 2
    Resource_List.mem = 4gb
    resources_used.cput = 00:01:30
    resources_used.mem = 3900000kb
    resources_used.walltime = 00:01:00
    Exit_status = -29
"""
    usage = parse_qstat_f(text, "1234.pbsserver")
    assert usage is not None and usage.failure is FailureClass.WALLTIME, usage
    assert (usage.node, usage.cores, usage.queue_wait, usage.elapsed, usage.cpu_time) == ("node12", 2, 10, 60, 90)
    assert usage.max_rss == 3900000 * 1024 and usage.req_mem == 4 * 2**30
