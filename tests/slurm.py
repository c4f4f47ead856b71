"""A throwaway one-node Slurm cluster for the tests: munged, slurmctld and
slurmd (Debian's munge and slurm-wlm) in a short temporary directory of
their own, on free ports, with their own munge key, state and spool
directories, run in the foreground as children of the test session and
stopped at its end.

The configuration is the one ../shared/MACHINE.md found to work, with
cgroup v1 process tracking and task confinement (proctrack/cgroup,
task/cgroup, ConstrainRAMSpace), so that ``--mem`` is enforced and an
OOM kill ends the job OUT_OF_MEMORY, and every process of a cancelled job
is killed. Job ids start at a random base, so that two sessions' clusters
on one machine never share a cgroup path.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support import eventually, free_port

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")
#: The node's memory as Slurm counts it (MiB), and each CPU's default share.
NODE_MEMORY_MB = 4000
START_TIMEOUT = 60.0

SLURM_CONF = """\
ClusterName=jdtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge.sock
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
FirstJobId={first_job}
MinJobAge=300
DefMemPerCPU=100
KillWait=2
InactiveLimit=0
Waittime=0
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=ALL Default=NO MaxTime=INFINITE State=UP
"""

CGROUP_CONF = """\
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
"""


class SlurmMissing(RuntimeError):
    """Slurm's or munge's binaries are not installed here."""


class SlurmCluster:
    """A one-node cluster; ``env`` is what a Slurm tool needs to reach it."""

    def __init__(self) -> None:
        missing = [name for name in BINARIES if shutil.which(name) is None]
        if missing:
            raise SlurmMissing(
                f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="jdslurm-", dir="/tmp"))
        self.conf = self.dir / "slurm.conf"
        self.cpus = os.cpu_count() or 1
        self.node = f"jd{random.randrange(1 << 20):x}"
        self.env = {"SLURM_CONF": str(self.conf)}
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> SlurmCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for name in ("state", "spool"):
            (self.dir / name).mkdir()
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname(),
                ctld_port=free_port(),
                d_port=free_port(),
                dir=self.dir,
                first_job=random.randrange(10_000, 60_000_000, 10_000),
                node=self.node,
                cpus=self.cpus,
                memory=NODE_MEMORY_MB,
            )
        )
        (self.dir / "cgroup.conf").write_text(CGROUP_CONF)
        d = self.dir
        self._spawn(
            "munged", "-F", "--force", f"--socket={d}/munge.sock", f"--key-file={key}",
            f"--log-file={d}/munged.log", f"--pid-file={d}/munged.pid", f"--seed-file={d}/munge.seed",
        )  # fmt: skip
        eventually(lambda: (d / "munge.sock").exists(), START_TIMEOUT, "munged's socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        eventually(self._node_idle, START_TIMEOUT, "the Slurm node to be idle")

    def _spawn(self, *argv: str) -> None:
        log = open(self.dir / f"{argv[0]}.out", "wb")  # noqa: SIM115 (the daemon's, for its life)
        env = {**os.environ, **self.env}
        self._procs.append(
            subprocess.Popen(argv, stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent)
        )
        log.close()

    def tool(self, *argv: str) -> str:
        """Run a Slurm tool against this cluster; its stdout."""
        done = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **self.env}, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def _node_idle(self) -> bool:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited: {self.logs()}")
        try:
            return "idle" in self.tool("sinfo", "-h", "-o", "%T")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def active_jobs(self) -> list[str]:
        """The ids of the jobs that have not ended yet."""
        out = self.tool("squeue", "-h", "-o", "%i %T")
        return [line for line in out.splitlines() if line.strip()]

    def logs(self) -> str:
        said = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.out"):
            path = self.dir / name
            if path.exists():
                said.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(said)

    def stop(self) -> None:
        """Cancel what is left, stop the daemons (slurmd first), remove the directory."""
        if self._procs:
            try:
                left = [line.split()[0] for line in self.active_jobs()]
                if left:
                    self.tool("scancel", *left)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        for proc in reversed(self._procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _die_with_parent() -> None:
    """A daemon gets SIGTERM when the test session dies without stopping it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def wait_no_jobs(cluster: SlurmCluster, timeout: float = 30.0) -> list[str]:
    """Wait until the cluster runs no job; what is still there then."""
    deadline = time.monotonic() + timeout
    while True:
        left = cluster.active_jobs()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
