"""Same-source evidence for LoRA families: close gain profiles (the chunked Gram computation),
near-copies across owners, the cross-fit on the owners' pictures or (import) on their adapters'
samples, the clusters and their distinct counts, on stand-in profiles (the measured figures: benchmarks/lora_quality.py). One test runs
the real evidence on the session's tiny family: its honest owners must not merge."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import royalflow.training.lora_clusters as lc
from royalflow.training.images import ImageSet
from royalflow.training.styles import owner_image


def test_close_pairs_match_the_direct_distance_in_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lc, "GRAM_CHUNK", 3)
    g = np.random.default_rng(0).normal(0, 1, (8, 16))
    g[5] = g[1] * 1.1 + 0.01  # close to owner 1
    got = lc.close_pairs(g, 0.5)
    want = [(i, j) for i in range(8) for j in range(i + 1, 8) if lc.relative_distance(g[i], g[j]) <= 0.5]
    assert [(i, j) for i, j, _ in got] == want == [(1, 5)]
    assert got[0][2] == pytest.approx(lc.relative_distance(g[1], g[5]))


def stand_in(owners: list[str], mode: str, profiles: dict[int, np.ndarray]) -> SimpleNamespace:
    n = len(owners)
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    manifest = SimpleNamespace(data_sizes={o: 24 for o in owners})
    return SimpleNamespace(owners=tuple(owners), mode=mode, masks=masks, manifest=manifest, profiles=profiles)


def images(owner: str, seed: int, count: int = 12) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(np.stack([np.asarray(owner_image(owner, rng)) for _ in range(count)]), ("",) * count,
                    tuple(f"{i}.png" for i in range(count)))


@pytest.fixture
def profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """gain_profiles reads the stand-in family's table, by slot."""
    monkeypatch.setattr(lc, "gain_profiles", lambda family, probes, slots: np.stack([family.profiles[s] for s in slots]))


def test_duplicated_images_merge_and_count_once(profiles: None) -> None:
    # Adapters that fit nobody else's pictures (means 1, 3, 9: every cross-fit (3) at most 1/3).
    fam = stand_in(["a", "b", "c"], "compositional", {s: np.full(16, 3.0 ** (s - 1)) for s in range(4)})
    red = images("owner-red", 5)
    held = {"a": red, "b": red, "c": images("owner-blue", 6)}
    found = lc.find_lora_clusters(fam, None, held)  # no probes: near-copies only
    assert found["clusters"] == [["a", "b"], ["c"]]
    assert found["cluster_data_sizes"] == [12, 24]  # the copies once; a single owner: its data size
    assert found["cluster_evidence"][0]["reasons"] == ["near_copies"]
    assert found["cluster_evidence"][0]["duplicate_fraction"] == 1.0


def tagged(owner: str, style: str, seed: int) -> ImageSet:
    """``images`` with file names that say whose pictures they are (for the stand-in below)."""
    pictures = images(style, seed)
    return ImageSet(pictures.pixels, pictures.captions, tuple(f"{owner}/{f}" for f in pictures.files))


def cross_stand_in(monkeypatch: pytest.MonkeyPatch, profiles: dict, cross: dict) -> list[str]:  # type: ignore[type-arg]
    """gain_profiles from tables: the probes' by slot, an owner's own pictures' by (owner, slot);
    returns the owners whose pictures were scored."""
    scored: list[str] = []

    def fake(family, probes: ImageSet, slots: list[int]) -> np.ndarray:  # type: ignore[no-untyped-def]
        owner = probes.files[0].split("/")[0]
        if owner == "probe":
            return np.stack([profiles[s] for s in slots])
        scored.append(owner)
        return np.stack([np.full(4, {("c", 3): 5.0, **cross}.get((owner, s), 0.0)) for s in slots])

    monkeypatch.setattr(lc, "gain_profiles", fake)
    return scored


HELD = {"a": ("owner-red", 1), "b": ("owner-red", 2), "c": ("owner-blue", 3)}


