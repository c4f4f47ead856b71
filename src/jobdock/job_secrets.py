"""An attempt's secrets: the values of the secrets its job references, read
from the store and decrypted, then handed to the attempt as environment
variables and files that exist for the attempt only, its identity's alone,
with a Redactor that masks the values in its output.

Imports the vault, the store protocol, the runtimes' RunAs and the foundation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

from jobdock.errors import SecretsUnavailable, SpawnError
from jobdock.models import SecretRef
from jobdock.models.parts import SECRETS_DIR_ENV
from jobdock.models.records import Claim
from jobdock.runtimes.base import RunAs
from jobdock.store.protocol import SecretReader
from jobdock.vault import Redactor, Vault, secret_env, secret_files


async def secret_values(store: SecretReader, vault: Vault, claim: Claim) -> dict[str, bytes]:
    """The values of the secrets the job references, of its owner's (none:
    empty). SpawnError when one no longer exists or cannot be decrypted."""
    names = [ref.name for ref in claim.spec.secrets]
    if not names:
        return {}
    stored = await store.job_secrets(claim.job_id, names)
    missing = [name for name in names if name not in stored]
    if missing:
        raise SpawnError(f"the job's secret {missing[0]!r} no longer exists")
    try:
        return {name: vault.decrypt(value) for name, value in stored.items()}
    except SecretsUnavailable as exc:
        raise SpawnError(exc.message) from None


@contextlib.contextmanager
def materialised(
    refs: Sequence[SecretRef], values: Mapping[str, bytes], run_as: RunAs | None
) -> Iterator[tuple[dict[str, str], Redactor | None]]:
    """For the length of the block: the environment variables that carry the
    referenced secrets (and where their files are), and the Redactor that
    masks them; then the files are removed. No refs: nothing, no Redactor."""
    if not refs:
        yield {}, None
        return
    owner = (run_as.uid, run_as.gid) if run_as is not None else None
    with secret_files(refs, values, owner) as directory:
        env = secret_env(refs, values)
        if directory is not None:
            env[SECRETS_DIR_ENV] = str(directory)
        yield env, Redactor(values.values())
