"""The ``jobdock`` command tree, declared here and only here: the root app
with its global options, every command under the name it is called by, the
sub-apps (``db``, ``tokens``, ``secrets``, ``certs``, ``schedule``, ``flow``,
``template``), and :func:`main`, which turns every failure into one line on
stderr and an exit status.

The commands live in one module per group (server, run, jobs, users,
schedules, flows, templates); this module imports them all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

# typer keeps its click inside: the exception its parser raises on a usage error.
from typer._click.exceptions import ClickException

from jobdock.cli import (
    agent,
    describe,
    export,
    flows,
    jobs,
    machines,
    repro,
    run,
    schedules,
    server,
    templates,
    users,
)
from jobdock.cli.context import global_options
from jobdock.cli.exits import EXIT_CANCELLED, Failure, one_line, usage_error
from jobdock.errors import ConfigError, JobdockError

app = typer.Typer(
    name="jobdock",
    help="Run Linux processes as jobs: a server, a worker and this client.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(global_options)

# Commands, in the order ``jobdock --help`` lists them.
app.command("serve")(server.serve)
app.command("worker")(server.worker)
app.command("agent")(agent.agent)
app.command("run", context_settings={"allow_interspersed_args": False})(run.run)
app.command("ps")(jobs.ps)
app.command("workers")(jobs.workers)
app.command("machines")(machines.machines)
app.command("inspect")(jobs.inspect)
app.command("describe")(describe.describe)
app.command("export")(export.export)
app.command("repro")(repro.repro)
app.command("logs")(jobs.logs)
app.command("stop")(jobs.stop)
app.command("kill")(jobs.kill)
app.command("wait")(jobs.wait)
app.command("audit")(users.audit)
app.command("prune")(jobs.prune)


def _group(name: str, help: str, commands: dict[str, Callable[..., None]]) -> None:
    """Add the sub-app ``name``: ``commands`` maps each subcommand's name to its function."""
    group = typer.Typer(help=help, no_args_is_help=True)
    for command, function in commands.items():
        group.command(command)(function)
    app.add_typer(group, name=name)


# Sub-apps, in the order ``jobdock --help`` lists them.
_group("db", "Manage the job store.", {"upgrade": server.db_upgrade})
_group(
    "tokens",
    "Manage API tokens, directly in the store (run it where the server's store is).",
    {"create": users.tokens_create, "ls": users.tokens_ls, "revoke": users.tokens_revoke},
)
_group(
    "secrets",
    "Manage your secrets on the server.",
    {
        "set": users.secrets_set,
        "ls": users.secrets_ls,
        "rm": users.secrets_rm,
        "keygen": users.secrets_keygen,
    },
)
_group(
    "certs",
    "A certificate authority for mutual TLS.",
    {"init": users.certs_init, "issue": users.certs_issue},
)
_group(
    "schedule",
    "Cron schedules: jobs submitted at cron times.",
    {
        "add": schedules.schedule_add,
        "ls": schedules.schedule_ls,
        "rm": schedules.schedule_rm,
        "pause": schedules.schedule_pause,
        "resume": schedules.schedule_resume,
    },
)
_group(
    "flow",
    "Workflows: steps run as jobs, with dependencies and reverts.",
    {
        "run": flows.flow_run,
        "show": flows.flow_show,
        "list": flows.flow_list,
        "ls": flows.flow_ls,
        "cancel": flows.flow_cancel,
    },
)
_group(
    "template",
    "The server's dispatch templates (docs/dispatch.md).",
    {"ls": templates.template_ls, "test": templates.template_test},
)


def main() -> None:
    """Run the CLI: errors become one line on stderr and an exit status."""
    try:
        sys.exit(app(prog_name="jobdock", standalone_mode=False))
    except ClickException as exc:
        usage_error(exc)
    except typer.Abort:  # end of input at a prompt: exit 1, as typer's own
        sys.stderr.write("jobdock: aborted\n")
        sys.exit(1)
    except Failure as failure:
        sys.stderr.write(f"jobdock: {' '.join(failure.message.split())}\n")
        sys.exit(failure.code)
    except ConfigError as exc:
        sys.stderr.write(f"jobdock: {one_line(exc)}\n")
        sys.exit(2)
    except JobdockError as exc:
        sys.stderr.write(f"jobdock: {one_line(exc)}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(EXIT_CANCELLED)
    except Exception as exc:  # a bug in jobdock: still one line, never a traceback
        sys.stderr.write(f"jobdock: internal error: {exc.__class__.__name__}: {exc}\n")
        sys.exit(1)
