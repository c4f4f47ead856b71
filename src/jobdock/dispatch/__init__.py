"""Dispatch templates: requests turned into jobs by the operator's jq
filters (docs/dispatch.md)."""

from jobdock.dispatch.dispatcher import Dispatcher, DispatchRequest
from jobdock.dispatch.pool import FilterPool
from jobdock.dispatch.templates import Template, load_templates

__all__ = ["DispatchRequest", "Dispatcher", "FilterPool", "Template", "load_templates"]
