"""The web dashboard in headless Chromium against a real server: the job
list, the submit form, live logs, stop and re-run, schedules, workflows'
step graphs, markup in job data shown as text, each user seeing only their
own jobs, and a page of another site unable to act with the user's
credentials.

Screenshots of the main pages land in test-output/dashboard/ (git-ignored)."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
import engines
from browser import expect
from jobdock import Client, Flow, JobState
from jobdock.client import Credentials
from support import (
    ServerProcess,
    eventually,
    free_port,
    make_pki,
    make_token,
    start_mtls_server,
)

MARKUP = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def row_of(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job="{job_id}"]')


def test_the_list_shows_jobs_newest_first_and_filters_by_state(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        good = client.submit({"command": ["true"], "name": "list-good", "labels": {"t": "list"}})
        bad = client.submit({"command": ["false"], "name": "list-bad", "labels": {"t": "list"}})
        client.wait(good.id, timeout=60)
        client.wait(bad.id, timeout=60)

    page.goto(ui_server.url + "/")
    expect(page).to_have_url(ui_server.url + "/ui")
    expect(row_of(page, bad.id).locator(".state")).to_have_text("failed")
    expect(row_of(page, good.id).locator(".state")).to_have_text("succeeded")
    rows = page.locator("tr[data-job]")
    assert rows.nth(0).get_attribute("data-job") == bad.id  # newest first
    browser.screenshot(page, "jobs")

    page.select_option("select[name=state]", "failed")
    expect(page).to_have_url(ui_server.url + "/ui?state=failed")
    expect(row_of(page, good.id)).to_have_count(0)
    expect(row_of(page, bad.id)).to_have_count(1)
    page.fill("input[name=label]", "t=nothing")
    page.click("#filters button[type=submit]")
    expect(page.locator(".empty")).to_have_text("No jobs match.")


def test_the_list_pages_through_jobs_on_the_server(page: Any, ui_server: ServerProcess) -> None:
    with Client(ui_server.url) as client:
        ids = [client.submit({"command": ["true"], "labels": {"t": "pages"}}).id for _ in range(55)]
    page.goto(ui_server.url + "/ui?label=t%3Dpages")
    expect(page.locator("tr[data-job]")).to_have_count(50)
    expect(row_of(page, ids[-1])).to_have_count(1)
    page.click("#older")
    expect(page.locator("tr[data-job]")).to_have_count(5)
    expect(row_of(page, ids[0])).to_have_count(1)


def test_a_job_submitted_from_the_form_streams_its_output_live(
    page: Any, ui_server: ServerProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    page.goto(ui_server.url + "/ui/submit")
    page.fill(
        "#command",
        f"sh -c 'echo first; echo oops >&2; until [ -e {gate} ]; do sleep 0.05; done; echo second'",
    )
    page.fill("#name", "from the form")
    page.fill("#labels", "via=ui")
    browser.screenshot(page, "submit")
    page.click("#submit")

    expect(page).to_have_url(re.compile(r"/ui/jobs/\w+$"))
    expect(page.locator("h1")).to_have_text("from the form")
    log = page.locator("#log")
    expect(log).to_contain_text("first")
    expect(log.locator('[data-stream="stderr"]')).to_have_text("oops\n")
    # The job is still waiting for the gate: this output arrived live.
    expect(page.locator(".heading .state")).to_have_text("running")
    browser.screenshot(page, "job-running")

    gate.touch()
    expect(log).to_contain_text("second")
    expect(page.locator(".heading .state")).to_have_text("succeeded")
    expect(log.locator('[data-stream="stdout"]').last).to_contain_text("second")
    expect(page.locator("#attempts tr[data-attempt]")).to_have_count(1)
    browser.screenshot(page, "job-finished")


def test_the_stop_button_stops_a_running_job_and_re_run_runs_it_again(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        job = client.submit({"command": ["sleep", "60"], "name": "to stop", "kill_grace": 1})
        eventually(lambda: client.get(job.id).state is JobState.RUNNING, 30, "the job to start")

    page.goto(ui_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator(".heading .state")).to_have_text("running")
    page.click("#stop")
    expect(page.locator(".heading .state")).to_have_text("cancelled")
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#summary")).to_contain_text("cancelled")

    page.click("#rerun")
    expect(page).not_to_have_url(ui_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator(".heading .state")).to_have_text("running")
    again = page.url.rsplit("/", 1)[1]
    with Client(ui_server.url) as client:
        assert client.get(again).spec.command == ["sleep", "60"]
        client.cancel(again)


def test_markup_in_a_jobs_name_labels_and_output_is_shown_as_text(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        job = client.submit(
            {
                "command": ["sh", "-c", f"echo '{MARKUP}'; echo '{MARKUP}' >&2"],
                "name": MARKUP,
                "labels": {"x": MARKUP},
            }
        )
        client.wait(job.id, timeout=60)

    page.goto(ui_server.url + "/ui")
    expect(row_of(page, job.id).locator("a")).to_have_text(MARKUP)
    page.goto(ui_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator("h1")).to_have_text(MARKUP)
    expect(page.locator("#log")).to_have_text(f"{MARKUP}\n{MARKUP}\n")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main script, main img").count() == 0


def test_schedules_show_their_next_fire_and_pause_and_resume(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        client.add_schedule({"name": "nightly", "cron": "0 3 * * *", "job": {"command": ["true"]}})
    page.goto(ui_server.url + "/ui/schedules")
    schedule = page.locator('tr[data-schedule="nightly"]')
    expect(schedule).to_contain_text("0 3 * * *")
    expect(schedule.locator("time")).to_have_count(1)  # the next fire time
    browser.screenshot(page, "schedules")
    schedule.get_by_role("button", name="Pause").click()
    expect(schedule).to_contain_text("paused")
    schedule.get_by_role("button", name="Resume").click()
    expect(schedule.get_by_role("button", name="Pause")).to_be_visible()


def test_workers_show_labels_heartbeats_and_running_jobs(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        job = client.submit({"command": ["sleep", "60"], "kill_grace": 1})
        eventually(lambda: client.get(job.id).state is JobState.RUNNING, 30, "the job to start")
        page.goto(ui_server.url + "/ui/workers")
        worker = page.locator("tr[data-worker]").first
        expect(worker).to_contain_text("alive")
        expect(worker).to_contain_text("arch=")
        expect(worker.locator(f'a[href="/ui/jobs/{job.id}"]')).to_have_count(1)
        browser.screenshot(page, "workers")
        client.cancel(job.id)


def test_workers_show_their_load_as_running_over_concurrency(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        job = client.submit({"command": ["sleep", "60"], "kill_grace": 1})
        eventually(lambda: client.get(job.id).state is JobState.RUNNING, 30, "the job to start")
        concurrency = httpx.get(ui_server.url + "/v1/workers").json()["workers"][0]["concurrency"]
        page.goto(ui_server.url + "/ui/workers")
        worker = page.locator("tr[data-worker]").first
        expect(worker.locator(".load")).to_have_text(f"1 / {concurrency}")
        expect(worker.locator(".load meter")).to_have_attribute("value", "1")
        expect(page.locator("#load")).to_have_text(
            f"1 of {concurrency} slots running on 1 live worker"
        )
        client.cancel(job.id)


def test_a_jobs_page_shows_its_id_and_a_finished_job_has_no_pause(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        job = client.submit({"command": ["echo", "done"], "name": "finished"})
        client.wait(job.id, timeout=60)
    page.goto(ui_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator("#job-id")).to_have_text(job.id)
    expect(page.locator("#log")).to_have_text("done\n")
    expect(page.locator("#log-state")).to_have_text("the job has ended")
    expect(page.locator("#follow")).to_be_hidden()  # nothing will arrive to pause
    expect(page.locator("#download")).to_be_visible()


def test_a_container_jobs_page_shows_its_image_and_container(
    page: Any, docker_server: ServerProcess
) -> None:
    with Client(docker_server.url) as client:
        job = client.submit({"image": engines.BUSYBOX, "command": ["echo", "boxed"]})
        client.wait(job.id, timeout=120)
    page.goto(docker_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator("#log")).to_have_text("boxed\n")
    expect(page.locator("#job-id")).to_have_text(job.id)
    expect(page.locator("#image")).to_have_text(engines.BUSYBOX)
    # The name `docker ps -a` lists while it runs.
    expect(page.locator("#container")).to_have_text(f"jobdock-{job.id}-1")
    expect(page.locator("#attempts tr[data-attempt]")).to_contain_text(f"jobdock-{job.id}-1")


def test_a_container_jobs_page_shows_what_its_attempt_really_ran(
    page: Any, docker_server: ServerProcess
) -> None:
    with Client(docker_server.url) as client:
        job = client.submit({"image": engines.BUSYBOX, "command": ["true"], "env": {"K": "v"}})
        client.wait(job.id, timeout=120)
        inputs = client.get(job.id).attempts[-1].inputs
    assert inputs is not None and inputs.image_digest is not None
    page.goto(docker_server.url + f"/ui/jobs/{job.id}")
    expect(page.locator("#image-digest")).to_have_text(inputs.image_digest)
    expect(page.locator("#inputs")).to_contain_text("runc")
    expect(page.locator("#inputs")).to_contain_text("K")


def test_an_unknown_job_shows_its_error_instead_of_loading(
    page: Any, ui_server: ServerProcess
) -> None:
    page.goto(ui_server.url + "/ui/jobs/nosuchjob")
    expect(page.locator("#page-error")).to_have_text("no job with id 'nosuchjob'")
    expect(page.locator("main h1")).to_have_text("Not found")
    assert "Loading" not in page.locator("main").inner_text()


def test_a_running_attempt_shows_its_output_sizes_as_they_grow(
    page: Any, ui_server: ServerProcess, tmp_path: Path
) -> None:
    more, end = tmp_path / "more", tmp_path / "end"
    script = (
        f"echo hello; until [ -e {more} ]; do sleep 0.05; done; "
        f"echo oops >&2; until [ -e {end} ]; do sleep 0.05; done"
    )
    with Client(ui_server.url) as client:
        job = client.submit({"command": ["sh", "-c", script]})
        page.goto(ui_server.url + f"/ui/jobs/{job.id}")
        sizes = page.locator("#attempts tr[data-attempt] .sizes")
        expect(sizes).to_have_text("6 B / 0 B")
        expect(page.locator("#output-so-far")).to_contain_text("6 B / 0 B")
        more.touch()
        expect(sizes).to_have_text("6 B / 5 B")
        running = client.get(job.id)
        assert running.state is JobState.RUNNING
        assert (running.attempts[0].stdout_bytes, running.attempts[0].stderr_bytes) == (6, 5)
        end.touch()
        client.wait(job.id, timeout=60)
    expect(page.locator(".heading .state")).to_have_text("succeeded")
    expect(page.locator("#output-so-far")).to_have_count(0)
    expect(sizes).to_have_text("6 B / 5 B")


def test_the_name_filter_finds_names_holding_the_text_in_any_case(
    page: Any, ui_server: ServerProcess
) -> None:
    with Client(ui_server.url) as client:
        build = client.submit({"command": ["true"], "name": "Nightly-BUILD-7f3"})
        test = client.submit({"command": ["true"], "name": "nightly-test-7f3"})
        odd = client.submit({"command": ["true"], "name": "100%_done-7f3"})
    page.goto(ui_server.url + "/ui")
    page.fill("input[name=name]", "build-7f")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(ui_server.url + "/ui?name=build-7f")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(row_of(page, build.id)).to_have_count(1)
    page.fill("input[name=name]", "nightly-")
    page.click("#filters button[type=submit]")
    expect(page.locator("tr[data-job]")).to_have_count(2)
    expect(row_of(page, test.id)).to_have_count(1)
    # LIKE's wildcards are only themselves.
    page.fill("input[name=name]", "%_d")
    page.click("#filters button[type=submit]")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(row_of(page, odd.id)).to_have_count(1)


def test_the_name_filter_is_bounded(ui_server: ServerProcess) -> None:
    answer = httpx.get(ui_server.url + "/v1/jobs", params={"name_contains": "x" * 201})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def step_state(page: Any, name: str) -> Any:
    """The state badge of a step's node in a workflow's graph."""
    return page.locator(f'[data-step="{name}"] .step-head .state')


def test_a_workflows_graph_shows_each_steps_state_live_until_it_succeeds(
    page: Any, ui_server: ServerProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    flow = (
        Flow("ui-release")
        .step("build", ["true"], revert=["true"])
        .step("approve", ["sh", "-c", f"until [ -e {gate} ]; do sleep 0.05; done"], needs=["build"])
        .step("ship", ["sh", "-c", 'echo \'{"version": "1.2"}\''], needs=["build", "approve"])
    )
    with Client(ui_server.url) as client:
        workflow = client.submit_workflow(flow)

    page.goto(ui_server.url + "/ui/workflows")
    row = page.locator(f'tr[data-workflow="{workflow.id}"]')
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator(".steps-done")).to_have_text("1 / 3")
    browser.screenshot(page, "workflows")
    row.get_by_role("link", name="ui-release").click()

    expect(page).to_have_url(ui_server.url + f"/ui/workflows/{workflow.id}")
    expect(step_state(page, "build")).to_have_text("succeeded")
    expect(step_state(page, "approve")).to_have_text("running")
    expect(step_state(page, "ship")).to_have_text("pending")
    expect(page.locator('[data-step="ship"] .needs')).to_have_text("needs: build, approve")
    expect(page.locator(".graph .edges .edge")).to_have_count(3)
    browser.screenshot(page, "workflow-running")

    gate.touch()
    expect(page.locator(".heading .state")).to_have_text("succeeded")
    expect(step_state(page, "ship")).to_have_text("succeeded")
    expect(page.locator('[data-step="ship"] .output')).to_have_text('{"version":"1.2"}')
    expect(page.locator("#cancel")).to_be_hidden()
    browser.screenshot(page, "workflow-finished")
    with Client(ui_server.url) as client:
        approve = client.workflow(workflow.id).steps[1].job_id
    page.locator('[data-step="approve"]').get_by_role("link").click()
    expect(page).to_have_url(ui_server.url + f"/ui/jobs/{approve}")
    page.locator("#summary").get_by_role("link", name=workflow.id).click()
    expect(page.locator("h1")).to_have_text("ui-release")


def test_the_cancel_button_stops_a_workflow_and_reverts_its_completed_steps(
    page: Any, ui_server: ServerProcess
) -> None:
    flow = (
        Flow("ui-cancel")
        .step("quick", ["true"], revert=["true"])
        .step("slow", ["sleep", "60"], needs=["quick"], kill_grace=1)
    )
    with Client(ui_server.url) as client:
        workflow = client.submit_workflow(flow)
    page.goto(ui_server.url + f"/ui/workflows/{workflow.id}")
    expect(step_state(page, "slow")).to_have_text("running")

    page.click("#cancel")
    expect(page.locator(".heading .state")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(step_state(page, "quick")).to_have_text("reverted")
    expect(step_state(page, "slow")).to_have_text("cancelled")
    expect(page.locator('[data-step="quick"] .revert .state')).to_have_text("succeeded")
    browser.screenshot(page, "workflow-cancelled")


def test_markup_in_a_workflows_params_and_step_output_is_shown_as_text(
    page: Any, ui_server: ServerProcess
) -> None:
    output = json.dumps(MARKUP)
    flow = Flow("ui-markup", params={"note": MARKUP}).step(
        "speak", ["sh", "-c", f"echo '{output}'"]
    )
    with Client(ui_server.url) as client:
        workflow = client.submit_workflow(flow)
        client.wait_workflow(workflow.id, timeout=60)

    page.goto(ui_server.url + f"/ui/workflows/{workflow.id}")
    expect(page.locator('[data-step="speak"] .output')).to_have_text(output)
    expect(page.locator("#summary")).to_contain_text("<script>window.pwned = 1</script>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main script, main img").count() == 0


def test_a_page_of_another_site_cannot_submit_with_the_users_credentials(
    page: Any, ui_server: ServerProcess, tmp_path: Path
) -> None:
    # A classic CSRF form: a text/plain body that is valid JSON, posted
    # cross-origin (another port is another origin).
    body = '{"command": ["true"], "name": "forged", "x": "'
    (tmp_path / "evil.html").write_text(
        f'<form method="post" enctype="text/plain" action="{ui_server.url}/v1/jobs">'
        f"<input name='{body}' value='\"}}'><button id=\"go\">go</button></form>"
    )
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/evil.html")
        with page.expect_navigation():
            page.click("#go")
        assert "cross_origin" in page.content()
    finally:
        evil.shutdown()
        evil.server_close()
    with Client(ui_server.url) as client:
        assert client.list(name="forged").jobs == []


# -- with authentication -------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    home = tmp_path_factory.mktemp("ui-auth")
    server = ServerProcess(home, args=["--tokens"])
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    server.start()
    yield server, tokens
    server.stop()


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#signin button[type=submit]")


def test_with_auth_a_user_signs_in_and_never_sees_another_users_job(
    page: Any, auth_server: tuple[ServerProcess, dict[str, str]]
) -> None:
    server, tokens = auth_server
    with Client(server.url, credentials=Credentials(token=tokens["alice"])) as alice:
        hers = alice.submit({"command": ["true"], "name": "alice's job"})
    with Client(server.url, credentials=Credentials(token=tokens["bob"])) as bob:
        his = bob.submit({"command": ["true"], "name": "bob's job"})

    page.goto(server.url + "/ui")
    expect(page.locator("#signin")).to_be_visible()
    browser.screenshot(page, "sign-in")
    sign_in(page, server.url + "/ui", "jdk_not_a_token")
    expect(page.locator("#signin .error")).to_be_visible()

    sign_in(page, server.url + "/ui", tokens["bob"])
    expect(page.locator(".who")).to_have_text("bob")
    expect(row_of(page, his.id)).to_have_count(1)
    expect(row_of(page, hers.id)).to_have_count(0)
    expect(page.locator("input[name=owner]")).to_have_count(0)  # not an admin
    assert "alice" not in page.locator("main").inner_text()

    page.goto(server.url + "/ui?name=job")  # both names hold "job": bob sees his
    expect(row_of(page, his.id)).to_have_count(1)
    expect(row_of(page, hers.id)).to_have_count(0)

    page.goto(server.url + f"/ui/jobs/{hers.id}")
    expect(page.locator("#page-error")).to_contain_text(f"no job with id {hers.id!r}")
    assert "alice" not in page.locator("main").inner_text()

    page.click("text=Sign out")
    expect(page.locator("#signin")).to_be_visible()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A server with mutual TLS, and the directory of its CA and of client
    certificates for alice and bob."""
    pki = make_pki(tmp_path_factory.mktemp("ui-pki"), "alice", "bob")
    server = start_mtls_server(tmp_path_factory.mktemp("ui-mtls"), pki)
    yield server, pki
    server.stop()


