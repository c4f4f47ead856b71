"""``jobdock repro``'s pieces that need no server (issue 19): the image
digest an attempt is pinned by, and ``--compare``'s verdict."""

from __future__ import annotations

from jobdock.cli.render.compare import Run, first_difference, verdict
from jobdock.runtimes.inputs import image_digest

ID = "sha256:" + "1" * 64
DIGEST = "sha256:" + "2" * 64


def test_a_pulled_image_is_pinned_by_its_repo_digest_of_the_same_repository() -> None:
    record = {"Id": ID, "RepoDigests": [f"other/app@{DIGEST}", f"registry:5000/app@{DIGEST}"]}

    assert image_digest("registry:5000/app:1.2", record) == f"registry:5000/app@{DIGEST}"


def test_an_image_built_here_is_pinned_by_its_id() -> None:
    assert image_digest("localhost/app:1", {"Id": ID, "RepoDigests": []}) == ID


def test_the_first_differing_line_is_named_with_both_sides() -> None:
    assert first_difference(b"a\nb\nc\n", b"a\nB\nc\n") == "line 2: 'b\\n' here, 'B\\n' originally"
    assert first_difference(b"a\n", b"a\nmore\n") == "line 2: nothing here, 'more\\n' originally"


def test_the_verdict_is_same_only_when_code_and_both_streams_match() -> None:
    original = Run(3, b"out\n", b"err\n", 1.5)

    same = verdict(Run(3, b"out\n", b"err\n", 1.2), original, "job1")
    different = verdict(Run(3, b"out\n", b"ERR\n", 1.2), original, "job1")

    assert same[-1] == "verdict: same"
    assert "1.20s here, 1.50s originally" in same[-2]
    assert different[-1] == "verdict: different"
    assert "stderr    differs" in different[3] and "line 1" in different[3]
