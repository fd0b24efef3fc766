"""Record signatures: what verifies, what is refused as bad_signature, and that secrets stay secret."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts import decode_ledger_record
from royalflow.contracts.keys import KEYS_FILE, key_material, new_hmac_spec
from royalflow.contracts.signing import (
    HEADER_KEY_ID, HEADER_SIGNATURE, KeySet, Verifier, parse_key, signed_message,
)
from royalflow.errors import ConfigurationError, ContractError

from tests.contracts.test_events import CONTRIBUTION

SECRET = base64.b64encode(b"s" * 32).decode()
ED_SEED = base64.b64encode(bytes(range(32))).decode()
VALUE = json.dumps(CONTRIBUTION).encode()
REVERSAL = json.dumps({**CONTRIBUTION, "contribution_id": "rev-1", "kind": "reversal",
                       "corrects": CONTRIBUTION["contribution_id"]}).encode()


def _agent(spec: str = f"k1:{SECRET}") -> KeySet:
    return KeySet.parse("agent", spec)


def _verifier(agent: KeySet | None = None, admin: KeySet | None = None) -> Verifier:
    agent = agent or _agent()
    admin = admin or KeySet.parse("admin", new_hmac_spec("adm1"))
    return Verifier({topics.CONTRIBUTIONS: agent, topics.ATTRIBUTIONS: agent, topics.CORRECTIONS: admin})


def _reason(verifier: Verifier, topic: str, key: bytes | None, value: bytes, headers) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError) as info:
        verifier.verify(topic, key, value, headers)
    return info.value.reason


@pytest.mark.parametrize("spec", [f"k1:{SECRET}", f"k1:ed25519:{ED_SEED}"])
def test_signed_record_verifies_and_names_its_key(spec: str) -> None:
    keys = _agent(spec)
    headers = keys.signer("k1").headers(topics.CONTRIBUTIONS, b"owner-a", VALUE)
    assert dict(headers)[HEADER_KEY_ID] == b"k1"
    assert _verifier(keys).verify(topics.CONTRIBUTIONS, b"owner-a", VALUE, headers) == "k1"


@pytest.mark.parametrize("spec", [f"k1:{SECRET}", f"k1:ed25519:{ED_SEED}"])
def test_any_change_breaks_the_signature(spec: str) -> None:
    keys = _agent(spec)
    verifier = _verifier(keys)
    headers = keys.signer("k1").headers(topics.CONTRIBUTIONS, b"owner-a", VALUE)
    tampered_value = VALUE.replace(b'"amount": ', b'"amount": 1')
    assert _reason(verifier, topics.CONTRIBUTIONS, b"owner-a", tampered_value, headers) == "bad_signature"
    assert _reason(verifier, topics.CONTRIBUTIONS, b"owner-b", VALUE, headers) == "bad_signature"
    # Replayed onto another topic of the same key set: the topic is signed too.
    assert _reason(verifier, topics.ATTRIBUTIONS, b"owner-a", VALUE, headers) == "bad_signature"


def test_key_and_value_boundary_is_unambiguous() -> None:
    assert signed_message("t", "k", b"a\nb", b"c") != signed_message("t", "k", b"a", b"b\nc")
    assert signed_message("t", "k", None, b"v") == signed_message("t", "k", b"", b"v")


def test_unsigned_unknown_and_malformed_headers_are_refused() -> None:
    keys = _agent()
    verifier = _verifier(keys)
    good = keys.signer("k1").headers(topics.CONTRIBUTIONS, None, VALUE)
    signature = dict(good)[HEADER_SIGNATURE]
    cases = {
        "unsigned": [],
        "no signature": [(HEADER_KEY_ID, b"k1")],
        "unknown key id": [(HEADER_KEY_ID, b"k9"), (HEADER_SIGNATURE, signature)],
        "two signatures": [*good, (HEADER_SIGNATURE, signature)],
        "empty key id": [(HEADER_KEY_ID, b""), (HEADER_SIGNATURE, signature)],
        "binary key id": [(HEADER_KEY_ID, b"\xff"), (HEADER_SIGNATURE, signature)],
        "not hex": [(HEADER_KEY_ID, b"k1"), (HEADER_SIGNATURE, b"zz" * 32)],
        "too long": [(HEADER_KEY_ID, b"k1"), (HEADER_SIGNATURE, b"00" * 200)],
        "truncated": [(HEADER_KEY_ID, b"k1"), (HEADER_SIGNATURE, signature[:-2])],
        "none value": [(HEADER_KEY_ID, b"k1"), (HEADER_SIGNATURE, None)],
    }
    for name, headers in cases.items():
        assert _reason(verifier, topics.CONTRIBUTIONS, None, VALUE, headers) == "bad_signature", name


def test_a_topic_accepts_only_its_own_key_set() -> None:
    agent, admin = _agent(), KeySet.parse("admin", f"adm1:{base64.b64encode(b'a' * 32).decode()}")
    verifier = _verifier(agent, admin)
    by_agent = agent.signer("k1").headers(topics.CORRECTIONS, None, REVERSAL)
    assert _reason(verifier, topics.CORRECTIONS, None, REVERSAL, by_agent) == "bad_signature"
    by_admin = admin.signer("adm1").headers(topics.CONTRIBUTIONS, None, VALUE)
    assert _reason(verifier, topics.CONTRIBUTIONS, None, VALUE, by_admin) == "bad_signature"
    assert _reason(verifier, "generations.v1", None, VALUE, by_admin) == "bad_signature"


def test_rotation_old_and_new_keys_verify_while_both_are_configured() -> None:
    new = new_hmac_spec("k2")
    old_signer = _agent().signer("k1")
    both = _agent(f"k1:{SECRET},{new}")
    verifier = _verifier(both)
    for signer in (old_signer, both.signer("k2")):
        assert verifier.verify(topics.CONTRIBUTIONS, None, VALUE, signer.headers(topics.CONTRIBUTIONS, None, VALUE))
    retired = _verifier(_agent(new))
    headers = old_signer.headers(topics.CONTRIBUTIONS, None, VALUE)
    assert _reason(retired, topics.CONTRIBUTIONS, None, VALUE, headers) == "bad_signature"
    with pytest.raises(ConfigurationError):
        both.signer(None)  # two signing keys and no key id: ambiguous, refused


def test_ed25519_public_keys_verify_but_cannot_sign() -> None:
    private = parse_key(f"k1:ed25519:{ED_SEED}")
    public_only = KeySet.parse("agent", private.public_spec())  # type: ignore[attr-defined]
    headers = _agent(f"k1:ed25519:{ED_SEED}").signer("k1").headers(topics.CONTRIBUTIONS, None, VALUE)
    assert _verifier(public_only).verify(topics.CONTRIBUTIONS, None, VALUE, headers) == "k1"
    with pytest.raises(ConfigurationError):
        public_only.signer("k1")
    # An HMAC key with the same id is a different key: the verifier's key decides the algorithm.
    assert _reason(_verifier(_agent()), topics.CONTRIBUTIONS, None, VALUE, headers) == "bad_signature"


@pytest.mark.parametrize("spec", [
    "k1", f"bad id:{SECRET}", f"k1:{base64.b64encode(b'short').decode()}", "k1:not base64!",
    f"k1:{SECRET},k1:{SECRET}", "k1:ed25519:AAAA", ",".join(new_hmac_spec(f"k{i}") for i in range(33)),
])
def test_bad_key_specs_fail_without_echoing_the_secret(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeySet.parse("agent", spec)
    assert SECRET not in str(info.value)


def test_secrets_appear_in_no_repr(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, signing_keys=f"k1:{SECRET}", admin_keys=f"a1:{SECRET}")
    material = key_material(settings)
    for text in (repr(settings), str(settings), repr(material), repr(material.agent), repr(material.agent.keys["k1"]),
                 repr(material.signer(topics.CONTRIBUTIONS)), repr(parse_key(f"e1:ed25519:{ED_SEED}"))):
        assert SECRET not in text and ED_SEED not in text and "c3Nz" not in text


def test_embedded_keys_are_generated_once_private_and_shared(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    results = []
    threads = [threading.Thread(target=lambda: results.append(key_material(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "state" / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == [KEYS_FILE]  # no temporary file left behind
    # Every process racing to create the file ends with the same keys.
    signers = {m.agent_key_id for m in results} | {m.admin_key_id for m in results}
    assert len(results) == 8 and len(signers) == 2
    headers = results[0].signer(topics.CONTRIBUTIONS).headers(topics.CONTRIBUTIONS, None, VALUE)
    assert results[-1].verifier().verify(topics.CONTRIBUTIONS, None, VALUE, headers)
    # Configured key sets replace the file, and a process gets only the sets configured for it.
    agent_only = key_material(settings.model_copy(update={"signing_keys": f"k1:{SECRET}", "state_dir": tmp_path / "none"}))
    assert agent_only.signer(topics.CONTRIBUTIONS).key.kid == "k1"
    with pytest.raises(ConfigurationError, match="ROYALFLOW_ADMIN_KEYS"):
        agent_only.signer(topics.CORRECTIONS)
    with pytest.raises(ConfigurationError):
        agent_only.verifier()  # the ledger needs both sets: it fails at start, not per record
    assert not (tmp_path / "none").exists()  # nothing generated when keys are configured


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    key_material(settings)
    (tmp_path / KEYS_FILE).chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        key_material(settings)


def _decode(topic: str, raw: bytes, headers, verifier: Verifier):  # type: ignore[no-untyped-def]
    return decode_ledger_record(topic, raw, verifier=verifier, key=None, headers=headers)


def test_ledger_decoding_verifies_before_it_parses(tmp_path: Path) -> None:
    material = key_material(Settings(state_dir=tmp_path))
    verifier = material.verifier()
    sign = lambda topic, raw: material.signer(topic).headers(topic, None, raw)  # noqa: E731
    assert _decode(topics.CONTRIBUTIONS, VALUE, sign(topics.CONTRIBUTIONS, VALUE), verifier).amount == CONTRIBUTION["amount"]
    assert _decode(topics.CORRECTIONS, REVERSAL, sign(topics.CORRECTIONS, REVERSAL), verifier).kind == "reversal"
    reasons = {}
    for name, (topic, raw, headers) in {
        "unsigned garbage": (topics.CONTRIBUTIONS, b"{not json", []),
        "unsigned valid": (topics.CONTRIBUTIONS, VALUE, []),
        "agent-signed reversal": (topics.CONTRIBUTIONS, REVERSAL, sign(topics.CONTRIBUTIONS, REVERSAL)),
        "forged reversal": (topics.CORRECTIONS, REVERSAL, sign(topics.CONTRIBUTIONS, REVERSAL)),
    }.items():
        with pytest.raises(ContractError) as info:
            _decode(topic, raw, headers, verifier)
        reasons[name] = info.value.reason
    assert reasons == {"unsigned garbage": "bad_signature", "unsigned valid": "bad_signature",
                       "agent-signed reversal": "schema_violation", "forged reversal": "bad_signature"}


def test_keygen_prints_usable_key_specs() -> None:
    from typer.testing import CliRunner

    from royalflow.cli import app

    runner = CliRunner()
    hmac_spec = runner.invoke(app, ["ledger", "keygen", "agent-2026-11"]).output.strip()
    assert KeySet.parse("agent", hmac_spec).signer(None).key.kid == "agent-2026-11"
    ed = runner.invoke(app, ["ledger", "keygen", "e1", "--ed25519"]).output.split()
    signer = KeySet.parse("agent", ed[0]).signer("e1")
    headers = signer.headers(topics.CONTRIBUTIONS, None, VALUE)
    assert _verifier(KeySet.parse("agent", ed[1])).verify(topics.CONTRIBUTIONS, None, VALUE, headers) == "e1"
    assert runner.invoke(app, ["ledger", "keygen", "bad id"]).exit_code == 2
    assert runner.invoke(app, ["ledger", "keygen", "two two"]).exit_code == 2


@pytest.mark.parametrize("size", [32, 64, 65, 200])
def test_hmac_is_rfc_2104_hmac_sha256(size: int) -> None:
    import hashlib
    import hmac

    secret = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
    key = parse_key(f"k1:{base64.b64encode(secret).decode()}")
    for message in (b"", b"x", VALUE, VALUE * 10):
        assert key.sign(message) == hmac.new(secret, message, hashlib.sha256).digest()
