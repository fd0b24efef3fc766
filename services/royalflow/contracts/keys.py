"""Where the signing keys of a process come from: its settings, or ``<state_dir>/keys.json``.

Configured (``ROYALFLOW_SIGNING_KEYS`` and/or ``ROYALFLOW_ADMIN_KEYS``): those key sets and
nothing else. A process gets only the sets it needs (the agent no admin keys, the admin tool no
agent keys); using a missing set is a ConfigurationError, never a silently generated key.
Neither configured (the embedded platform, tests): both sets from ``<state_dir>/keys.json``,
generated once with fresh random secrets (never a hard-coded default) and mode 0600. Every
process sharing the state folder (platform children, CLI commands) then shares the keys.

Which key set may write which topic is fixed here, in one table (``TOPIC_SIGNERS``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.signing import KeySet, Signer, Verifier
from royalflow.errors import ConfigurationError

log = logging.getLogger(__name__)

KEYS_FILE = "keys.json"
AGENT = "agent"
ADMIN = "admin"
MAX_KEYS_FILE_BYTES = 65_536

# Only the agent's keys authenticate contributions and audit records; only admin keys
# authenticate corrections (reversals). A record signed by the other set is refused.
TOPIC_SIGNERS: dict[str, str] = {
    topics.CONTRIBUTIONS: AGENT,
    topics.ATTRIBUTIONS: AGENT,
    topics.CORRECTIONS: ADMIN,
}


@dataclass(frozen=True, repr=False)
class KeyMaterial:
    agent: KeySet | None
    agent_key_id: str | None
    admin: KeySet | None
    admin_key_id: str | None

    def keyset(self, name: str) -> KeySet:
        keyset = self.agent if name == AGENT else self.admin
        if keyset is None:
            variable = "ROYALFLOW_SIGNING_KEYS" if name == AGENT else "ROYALFLOW_ADMIN_KEYS"
            raise ConfigurationError(f"this process needs the {name} key set: set {variable}")
        return keyset

    def verifier(self) -> Verifier:
        return Verifier({topic: self.keyset(name) for topic, name in TOPIC_SIGNERS.items()})

    def signer(self, topic: str) -> Signer:
        """The signer for records on ``topic`` (short name) under the set that owns it."""
        name = TOPIC_SIGNERS.get(topic)
        if name is None:
            raise ConfigurationError(f"records on {topic} are not signed")
        return self.keyset(name).signer(self.agent_key_id if name == AGENT else self.admin_key_id)

    def __repr__(self) -> str:
        return f"KeyMaterial(agent={self.agent!r}, admin={self.admin!r})"


def new_hmac_spec(kid: str) -> str:
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _generate(path: Path) -> None:
    """Write fresh keys to ``path`` unless it exists. Atomic and race-free: the file is
    written under a private name with mode 0600 and hard-linked into place, so two processes
    starting together end with ONE key file (the loser reads the winner's)."""
    suffix = secrets.token_hex(4)
    doc = {
        "version": 1,
        AGENT: {"key_id": f"agent-{suffix}", "keys": new_hmac_spec(f"agent-{suffix}")},
        ADMIN: {"key_id": f"admin-{suffix}", "keys": new_hmac_spec(f"admin-{suffix}")},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
            log.info("generated signing keys %s and %s in %s", doc[AGENT]["key_id"], doc[ADMIN]["key_id"], path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> dict:  # type: ignore[type-arg]
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Like ssh: a secret others can read is not a secret; refuse rather than trust it.
        raise ConfigurationError(f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
    if info.st_size > MAX_KEYS_FILE_BYTES:
        raise ConfigurationError(f"{path} is larger than {MAX_KEYS_FILE_BYTES} bytes")
    try:
        doc = json.loads(path.read_text())
        return {name: (str(doc[name]["keys"]), doc[name].get("key_id")) for name in (AGENT, ADMIN)}
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(f"{path} is not a royalflow key file") from None


def key_material(settings: Settings) -> KeyMaterial:
    """The key sets this process signs and verifies with (see the module doc)."""
    if settings.signing_keys or settings.admin_keys:
        return KeyMaterial(
            agent=KeySet.parse(AGENT, settings.signing_keys) if settings.signing_keys else None,
            agent_key_id=settings.signing_key_id,
            admin=KeySet.parse(ADMIN, settings.admin_keys) if settings.admin_keys else None,
            admin_key_id=settings.admin_key_id,
        )
    path = Path(settings.state_dir) / KEYS_FILE
    if not path.exists():
        _generate(path)
    stored = _read(path)
    return KeyMaterial(
        agent=KeySet.parse(AGENT, stored[AGENT][0]), agent_key_id=settings.signing_key_id or stored[AGENT][1],
        admin=KeySet.parse(ADMIN, stored[ADMIN][0]), admin_key_id=settings.admin_key_id or stored[ADMIN][1],
    )
