"""A batch submit (``POST /v1/jobs/batch``): the specs it carries, the jobs
it answers, and reading its body, with each complaint naming the spec's
index (``jobs.3.command``).

Imports only jobdock.errors and its siblings (spec, jobs, parsing).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, ValidationError

from jobdock.errors import InvalidSpec
from jobdock.models.base import Model
from jobdock.models.jobs import Job
from jobdock.models.parsing import describe_error, not_json
from jobdock.models.spec import JobSpec

#: The most specs one batch holds (Client.submit_many sends more as several).
MAX_BATCH = 1000


class JobBatch(Model):
    """Jobs to create together, in order: all of them or none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: list[JobSpec] = Field(max_length=MAX_BATCH, description="At most 1000 job specs.")


class JobList(Model):
    """The jobs a batch submit created (or found by idempotency key), in its order."""

    jobs: list[Job]


def parse_batch(body: bytes) -> list[JobSpec]:
    """The specs of a batch body; raises InvalidJson, or InvalidSpec naming
    the first bad spec's index and field, or a batch past MAX_BATCH."""
    try:
        return JobBatch.model_validate_json(body).jobs
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise not_json(first["msg"]) from None
        if first["type"] == "too_long" and tuple(first["loc"]) == ("jobs",):
            raise InvalidSpec(
                f"jobs: a batch holds at most {MAX_BATCH} jobs (send more as several batches)",
                field="jobs",
            ) from None
        field, message = describe_error(first)
        raise InvalidSpec(message, field=field) from None
