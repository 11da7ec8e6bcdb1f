"""Which worker jobs a run's close cancels before it retires the connected workers."""

from hpc_workflows.hpc.clusters import unstarted_jobs


def test_a_job_with_no_connected_worker_is_unstarted():
    spec = {"dagster-1": {"cls": object}, "dagster-2": {"cls": object}}
    assert unstarted_jobs(spec, {"dagster-1"}) == ["dagster-2"]
    assert unstarted_jobs(spec, set()) == ["dagster-1", "dagster-2"]
    assert unstarted_jobs(spec, {"dagster-1", "dagster-2"}) == []


def test_a_job_of_several_processes_is_started_once_any_of_them_connected():
    spec = {"dagster-1": {"group": ["-0", "-1"]}, "dagster-2": {"group": ["-0", "-1"]}}
    # worker names are job name + suffix; the bare job name is never a worker's name
    assert unstarted_jobs(spec, {"dagster-1-1"}) == ["dagster-2"]
    assert unstarted_jobs(spec, {"dagster-1", "dagster-2"}) == ["dagster-1", "dagster-2"]
