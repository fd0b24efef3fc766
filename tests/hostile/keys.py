"""Explicit test signing keys, and signing as the agent or the admin path would.

The platform under test is configured with exactly these key sets (agent: contributions and
audit records; admin: corrections). The suite holds them too, so it can write records that are
correctly signed but forged *around* the signature (reconciliation must flag those), and
records signed by the wrong set or an unknown key (the ledger must refuse those).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from royalflow.contracts.signing import HEADER_KEY_ID, HEADER_SIGNATURE, HmacKey, Signer

AGENT_KEY_ID = "agent-test-1"
AGENT_SECRET = hashlib.sha256(b"royalflow hostile suite agent key").digest()
ADMIN_KEY_ID = "admin-test-1"
ADMIN_SECRET = hashlib.sha256(b"royalflow hostile suite admin key").digest()
# Known to nobody on the platform: a well-formed signature from it must still be refused.
STRANGER_KEY_ID = "stranger-1"
STRANGER_SECRET = hashlib.sha256(b"royalflow hostile suite stranger key").digest()

Headers = list[tuple[str, bytes]]
Sign = Callable[[str, bytes | None, bytes], Headers]  # (topic short name, key, value) -> headers


def spec(kid: str, secret: bytes) -> str:
    return f"{kid}:{base64.b64encode(secret).decode()}"


def settings_fields() -> dict[str, str]:
    """The Settings fields that give the platform exactly these key sets."""
    return {
        "signing_keys": spec(AGENT_KEY_ID, AGENT_SECRET), "signing_key_id": AGENT_KEY_ID,
        "admin_keys": spec(ADMIN_KEY_ID, ADMIN_SECRET), "admin_key_id": ADMIN_KEY_ID,
    }


def _signer(kid: str, secret: bytes) -> Sign:
    signer = Signer(HmacKey(kid, secret))
    return lambda topic, key, value: signer.headers(topic, key, value)


agent: Sign = _signer(AGENT_KEY_ID, AGENT_SECRET)
admin: Sign = _signer(ADMIN_KEY_ID, ADMIN_SECRET)
stranger: Sign = _signer(STRANGER_KEY_ID, STRANGER_SECRET)


def unsigned(topic: str, key: bytes | None, value: bytes) -> Headers:
    return []


def with_signature(headers: Headers, signature: bytes) -> Headers:
    return [(k, signature if k == HEADER_SIGNATURE else v) for k, v in headers]


def without(headers: Headers, name: str) -> Headers:
    return [(k, v) for k, v in headers if k != name]


__all__ = ["HEADER_KEY_ID", "HEADER_SIGNATURE", "agent", "admin", "stranger", "unsigned", "settings_fields"]
