"""One job over several machines: two `accelerate launch` launchers on this machine, each a
"node" with one CPU process, joined over loopback by gloo as a cluster's nodes are over their
network (docs/scaling-out.md)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PROJECT,
    arguments,
    assert_close_values,
    assert_close_weights,
    environment,
    final_weights,
    free_port,
    kill_group,
    learning_rates,
    losses,
    run_train,
    start_train,
    wait_for_step,
)

from trainkit.checkpoints import checkpoint_dirs, step_of

# The launch and the checkpoints are the loop's, the same for every task.
pytestmark = pytest.mark.loop
STAND_INS = PROJECT / "tests" / "slurm_stand_in"


def slurm_answers():
    """Whether a SLURM with two idle nodes answers here (the template's scripts/slurm.sh starts
    one on a single machine)."""
    if not shutil.which("sinfo"):
        return False
    try:  # a SLURM that is configured but not running makes sinfo wait for minutes
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False
    return nodes.returncode == 0 and nodes.stdout.split() == ["idle", "idle"]


class Job:
    """slurm/train.sbatch on two nodes, one process each: submitted to a real SLURM where one
    answers; elsewhere run under stand-ins for srun and scontrol (tests/slurm_stand_in/) with
    the variables SLURM sets, one real launcher per fake node. Its output goes to `log`."""

    def __init__(self, run, **options):
        self.log = run.parent / "slurm.out"
        self.real = slurm_answers()
        self.env = environment(
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            OUTPUT_DIR=str(run),
            ACCELERATE_CONFIG="configs/accelerate/cpu_2proc.yaml",
            PROCESSES_PER_NODE="1",
            PORT=str(free_port()),
        )
        self.script = ["slurm/train.sbatch", *arguments(run, **options)]
        if self.real:  # no GPUs on this cluster; the output appended, as --open-mode=append does
            sbatch = ["sbatch", "--parsable", "--gpus-per-node=0", f"--output={self.log}"]
            submitted = subprocess.run(
                sbatch + self.script, cwd=PROJECT, env=self.env, capture_output=True, text=True
            )
            assert submitted.returncode == 0, submitted.stderr
            self.id = submitted.stdout.strip().split(";")[0]
        else:
            self.id = "4242"
            self.env.update(
                PATH=f"{STAND_INS}:{self.env['PATH']}",
                SLURM_JOB_ID=self.id,
                SLURM_JOB_NAME="train",
                SLURM_NNODES="2",
                SLURM_JOB_NODELIST="127.0.0.1,127.0.0.1",
                SCONTROL_REQUEUED=str(run.parent / "requeued"),
            )
            self.start_stand_in()

    def start_stand_in(self):
        with self.log.open("a") as log:
            self.shell = subprocess.Popen(
                ["bash", *self.script], cwd=PROJECT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def running(self):
        if self.real:
            queue = subprocess.run(["squeue", "-h", "-j", self.id], capture_output=True, text=True)
            return bool(queue.stdout.strip())
        return self.shell.poll() is None

    def wait(self, done, timeout=300):
        """Wait until done() or the job has left the queue; whether done() came true."""
        deadline = time.time() + timeout
        while not done() and self.running() and time.time() < deadline:
            time.sleep(0.2)
        return done()

    def text(self):
        """The output so far; a character cut in half by a write in progress is replaced."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logged(self, text):
        return text in self.text()

    def signal_time_limit(self):
        """What --signal=B:USR1@300 does near the time limit: USR1 to the batch script."""
        if self.real:
            subprocess.run(["scancel", "--signal=USR1", "--batch", self.id], check=True)
        else:
            self.shell.send_signal(signal.SIGUSR1)

    def come_back(self):
        """The requeued job starts again: SLURM does that; without it, the test does."""
        if not self.real:
            assert self.shell.wait(timeout=120) == 0, self.text()
            assert (self.log.parent / "requeued").read_text() == f"{self.id}\n"
            self.env["SLURM_RESTART_COUNT"] = "1"
            self.start_stand_in()


def children(process):
    return Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()


