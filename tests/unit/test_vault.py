"""Secrets: encryption with the server's key, masking in output (also when a
value is split between pieces), and the private directory of secret files."""

from __future__ import annotations

import base64
import logging
import stat

import pytest

from jobdock.cli.server import _check_exposure
from jobdock.errors import ConfigError, SecretsUnavailable
from jobdock.models import SecretRef, Stream
from jobdock.settings import Settings
from jobdock.vault import MIN_FORM, Redactor, Vault, generate_key, secret_files

OUT, ERR = Stream.STDOUT, Stream.STDERR


def test_values_round_trip_and_are_not_stored_in_clear() -> None:
    vault = Vault(generate_key())
    stored = vault.encrypt(b"s3cret")
    assert b"s3cret" not in stored
    assert vault.decrypt(stored) == b"s3cret"
    with pytest.raises(SecretsUnavailable, match="cannot be decrypted"):
        Vault(generate_key()).decrypt(stored)


def test_without_a_key_secrets_are_refused_and_a_bad_key_is_a_config_error() -> None:
    with pytest.raises(SecretsUnavailable, match="secret_key"):
        Vault(None).encrypt(b"x")
    with pytest.raises(ConfigError):
        Vault("not-a-key")


def masked(redactor: Redactor, pieces: list[tuple[Stream, bytes]]) -> dict[Stream, bytes]:
    out = {OUT: b"", ERR: b""}
    for stream, data in pieces:
        out[stream] += redactor.feed(stream, data)
    for stream in out:
        out[stream] += redactor.flush(stream)
    return out


def test_values_are_masked_even_split_between_pieces() -> None:
    redactor = Redactor([b"hunter2", b"abc"])
    pieces = [(OUT, b"pw=hun"), (ERR, b"ab"), (OUT, b"ter2!\n"), (ERR, b"c and ab")]
    assert masked(redactor, pieces) == {OUT: b"pw=***!\n", ERR: b"*** and ab"}


def test_only_a_possible_start_of_a_value_is_held_back() -> None:
    redactor = Redactor([b"secret"])
    assert redactor.feed(OUT, b"plain output\n") == b"plain output\n"
    assert redactor.feed(OUT, b"sec") == b""
    assert redactor.feed(OUT, b"ond") == b"second"


def test_a_value_inside_a_longer_one_does_not_break_the_longer_one() -> None:
    redactor = Redactor([b"pass", b"password1"])
    assert masked(redactor, [(OUT, b"password1 pass")])[OUT] == b"*** ***"


def test_secret_files_are_private_and_removed_after() -> None:
    refs = [SecretRef(name="a", file="a.pem"), SecretRef(name="b", env="B")]
    with secret_files(refs, {"a": b"AAA", "b": b"BBB"}) as directory:
        assert directory is not None
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert [p.name for p in directory.iterdir()] == ["a.pem"]
        assert stat.S_IMODE((directory / "a.pem").stat().st_mode) == 0o600
        assert (directory / "a.pem").read_bytes() == b"AAA"
    assert not directory.exists()
    with secret_files(refs[1:], {"b": b"BBB"}) as none:
        assert none is None


def test_insecure_serving_beyond_loopback_is_allowed_but_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        _check_exposure(Settings(host="0.0.0.0", insecure=True))
    assert "INSECURE" in caplog.text
    caplog.clear()
    _check_exposure(Settings(host="0.0.0.0", tokens=True))
    _check_exposure(Settings(host="::1"))
    assert caplog.text == ""


# -- forms of a value a job may print ----------------------------------------------

#: Its base64 holds '+' and '/' (standard) or '-' and '_' (URL-safe).
VALUE = b"p>w?d~~~correct-horse"
ENCODINGS = {"standard": base64.b64encode, "url-safe": base64.urlsafe_b64encode}


@pytest.mark.parametrize("padding", [True, False])
@pytest.mark.parametrize("alignment", [0, 1, 2])
@pytest.mark.parametrize("alphabet", list(ENCODINGS))
def test_the_base64_of_output_holding_a_value_is_masked(
    alphabet: str, alignment: int, padding: bool
) -> None:
    encode = ENCODINGS[alphabet]
    printed = encode(b"x" * alignment + VALUE + b"!")
    printed = printed if padding else printed.rstrip(b"=")
    whole = encode(VALUE)

    out = masked(Redactor([VALUE]), [(OUT, printed[:9]), (OUT, printed[9:] + b"\n")])[OUT]

    assert b"***" in out
    assert len(out) < len(printed) - len(whole) // 2, "at most a few edge characters remain"
    assert out.endswith(b"\n")


def test_the_base64_of_the_value_alone_is_masked_whole() -> None:
    out = masked(Redactor([VALUE]), [(OUT, base64.b64encode(VALUE) + b"\n")])[OUT]
    assert out == b"***\n"


def test_a_reversed_value_is_masked_also_split_between_pieces() -> None:
    reversed_ = VALUE[::-1]
    out = masked(Redactor([VALUE]), [(OUT, b"rev=" + reversed_[:5]), (OUT, reversed_[5:])])
    assert out[OUT] == b"rev=***"


def test_a_value_stored_with_a_trailing_newline_is_masked_with_and_without_it() -> None:
    redactor = Redactor([b"hunter2-horse\n"])

    out = masked(redactor, [(OUT, b"pw=hunter2-horse, again: hunter2-horse\nend\n")])[OUT]

    assert out == b"pw=***, again: ***end\n"
    assert masked(redactor, [(OUT, base64.b64encode(b"hunter2-horse") + b"\n")])[OUT] == b"***\n"


def test_forms_shorter_than_the_minimum_are_left_alone() -> None:
    assert masked(Redactor([b"ab"]), [(OUT, b"ab ba YWI")])[OUT] == b"*** ba YWI"
    assert MIN_FORM == 4
