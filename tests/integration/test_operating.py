"""Operating a server: every response names its trace (X-B3-TraceId), the
log can be one JSON object per line carrying the request's trace id and the
job's and attempt's ids, and traces are exported over OTLP: one trace per
job, from the submit request in the API server through a separate worker
process, whose job sees the trace in TRACEPARENT (docs/operating.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from receivers import Receiver
from support import ServerProcess, WorkerProcess, eventually

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _finished(server: ServerProcess, command: list[str], **headers: str) -> httpx.Response:
    """Submit ``command``, wait for its end; the submit's response."""
    submitted = httpx.post(f"{server.url}/v1/jobs", json={"command": command}, headers=headers)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    ended = httpx.get(f"{server.url}/v1/jobs/{job_id}/wait", params={"timeout": 30}, timeout=40)
    assert ended.json()["state"] == "succeeded", ended.text
    return submitted


def _output(server: ServerProcess, job_id: str) -> str:
    return httpx.get(f"{server.url}/v1/jobs/{job_id}/logs").text


def test_every_response_echoes_the_callers_trace_id_or_gives_a_new_one(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home").start()
    try:
        echoed = httpx.get(f"{server.url}/healthz", headers={"X-B3-TraceId": "00f067aa0ba902b7"})
        fresh = [httpx.get(f"{server.url}/v1/jobs/nosuchjob").headers for _ in range(2)]
        bad = httpx.get(f"{server.url}/healthz", headers={"X-B3-TraceId": "not-hex"})
        submitted = httpx.post(
            f"{server.url}/v1/jobs",
            json={"command": ["true"]},
            headers={"X-B3-TraceId": "a3ce929d0e0e4736"},
        )
    finally:
        server.stop()

    assert echoed.headers["x-b3-traceid"] == "00f067aa0ba902b7"
    ids = [headers["x-b3-traceid"] for headers in fresh]
    assert all(re.fullmatch(r"[0-9a-f]{16}", value) for value in ids), ids
    assert ids[0] != ids[1], "each request gets its own"
    assert re.fullmatch(r"[0-9a-f]{16}", bad.headers["x-b3-traceid"])
    assert submitted.headers["x-b3-traceid"] == "a3ce929d0e0e4736"
    assert submitted.json()["trace_id"] == "a3ce929d0e0e4736", "the job stores its trace id"


def test_with_traces_off_a_job_still_gets_a_traceparent_in_its_callers_trace(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "home").start()
    try:
        submitted = _finished(
            server, ["sh", "-c", 'echo "$TRACEPARENT"'], **{"X-B3-TraceId": "4bf92f3577b34da6"}
        )
        given = _output(server, submitted.json()["id"]).strip()
    finally:
        server.stop()

    found = TRACEPARENT.match(given)
    assert found is not None, given
    assert found[1] == "0000000000000000" + "4bf92f3577b34da6"


def test_json_log_lines_parse_and_carry_the_trace_job_and_attempt_ids(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", log_level="debug", log_format="json").start()
    try:
        submitted = _finished(
            server, ["sh", "-c", "exit 0"], **{"X-B3-TraceId": "1234567890abcdef"}
        )
        # A job that fails to start logs a line of the worker's.
        httpx.post(f"{server.url}/v1/jobs", json={"command": ["/no/such/program"]})
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object

    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any(r["logger"] == "uvicorn" for r in records), "uvicorn's lines are JSON too"
    job_id = submitted.json()["id"]
    request_line = [
        r for r in records if r.get("trace_id") == "1234567890abcdef" and "POST" in r["message"]
    ]
    assert request_line, "the submit's access line names its trace id"
    job_lines = [r for r in records if r.get("job_id") == job_id]
    assert job_lines, "the worker's lines about the job name it"
    assert all(r["attempt"] == 1 and r["trace_id"] == "1234567890abcdef" for r in job_lines)


def test_human_log_lines_name_the_ids_too(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", log_level="debug").start()
    try:
        _finished(server, ["true"], **{"X-B3-TraceId": "fedcba0987654321"})
    finally:
        server.stop()

    assert re.search(r'"POST /v1/jobs HTTP/1.1" 201 \[trace=fedcba0987654321\]', server.log())


def _spans(collector: Receiver) -> list[tuple[str, str, str, str, dict[str, object]]]:
    """(name, trace id, span id, parent id, attributes) of every span received."""
    spans = []
    for request in collector.requests("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {
                        a.key: a.value.string_value or a.value.int_value for a in span.attributes
                    }
                    spans.append(
                        (
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
    return spans


def test_one_trace_per_job_from_the_submit_request_through_a_separate_worker(
    tmp_path: Path, pg_url: str
) -> None:
    with Receiver() as collector:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        server = ServerProcess(tmp_path / "server", args=("--no-worker",), db=pg_url)
        server.env.update(otel)
        server.start()
        worker = WorkerProcess(tmp_path / "worker", pg_url, log_format="json")
        worker.env.update(otel, JOBDOCK_LOG_LEVEL="debug")
        worker.start()
        try:
            first = _finished(server, ["sh", "-c", 'echo "$TRACEPARENT"'])
            second = _finished(server, ["true"], **{"X-B3-TraceId": "0af7651916cd43dd"})
            job_id = first.json()["id"]
            job_traceparent = _output(server, job_id).strip()

            def exported() -> list[tuple[str, str, str, str, dict[str, object]]] | None:
                spans = _spans(collector)
                names = [s[0] for s in spans if s[4].get("jobdock.job_id") == job_id]
                return spans if {"claim", "run"} <= set(names) else None

            spans = eventually(exported, timeout=30, what="the worker's spans")
        finally:
            worker.stop()
            server.stop()
    spans = _spans(collector)  # the finish spans were flushed at stop

    b3 = first.headers["x-b3-traceid"]
    trace_id = b3.rjust(32, "0")
    in_trace = {s[0] for s in spans if s[1] == trace_id}
    assert {"POST /v1/jobs", "submit", "claim", "run", "finish"} <= in_trace, in_trace
    by_name = {s[0]: s for s in spans if s[1] == trace_id}
    assert by_name["submit"][3] == by_name["POST /v1/jobs"][2], "submit is in the request"
    assert by_name["run"][3] == by_name["submit"][2], "the worker continues the stored submit"
    assert by_name["finish"][3] == by_name["run"][2]
    found = TRACEPARENT.match(job_traceparent)
    assert found is not None, job_traceparent
    assert found[1] == trace_id, "the job's TRACEPARENT is in its trace"
    assert found[2] == by_name["run"][2], "its parent is the run span"
    assert int(found[3], 16) & 1, "sampled"
    worker_lines = [json.loads(line) for line in worker.log().splitlines() if line.strip()]
    about_job = [r for r in worker_lines if r.get("job_id") == job_id]
    assert about_job and all(r["trace_id"] == b3 and r["attempt"] == 1 for r in about_job)
    # The second job, with its caller's B3 id, is a trace of its own.
    other = {s[0] for s in spans if s[1] == "0af7651916cd43dd".rjust(32, "0")}
    assert {"submit", "run"} <= other
    assert second.json()["trace_id"] == "0af7651916cd43dd"