@pytest.mark.slow
def test_two_nodes_and_slurm_train_like_one_process_through_preemptions(tmp_path):
    """2 nodes x batch B == 1 process x batch 2B, through three stops. SIGTERM to one node's
    launcher (that machine preempted): the processes of both nodes save one checkpoint and stop
    cleanly. The run moves to 1 process x 2B (a changed cluster, the same global batch), is
    preempted again, and slurm/train.sbatch (on a real SLURM where one answers) resumes it on
    2 nodes; USR1 to its shell (the time-limit signal) saves and requeues the job; the requeued
    job finishes. Every resume continues at the same place in the data and the same learning
    rate: losses, rates and weights as the uninterrupted run on one process, within 1e-5."""
    one, run = tmp_path / "one", tmp_path / "run"
    # Only the signals save mid-run. The tiny model makes about 100 updates a second, and each
    # run must still be training when a signal arrives (SLURM delivers one in a fraction of a
    # second): 78 updates, each followed by an evaluation in the interrupted run, which draws on
    # no random state, so the numbers stay those of the uninterrupted run.
    options = {"save_strategy": "steps", "save_steps": 1000, "num_train_epochs": 6}
    run_train(one, per_device_train_batch_size=4, **options)
    options.update(per_device_train_batch_size=2, eval_strategy="steps", eval_steps=1)

    port = free_port()
    head, other = [start_train(run, 2, (rank, port, []), **options) for rank in (0, 1)]
    assert wait_for_step(head, run, 4), head.stderr.read()
    other.send_signal(signal.SIGTERM)  # the launcher, which passes it to its process
    other.wait(timeout=120)
    deadline = time.time() + 120
    while children(head) and time.time() < deadline:
        time.sleep(0.1)
    # The head's process has ended; its launcher ends at once when a process fails, but after a
    # success waits (up to 300 s, deaf to signals) for the other node's launcher, which the
    # signal ended. On a cluster every node gets the signal, so no launcher waits.
    assert not children(head) and head.poll() is None, head.stderr.read()
    kill_group(head)
    stop = assert_one_new_checkpoint(run, after=4)

    alone = start_train(
        run, **{**options, "per_device_train_batch_size": 4}, resume_from_checkpoint="latest"
    )
    assert wait_for_step(alone, run, stop + 3), alone.stderr.read()
    alone.send_signal(signal.SIGTERM)
    assert alone.wait(timeout=120) == 0, alone.stderr.read()
    stop = assert_one_new_checkpoint(run, after=stop + 3, processes=1)

    job = Job(run, **options)
    assert job.wait(lambda: max(losses(run), default=0) >= stop + 3), job.text()
    job.signal_time_limit()
    assert job.wait(lambda: job.logged(f"requeueing job {job.id}")), job.text()
    assert_one_new_checkpoint(run, after=stop + 3)
    job.come_back()
    assert job.wait(lambda: job.logged("Done:")), job.text()
    assert job.logged(f"Restart 1 of job {job.id}: resuming")
    assert job.wait(lambda: not job.running(), timeout=60), "the job ends"
    assert job.text().count("requeueing") == 1, "a finished job is not requeued"
    assert len(losses(one)) >= 30
    assert_close_values(losses(one), losses(run), 1e-5, "loss")
    assert learning_rates(one) == learning_rates(run)
    assert_close_weights(final_weights(one), final_weights(run), 1e-5)


def assert_one_new_checkpoint(run, after, processes=2):
    """The newest checkpoint is past update `after`, holds each process's RNG state and is the
    only one since `after`; the run is not final. Returns its update."""
    saved = [step_of(path) for path in checkpoint_dirs(run)]
    assert saved[-1] >= after and all(step < after for step in saved[:-1]), saved
    newest = checkpoint_dirs(run)[-1]
    states = sorted(path.name for path in newest.glob("random_states_*"))
    assert states == [f"random_states_{rank}.pkl" for rank in range(processes)], "one each"
    assert not (run / "final").exists(), "a stopped run is not final"
    return saved[-1]


@pytest.mark.slow
def test_a_node_that_never_arrives_ends_the_launch_within_its_timeout(tmp_path):
    """Only the head node starts: its launcher gives up after --rdzv_conf timeout seconds and
    says how many nodes joined, instead of waiting forever; nothing is written."""
    started = time.monotonic()
    head = start_train(tmp_path / "run", 2, (0, free_port(), ["--rdzv_conf", "timeout=5"]))
    assert head.wait(timeout=120) != 0
    assert time.monotonic() - started < 60
    assert "1/2 clients joined" in head.stderr.read()
    assert not (tmp_path / "run").exists()