def test_with_mutual_tls_the_browsers_certificate_is_the_user(
    chromium: Any, mtls_server: tuple[ServerProcess, Path]
) -> None:
    server, pki = mtls_server
    bobs = Credentials(ca=pki / "ca.pem", cert=pki / "bob.pem", key=pki / "bob-key.pem")
    with Client(server.url, credentials=bobs) as bob:
        his = bob.submit({"command": ["true"], "name": "bob's job"})
    certificate = {
        "origin": server.url,
        "certPath": str(pki / "alice.pem"),
        "keyPath": str(pki / "alice-key.pem"),
    }
    context = chromium.new_context(ignore_https_errors=True, client_certificates=[certificate])
    try:
        page = context.new_page()
        page.goto(server.url + "/ui/submit")
        expect(page.locator(".who")).to_have_text("alice")
        expect(page.locator("text=Sign out")).to_have_count(0)  # no token to forget
        page.fill("#command", "echo hello from alice")
        page.click("#submit")
        expect(page.locator("#log")).to_have_text("hello from alice\n")
        expect(page.locator("#summary")).to_contain_text("alice")
        page.goto(server.url + "/ui")
        expect(page.locator("tr[data-job]")).to_have_count(1)
        expect(row_of(page, his.id)).to_have_count(0)
    finally:
        context.close()
