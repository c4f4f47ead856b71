"""Secrets: encryption with the server's key, masking in output (also when a
value is split between pieces), and the private directory of secret files."""

from __future__ import annotations

import logging
import stat

import pytest

from jobdock.cli import _check_exposure
from jobdock.errors import ConfigError, SecretsUnavailable
from jobdock.models import SecretRef, Stream
from jobdock.settings import Settings
from jobdock.vault import Redactor, Vault, generate_key, secret_files

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
