"""Inference on CUDA: device and precision defaults, bf16 against fp32, the folded and fused
paths, and compiled blocks (see tests/gpu/conftest.py for the CPU rehearsal)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xterrafm.weights import load_model

pytestmark = pytest.mark.requires_cuda


def _images(channels: int, tile: int, batch: int = 4, seed: int = 1) -> torch.Tensor:
    """Normalised-looking inputs (zero mean, unit variance), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, tile, tile, generator=g)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest row-wise cosine similarity of two (B, ...) tensors (flattened per row)."""
    return float(F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1).min())


def _relative_max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


def test_auto_device_precision_and_batch_resolve_to_cuda(target):
    from xterrafm.embedding import runtime
    from xterrafm.embedding.blocks import embed_block
    from xterrafm.embedding.spec import ModelSpec
    from xterrafm.embedding.windows import AxisWindows

    assert runtime.resolve_device("auto") == target.device
    assert runtime.resolve_device(target.indexed_device) == target.indexed_device
    assert runtime.resolve_precision("auto", target.device) == target.precision
    assert runtime.resolve_batch_size(None, target.device) == (64 if target.device == "cuda"
                                                               else 8)
    runtime.clear_cache()
    spec = ModelSpec(model="terrafm-tiny", weights=None, weights_sha256="", modality="s2_l2a",
                     seed=3)
    model, device = runtime.get_model(spec)
    assert device == target.device
    assert next(model.parameters()).device.type == target.device
    assert model.precision == target.precision
    # a block through the block function: normalisation, masking, batches, the model there
    tile = 64
    axis = AxisWindows(2 * tile, tile, tile, "tile")
    pixels = np.random.default_rng(0).uniform(0.02, 0.4, (1, 12, 2 * tile, 2 * tile))
    pixels = pixels.astype(np.float32)
    pixels[0, :, :tile, :tile] = np.nan  # one window without valid pixels
    out = embed_block(pixels, spec=spec, y=axis, x=axis, y_span=axis.span(0, 2),
                      x_span=axis.span(0, 2), min_valid=0.5)
    assert out.shape == (1, model.embed_dim, 2, 2)
    assert np.isnan(out[0, :, 0, 0]).all() and np.isfinite(out[0, :, 1:, :]).all()
    stats = runtime.stats()
    assert stats["windows"] == 3 and stats["windows_skipped"] == 1
    assert [target.device, target.precision] == stats["cached_models"][0][-2:]
    runtime.clear_cache()


def test_bf16_agrees_with_fp32_and_fp32_with_the_cpu(target):
    """bf16 autocast really runs (bf16 matrix products) and stays within bf16 rounding of the
    fp32 result; fp32 on the device equals the CPU's fp32 (no TF32 slipped in)."""
    x_cpu = _images(12, target.tile)
    cpu = load_model(target.model, seed=2)
    with torch.inference_mode():
        ref_cls = cpu(x_cpu, "s2_l2a")
        ref_patch = cpu.forward_features(x_cpu, "s2_l2a")["patch"]
    fresh = load_model(target.model, seed=2, device=target.device, precision="bf16")
    seen: list[torch.dtype] = []
    hook = fresh.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = x_cpu.to(target.device)
    with torch.inference_mode():
        low = fresh(x, "s2_l2a")  # the folds are built inside autocast here
        low_patch = fresh.forward_features(x, "s2_l2a")["patch"]
        fresh.precision = "fp32"
        full = fresh(x, "s2_l2a")
        full_patch = fresh.forward_features(x, "s2_l2a")["patch"]
    hook.remove()
    assert seen[0] == torch.bfloat16 and seen[-1] == torch.float32
    assert low.dtype == torch.float32 and low.device.type == target.device
    assert not torch.equal(low, full)
    assert _cosine(low.cpu(), ref_cls) >= 0.999
    assert _cosine(low_patch.cpu(), ref_patch) >= 0.999
    # fp32 against the CPU: float32 rounding only (TF32 would give ~1e-3)
    assert _relative_max_error(full.cpu(), ref_cls) <= 1e-4
    assert _relative_max_error(full_patch.cpu(), ref_patch) <= 1e-4
    # folds built inside the bf16 region are float32 folds
    cpu.prepare("s2_l2a")
    for got, want in zip(fresh.patch_embed._folded_values("s2_l2a"),
                         cpu.patch_embed._folded_values("s2_l2a"), strict=True):
        assert _relative_max_error(got.cpu(), want) <= 1e-5


def test_folded_and_fused_paths_on_the_device(target):
    """Folded patch embedding = published computation; single-modality fusion = the plain
    path; two-modality fusion on the device = on the CPU (fp32) and close in bf16."""
    model = load_model(target.model, seed=4, device=target.device)
    cpu = load_model(target.model, seed=4)
    s2, s1 = _images(12, target.tile, seed=5), _images(2, target.tile, seed=6)
    with torch.inference_mode():
        folded = model(s2.to(target.device), "s2_l2a")
        model.use_folded = False
        published = model(s2.to(target.device), "s2_l2a")
        model.use_folded = True
        single = model.forward_fused({"s2_l2a": s2.to(target.device)})
        pair = {"s2_l2a": s2.to(target.device), "s1": s1.to(target.device)}
        fused = model.forward_fused(pair)
        fused_cpu = cpu.forward_fused({"s2_l2a": s2, "s1": s1})
        model.precision = "bf16"
        fused_low = model.forward_fused(pair)
    assert _relative_max_error(folded, published) <= 1e-4
    torch.testing.assert_close(single, folded, rtol=1e-5, atol=1e-5)
    assert _relative_max_error(fused.cpu(), fused_cpu) <= 1e-4
    assert _cosine(fused.cpu(), folded.cpu()) < 0.9999  # S1 changed the result
    assert _cosine(fused_low.cpu(), fused_cpu) >= 0.999


def test_compiled_blocks_match_eager(target):
    """``torch.compile`` of the transformer blocks (what the benchmark's compiled runs and
    ``compile = true`` pretraining use) gives the eager result, with two batch sizes (the
    second recompiles with a dynamic batch). terrafm-tiny: the benchmark compiles -B and -L."""
    model = load_model("terrafm-tiny", seed=7, device=target.device, precision=target.precision)
    x = _images(12, 64, batch=4).to(target.device)
    with torch.inference_mode():
        eager = model(x, "s2_l2a")
        for blk in model.blocks:
            blk.compile(backend=target.compile_backend)
        compiled = model(x, "s2_l2a")
        compiled_small = model(x[:2], "s2_l2a")
    assert _cosine(compiled.cpu(), eager.cpu()) >= 0.9999
    assert _cosine(compiled_small.cpu(), eager[:2].cpu()) >= 0.9999
