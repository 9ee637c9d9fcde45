"""Local trials (submitit_local) free their slot as soon as their result is written.

submitit's LocalJob is done once its process has exited, and a trial process takes seconds to
tear down torch after writing its result: the slot would stand idle that long, and then for up to
a second more of submitit's polling. The result file is written atomically (a temporary file,
then a rename), so a job whose result file exists is done.
"""

from submitit.local.local import LocalJob

_process_exited = LocalJob.done


def _done(job: LocalJob, force_check: bool = False) -> bool:
    return job.paths.result_pickle.exists() or _process_exited(job, force_check)


def done_on_result() -> None:
    """Make local jobs in this process done once their result file exists."""
    LocalJob.done = _done
