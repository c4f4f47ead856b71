"""What a route takes from the app it runs in: the store, the settings, and
the submit policy and workflow planner built once from them, that the
lifespan (api/app.py) put on ``app.state``."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import State

from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import Policy
from jobdock.waiting import Waiting
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
    """The server's submit policy, built once by the lifespan from its
    settings and what its engines cannot enforce (jobdock.engines)."""
    policy: Policy = state.policy
    return policy


def planner_of(state: State) -> WorkflowPlanner:
    """The planner that moves the server's workflows on, under its policy."""
    planner: WorkflowPlanner = state.planner
    return planner


def waiting_of(request: Request) -> Waiting:
    """What says why the server's queued jobs wait (jobdock.waiting)."""
    waiting: Waiting = request.app.state.waiting
    return waiting
