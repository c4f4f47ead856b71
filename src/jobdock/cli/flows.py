"""The ``flow`` commands: submit a workflow (a file, or one registered by an
installed package), draw it as a tree, live until it ends, list and cancel
workflows, and list the registered ones (docs/workflows.md).

Imports the client (through :mod:`jobdock.cli.context`) and the CLI's
rendering; the workflow documents, the registry and the tree drawing only
inside the commands that use them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobdock.cli.context import connect, url_option
from jobdock.cli.exits import fail, one_line
from jobdock.cli.render.output import (
    output_format,
    output_option,
    print_records,
    show_table,
    state_style,
)
from jobdock.cli.render.times import ago

if TYPE_CHECKING:
    from jobdock.client import Client
    from jobdock.models.workflow import Workflow, WorkflowSpec
    from jobdock.registry import RegisteredFlow


def _flow_params(items: list[str] | None) -> dict[str, Any]:
    """``-p NAME=VALUE`` as the string VALUE (``version=1.10`` stays "1.10"),
    ``-p NAME:=JSON`` as a JSON literal (``replicas:=3``), as httpie takes them."""
    params = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        literal = name.endswith(":")
        name = name.removesuffix(":")
        if not sep or not name:
            fail(f"--param: {item!r} is not NAME=VALUE or NAME:=JSON", 2)
        if not literal:
            params[name] = text
            continue
        try:
            params[name] = json.loads(text)
        except ValueError:
            fail(f'--param: {name}:= takes a JSON literal (3, true, [1,2], "text"): {text!r}', 2)
    return params


def _flow_document(target: str, params: dict[str, Any]) -> WorkflowSpec:
    """The document to submit: a file (JSON or YAML) with ``params``, or a
    registered workflow built with them."""
    from jobdock import registry
    from jobdock.workflows import load_document

    path = Path(target)
    if path.is_file():
        try:
            body = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {target}: {exc.strerror}")
        spec = load_document(body, yaml=path.suffix.lower() in (".yaml", ".yml"))
        return spec.with_params(params)
    if "/" in target or target.endswith((".yaml", ".yml", ".json")):
        fail(f"no such file: {target}")
    return registry.build(target, params)


def _watch_flow(client: Client, workflow_id: str, *, until_done: bool) -> Workflow:
    """Draw the workflow, redrawn live until it finishes (``until_done``);
    off a terminal, each change a line as it comes, then the final tree."""
    from rich.console import Console
    from rich.live import Live

    from jobdock.cli.render.flow import changes, tree

    workflow = client.workflow(workflow_id)
    console = Console()
    if until_done and not console.is_terminal:
        before = None
        while True:
            for line in changes(before, workflow):
                typer.echo(line)
            sys.stdout.flush()
            if workflow.terminal:
                break
            time.sleep(_WATCH_FLOW_EVERY)
            before, workflow = workflow, client.workflow(workflow_id)
    if not until_done or workflow.terminal or not console.is_terminal:
        console.print(tree(workflow))
        return workflow
    with Live(tree(workflow), console=console, refresh_per_second=4) as live:
        while not workflow.terminal:
            time.sleep(_WATCH_FLOW_EVERY)
            workflow = client.workflow(workflow_id)
            live.update(tree(workflow))
    return workflow


#: How often ``flow show --watch`` asks again (seconds).
_WATCH_FLOW_EVERY = 0.5


def flow_run(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A workflow file (.yaml/.json) or a registered name.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE (a string) or NAME:=JSON; repeatable."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show it live until it ends; exit 1 unless it succeeded.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the document and draw its steps; submit nothing (no server needed).",
        ),
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Submit a workflow and print its id."""
    if dry_run:
        _dry_run(target, _flow_params(param))
        return
    document = _flow_document(target, _flow_params(param))
    with connect(ctx, url) as client:
        workflow = client.submit_workflow(document)
        if not wait:
            typer.echo(workflow.id)
            return
        final = _watch_flow(client, workflow.id, until_done=True)
    if final.state.value != "succeeded":
        raise typer.Exit(1)