@pytest.mark.parametrize(("cross", "merged"), [
    ({("a", 1): 10.0, ("a", 2): 1.0, ("b", 2): 8.0, ("b", 1): 2.0}, False),  # two honest photo owners
    ({("a", 1): 10.0, ("a", 2): 9.0, ("b", 2): 8.0, ("b", 1): 7.0}, True),  # shells of one source
    ({("a", 1): -1.0, ("a", 2): 0.5, ("b", 2): 8.0, ("b", 1): 6.0}, True),  # a's adapter gains nothing: b decides
    ({("a", 1): -1.0, ("a", 2): 0.5, ("b", 2): -2.0, ("b", 1): 6.0}, False),  # neither gains: no evidence, no merge
])
def test_cross_fit_decides_whatever_the_probes_say(monkeypatch: pytest.MonkeyPatch, cross: dict, merged: bool) -> None:  # type: ignore[type-arg]
    """(3) with the pictures: a and b are close on the probes (2), yet merge only if each one's
    adapter explains the other's pictures; a small family checks every pair."""
    base = np.random.default_rng(4).normal(0, 1, (2, 32))
    scored = cross_stand_in(monkeypatch, {0: base[0] * 0, 1: base[0], 2: base[0] * 1.05, 3: base[1]}, cross)
    fam = stand_in(["a", "b", "c"], "compositional", {})
    found = lc.find_lora_clusters(fam, tagged("probe", "owner-green", 0), {o: tagged(o, *h) for o, h in HELD.items()})
    assert sorted(set(scored)) == ["a", "b", "c"]  # 3 owners <= CROSS_FIT_ALL_PAIRS: every pair
    (row,) = [r for r in found["cluster_evidence"] if r["owners"] == ["a", "b"]]
    assert row["merged"] is merged and row["profile_distance"] <= lc.PROFILE_DISTANCE
    assert (row["cross_fit"] >= lc.CROSS_FIT) is merged and row["reasons"] == (["cross_fit"] if merged else [])
    assert found["clusters"] == ([["a", "b"], ["c"]] if merged else [["a"], ["b"], ["c"]])
    assert found["cluster_check"]["cross_fit"] == lc.CROSS_FIT


def test_cross_fit_merges_shells_far_apart_on_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two halves of one style can land far apart on public probes (0.99 measured): (3) finds them."""
    g = np.random.default_rng(5).normal(0, 1, (3, 32))
    cross_stand_in(monkeypatch, {0: g[0] * 0, 1: g[0], 2: g[1], 3: g[2]}, {("a", 1): 10.0, ("a", 2): 9.0, ("b", 2): 8.0, ("b", 1): 7.0})
    fam = stand_in(["a", "b", "c"], "compositional", {})
    found = lc.find_lora_clusters(fam, tagged("probe", "owner-green", 0), {o: tagged(o, *h) for o, h in HELD.items()})
    assert found["clusters"] == [["a", "b"], ["c"]]
    assert found["cluster_evidence"][0]["profile_distance"] > lc.PROFILE_DISTANCE


def test_large_families_check_cross_fit_only_on_close_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above CROSS_FIT_ALL_PAIRS owners, (2) picks the pairs (3) checks (cost): c is never scored."""
    monkeypatch.setattr(lc, "CROSS_FIT_ALL_PAIRS", 2)
    base = np.random.default_rng(4).normal(0, 1, (2, 32))
    cross = {("a", 1): 10.0, ("a", 2): 9.0, ("b", 2): 8.0, ("b", 1): 7.0}
    scored = cross_stand_in(monkeypatch, {0: base[0] * 0, 1: base[0], 2: base[0] * 1.05, 3: base[1]}, cross)
    fam = stand_in(["a", "b", "c"], "compositional", {})
    found = lc.find_lora_clusters(fam, tagged("probe", "owner-green", 0), {o: tagged(o, *h) for o, h in HELD.items()})
    assert sorted(set(scored)) == ["a", "b"] and found["clusters"] == [["a", "b"], ["c"]]


