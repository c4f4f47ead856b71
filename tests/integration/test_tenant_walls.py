"""Tenants walled off for real (issue 15): on a server with tokens, bob's
job tries every way the issue lists to reach alice's running job, her
secret, the server and its store, as a real process; each must fail, while
bob's own job and alice's still do their work. On SQLite and PostgreSQL.

Also: a server that cannot give jobs identities of their own (it does not
run as root) refuses to start with tokens on, unless told jobs_as_server,
and then says so to admins in /v1/me."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobdock import Client, JobState
from jobdock.client import Credentials
from jobdock.vault import generate_key
from support import ServerProcess, WorkerProcess, as_user, eventually, make_token

PW = "alice-pw-7c1e5b9d"
KEY = generate_key()
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="job identities need root")

#: Bob's job: each attempt prints "NAME: denied" or "NAME: LEAK ...".
PROBES = r"""
import ctypes, glob, json, os, signal, sqlite3, sys
t = json.loads(sys.argv[1])
server, alice = t["server_pid"], t["alice_pid"]
def report(name, attempt):
    try:
        got = attempt()
    except OSError as exc:
        print(f"{name}: denied ({exc.strerror})")
        return
    except sqlite3.Error as exc:
        print(f"{name}: denied ({exc})")
        return
    print(f"{name}: denied (found nothing)" if not got else f"{name}: LEAK {got!r}"[:300])
def read(path):
    with open(path, "rb") as f:
        return f.read()
def environ_scan():
    found = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            data = read(path)
        except OSError:
            continue
        if b"PW=" in data or t["pw"].encode() in data or b"JOBDOCK_SECRET_KEY" in data:
            found.append(path)
    return found
def secrets_dirs():
    found = []
    for d in glob.glob("/dev/shm/jobdock-secrets-*") + glob.glob("/tmp/jobdock-secrets-*"):
        for name in os.listdir(d):
            found.append(read(os.path.join(d, name)))
    return found
def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        return "attached"
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
def fds(pid):
    found = os.listdir(f"/proc/{pid}/fd")
    return found + [read(f"/proc/{pid}/fd/{n}")[:20] for n in found]
def sqlite_store():
    db = sqlite3.connect(f"file:{t['home']}/jobdock.db?mode=ro", uri=True)
    return db.execute("select hex(value) from user_secrets").fetchall()
def write(path):
    with open(path, "w") as f:
        f.write("bob was here")
    return path
