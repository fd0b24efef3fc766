"""The audit view names the cluster each part was paid through, pseudonymised for owners."""

from __future__ import annotations

from royalflow.api.routes.audit import _cluster_of, redact_attribution

RECORD = {"owners": ["owner-a", "shell-1", "owner-b"], "clusters": [["owner-a", "shell-1"], ["owner-b"]],
          "coalition_utilities": {}, "utility_std_errors": {}}


def test_admin_view_names_the_cluster_in_full() -> None:
    names = {o: o for o in RECORD["owners"]}
    assert _cluster_of(RECORD, "shell-1", names) == ["owner-a", "shell-1"]
    assert _cluster_of(RECORD, "owner-b", names) == ["owner-b"]
    assert _cluster_of({"owners": ["x"]}, "x", names) is None  # records from before clusters


def test_owner_view_pseudonymises_cluster_members() -> None:
    names = {"owner-a": "owner#1", "shell-1": "owner#2", "owner-b": "owner-b"}
    assert _cluster_of(RECORD, "owner-a", names) == ["owner#1", "owner#2"]
    view = redact_attribution(RECORD, names)
    assert view is not None and view["clusters"] == [["owner#1", "owner#2"], ["owner-b"]]
    assert "owner-a" not in str(view) and "shell-1" not in str(view)


def test_owner_view_pseudonymises_the_refined_owners_of_a_screened_family() -> None:
    record = {**RECORD, "screen": {"refined": ["owner-a", "shell-1"], "tolerance": 0.02, "bound_nats": 1.5,
                                   "remainder": 0.0, "unet_passes": 119}}
    names = {"owner-a": "owner#1", "shell-1": "owner#2", "owner-b": "owner-b"}
    view = redact_attribution(record, names)
    assert view is not None and view["screen"]["refined"] == ["owner#1", "owner#2"]
    assert view["screen"]["unet_passes"] == 119
    assert "owner-a" not in str(view) and "shell-1" not in str(view)
