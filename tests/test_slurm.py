"""The cluster path against a running SLURM (a private one-node cluster, the ``slurm_cluster``
fixture): a sweep submitted with ``hydra/launcher=slurm``, preemption by USR2 and requeue, DDP
with SLURM's tasks, a failed job and a job ended by its time limit. Each SLURM result is compared
with the same run on this machine without SLURM. ``make test-slurm``; CI runs them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from test_resume import DETERMINISTIC, PLUGINS, assert_same_run

pytestmark = pytest.mark.slurm

TINY = [*DETERMINISTIC, "model=fig2", "model.kind=prelu", "trainer.max_epochs=2",
        "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2"]
# One CPU task per job, no GPU, 1 GB; a job's time limit of 30 minutes (SLURM's USR2 comes
# signal_delay_s = 5 minutes before it: after these tests).
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.tasks_per_node=1", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30"]
ENDED = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL",
         "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def environment(cluster: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a SLURM job's variables (the tests may run in an
    ``salloc`` shell), with the test plug-ins importable and, for a client, the cluster's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**clean, "PYTHONPATH": str(PLUGINS), **(cluster or {})}


def ftbnn(*args: str, cwd: Path, cluster: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          env=environment(cluster), capture_output=True, text=True, timeout=900)


def start(*args: str, cwd: Path, log: Path, cluster: dict[str, str] | None = None
          ) -> subprocess.Popen:
    """``ftbnn(*args)`` in the background, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                                env=environment(cluster), stdout=out, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=900) == 0, log.read_text()[-3000:]


def slurm(cluster: dict[str, str], *args: str) -> str:
    return subprocess.run(list(args), env=environment(cluster), capture_output=True, text=True,
                          check=True).stdout


def jobs(cluster: dict[str, str], job: str) -> list[dict[str, str]]:
    """``scontrol show job``'s records of ``job`` (each task of an array), as key -> value."""
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in slurm(cluster, "scontrol", "-o", "show", "job", job).splitlines()]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, f"waited {seconds} s for {what}"
        time.sleep(0.5)


def wait_ended(cluster: dict[str, str], job: str) -> dict[str, str]:
    wait_until(lambda: jobs(cluster, job)[0]["JobState"] in ENDED, 600, f"job {job} to end")
    return jobs(cluster, job)[0]


def submitted(sweep: Path) -> list[str]:
    """The SLURM jobs of a ``hydra/launcher=slurm`` sweep (``<id>`` for one job, ``<id>_<task>``
    for each of an array), from submitit's pickle of each."""
    return sorted(p.name.removesuffix("_submitted.pkl")
                  for p in (sweep / ".submitit").glob("*/*_submitted.pkl"))


def job_output(sweep: Path, job: str, task: int = 0) -> str:
    """What task ``task`` of ``job`` printed (submitit's log of it, across requeues)."""
    return (sweep / ".submitit" / job / f"{job}_{task}_log.out").read_text()


