"""The user data an ``ec2`` machine boots with: a shell script (run once by
cloud-init, as root) that writes the agent's environment to a file only
root can read, runs the pool's ``install`` lines, and starts ``jobdock
agent`` as a systemd service that reads that file (docs/machines.md).

The agent token travels in the user data: anyone allowed
``ec2:DescribeInstanceAttribute`` on the instance, and any process on it that
reaches the instance metadata service, can read it. The script never prints
it (cloud-init logs a script's output), and the provider asks for IMDSv2 with
a hop limit of 1 so that job containers behind a bridge cannot reach it.
"""

from __future__ import annotations

import re
import shlex

from jobdock.machines.provider import MachineLaunch, ProviderError

#: EC2's limit on user data (before base64).
USER_DATA_LIMIT = 16384
ENV_FILE = "/etc/jobdock/agent.env"
UNIT = "jobdock-agent.service"
#: What a value in a systemd EnvironmentFile may hold unquoted.
_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+=,-]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def user_data(launch: MachineLaunch, install: str, agent_command: list[str]) -> str:
    """The boot script of one machine. Raises ProviderError when it would
    not fit EC2's 16 KiB, or an environment entry cannot be written safely."""
    command = " ".join(_unit_word(word) for word in [*agent_command, *launch.agent_args])
    script = f"""#!/bin/sh
# jobdock machine {launch.machine_id} of pool {launch.pool} (written by jobdock's ec2 provider)
set -eu
umask 077
mkdir -p /etc/jobdock
cat > {ENV_FILE} <<'JOBDOCK_ENV'
{_environment(launch.agent_env)}
JOBDOCK_ENV
chmod 0600 {ENV_FILE}
umask 022
# The pool's install lines ([pools.ec2] install).
{install}
cat > /etc/systemd/system/{UNIT} <<'JOBDOCK_UNIT'
[Unit]
Description=jobdock agent (machine {launch.machine_id})
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile={ENV_FILE}
ExecStart={command}
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
JOBDOCK_UNIT
systemctl daemon-reload
systemctl enable --now {UNIT}
"""
    if len(script.encode()) > USER_DATA_LIMIT:
        raise ProviderError(
            f"pool {launch.pool!r} (ec2): the user data is {len(script.encode())} bytes, "
            f"above EC2's {USER_DATA_LIMIT}: shorten [pools.ec2] install"
        )
    return script


def _environment(env: dict[str, str]) -> str:
    lines = []
    for name, value in env.items():
        if not _NAME.fullmatch(name) or "\n" in value or "\x00" in value:
            raise ProviderError(f"the agent's environment entry {name!r} cannot be written")
        if _PLAIN.fullmatch(value):
            lines.append(f"{name}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name}="{escaped}"')
    return "\n".join(lines)


def _unit_word(word: str) -> str:
    """One word of a systemd ExecStart line (quoted as the shell would;
    ``%`` and ``$`` doubled, since systemd would expand them)."""
    return shlex.quote(word.replace("%", "%%").replace("$", "$$"))
