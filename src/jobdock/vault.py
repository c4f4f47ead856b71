"""Secrets: encrypted at rest, handed to an attempt, masked in its output.

A secret's value is encrypted with the server's key (``secret_key``, a
Fernet key: AES-128-CBC with HMAC-SHA256) before it reaches the store, and
decrypted only by a worker, at the start of an attempt of a job of the
secret's owner. The worker gives it to the job as an environment variable
and/or a file in a private directory for that attempt, and replaces it by
``***`` wherever it appears in the job's output.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from jobdock.errors import ConfigError, SecretsUnavailable
from jobdock.models import SecretRef, Stream
from jobdock.settings import Settings

#: What a secret's value is replaced by in a job's output.
MASK = b"***"
#: The largest secret accepted.
MAX_SECRET_BYTES = 64 * 1024


def generate_key() -> str:
    """A new random secret key for the ``secret_key`` setting."""
    return Fernet.generate_key().decode()


class Vault:
    """Encrypts and decrypts secret values with the server's key."""

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode())
            except ValueError:
                raise ConfigError(
                    "secret_key is not a valid key (make one with `jobdock secrets keygen`)"
                ) from None

    @classmethod
    def of(cls, settings: Settings) -> Vault:
        """The vault of the configured ``secret_key`` (disabled without one)."""
        key = settings.secret_key
        return cls(key.get_secret_value() if key is not None else None)

    @property
    def enabled(self) -> bool:
        """Whether a key is configured."""
        return self._fernet is not None

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            raise SecretsUnavailable(
                "this server has no secret_key configured, so it cannot store or read "
                "secrets (see `jobdock secrets keygen`)"
            )
        return self._fernet

    def encrypt(self, value: bytes) -> bytes:
        """The stored form of ``value``."""
        return self._cipher().encrypt(value)

    def decrypt(self, stored: bytes) -> bytes:
        """The value of a stored secret; SecretsUnavailable if the key is wrong."""
        try:
            return self._cipher().decrypt(stored)
        except InvalidToken:
            raise SecretsUnavailable(
                "a stored secret cannot be decrypted with this secret_key (was the key changed?)"
            ) from None


def secret_env(refs: Sequence[SecretRef], values: Mapping[str, bytes]) -> dict[str, str]:
    """The environment variables that carry the referenced secrets."""
    return {
        ref.env: values[ref.name].decode(errors="replace") for ref in refs if ref.env is not None
    }


def _secrets_root() -> str | None:
    """Where attempt directories go: memory (/dev/shm) if there is one, so
    that secret files never reach a disk; else the default temp directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


@contextlib.contextmanager
def secret_files(
    refs: Sequence[SecretRef],
    values: Mapping[str, bytes],
    owner: tuple[int, int] | None = None,
) -> Iterator[Path | None]:
    """A private directory (0700) holding the referenced secret files (0600)
    for the length of the block, then removed; None when no file is wanted.
    With ``owner`` (uid, gid: the attempt's identity) they are that
    identity's, and no other uid but root can read them."""
    wanted = [ref for ref in refs if ref.file is not None]
    if not wanted:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="jobdock-secrets-", dir=_secrets_root()))
    try:
        for ref in wanted:
            assert ref.file is not None
            fd = os.open(directory / ref.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                if owner is not None:
                    os.fchown(out.fileno(), *owner)
                out.write(values[ref.name])
        if owner is not None:
            os.chown(directory, *owner)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


#: A form derived from a value (reversed, base64) shorter than this is not
#: masked: it would mask ordinary output as often as it hid anything.
MIN_FORM = 4


def _base64_forms(value: bytes) -> set[bytes]:
    """What base64 of any output holding ``value`` must contain: the whole
    encoding of the value (with and without padding), and, for each of the
    three alignments the value may have in the encoded bytes, the run of
    characters made of its bits alone (the characters at its edges also
    hold bits of its neighbours); standard and URL-safe alphabets."""
    found: set[bytes] = set()
    n = len(value)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(value)
        found |= {whole, whole.rstrip(b"=")}
        for align in range(3):
            text = encode(b"\0" * align + value)
            # Character i holds bits 6i..6i+5; the value's are 8*align..8*(align+n)-1.
            first, last = -(-4 * align // 3), 4 * (align + n) // 3
            found.add(text[first:last])
    return found


def masked_forms(value: bytes) -> set[bytes]:
    """The byte strings masked for one secret value: the value; without a
    trailing newline if it has one (a value set from a file or ``echo``);
    reversed (without the newline: ``rev`` keeps a line's end where it is);
    and each in base64 (see :func:`_base64_forms`)."""
    stripped = value.rstrip(b"\r\n")
    bases = {value, stripped} - {b""}
    forms = bases | {stripped[::-1]}
    for base in bases:
        forms |= _base64_forms(base)
    return {form for form in forms if form in bases or len(form) >= MIN_FORM}


class Redactor:
    """Replaces secret values by ``***`` in a stream of output pieces, and
    the forms a job most often turns them into (:func:`masked_forms`).

    A value may be split between two pieces: the end of a piece that could
    be the start of a value is held back until the next piece (or the end)
    shows whether it is. Only such a tail is held, so output that does not
    end in the beginning of a secret goes out at once.
    """

    def __init__(self, values: Iterable[bytes]) -> None:
        forms = {form for value in values if value for form in masked_forms(value)}
        # The longest first, so that a value inside another is not masked alone.
        self._values = sorted(forms, key=len, reverse=True)
        self._held: dict[Stream, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self._values)

    def feed(self, stream: Stream, data: bytes) -> bytes:
        """The part of ``data`` (after what was held) that can go out now."""
        data = self._mask(self._held.pop(stream, b"") + data)
        keep = self._partial_tail(data)
        if keep:
            self._held[stream] = data[-keep:]
            return data[:-keep]
        return data

    def flush(self, stream: Stream) -> bytes:
        """What is held back of ``stream``, at its end."""
        return self._held.pop(stream, b"")

    def _mask(self, data: bytes) -> bytes:
        for value in self._values:
            data = data.replace(value, MASK)
        return data

    def _partial_tail(self, data: bytes) -> int:
        """The length of the longest end of ``data`` that begins a value."""
        longest = 0
        for value in self._values:
            # Only where the value's first byte occurs can one of its starts begin.
            at = data.find(value[:1], max(len(data) - len(value) + 1, 0))
            while at != -1 and len(data) - at > longest:
                if value.startswith(data[at:]):
                    longest = len(data) - at
                    break
                at = data.find(value[:1], at + 1)
        return longest
