"""JSON and YAML documents are parsed within bounds (jobdock.documents)."""

from __future__ import annotations

import time

import pytest

from jobdock.documents import load_json, load_yaml
from jobdock.errors import InvalidJson
from jobdock.models.parsing import MAX_DEPTH


def refusal(load: object, text: str) -> str:
    with pytest.raises(InvalidJson) as raised:
        load(text)  # type: ignore[operator]
    return raised.value.message


def test_json_at_the_depth_bound_loads_and_one_deeper_is_refused() -> None:
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    deeper = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert refusal(load_json, deeper) == "the body is nested more than 64 levels deep"


def test_json_deeper_than_python_can_recurse_is_refused() -> None:
    assert "64 levels" in refusal(load_json, '{"a":' * 100_000 + "1" + "}" * 100_000)


def test_yaml_may_share_blocks_through_aliases_and_merge_keys() -> None:
    document = "defaults: &d {image: busybox, env: {A: '1'}}\njob:\n  <<: *d\n  command: [echo]\n"
    assert load_yaml(document)["job"] == {
        "image": "busybox",
        "env": {"A": "1"},
        "command": ["echo"],
    }


def test_a_billion_laughs_is_refused_without_expanding_it() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    start = time.monotonic()
    message = refusal(load_yaml, "\n".join(lines))
    assert time.monotonic() - start < 1
    assert message == (
        "the body stands for more than 100000 values once its YAML aliases are expanded"
    )


def test_more_than_a_hundred_aliases_are_refused() -> None:
    document = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    assert refusal(load_yaml, document) == "the body uses more than 100 YAML aliases"


def test_a_yaml_document_that_refers_to_itself_is_refused() -> None:
    assert "refers to itself" in refusal(load_yaml, "a: &a [1, *a]")


def test_an_alias_that_nests_past_the_depth_bound_is_refused() -> None:
    deep = "[" * 40 + "1" + "]" * 40
    assert "64 levels" in refusal(load_yaml, f"a: &a {deep}\nb: {'[' * 30}*a{']' * 30}\n")


def test_yaml_with_too_many_values_is_refused_before_it_is_composed() -> None:
    document = "x: [" + "1," * 1_000_000 + "1]"
    start = time.monotonic()
    assert refusal(load_yaml, document) == "the body has more than 20000 YAML values"
    assert time.monotonic() - start < 2


def test_yaml_deeper_than_libyaml_allows_is_refused_naming_the_depth() -> None:
    assert "64 levels" in refusal(load_yaml, "x: " + "[" * 5000 + "]" * 5000)