report("environ_scan", environ_scan)
report("secrets_dir", secrets_dirs)
report("server_environ", lambda: read(f"/proc/{server}/environ"))
report("alice_environ", lambda: read(f"/proc/{alice}/environ"))
report("server_home", lambda: os.listdir(t["home"]))
report("sqlite_store", sqlite_store)
report("store_via_proc_root", lambda: read(f"/proc/{server}/root{t['home']}/jobdock.db"))
report("alice_home_via_proc_root", lambda: os.listdir(f"/proc/{alice}/root{t['alice_home']}"))
report("alice_cwd", lambda: os.listdir(f"/proc/{alice}/cwd"))
report("server_fds", lambda: fds(server))
report("alice_fds", lambda: fds(alice))
report("alice_mem", lambda: read(f"/proc/{alice}/mem"))
report("ptrace_server", lambda: ptrace(server))
report("ptrace_alice", lambda: ptrace(alice))
report("kill_server", lambda: os.kill(server, signal.SIGKILL))
report("kill_alice", lambda: os.killpg(alice, signal.SIGKILL))
report("write_alice_home", lambda: write(os.path.join(t["alice_home"], "bob.txt")))
write(os.path.join(os.environ["HOME"], "mine.txt"))
print("own_home:", read(os.path.join(os.environ["HOME"], "mine.txt")).decode())
"""

#: Alice's job: waits (her secret in env and file) until the test says
#: "done" in her HOME, then checks that both are still hers and whole.
ALICE = (
    'echo started; while [ ! -e "$HOME/done" ]; do sleep 0.05; done; '
    '[ "$PW" = "$(cat "$JOBDOCK_SECRETS_DIR/pw")" ] && [ "$PW" = "' + PW + '" ] && echo intact'
)


@pytest.fixture
def job_homes() -> Iterator[Path]:
    """Where owners' HOMEs go: a directory every uid may pass through (not
    under pytest's 0700 temporary root)."""
    path = Path(tempfile.mkdtemp(prefix="jobdock-homes-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def walled(
    request: pytest.FixtureRequest, tmp_path: Path, job_homes: Path
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """A server with tokens and a secret key (on either store), and tokens
    for alice and bob."""
    home = tmp_path / "server"
    home.mkdir()
    store = {"db": request.getfixturevalue("pg_url")} if request.param == "postgresql" else {}
    server = ServerProcess(
        home, args=["--tokens"], secret_key=KEY, job_homes=str(job_homes), **store
    )
    on_store = ["--db", store["db"]] if store else []
    tokens = {user: make_token(home, user, *on_store) for user in ("alice", "bob")}
    server.start()
    yield server, tokens
    server.stop()


def _client(server: ServerProcess, token: str) -> Client:
    return Client(server.url, credentials=Credentials(token=token))


def test_bobs_job_reaches_nothing_of_alices_job_the_server_or_its_store(
    walled: tuple[ServerProcess, dict[str, str]], job_homes: Path
) -> None:
    server, tokens = walled
    assert server.proc is not None
    with _client(server, tokens["alice"]) as alice, _client(server, tokens["bob"]) as bob:
        alice.set_secret("pw", PW.encode())
        hers = alice.submit(
            {
                "command": ["sh", "-c", ALICE],
                "secrets": [{"name": "pw", "env": "PW"}, {"name": "pw", "file": "pw"}],
            }
        )
        running = eventually(
            lambda: (
                (job := alice.get(hers.id)).state is JobState.RUNNING
                and job.attempts[-1].pid is not None
                and b"started" in b"".join(d for _, d in alice.logs(hers.id))
                and job
            ),
            30,
            "alice's job to run",
        )
        alice_pid = running.attempts[-1].pid
        # The server's files are its own.
        assert server.home.stat().st_mode & 0o777 == 0o700
        for path in server.home.glob("jobdock.db*"):
            assert path.stat().st_mode & 0o077 == 0, path
        alice_home = Path(_environ(alice_pid)["HOME"])
        assert alice_home.parent == job_homes and alice_home.stat().st_mode & 0o777 == 0o700
        secrets_dir = Path(_environ(alice_pid)["JOBDOCK_SECRETS_DIR"])
        assert secrets_dir.stat().st_uid == alice_home.stat().st_uid != 0
        assert secrets_dir.stat().st_mode & 0o777 == 0o700
        targets = {
            "server_pid": server.proc.pid,
            "alice_pid": alice_pid,
            "home": str(server.home),
            "alice_home": str(alice_home),
            "pw": PW,
        }
        his = bob.run({"command": ["python3", "-c", PROBES, json.dumps(targets)]})
        report = his.stdout
        print(report)
        lines = dict(line.split(": ", 1) for line in report.splitlines() if ": " in line)
        probes = [name for name in lines if name != "own_home"]
        assert len(probes) == 17, report
        leaks = {
            name: said
            for name, said in lines.items()
            if name != "own_home" and not said.startswith("denied")
        }
        assert leaks == {}, report
        assert PW not in report and KEY not in report
        # Bob's own job did its work, in a HOME of its own.
        assert his.job.state is JobState.SUCCEEDED, his.stderr
        assert lines["own_home"] == "bob was here"
        assert not (alice_home / "bob.txt").exists()

        (alice_home / "done").touch()
        finished = alice.wait(hers.id, timeout=30)
        assert finished.state is JobState.SUCCEEDED, finished.message
        assert b"intact" in b"".join(d for _, d in alice.logs(hers.id))
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def _environ(pid: int) -> dict[str, str]:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in data.decode().split("\0") if "=" in item)


def test_a_non_root_server_with_tokens_refuses_to_start_unless_told_jobs_as_server(
    job_homes: Path,
) -> None:
    # (job_homes: a directory the server's user can reach, to keep its home in.)
    home = job_homes / "nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    refused = subprocess.run(
        [
            *as_user(NOBODY),
            sys.executable,
            "-m",
            "jobdock",
            "serve",
            "--tokens",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    said = refused.stderr.strip()
    assert len(said.splitlines()) == 1, said
    assert "needs root" in said and "jobs_as_server = true" in said
    # An API-only server runs no jobs: nothing to refuse.
    ServerProcess(home, args=["--tokens", "--no-worker"], user=NOBODY).start().stop()

    made = subprocess.run(
        [*as_user(NOBODY), sys.executable, "-m", "jobdock", "tokens", "create", "admin", "--admin"],
        env={**os.environ, "JOBDOCK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    server = ServerProcess(home, args=["--tokens"], user=NOBODY, jobs_as_server="true")
    server.env["JOBDOCK_LOG_LEVEL"] = "info"
    server.start()
    try:
        me = httpx.get(
            f"{server.url}/v1/me", headers={"authorization": f"Bearer {token}"}, timeout=10
        ).json()
        assert "jobs_as_server" in me["warning"] and "every process job" in me["warning"]
        assert "INSECURE: jobs_as_server" in server.log()
        schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        assert "warning" in schema["components"]["schemas"]["Identity"]["properties"]
    finally:
        server.stop()


def test_jobs_may_name_only_the_users_the_operator_allows_and_a_home_is_theirs(
    tmp_path: Path, job_homes: Path
) -> None:
    home = tmp_path / "server"
    server = ServerProcess(
        home,
        args=["--tokens"],
        job_homes=str(job_homes),
        job_run_as=json.dumps({"deploy-bot": ["nobody"]}),
    )
    home.mkdir()
    tokens = {user: make_token(home, user) for user in ("bob", "deploy-bot")}
    server.start()
    try:
        with _client(server, tokens["bob"]) as bob, _client(server, tokens["deploy-bot"]) as bot:
            for field, value in (("user", "root"), ("user", "0"), ("group", "root")):
                answer = httpx.post(
                    f"{server.url}/v1/jobs",
                    headers={"authorization": f"Bearer {tokens['bob']}"},
                    json={"command": ["id"], "isolation": {field: value}},
                    timeout=10,
                )
                assert answer.status_code == 422, answer.text
                error = answer.json()["error"]
                assert error["field"] == f"isolation.{field}" and repr(value) in error["message"]
            allowed = bot.run({"command": ["id", "-u"], "isolation": {"user": "nobody"}})
            assert allowed.stdout.strip() == str(NOBODY), allowed.job.message

            # A HOME of bob's own is his cwd and is writable; a directory his
            # uid may not enter is a spawn_error naming it.
            own = bob.run({"command": ["sh", "-c", "id -u; pwd; echo x > f; umask; id -G"]})
            uid, cwd, umask, groups = own.stdout.split()
            assert cwd == str(job_homes / uid)
            assert (job_homes / uid / "f").stat().st_uid == int(uid) and umask == "0077"
            assert groups == uid
            # The same in a cgroup (limits) and in namespaces (bwrap).
            for confined in ({"resources": {"memory": "64M"}}, {"isolation": True}):
                again = bob.run({"command": ["sh", "-c", "id -u; pwd; id -G"], **confined})
                assert again.stdout.split() == [uid, cwd, uid], (confined, again.job.message)
            missing = bob.run({"command": ["no-such-command"]})
            assert missing.job.reason == "spawn_error", missing.job.message
            closed = bob.run({"command": ["true"], "cwd": str(home)})
            assert closed.job.reason == "spawn_error"
            assert str(home) in (closed.job.message or "")
    finally:
        server.stop()


def test_a_worker_on_a_store_with_tokens_refuses_to_run_its_jobs_as_itself(
    tmp_path: Path, pg_url: str
) -> None:
    make_token(tmp_path, "alice", "--db", pg_url)
    plain = WorkerProcess(tmp_path / "plain", pg_url).launch()
    assert plain.proc is not None and plain.proc.wait(60) == 2
    assert "set tokens = true" in plain.log() and "jobs_as_server" in plain.log()
    walled = WorkerProcess(tmp_path / "walled", pg_url, tokens="true").start()
    assert "run as their owners' own uids" in walled.log()
    assert walled.stop() == 0