def test_apply_clusters_records_the_check() -> None:
    found = {"clusters": [["a", "b"]], "cluster_evidence": [], "cluster_data_sizes": [3],
             "cluster_check": {"profiles": True}}
    out = lc.apply_clusters({"training": {"plan": {}}, "owners": ["a", "b"]}, found)
    assert out["clusters"] == [["a", "b"]] and out["training"] == {"plan": {}, "clusters": {"profiles": True}}


def test_probe_subset_is_even_and_deterministic() -> None:
    s = images("owner-red", 0, 10)
    sub = lc.probe_subset(s, 4)
    assert sub.files == ("0.png", "3.png", "6.png", "9.png") and lc.probe_subset(s, 20) is s


def test_the_tiny_familys_honest_owners_are_not_merged_and_records_carry_clusters(tiny_lora) -> None:  # type: ignore[no-untyped-def]
    """The session's family (three owners of distinct styles) went through the real evidence at
    training time: no pair merged, every pair's profile distance recorded; its attributions carry
    the (singleton) clusters into the audit record."""
    from royalflow.attribution.families import load_family
    from royalflow.attribution.families.content import png
    from royalflow.attribution.registry import read_manifest
    from royalflow.producer.events import generation_event

    manifest = read_manifest(tiny_lora.family_path)
    assert manifest["clusters"] == [[o] for o in manifest["owners"]]
    assert len(manifest["cluster_evidence"]) == 3
    assert all(not r["merged"] and r["profile_distance"] > lc.PROFILE_DISTANCE for r in manifest["cluster_evidence"])
    family = load_family(manifest, tiny_lora.family_path, "cpu")
    event = generation_event(event_id="clusters-1", family_id=family.family_id, family_version=family.version,
                             revenue_amount=1000, currency="USD", content=png(tiny_lora.generations["owner-red"][0]),
                             prompt="a red circle")
    (attribution,) = family.attribute([family.prepare(event)])
    assert attribution.clusters == tuple((o,) for o in manifest["owners"])


@pytest.mark.parametrize(("cross", "merged"), [
    ({("a", 1): 10.0, ("a", 2): 9.0, ("b", 2): 8.0, ("b", 1): 7.0}, True),  # each explains the other's samples
    ({("a", 1): 10.0, ("a", 2): 1.0, ("b", 2): 8.0, ("b", 1): 2.0}, False),  # close on the probes only
])
def test_import_confirms_close_pairs_on_each_adapters_samples(monkeypatch: pytest.MonkeyPatch, cross: dict,  # type: ignore[type-arg]
                                                              merged: bool) -> None:
    """Without the owners' pictures (import), the probes (2) propose and the cross-fit (3) on
    pictures drawn from each adapter confirms: only the close pair's owners are sampled. The
    clusters weigh their members' data sizes (an import knows counts, not pictures)."""
    import royalflow.training.adapter_samples as samples

    drawn: list[list[int]] = []

    def draw(family, slots: list[int], count: int) -> list[ImageSet]:  # type: ignore[no-untyped-def]
        drawn.append(list(slots))
        return [tagged(family.owners[s - 1], "owner-red", s) for s in slots]

    monkeypatch.setattr(samples, "adapter_samples", draw)
    g = np.random.default_rng(6).normal(0, 1, (2, 32))
    scored = cross_stand_in(monkeypatch, {0: g[0] * 0, 1: g[0], 2: g[0] * 1.05, 3: g[1]}, cross)
    fam = stand_in(["a", "b", "c"], "compositional", {})
    found = lc.find_lora_clusters(fam, tagged("probe", "owner-green", 0), None)
    assert drawn == [[1, 2]] and sorted(set(scored)) == ["a", "b"]  # c is far on the probes: never sampled
    assert found["clusters"] == ([["a", "b"], ["c"]] if merged else [["a"], ["b"], ["c"]])
    assert found["cluster_data_sizes"] == ([48, 24] if merged else [24, 24, 24])
    (row,) = [r for r in found["cluster_evidence"] if r["owners"] == ["a", "b"]]
    assert row["reasons"] == (["interchangeable"] if merged else []) and row["profile_distance"] <= lc.PROFILE_DISTANCE
    check = found["cluster_check"]
    assert check["cross_fit_on"] == "adapter_samples" and not check["near_copies"] and check["profiles"]
