"""Forward pass of TerraFM (tiny config): API, checks, reference numerics, folded path."""

from __future__ import annotations

import pytest
import torch

from xterrafm.models import TerraFM, resize_pos_embed


def _x(c: int, h: int = 64, w: int = 96, b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_attributes(tiny):
    x = _x(12)
    cls = tiny(x, modality="s2_l2a")
    feats = tiny.forward_features(x, modality="s2_l2a")
    assert cls.shape == (2, 32) and cls.dtype == torch.float32
    assert feats["cls"].shape == (2, 32)
    assert feats["patch"].shape == (2, 32, 4, 6)
    assert torch.allclose(feats["cls"], cls, atol=1e-6)
    assert tiny.embed_dim == 32 and tiny.patch_size == 16


@pytest.mark.parametrize(("modality", "channels"), [("s1", 2), ("s2_l1c", 12), ("s2_l2a", 12)])
@pytest.mark.parametrize(("h", "w"), [(224, 224), (160, 224), (256, 320), (32, 48)])
def test_matches_reference_forward(tiny, reference, modality, channels, h, w):
    """Equal to the op-by-op published computation, incl. position interpolation."""
    x = _x(channels, h, w, b=1)
    with torch.no_grad():
        ref = reference(tiny, x, modality)
        feats = tiny.forward_features(x, modality)
    assert (feats["cls"] - ref[:, 0]).abs().max() < 1e-5
    patch = ref[:, 1:].reshape(1, h // 16, w // 16, 32).permute(0, 3, 1, 2)
    assert (feats["patch"] - patch).abs().max() < 1e-5


def test_l1c_and_l2a_stems_are_distinct(tiny):
    x = _x(12)
    with torch.no_grad():
        assert not torch.allclose(tiny(x, "s2_l1c"), tiny(x, "s2_l2a"))


def test_pos_embed_unchanged_on_base_grid_and_cls_kept():
    pos = torch.randn(1, 197, 8)
    assert resize_pos_embed(pos, (14, 14), 14) is pos
    out = resize_pos_embed(pos, (10, 20), 14)
    assert out.shape == (1, 201, 8)
    assert torch.equal(out[:, 0], pos[:, 0])


@pytest.mark.parametrize(
    ("x", "modality", "match"),
    [
        (torch.zeros(1, 12, 32, 32), "s1", "expects 2 channels"),
        (torch.zeros(1, 2, 32, 32), "s2_l2a", "expects 12 channels"),
        (torch.zeros(1, 12, 32, 32), "landsat", "unknown modality"),
        (torch.zeros(12, 32, 32), "s2_l2a", "4-D"),
        (torch.zeros(1, 12, 40, 32), "s2_l2a", "multiples of 16"),
        (torch.zeros(1, 12, 32, 33), "s2_l2a", "multiples of 16"),
        (torch.zeros(1, 12, 32, 32, dtype=torch.int32), "s2_l2a", "floating"),
        ([[0.0]], "s1", "torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error(tiny, x, modality, match):
    with pytest.raises(ValueError, match=match):
        tiny(x, modality=modality)
    with pytest.raises(ValueError, match=match):
        tiny.forward_features(x, modality=modality)
    with pytest.raises(ValueError, match=match):
        tiny.intermediate(x, modality=modality)


def test_modality_alias_accepted(tiny):
    x = _x(2)
    with torch.no_grad():
        assert torch.equal(tiny(x, "sentinel-1"), tiny(x, "s1"))


def test_intermediate_default_and_explicit(tiny):
    x = _x(12)
    with torch.no_grad():
        maps = tiny.intermediate(x, modality="s2_l2a")
        last = tiny.forward_features(x, modality="s2_l2a")["patch"]
        two = tiny.intermediate(x, modality="s2_l2a", layers=[1, -1])
    assert len(maps) == 4 and all(m.shape == (2, 32, 4, 6) for m in maps)
    assert torch.allclose(maps[-1], last, atol=1e-6)
    assert torch.allclose(two[0], maps[1], atol=1e-6)
    assert torch.allclose(two[1], maps[3], atol=1e-6)
    assert not torch.allclose(maps[0], maps[1])
    with pytest.raises(ValueError, match="outside"):
        tiny.intermediate(x, modality="s2_l2a", layers=[4])


def test_gradients_reach_all_published_parameters(tiny):
    tiny.train()
    tiny(_x(2), "s1").sum().backward()
    pe = "patch_embed."
    for name, p in tiny.named_parameters():
        used = not name.startswith((f"{pe}fusion", f"{pe}conv2d_s2", f"{pe}s2_"))
        assert (p.grad is not None) == used, name


# -- folded fast path ----------------------------------------------------------------------------
def _unit_scale(model: TerraFM) -> TerraFM:
    """Make the patch embedding non-trivial (random norms and biases) for folding tests."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.patch_embed.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.ndim > 1 else 1.0))
    return model


@pytest.mark.parametrize("modality", ["s1", "s2_l1c", "s2_l2a"])
def test_folded_equals_unfolded(tiny, modality):
    model = _unit_scale(tiny)
    x = _x(model.config.in_channels[modality], 96, 64)
    model.train()
    with torch.no_grad():
        ref = model.forward_features(x, modality)
        ref_maps = model.intermediate(x, modality)
    model.eval()
    with torch.inference_mode():
        fast = model.forward_features(x, modality)
        fast_maps = model.intermediate(x, modality)
    assert model.patch_embed._folds._entries, "folded path was not used in eval mode"
    assert ref["patch"].abs().max() > 0.5  # unit-scale outputs
    assert (fast["cls"] - ref["cls"]).abs().max() < 1e-4
    assert (fast["patch"] - ref["patch"]).abs().max() < 1e-4
    for a, b in zip(fast_maps, ref_maps, strict=True):
        assert (a - b).abs().max() < 1e-4
    assert not torch.equal(fast["patch"], ref["patch"])  # really a different computation


def test_folded_cache_follows_weight_changes(tiny):
    model = _unit_scale(tiny).eval()
    x = _x(12)
    with torch.no_grad():
        before = model(x, "s2_l2a")
        model.patch_embed.projection.proj1.weight.mul_(-1.5)  # in-place update
        after = model(x, "s2_l2a")
        model.use_folded = False
        expected = model(x, "s2_l2a")
        model.use_folded = True
    assert not torch.allclose(before, after)
    assert (after - expected).abs().max() < 1e-4

    # load_state_dict
    other = _unit_scale(TerraFM("terrafm-tiny"))
    with torch.no_grad():
        other.patch_embed.projection.proj2.bias.add_(3.0)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        loaded = model(x, "s2_l2a")
        other.eval().use_folded = False
        assert (loaded - other(x, "s2_l2a")).abs().max() < 1e-4

    # an optimiser step in train mode, then back to eval
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x, "s2_l2a").pow(2).sum().backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        stepped = model(x, "s2_l2a")
        model.use_folded = False
        assert (stepped - model(x, "s2_l2a")).abs().max() < 1e-4


def test_train_drops_folds(tiny):
    tiny.eval()
    with torch.no_grad():
        tiny(_x(2), "s1")
    assert tiny.patch_embed._folds._entries
    tiny.train()
    assert not tiny.patch_embed._folds._entries


def test_eval_with_grad_uses_differentiable_path(tiny):
    tiny.eval()
    tiny(_x(2), "s1").sum().backward()
    assert tiny.patch_embed.projection.proj1.weight.grad is not None


# -- fusion ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("modality", "channels"), [("s1", 2), ("s2_l2a", 12)])
def test_fused_single_modality_equals_single_path(tiny, train, modality, channels):
    model = _unit_scale(tiny).train(train)
    x = _x(channels)
    with torch.no_grad():
        assert torch.equal(model.forward_fused({modality: x}), model(x, modality))
        a = model.forward_fused_features({modality: x})["patch"]
        assert torch.equal(a, model.forward_features(x, modality)["patch"])


def test_fused_is_convex_combination(tiny):
    """Two identical stems on identical inputs fuse to the single-modality result."""
    model = _unit_scale(tiny).eval()
    pe = model.patch_embed
    with torch.no_grad():
        pe.conv2d_s2_l1c.weight.copy_(pe.conv2d_s2_l2a.weight)
        pe.conv2d_s2_l1c.bias.copy_(pe.conv2d_s2_l2a.bias)
        pe.s2_l1c_embed.copy_(pe.s2_l2a_embed)
        x = _x(12)
        fused = model.forward_fused({"s2_l1c": x, "s2_l2a": x})
        single = model(x, "s2_l2a")
    assert (fused - single).abs().max() < 1e-4


def test_fused_mixes_modalities_and_checks_inputs(tiny):
    model = _unit_scale(tiny).eval()
    s1, s2 = _x(2, seed=3), _x(12, seed=4)
    with torch.no_grad():
        both = model.forward_fused({"s1": s1, "s2_l2a": s2})
        model.use_folded = False
        both_ref = model.forward_fused({"s1": s1, "s2_l2a": s2})
    assert both.shape == (2, 32)
    assert (both - both_ref).abs().max() < 1e-4
    with torch.no_grad():
        assert not torch.allclose(both, model(s1, "s1"), atol=1e-3)
        assert not torch.allclose(both, model(s2, "s2_l2a"), atol=1e-3)
    with pytest.raises(ValueError, match="same batch"):
        model.forward_fused({"s1": s1, "s2_l2a": _x(12, h=32)})
    with pytest.raises(ValueError, match="non-empty"):
        model.forward_fused({})
    with pytest.raises(ValueError, match="given twice"):
        model.forward_fused({"s1": s1, "sentinel-1": s1})


def test_fusion_receives_gradients_in_training(tiny):
    tiny.train()
    # not .sum(): the CLS leaves a LayerNorm with unit weights, whose outputs sum to a
    # constant, so a plain sum has an exactly zero gradient everywhere upstream
    tiny.forward_fused({"s1": _x(2), "s2_l1c": _x(12)}).pow(2).sum().backward()
    assert tiny.patch_embed.fusion.queries.grad is not None
    assert tiny.patch_embed.fusion.key.weight.grad.abs().sum() > 0


# -- precision -------------------------------------------------------------------------------------
def test_bf16_autocast_close_to_fp32(tiny):
    tiny.eval()
    x = _x(12)
    with torch.no_grad():
        ref = tiny(x, "s2_l2a")
        tiny.precision = "bf16"
        low = tiny(x, "s2_l2a")
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1
    assert not torch.equal(low, ref)
    with pytest.raises(ValueError, match="precision"):
        tiny.precision = "int8"


def test_folds_built_inside_bf16_autocast_keep_float32_precision():
    """A fresh model whose first forward pass runs under bf16 autocast folds in float32, as
    prepare() would: the folded maps equal those of an fp32 model (not bf16-rounded)."""
    from xterrafm.weights import load_model

    low, ref = load_model("terrafm-tiny", precision="bf16"), load_model("terrafm-tiny")
    ref.prepare("s2_l2a")
    with torch.inference_mode():
        low(_x(12), "s2_l2a")  # builds the folds inside the autocast region
    pe_low, pe_ref = low.patch_embed, ref.patch_embed
    for got, want in ((pe_low._folded_values("s2_l2a"), pe_ref._folded_values("s2_l2a")),
                      (pe_low._folded_head(), pe_ref._folded_head())):
        for g, w in zip(got, want, strict=True):
            assert g.dtype == torch.float32
            # bf16 products would be off by ~4e-3 relative; float32 by ~1e-7
            assert (g - w).abs().max() <= 1e-5 * w.abs().max()


def test_pickle_and_deepcopy_drop_folded_cache(tiny):
    import copy
    import pickle

    tiny.eval()
    x = _x(2)
    with torch.no_grad():
        ref = tiny(x, "s1")
    assert tiny.patch_embed._folds._entries
    for clone in (pickle.loads(pickle.dumps(tiny)), copy.deepcopy(tiny)):
        assert not clone.patch_embed._folds._entries
        with torch.no_grad():
            assert torch.equal(clone(x, "s1"), ref)


def test_prepare_builds_the_folds_a_forward_pass_uses(tiny):
    tiny.eval()
    tiny.prepare("S2_L2A", image_size=(64, 96))
    folds = tiny.patch_embed._folds._entries
    assert set(folds) == {"values:s2_l2a", "head"}
    assert set(tiny._pos_cache._entries) == {"pos:(4, 6)"}
    built = {k: v[1] for k, v in folds.items()}
    with torch.inference_mode():
        tiny(_x(tiny.config.in_channels["s2_l2a"]), "s2_l2a")
    assert all(folds[k][1] is built[k] for k in built)  # used, not rebuilt
    with pytest.raises(ValueError, match="modality"):
        tiny.prepare("s3")
    tiny.train()
    tiny.prepare("s1")  # training mode: nothing to prepare
    assert not tiny.patch_embed._folds._entries


def test_fold_cache_builds_once_for_threads_that_miss_together():
    import threading
    import time

    from xterrafm.models.patch_embed import _FoldCache

    cache, source, builds = _FoldCache(), torch.ones(3), []

    def build():
        builds.append(1)
        time.sleep(0.2)  # long enough for every thread to miss the cache
        return torch.zeros(1)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("w", (source,), build)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(results) == 4 and all(r is results[0] for r in results)
    source.add_(1)  # a changed source is rebuilt
    cache.get("w", (source,), build)
    assert len(builds) == 2
