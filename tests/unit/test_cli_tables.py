"""The CLI's terminal tables: aligned columns two spaces apart, never wider
than the terminal (wrapping columns narrowed first, others cut with an
ellipsis), a state's colour only where colour is allowed."""

from __future__ import annotations

import re

import pytest

from jobdock.cli.render.output import state_style
from jobdock.cli.render.tables import cell_width, print_table

SGR = re.compile(r"\x1b\[[\d;]*m")


def _table(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    columns: int,
    **options: object,
) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    print_table(
        ("JOB ID", "COMMAND", "STATUS"),
        [
            ("1f0c3a9e5d2b4c7a", "sh -c 'echo one two three four five six'", "running 2s"),
            ("9e5d", "true", "succeeded (exit 0) in 2ms"),
        ],
        **options,  # type: ignore[arg-type]
    )
    return capsys.readouterr().out.splitlines()


def test_a_wide_terminal_shows_every_cell_whole_in_aligned_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [SGR.sub("", line) for line in _table(monkeypatch, capsys, 200, colour=False)]

    assert lines[0].split() == ["JOB", "ID", "COMMAND", "STATUS"]
    assert lines[1].startswith("1f0c3a9e5d2b4c7a  sh -c 'echo one")
    assert lines[1].index("running") == lines[2].index("succeeded") == lines[0].index("STATUS")


def test_a_narrow_terminal_wraps_the_wrapping_column_and_cuts_the_others(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        SGR.sub("", line)
        for line in _table(monkeypatch, capsys, 60, wrap={"COMMAND"}, colour=False)
    ]

    assert all(cell_width(line) <= 60 for line in lines)
    assert len(lines) > 3, "the long command goes on over more lines"
    shown = " ".join(line[18:40].strip() for line in lines[1:])
    assert "four five six'" in shown, "nothing of a wrapped cell is lost"


def test_states_are_coloured_only_when_colour_is_allowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    styles = {"STATUS": state_style}
    coloured = "\n".join(_table(monkeypatch, capsys, 200, styles=styles, colour=True))
    plain = "\n".join(_table(monkeypatch, capsys, 200, styles=styles, colour=False))

    assert "\x1b[36mrunning 2s\x1b[0m" in coloured
    assert "\x1b[32msucceeded" in coloured
    assert not re.search(r"\x1b\[3\dm", plain)


def test_wide_characters_take_two_columns() -> None:
    assert cell_width("job-名前") == 8
    assert cell_width("plain") == 5