def pause_at(epoch: int, batch: int, marker: Path) -> str:
    return (f"+callbacks.pause={{_target_:slurm_callbacks.PauseAt,epoch:{epoch},batch:{batch},"
            f"marker:{marker}}}")


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY run here, without SLURM and without interruption: what the SLURM runs must equal."""
    folder = tmp_path_factory.mktemp("whole")
    done = ftbnn(*TINY, f"hydra.run.dir={folder / 'run'}", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run"


def test_a_sweep_runs_as_one_slurm_job_per_row_equal_to_local_runs(slurm_cluster, whole,
                                                                   tmp_path):
    sweep = tmp_path / "sweep"
    with start(*TINY, "seed=7", f"hydra.run.dir={tmp_path / 'local-7'}", cwd=tmp_path,
               log=tmp_path / "local.log") as local:
        done = ftbnn("-m", *TINY, *LAUNCHER, "seed=42,7", f"hydra.sweep.dir={sweep}",
                     "hydra.sweep.subdir=seed${seed}", cwd=tmp_path, cluster=slurm_cluster)
        finished(local, tmp_path / "local.log")
    assert done.returncode == 0, done.stderr[-3000:]
    (array,) = {job.split("_")[0] for job in submitted(sweep)}
    wait_until(lambda: all(r["JobState"] in ENDED for r in jobs(slurm_cluster, array)), 600,
               f"the jobs of array {array} to end")  # their results come back before that
    records = jobs(slurm_cluster, array)
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]
    assert {(r["JobState"], r["Restarts"]) for r in records} == {("COMPLETED", "0")}
    for seed, local_run in ((42, whole), (7, tmp_path / "local-7")):
        assert metrics(sweep / f"seed{seed}")["status"] == "completed"
        assert_same_run(local_run, sweep / f"seed{seed}")


def test_usr2_mid_epoch_requeues_and_the_job_ends_as_an_uninterrupted_run(slurm_cluster, whole,
                                                                           tmp_path):
    sweep, marker, log = tmp_path / "sweep", tmp_path / "paused", tmp_path / "sweep.log"
    run = sweep / "run"
    with start("-m", *TINY, *LAUNCHER, pause_at(1, 1, marker), f"hydra.sweep.dir={sweep}",
               "hydra.sweep.subdir=run", cwd=tmp_path, log=log, cluster=slurm_cluster) as sweeping:
        wait_until(marker.exists, 600, "the job to reach batch 1 of epoch 1")
        (job,) = submitted(sweep)
        slurm(slurm_cluster, "scancel", "--signal=USR2", job)  # what SLURM sends before the limit
        # Lightning's handler saves it, then requeues the job (SLURM ends this run: SIGTERM)
        wait_until((run / "hpc_ckpt_1.ckpt").exists, 120, "Lightning's hpc_ckpt_1.ckpt")
        finished(sweeping, log)
    record = wait_ended(slurm_cluster, job)
    assert (record["JobState"], record["Restarts"]) == ("COMPLETED", "1")  # requeued once
    output = job_output(sweep, job)
    # The run that SLURM ended writes interrupted.ckpt after the hpc checkpoint (the same
    # state) unless KillWait ran out first; the requeued run resumes from the newer of them.
    assert any(f"resuming from {path}" in output for path in (
        run / "checkpoints" / "interrupted.ckpt", run / "hpc_ckpt_1.ckpt")), output[-3000:]
    assert output.count("[completed, 2 epochs]") == 1
    assert not list(run.glob("hpc_ckpt_*"))  # spent once training went past it
    assert metrics(run)["status"] == "completed"
    assert_same_run(whole, run)


def test_two_slurm_tasks_join_one_ddp_training_equal_to_a_local_two_process_run(slurm_cluster,
                                                                               tmp_path):
    ddp, sweep = [*TINY, "trainer=ddp_cpu"], tmp_path / "sweep"
    with start(*ddp, f"hydra.run.dir={tmp_path / 'local'}", cwd=tmp_path,
               log=tmp_path / "local.log") as local:  # Lightning starts the second process
        done = ftbnn("-m", *ddp, *LAUNCHER, "hydra.launcher.tasks_per_node=2",
                     f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=run", cwd=tmp_path,
                     cluster=slurm_cluster)
        finished(local, tmp_path / "local.log")
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = submitted(sweep)
    record = wait_ended(slurm_cluster, job)  # its results come back before it has ended
    assert (record["JobState"], record["NumTasks"]) == ("COMPLETED", "2")
    # SLURM started both processes, ranks 0 and 1 of two, which trained as one world
    for rank in (0, 1):
        assert f"global_rank={rank}(2)" in job_output(sweep, job, rank)
    assert metrics(sweep / "run")["world_size"] == metrics(tmp_path / "local")["world_size"] == 2
    assert_same_run(tmp_path / "local", sweep / "run")


def test_a_failed_job_fails_the_sweep_and_a_job_past_its_time_limit_resumes_on_rerun(
        slurm_cluster, whole, tmp_path):
    run, marker = tmp_path / "timed-out", tmp_path / "paused"
    command = shlex.join(["srun", sys.executable, "-m", "ftbnn_exp", *TINY,
                          pause_at(1, 1, marker), f"hydra.run.dir={run}"])

    def submit(minutes: int) -> str:
        """``command`` as a batch job of ``minutes``, not requeued, no signal before its end."""
        return slurm(slurm_cluster, "sbatch", "--parsable", f"--time={minutes}", "--no-requeue",
                     "--cpus-per-task=1", f"--chdir={tmp_path}",
                     f"--output={tmp_path}/job-%j.out", "--wrap", command).strip()

    timed = submit(1)  # ends at SLURM's next time-limit check after its minute, at batch 1
    # Meanwhile, a sweep whose second job crashes in its first batch.
    sweep = tmp_path / "sweep"
    done = ftbnn("-m", *TINY, *LAUNCHER, "trainer.max_epochs=1",
                 "+callbacks.crash._target_=lightning.pytorch.Callback,slurm_callbacks.FailAt",
                 f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
                 cwd=tmp_path, cluster=slurm_cluster)
    assert done.returncode != 0
    assert "failing on purpose" in done.stderr, done.stderr[-3000:]
    assert len(submitted(sweep)) == 2  # SLURM lists both as COMPLETED: Hydra hands the
    # job's error back to the submitting command as the job's result
    assert [metrics(sweep / row)["status"] for row in ("0", "1")] == ["completed", "failed"]
    report = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", str(sweep)],
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert "| status | completed | failed |" in report.stdout.splitlines(), report.stdout
    # The job past its time limit: SLURM's SIGTERM at the limit saved it mid-epoch; the same
    # job submitted again resumes there and ends as the uninterrupted run.
    assert wait_ended(slurm_cluster, timed)["JobState"] == "TIMEOUT" and marker.exists()
    assert metrics(run)["status"] == "interrupted"
    again = submit(10)
    assert wait_ended(slurm_cluster, again)["JobState"] == "COMPLETED"
    output = (tmp_path / f"job-{again}.out").read_text()
    assert f"resuming from {run / 'checkpoints' / 'interrupted.ckpt'}" in output, output[-3000:]
    assert_same_run(whole, run)
