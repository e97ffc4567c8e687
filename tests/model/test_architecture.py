"""Published layout: parameter names, shapes, counts, strict loading."""

from __future__ import annotations

import pytest
import torch

from xterrafm.models import FUSION_PREFIX, TerraFM, get_config


def _meta_model(name: str) -> TerraFM:
    with torch.device("meta"):
        return TerraFM(name)


@pytest.mark.parametrize("variant", ["terrafm-b", "terrafm-l"])
def test_state_dict_matches_published_layout(variant, layout_b, layout_l):
    layout = layout_b if variant == "terrafm-b" else layout_l
    sd = _meta_model(variant).state_dict()
    published = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith(FUSION_PREFIX)}
    assert published == layout
    assert len(layout) == (164 if variant == "terrafm-b" else 20 + 12 * 24)
    extra = [k for k in sd if k not in layout]
    assert extra and all(k.startswith("patch_embed.fusion.") for k in extra)


@pytest.mark.parametrize(("variant", "count"),
                         [("terrafm-b", 112_951_296), ("terrafm-l", 345_010_176)])
def test_parameter_count(variant, count):
    model = _meta_model(variant)
    n = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(FUSION_PREFIX))
    assert n == count


def test_default_dense_layers():
    assert get_config("terrafm-b").dense_layers == (3, 5, 7, 11)
    assert get_config("terrafm-l").dense_layers == (5, 11, 17, 23)
    assert get_config("terrafm-tiny").dense_layers == (0, 1, 2, 3)
    tiny = get_config("tiny")
    assert (tiny.embed_dim, tiny.depth, tiny.num_heads, tiny.patch_size, tiny.stem_dim) == (
        32, 4, 2, 16, 96)
    assert tiny.base_grid == 14


def test_unknown_variant_named():
    with pytest.raises(ValueError, match="terrafm-b"):
        get_config("terrafm-xl")


def test_strict_load_of_published_layout_b(layout_b, reference):
    """A state_dict built from the TSV loads with strict=True and runs at 224 x 224."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in layout_b.items()}
    for k in sd:
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight", "norm_input.weight")):
            sd[k] = torch.ones_like(sd[k])
    model = TerraFM("terrafm-b")
    with pytest.warns(UserWarning, match="fusion"):
        result = model.load_state_dict(sd, strict=True)
    assert result.unexpected_keys == []
    assert all(k.startswith(FUSION_PREFIX) for k in result.missing_keys)
    for k, v in model.state_dict().items():
        if k in sd:
            assert torch.equal(v, sd[k]), k
    model.eval()
    x = torch.randn(1, 12, 224, 224, generator=g)
    with torch.inference_mode():
        feats = model.forward_features(x, modality="s2_l2a")
        ref = reference(model, x, "s2_l2a")
    assert feats["cls"].shape == (1, 768)
    assert feats["patch"].shape == (1, 768, 14, 14)
    assert (feats["cls"] - ref[:, 0]).abs().max() < 1e-4
