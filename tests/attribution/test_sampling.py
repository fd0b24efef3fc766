"""Generated content for the demo producer: DDPM ancestral sampling from the family's grand
coalition, quantised PNGs that the family itself accepts."""

from __future__ import annotations

from royalflow.attribution.diffusion.sampling import ImagePool, sample_images
from tests.attribution.diffusion_factory import event, random_family


def test_samples_are_valid_content_and_repeat_with_the_seed() -> None:
    family = random_family(2, samples=2)
    images = sample_images(family, class_label=4, count=3, seed=11)
    assert len(images) == 3 and all(png.startswith(b"\x89PNG") for png in images)
    assert sample_images(family, class_label=4, count=3, seed=11) == images
    for i, png in enumerate(images):
        prepared = family.prepare(event(family, f"gen-sample-{i}", png, label=4))
        assert prepared.item[0].shape == (8, 8) and prepared.item[0].max() <= 16


def test_image_pool_serves_from_batches() -> None:
    import numpy as np

    family = random_family(2, "compositional", samples=2)
    pool = ImagePool(family, batch=2, seed=1)
    rng = np.random.default_rng(0)
    first = [pool(7, rng) for _ in range(3)]  # the third image comes from a second sampler run
    assert all(png.startswith(b"\x89PNG") for png in first)


def test_image_pool_keeps_its_sampler_runs_on_disk(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from royalflow.attribution.diffusion import sampling

    family = random_family(2, samples=2)
    family.manifest["weights"] = {hex(sampling.sampling_mask(family)): "digest-of-the-weights"}
    pool = ImagePool(family, batch=2, seed=3, cache_dir=tmp_path)
    first = [pool(5, np.random.default_rng(0)) for _ in range(2)]
    assert len(list(tmp_path.glob("*.json"))) == 1
    monkeypatch.setattr(sampling, "sample_images", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled")))
    pool = ImagePool(family, batch=2, seed=3, cache_dir=tmp_path)
    again = [pool(5, np.random.default_rng(0)) for _ in range(2)]
    assert again == first  # the same images, from the cache


def test_a_pool_served_from_its_cache_never_loads_the_family(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from royalflow.attribution.diffusion import sampling

    family = random_family(2, samples=2)
    family.manifest["weights"] = {hex(sampling.sampling_mask(family)): "digest-of-the-weights"}
    first = [ImagePool(family, batch=2, seed=3, cache_dir=tmp_path)(5, np.random.default_rng(0)) for _ in range(1)]
    loads: list[int] = []

    def load():  # type: ignore[no-untyped-def]
        loads.append(1)
        return family

    # A later demo run: the manifest keys the cache, so neither the family nor torch is loaded.
    lazy = ImagePool(load, manifest=family.manifest, batch=2, seed=3, cache_dir=tmp_path)
    assert [lazy(5, np.random.default_rng(0))] == first and loads == []
    assert lazy(6, np.random.default_rng(0)).startswith(b"\x89PNG") and loads == [1]  # not cached: sampled


def test_a_family_loader_needs_the_manifest() -> None:
    import pytest

    with pytest.raises(ValueError, match="manifest"):
        ImagePool(lambda: random_family(2, samples=2))


def test_runs_stepped_together_give_the_images_each_gives_alone() -> None:
    from royalflow.attribution.diffusion.sampling import sample_runs

    family = random_family(2, samples=2)
    runs = [(3, 1), (5, 2), (3, 7)]
    together = sample_runs(family, runs, 20)  # 60 rows per forward
    assert together == [sample_images(family, label, 20, seed) for label, seed in runs]


def test_a_prefetch_makes_the_runs_the_events_will_ask_for_and_nothing_more(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from royalflow.attribution.diffusion import sampling
    from royalflow.producer.samples import class_labels, sample_events

    family = random_family(2, samples=2)
    family.manifest["weights"] = {hex(sampling.sampling_mask(family)): "digest-of-the-weights"}
    labels = class_labels(30, seed=4)
    plain = ImagePool(family, batch=4, seed=2)
    served = [plain(label, np.random.default_rng(0)) for label in labels]
    pool = ImagePool(family, batch=4, seed=2, cache_dir=tmp_path)
    runs = pool.runs_for(labels)
    assert pool.prefetch(labels) == len(runs) == len(list(tmp_path.glob("*.json")))
    assert pool.prefetch(labels) == 0  # all cached now
    monkeypatch.setattr(sampling, "sample_images", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled")))
    events = sample_events(30, family_id="f", family_version="1", seed=4, image_source=pool)
    assert [e.conditioning.class_label for e in events] == labels
    assert served == [_content(e) for e in events]  # the images one by one would give


def _content(event):  # type: ignore[no-untyped-def]
    import base64

    return base64.b64decode(event.content.data_base64)


def test_a_prefetch_served_from_the_cache_never_loads_the_family(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from royalflow.attribution.diffusion import sampling
    from royalflow.producer.samples import class_labels

    family = random_family(2, samples=2)
    family.manifest["weights"] = {hex(sampling.sampling_mask(family)): "digest-of-the-weights"}
    labels = class_labels(12, seed=1)
    assert ImagePool(family, batch=4, seed=2, cache_dir=tmp_path).prefetch(labels) > 0
    loads: list[int] = []

    def load():  # type: ignore[no-untyped-def]
        loads.append(1)
        return family

    later = ImagePool(load, manifest=family.manifest, batch=4, seed=2, cache_dir=tmp_path)
    assert later.prefetch(labels) == 0 and loads == []
