"""The dashboard's log view in headless Chromium against a real server, as
GitHub's log viewer shows a step: ANSI colours and bold rendered (other
escapes dropped, markup still text), a number on every line, per-line
timestamps, and a search that highlights, counts and steps through its
matches."""

from __future__ import annotations

from typing import Any

from browser import expect
from jobdock import Client
from support import ServerProcess

RED = "rgb(224, 108, 117)"  # .ansi-fg-red in style.css
GREEN = "rgb(152, 195, 121)"
STDERR = "rgb(255, 155, 143)"  # .err


def finished_job_page(page: Any, server: ServerProcess, command: list[str]) -> Any:
    """The page of a job that ran ``command``, once its output is shown."""
    with Client(server.url) as client:
        job = client.submit({"command": command})
        client.wait(job.id, timeout=60)
    page.goto(server.url + f"/ui/jobs/{job.id}")
    expect(page.locator("#log-state")).to_have_text("the job has ended")
    return page.locator("#log")


def segment(log: Any, text: str) -> Any:
    return log.locator("span[data-stream]", has_text=text)


def colour_of(locator: Any, prop: str = "color") -> str:
    value: str = locator.evaluate(f"el => getComputedStyle(el).{prop}")
    return value


def test_ansi_colours_and_bold_are_rendered_and_other_escapes_dropped(
    page: Any, ui_server: ServerProcess
) -> None:
    output = (
        r"\033[31mred\033[0m \033[1;32mbold green\033[0m "
        r"\033]0;a title\007\033[2Kplain \033[38;2;10;20;30mrgb\033[m "
        r"\033[35m<b>not bold</b>\033[0m\n"
    )
    log = finished_job_page(page, ui_server, ["printf", output])
    expect(log).to_have_text("red bold green plain rgb <b>not bold</b>\n")
    assert colour_of(segment(log, "red")) == RED
    bold = segment(log, "bold green")
    assert colour_of(bold) == GREEN
    assert bold.evaluate("el => getComputedStyle(el).fontWeight") == "700"
    assert colour_of(segment(log, "rgb")) == "rgb(10, 20, 30)"
    assert log.locator("b").count() == 0  # the job's markup is text


def test_colours_carry_over_lines_and_each_stream_keeps_its_own(
    page: Any, ui_server: ServerProcess
) -> None:
    script = r"printf '\033[31mone\ntwo\n'; echo err >&2; printf 'three\033[0m\n'"
    log = finished_job_page(page, ui_server, ["sh", "-c", script])
    expect(log.locator(".line")).to_have_count(4)  # stderr's line may come anywhere
    for text in ("one", "two", "three"):
        assert colour_of(segment(log, text)) == RED
    assert colour_of(segment(log, "err")) == STDERR  # stdout's red is not stderr's


def test_every_line_has_its_number_outside_the_text(page: Any, ui_server: ServerProcess) -> None:
    log = finished_job_page(page, ui_server, ["sh", "-c", "echo a; echo b; echo c"])
    lines = log.locator(".line")
    expect(lines).to_have_count(3)
    numbers = [
        lines.nth(i).locator(".ln").evaluate("el => getComputedStyle(el, '::before').content")
        for i in range(3)
    ]
    assert numbers == ['"1"', '"2"', '"3"']
    expect(log).to_have_text("a\nb\nc\n")  # a copy of the log has no numbers


def test_search_highlights_counts_and_steps_through_matches(
    page: Any, ui_server: ServerProcess
) -> None:
    output = r"alpha\nbeta ALPHA alp\033[31mha\033[0m\ngamma\n"
    log = finished_job_page(page, ui_server, ["printf", output])
    count = page.locator("#log-search-count")
    page.fill("#log-search", "alpha")
    expect(count).to_have_text("1 / 3")
    expect(log.locator("mark.hit[data-first]")).to_have_count(3)
    expect(log.locator("mark.current")).to_have_text("alpha")
    # The third match spans two colours: two marks, one match.
    expect(log.locator("mark.hit")).to_have_count(4)
    page.press("#log-search", "Enter")
    expect(count).to_have_text("2 / 3")
    expect(log.locator("mark.current")).to_have_text("ALPHA")
    page.click("#log-next")
    expect(count).to_have_text("3 / 3")
    expect(log.locator("mark.current")).to_have_count(2)
    page.click("#log-next")
    expect(count).to_have_text("1 / 3")  # round the end
    page.click("#log-previous")
    expect(count).to_have_text("3 / 3")
    page.fill("#log-search", "delta")
    expect(count).to_have_text("no matches")
    expect(log.locator("mark")).to_have_count(0)
    expect(log).to_have_text("alpha\nbeta ALPHA alpha\ngamma\n")  # marks leave no trace
    page.fill("#log-search", "")
    expect(count).to_have_text("")


def test_lines_show_their_arrival_time_where_the_server_sends_it(
    page: Any, ui_server: ServerProcess
) -> None:
    # The view as the job page drives it when the logs route offers
    # timestamps=true: each line's RFC 3339 prefix moves to the gutter.
    page.goto(ui_server.url + "/ui")
    shown = page.evaluate(
        """async () => {
        const { LogView } = await import("/ui/static/logview.js");
        const view = new LogView(1e6);
        view.timestamps = true;
        view.pre.classList.add("with-times");
        document.body.append(view.pre);
        view.write("stdout", "2026-12-02T01:00:00.123456Z one\\n2026-12-02T01:00:01.5Z tw");
        view.write("stdout", "o\\n");
        view.write("stderr", "2026-12-02T01:00:02Z \\u001b[31mthree\\u001b[0m\\n");
        view.write("stdout", "kept before times were\\n");
        return {
          text: view.pre.textContent,
          times: [...view.pre.querySelectorAll(".line")].map(
            (line) => line.querySelector(".ts")?.dataset.time ?? null),
          visible: getComputedStyle(view.pre.querySelector(".ts"), "::before").content,
        };
    }"""
    )
    assert shown["text"] == "one\ntwo\nthree\nkept before times were\n"
    assert shown["times"] == [
        "2026-12-02T01:00:00.123456Z",
        "2026-12-02T01:00:01.5Z",
        "2026-12-02T01:00:02Z",
        None,  # no arrival time stored, no stamp
    ]
    assert shown["visible"] == '"2026-12-02T01:00:00.123456Z"'
