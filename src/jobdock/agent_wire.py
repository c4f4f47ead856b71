"""How the records a worker exchanges with its store travel between an
agent and the server (docs/agents.md): claims, starts, outcomes, heartbeat
replies and stdin as JSON, output chunks in a compact binary framing.

Both sides use these functions (api/agent.py on the server, agent/ on the
agent), so the two cannot drift apart.

Imports only the foundation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from jobdock.errors import InvalidRequest
from jobdock.models import JobState, Reason, Stream
from jobdock.models.outcome import Outcome
from jobdock.models.records import Claim, HeartbeatReply, LogChunk, Started, StdinRead
from jobdock.models.spec import JobSpec

#: The content type of a batch of output chunks (their framing is encode_chunks).
CHUNKS_TYPE = "application/octet-stream"
#: The most chunks one request may carry.
MAX_CHUNKS = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise InvalidRequest("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidRequest("invalid base64") from None


def claim_to_json(claim: Claim) -> dict[str, Any]:
    """A claim as the claim route answers it."""
    return {
        "job_id": claim.job_id,
        "attempt": claim.attempt,
        "spec": claim.spec.model_dump(mode="json", exclude_defaults=True),
        "stdin": _b64(claim.stdin),
        "owner": claim.owner,
        "failures": claim.failures,
        "finish_by": claim.finish_by,
    }


def claim_of(data: Mapping[str, Any]) -> Claim:
    """The claim the server sent."""
    return Claim(
        job_id=str(data["job_id"]),
        attempt=int(data["attempt"]),
        spec=JobSpec.model_validate(data["spec"]),
        stdin=_unb64(data["stdin"]),
        owner=str(data["owner"]),
        failures=int(data["failures"]),
        finish_by=None if data.get("finish_by") is None else float(data["finish_by"]),
    )


def started_to_json(started: Started) -> dict[str, Any]:
    """Where an attempt runs, as the agent reports it."""
    return asdict(started)


def started_of(data: Mapping[str, Any]) -> Started:
    """The start an agent reported; InvalidRequest for a malformed one."""
    try:
        return Started(
            pid=None if data.get("pid") is None else int(data["pid"]),
            pid_start=None if data.get("pid_start") is None else int(data["pid_start"]),
            host=str(data["host"])[:255],
            started_at=float(data["started_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"a malformed start: {exc}") from None


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    """How an attempt ended, as the agent reports it."""
    found = asdict(outcome)
    found["state"] = outcome.state.value
    found["reason"] = outcome.reason.value
    return found


#: The outcome fields an agent may send, with their types.
_OUTCOME_FIELDS: dict[str, tuple[type, ...]] = {
    "message": (str,),
    "finished_at": (int, float),
    "exit_code": (int, type(None)),
    "signal": (int, type(None)),
    "stdout_bytes": (int,),
    "stderr_bytes": (int,),
    "next_attempt_at": (int, float, type(None)),
    "isolation": (str, type(None)),
    "limits": (dict, type(None)),
    "peak_memory": (int, type(None)),
    "cpu_seconds": (int, float, type(None)),
}


def outcome_of(data: Mapping[str, Any]) -> Outcome:
    """The outcome an agent reported; InvalidRequest for a malformed one."""
    try:
        state, reason = JobState(data["state"]), Reason(data["reason"])
    except (KeyError, ValueError) as exc:
        raise InvalidRequest(f"a malformed outcome: {exc}") from None
    values: dict[str, Any] = {}
    for name, types in _OUTCOME_FIELDS.items():
        value = data.get(name)
        if value is None and name in ("message", "finished_at"):
            raise InvalidRequest(f"a malformed outcome: {name} is missing")
        wrong = not isinstance(value, types) or isinstance(value, bool)
        if wrong and (value is not None or type(None) not in types):
            raise InvalidRequest(f"a malformed outcome: {name} has the wrong type")
        values[name] = value
    values["message"] = values["message"][:10_000]
    for name in ("stdout_bytes", "stderr_bytes"):
        values[name] = values[name] or 0
    return Outcome(state=state, reason=reason, **values)


def reply_to_json(reply: HeartbeatReply) -> dict[str, Any]:
    """A heartbeat's reply, as the server sends it."""
    return {
        "lost": sorted(reply.lost),
        "cancel": sorted(reply.cancel),
        "kill": sorted(reply.kill),
    }


def reply_of(data: Mapping[str, Any]) -> HeartbeatReply:
    """The heartbeat reply the server sent."""
    return HeartbeatReply(
        lost=frozenset(data["lost"]), cancel=frozenset(data["cancel"]), kill=frozenset(data["kill"])
    )


def stdin_to_json(read: StdinRead) -> dict[str, Any]:
    """Pieces of a job's stdin, as the server sends them."""
    return {"pieces": [_b64(piece) for piece in read.pieces], "last": read.last, "eof": read.eof}


def stdin_of(data: Mapping[str, Any]) -> StdinRead:
    """The pieces of stdin the server sent."""
    return StdinRead(
        pieces=[_unb64(piece) for piece in data["pieces"]],
        last=int(data["last"]),
        eof=bool(data["eof"]),
    )


def secrets_to_json(values: Mapping[str, bytes]) -> dict[str, Any]:
    """An attempt's secret values, as the server sends them (over TLS)."""
    return {"secrets": {name: _b64(value) for name, value in values.items()}}


def secrets_of(data: Mapping[str, Any]) -> dict[str, bytes]:
    """The secret values the server sent."""
    return {str(name): _unb64(value) for name, value in data["secrets"].items()}


# -- output chunks ------------------------------------------------------------------


def encode_chunks(chunks: Sequence[LogChunk]) -> bytes:
    """Chunks as one body: per chunk a JSON line (its place, its size),
    then its bytes."""
    parts: list[bytes] = []
    for chunk in chunks:
        head = {
            "seq": chunk.seq,
            "stream": chunk.stream.value,
            "offset": chunk.offset,
            "merged_offset": chunk.merged_offset,
            "size": len(chunk.data),
            "at": chunk.at,
        }
        parts += [json.dumps(head, separators=(",", ":")).encode(), b"\n", chunk.data]
    return b"".join(parts)


def decode_chunks(body: bytes) -> list[LogChunk]:
    """The chunks of a body :func:`encode_chunks` made; InvalidRequest for
    anything else."""
    return list(_chunks(body))


def _chunks(body: bytes) -> Iterator[LogChunk]:
    view, at, count = memoryview(body), 0, 0
    while at < len(body):
        count += 1
        if count > MAX_CHUNKS:
            raise InvalidRequest(f"at most {MAX_CHUNKS} chunks per request")
        end = body.find(b"\n", at, at + 1024)
        if end < 0:
            raise InvalidRequest("a malformed chunk header")
        try:
            head = json.loads(body[at:end])
            size = int(head["size"])
            chunk_at = head.get("at")
            if size < 0 or end + 1 + size > len(body):
                raise ValueError("a chunk runs past the body")
            yield LogChunk(
                seq=int(head["seq"]),
                stream=Stream(head["stream"]),
                offset=int(head["offset"]),
                merged_offset=int(head["merged_offset"]),
                data=bytes(view[end + 1 : end + 1 + size]),
                at=None if chunk_at is None else float(chunk_at),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"a malformed chunk: {exc}") from None
        at = end + 1 + size
