"""Multi-crop views and modality-as-augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xterrafm.data import (
    MultiCropConfig,
    TileDataset,
    choose_modalities,
    collate_samples,
    make_views,
    random_resized_box,
)


def test_random_resized_box_respects_scale():
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0, h, w = random_resized_box(rng, 448, 448, (0.05, 0.4), (3 / 4, 4 / 3))
        assert 0 <= y0 and y0 + h <= 448 and 0 <= x0 and x0 + w <= 448
        assert 0.04 <= h * w / 448**2 <= 0.41
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_choose_modalities_non_empty_subsets_of_present():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        keep = choose_modalities(rng, [True, False, True])
        assert keep.any() and not keep[1]
        seen.add(tuple(keep))
    assert seen == {(True, False, False), (False, False, True), (True, False, True)}
    with pytest.raises(ValueError, match="at least one"):
        choose_modalities(rng, [False, False])


def test_choose_modalities_rules():
    rng = np.random.default_rng(0)
    present = [True, False, True]
    assert all(choose_modalities(rng, present, "all").tolist() == [True, False, True]
               for _ in range(20))
    singles = {tuple(choose_modalities(rng, present, "single")) for _ in range(100)}
    assert singles == {(True, False, False), (False, False, True)}
    with pytest.raises(ValueError, match="unknown modality subset rule 'both'"):
        choose_modalities(rng, present, "both")


@pytest.mark.parametrize(("rule", "global_sets", "local_sets"), [
    ("uniform", {(True, False), (False, True), (True, True)},
     {(True, False), (False, True), (True, True)}),
    ("all", {(True, True)}, {(True, True)}),
    ("single", {(True, False), (False, True)}, {(True, False), (False, True)}),
    ("global_all", {(True, True)}, {(True, False), (False, True), (True, True)}),
])
def test_make_views_follow_the_modality_subset_rule(rule, global_sets, local_sets):
    tile = {"s1": torch.randn(2, 32, 32), "s2_l2a": torch.randn(12, 32, 32)}
    cfg = MultiCropConfig(global_size=16, local_size=8, n_local=2, modality_subsets=rule)
    seen = {"global": set(), "local": set()}
    for seed in range(60):
        v = make_views(np.random.default_rng(seed), tile, ("s1", "s2_l2a"), [True, True], cfg)
        for name in seen:
            keep = v[f"{name}_keep"]
            seen[name] |= {tuple(k) for k in keep.tolist()}
            # a modality a view does not keep is zeros there, one it keeps is not
            for i, m in enumerate(("s1", "s2_l2a")):
                held = v[name][m].flatten(1).abs().sum(dim=1) > 0
                assert held.tolist() == keep[:, i].tolist()
    assert seen == {"global": global_sets, "local": local_sets}
    with pytest.raises(ValueError, match="modality_subsets must be one of"):
        MultiCropConfig(modality_subsets="both")


def test_make_views_shapes_and_keep():
    rng = np.random.default_rng(1)
    tile = {"s2_l2a": torch.randn(12, 64, 64)}
    cfg = MultiCropConfig(global_size=32, local_size=16, n_local=3)
    v = make_views(rng, tile, ("s1", "s2_l2a"), [False, True], cfg)
    assert v["global"]["s2_l2a"].shape == (2, 12, 32, 32)
    assert v["global"]["s1"].shape == (2, 2, 32, 32)
    assert v["local"]["s2_l2a"].shape == (3, 12, 16, 16)
    assert v["global_keep"].tolist() == [[False, True]] * 2
    assert (v["global"]["s1"] == 0).all()


def test_full_crop_is_a_flip_or_rotation_of_the_tile():
    tile = {"s1": torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 16, 16)}
    cfg = MultiCropConfig(global_size=16, local_size=8, n_local=0, global_scale=(1.0, 1.0),
                          ratio=(1.0, 1.0))
    outcomes = set()
    for seed in range(40):
        v = make_views(np.random.default_rng(seed), tile, ("s1",), [True], cfg)
        for g in v["global"]["s1"]:
            candidates = []
            for fh in (False, True):
                for fv in (False, True):
                    for k in range(4):
                        x = tile["s1"]
                        x = x.flip(-1) if fh else x
                        x = x.flip(-2) if fv else x
                        candidates.append(torch.rot90(x, k, dims=(-2, -1)))
            match = [i for i, c in enumerate(candidates) if torch.allclose(g, c, atol=1e-4)]
            assert match, "a full-size crop must be the tile up to flips/rotations"
            outcomes.add(match[0] % 4)
    assert len(outcomes) > 1  # rotations actually happen


def test_view_batches_from_dataset(cube_path):
    cfg = MultiCropConfig(global_size=32, local_size=16, n_local=2)
    ds = TileDataset(cube_path, tile_size=32, views=cfg, batch_size=4)
    batch = next(iter(ds))
    assert batch["global"]["s2_l2a"].shape == (2 * 4, 12, 32, 32)
    assert batch["local"]["s1"].shape == (2 * 4, 2, 16, 16)
    assert batch["global_keep"].shape == (8, 2) and batch["global_keep"].any(dim=1).all()
    assert batch["class_proportions"].shape == (4, 11)
    torch.testing.assert_close(batch["class_proportions"].sum(1), torch.ones(4))
    # view-major stacking: rows v*B + b belong to sample b
    one = collate_samples([{"tile": 7, "class_proportions": torch.zeros(11),
                            "global": {"s1": torch.full((2, 2, 4, 4), float(i))},
                            "global_keep": torch.ones(2, 1, dtype=torch.bool)}
                           for i in range(3)])
    assert one["global"]["s1"][:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]
    # subsets of modalities vary across views
    patterns = {tuple(r) for b in ds for r in b["global_keep"].tolist()}
    assert len(patterns) >= 2
