"""What a route takes from the app it runs in: the store, the settings, and
the submit policy and workflow planner built once from them, that the
lifespan (api/app.py) put on ``app.state``."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import State

from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import Policy
from jobdock.workflow_plan import WorkflowPlanner


def store_of(request: Request) -> Store:
    """The app's open store."""
    store: Store = request.app.state.store
    return store


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    settings: Settings = request.app.state.settings
    return settings


def policy_of(state: State) -> Policy:
    """The server's submit policy: ``state.policy`` if the lifespan set one,
    else built once from its settings and what its engine cannot enforce
    (``state.missing``; None when the server runs no worker), and kept."""
    policy: Policy | None = getattr(state, "policy", None)
    if policy is None:
        policy = Policy(state.settings, missing=getattr(state, "missing", None))
        state.policy = policy
    return policy


def planner_of(state: State) -> WorkflowPlanner:
    """The planner that moves the server's workflows on, under its policy."""
    planner: WorkflowPlanner | None = getattr(state, "planner", None)
    if planner is None:
        planner = WorkflowPlanner(policy_of(state))
        state.planner = planner
    return planner