def _dry_run(target: str, params: dict[str, Any]) -> None:
    """Check the document as far as can be done without a server and draw
    its step graph (Jobrunner's ``post --hierarchy``); a bad one is one line
    naming the file and the field."""
    from rich.console import Console

    from jobdock.cli.render.flow import plan
    from jobdock.errors import JobdockError
    from jobdock.workflows import check_document

    try:
        spec = _flow_document(target, params)
        check_document(spec)
    except JobdockError as exc:
        fail(f"{target}: {one_line(exc)}")
    Console().print(plan(spec))


def flow_show(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.", metavar="ID")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until it ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The record as JSON.")] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Draw a workflow's steps as a tree: state, attempt, duration, revert."""
    with connect(ctx, url) as client:
        if as_json:
            typer.echo(client.workflow(workflow_id).model_dump_json(indent=2))
            return
        _watch_flow(client, workflow_id, until_done=watch)


def flow_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Finished ones too.")] = False,
    limit: Annotated[int, typer.Option("-n", help="At most this many.")] = 50,
    output: Annotated[str | None, output_option] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Refresh until Ctrl-C: redrawn on a terminal; else printed again when a "
            "workflow comes, goes, changes state or finishes a step.",
        ),
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """List submitted workflows, newest first (unfinished ones unless --all)."""
    from jobdock.cli.render.watch import watch as watching

    output = output_format(output)
    states = () if all_ else ("running", "reverting", "cancelling")
    with connect(ctx, url) as client:
        if not watch:
            _show_workflows(client.workflows(states=states, limit=limit).workflows, output)
            return
        watching(
            lambda: client.workflows(states=states, limit=limit).workflows,
            lambda found: [(w.id, w.state, _progress(w)) for w in found],
            lambda found: _show_workflows(found, output),
        )


def _show_workflows(found: list[Workflow], output: str) -> None:
    if print_records(found, output):
        return
    columns = ("WORKFLOW ID", "NAME", "STATE", "STEPS", "CREATED")
    wide = output == "wide"
    show_table(
        (*columns, "OWNER", "ERROR") if wide else columns,
        (_workflow_row(workflow, wide) for workflow in found),
        wrap={"ERROR"},
        styles={"STATE": state_style},
    )


def _workflow_row(workflow: Workflow, wide: bool) -> tuple[str, ...]:
    row = (
        workflow.id,
        workflow.name,
        workflow.state.value,
        _progress(workflow),
        ago(workflow.created_at),
    )
    return (*row, workflow.owner, workflow.error or "") if wide else row


def _progress(workflow: Workflow) -> str:
    """How many of the workflow's steps succeeded, of all: ``2/5``."""
    done = sum(1 for step in workflow.steps if step.state.value == "succeeded")
    return f"{done}/{len(workflow.steps)}"


def flow_ls() -> None:
    """List the workflows registered by installed packages (entry point
    group 'jobdock.workflows'), with their parameters."""
    from jobdock.registry import registered

    show_table(
        ("NAME", "PARAMETERS", "FACTORY", "SUMMARY"),
        (
            (
                flow.name,
                _parameters(flow),
                flow.target,
                flow.summary,
            )
            for flow in registered()
        ),
        wrap=True,
        overflow="fold",
    )


def _parameters(flow: RegisteredFlow) -> str:
    """A registered workflow's parameters, with the defaults of optional ones."""
    return ", ".join(
        param.name if param.required else f"{param.name}={param.default!r}" for param in flow.params
    )


def flow_cancel(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="Workflows to cancel.", metavar="ID...")],
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Cancel workflows: running steps stop, completed ones are reverted."""
    with connect(ctx, url) as client:
        for workflow_id in ids:
            workflow = client.cancel_workflow(workflow_id)
            typer.echo(f"{workflow.id}: {workflow.state.value}")
