"""The pretraining loop: DINO with dual centering over :class:`~xterrafm.data.TileDataset`.

One process per device; under ``torchrun`` (``WORLD_SIZE`` > 1) it joins a process group
(NCCL on GPU, gloo on CPU) and wraps the student in DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.data.dataset import TileDataset
from xterrafm.data.views import MultiCropConfig
from xterrafm.errors import UsageError
from xterrafm.pretrain.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from xterrafm.pretrain.config import PretrainConfig
from xterrafm.pretrain.ema import update_teacher
from xterrafm.pretrain.export import export_backbone
from xterrafm.pretrain.head import DINOHead
from xterrafm.pretrain.ibot import MaskedPatchLoss, block_masks
from xterrafm.pretrain.koleo import koleo_loss
from xterrafm.pretrain.loss import DualCenteringDINOLoss, inverse_frequency_weights
from xterrafm.pretrain.metrics import MetricsLog
from xterrafm.pretrain.multiview import MultiViewModel
from xterrafm.pretrain.schedules import cosine_schedule, linear_warmup_constant, scaled_lr

with import_gate():
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

__all__ = ["TrainResult", "train", "build_dataset", "build_models", "CHECKPOINT_NAME",
           "EXPORT_NAME", "METRICS_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "teacher_backbone.safetensors"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainResult:
    """Outcome of :func:`train` (on every rank).

    Attributes
    ----------
    losses : list of float
        Loss of every step run by this call (this rank's batch).
    step : int
        Global step reached.
    output : Path
        Output folder (checkpoint, metrics, export).
    export_path : Path or None
        The exported teacher backbone (rank 0).
    """

    losses: list[float] = field(default_factory=list)
    step: int = 0
    output: Path = Path(".")
    export_path: Path | None = None


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _train_device(device_pref: str, local_rank: int, world: int) -> torch.device:
    """The device of this process: ``"auto"``/``"cuda"`` -> ``cuda:<LOCAL_RANK>`` (CPU for
    ``"auto"`` without CUDA), ``"cuda:N"`` -> that GPU (one process only), ``"cpu"``."""
    if device_pref == "cpu" or (device_pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device_pref!r} requested but CUDA is not available")
    if device_pref in ("auto", "cuda"):
        return torch.device(f"cuda:{local_rank}")
    if world > 1:
        raise UsageError(f"device {device_pref!r} names one GPU, but {world} processes would "
                         "share it; use device='cuda' (each process takes cuda:<LOCAL_RANK>)")
    return torch.device(device_pref)


def _setup_distributed(device_pref: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _train_device(device_pref, local_rank, world)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return _Dist(rank, world, local_rank, device, owns)


def _synthetic_cube(config: PretrainConfig, output: Path, env: _Dist) -> Path:
    """Generate (rank 0) the default synthetic scene and its Zarr training cube."""
    cube_path = output / "synthetic" / "training_cube.zarr"
    if env.rank == 0:
        from xterrafm.datasets.training_cube import write_synthetic_training_cube

        write_synthetic_training_cube(
            output / "synthetic", seed=config.seed, size=config.synthetic_size,
            n_dates=config.synthetic_dates, chunk_px=config.synthetic_chunk)
    env.barrier()
    return cube_path


def build_dataset(config: PretrainConfig, data: Sequence[object], rank: int | None = None,
                  world_size: int | None = None) -> TileDataset:
    """The multi-crop :class:`TileDataset` a config describes, over ``data`` cubes."""
    views = MultiCropConfig(
        global_size=config.global_crop_size, local_size=config.local_crop_size,
        n_local=config.n_local_crops, global_scale=tuple(config.global_crop_scale),
        local_scale=tuple(config.local_crop_scale), brightness=config.brightness,
        contrast=config.contrast, band_jitter=config.band_jitter, noise=config.noise,
        radiometric_p=config.radiometric_p, grayscale_p=config.grayscale_p,
        ratio=tuple(config.crop_ratio), modality_subsets=config.modality_subsets,
    )
    return TileDataset(
        list(data), tile_size=config.tile_size, min_valid_fraction=config.min_valid_fraction,
        sampling=config.sampling, alpha=config.alpha, views=views, batch_size=config.batch_size,
        seed=config.seed, rank=rank, world_size=world_size, shuffle_window=config.shuffle_window,
        normalization=config.normalization,
    )


def build_models(config: PretrainConfig, modalities: Sequence[str]
                 ) -> tuple[MultiViewModel, MultiViewModel]:
    """Student and teacher (same initial weights, teacher without gradients), seeded.

    The student's blocks get stochastic depth rising to ``drop_path_rate``; the teacher has
    none (as in DINO), so its EMA weights are used whole.
    """
    from xterrafm.models.terrafm import TerraFM
    from xterrafm.models.vit import set_drop_path

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = TerraFM(config.model)
        head = DINOHead(backbone.embed_dim, config.out_dim, config.head_hidden_dim,
                        config.head_bottleneck_dim, config.head_layers, config.norm_last_layer)
    student = MultiViewModel(backbone, head, modalities, mask_token=config.ibot_weight > 0)
    teacher = copy.deepcopy(student)
    set_drop_path(student.backbone.blocks, config.drop_path_rate)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def _param_groups(model: torch.nn.Module) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False}]


def _to_device(batch: dict, device: torch.device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, dict):
            out[k] = {m: t.to(device, non_blocking=True) for m, t in v.items()}
        elif isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        else:
            out[k] = v
    return out


def _autocast(config: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _check_resume(saved: dict, config: PretrainConfig, env: _Dist) -> None:
    old = saved["config"]
    for key in ("model", "out_dim", "batch_size", "tile_size", "seed", "total_steps",
                "head_hidden_dim", "head_bottleneck_dim", "head_layers"):
        if old.get(key) != getattr(config, key):
            raise ValueError(
                f"cannot resume: config key {key!r} was {old.get(key)!r} in the checkpoint, "
                f"now {getattr(config, key)!r}"
            )
    if (float(old.get("ibot_weight", 0.0)) > 0) != (config.ibot_weight > 0):
        raise ValueError(
            f"cannot resume: config key 'ibot_weight' was {old.get('ibot_weight', 0.0)!r} in "
            f"the checkpoint, now {config.ibot_weight!r} (the masked-token objective cannot be "
            "switched on or off in a run)"
        )
    if saved["world_size"] != env.world:
        raise ValueError(
            f"cannot resume exactly: the checkpoint was written by {saved['world_size']} "
            f"process(es), this run has {env.world}"
        )


def train(
    config: PretrainConfig,
    data: Sequence[object] | None = None,
    output: str | os.PathLike = "pretrain-output",
    *,
    max_steps: int | None = None,
    resume: bool = False,
) -> TrainResult:
    """Pretrain a TerraFM encoder with DINO and dual centering.

    Parameters
    ----------
    config : PretrainConfig
    data : sequence of training-cube sources, optional
        Zarr paths (or ``xr.Dataset`` objects) of training cubes; ``None`` generates a
        synthetic scene and its cube under ``output/synthetic``.
    output : path-like
        Folder for ``checkpoint.pt``, ``metrics.jsonl`` and ``teacher_backbone.safetensors``.
    max_steps : int, optional
        Stop after this global step (default ``config.max_steps``); the schedules always run
        over ``config.total_steps``.
    resume : bool
        Continue from ``output/checkpoint.pt`` exactly where it stopped.

    Returns
    -------
    TrainResult
    """
    output = Path(output)
    max_steps = config.max_steps if max_steps is None else int(max_steps)
    if max_steps > config.total_steps:
        raise ValueError(f"max_steps {max_steps} exceeds total_steps {config.total_steps}")
    env = _setup_distributed(config.device)
    try:
        return _train(config, data, output, max_steps, resume, env)
    finally:
        if env.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: PretrainConfig, data: Sequence[object] | None, output: Path, max_steps: int,
           resume: bool, env: _Dist) -> TrainResult:
    ckpt_path = output / CHECKPOINT_NAME
    if env.rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        if not resume and ckpt_path.exists():
            raise FileExistsError(
                f"{ckpt_path} exists: pass --resume to continue it, or choose another --output"
            )
    env.barrier()
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume given but {ckpt_path} does not exist")
    sources = list(data) if data else [_synthetic_cube(config, output, env)]
    dataset = build_dataset(config, sources, env.rank, env.world)
    units = dataset.units_per_epoch(config.num_workers)
    if units == 0:
        raise ValueError(
            f"rank {env.rank} gets no full batch per epoch ({dataset.n_tiles} tiles, batch "
            f"{config.batch_size}, {env.world} rank(s) x {max(config.num_workers, 1)} worker(s))"
            ": lower batch_size or num_workers, use smaller tiles or more data"
        )
    global_batch = config.batch_size * env.world
    freeze_steps = config.freeze_last_layer_steps
    if freeze_steps < 0:
        freeze_steps = max(1, dataset.n_tiles // global_batch)

    student, teacher = build_models(config, dataset.modalities)
    student.to(env.device)
    teacher.to(env.device)
    teacher.train()  # no drop path in the teacher; train mode keeps the (stale-cache-free) slow path
    if config.compile:
        for block in student.backbone.blocks:
            block.compile()
        student.head.compile()
    criterion = DualCenteringDINOLoss(
        config.out_dim, n_global_views=2, student_temp=config.student_temp,
        center_momentum=config.center_momentum, lam=config.center_lambda,
        centering=config.centering,
    ).to(env.device)
    patch_criterion = (MaskedPatchLoss(config.out_dim, config.student_temp,
                                       config.center_momentum).to(env.device)
                       if config.ibot_weight > 0 else None)
    patch = student.backbone.patch_size
    mask_grid = (config.global_crop_size // patch, config.global_crop_size // patch)
    # the class center reweights by what the sampler draws, not by the scene's frequencies:
    # it corrects only the imbalance that the land-cover-aware sampling leaves
    class_freq = torch.as_tensor(dataset.sampled_class_frequencies, dtype=torch.float32,
                                 device=env.device)
    optimizer = torch.optim.AdamW(_param_groups(student), lr=0.0, weight_decay=0.0)
    peak_lr = scaled_lr(config.base_lr, global_batch)
    model = (DistributedDataParallel(student, find_unused_parameters=True)
             if env.enabled else student)

    step, epoch, consumed = 0, 0, 0
    if resume:
        saved = load_checkpoint(ckpt_path)
        _check_resume(saved, config, env)
        student.load_state_dict(saved["student"])
        teacher.load_state_dict(saved["teacher"])
        optimizer.load_state_dict(saved["optimizer"])
        criterion.load_state_dict(saved["criterion"])
        if patch_criterion is not None:
            patch_criterion.load_state_dict(saved["patch_criterion"])
        step = int(saved["step"])
        epoch, consumed = (int(v) for v in saved["data_position"][env.rank])
        restore_rng_state(saved["rng"][env.rank] if env.rank < len(saved["rng"]) else saved["rng"][0])

    loader_kwargs = {"batch_size": None, "num_workers": config.num_workers}
    if config.num_workers > 0:
        loader_kwargs["prefetch_factor"] = 2
    loader = DataLoader(dataset, **loader_kwargs)
    units_epoch = dataset.units_per_epoch(config.num_workers, epoch)
    batches = pending = None  # current epoch's and (prefetched) next epoch's iterators

    log = MetricsLog(output / METRICS_NAME if env.rank == 0 else None,
                     total=max_steps, initial=step, progress=config.progress)
    result = TrainResult(step=step, output=output)
    wait_acc = time_acc = 0.0
    n_acc = 0
    try:
        while step < max_steps:
            t0 = time.perf_counter()
            while consumed >= units_epoch:  # the epoch is over
                epoch, consumed = epoch + 1, 0
                batches, pending = pending, None
                units_epoch = dataset.units_per_epoch(config.num_workers, epoch)
            if batches is None:
                dataset.set_epoch(epoch, consumed)
                batches = iter(loader)
            batch = next(batches)
            consumed += 1
            if config.num_workers > 0 and consumed == units_epoch:
                # start the next epoch's workers now, so that they read while this step runs
                dataset.set_epoch(epoch + 1, 0)
                pending = iter(loader)
            batch = _to_device(batch, env.device)
            t_data = time.perf_counter()

            lr = cosine_schedule(step, config.total_steps, peak_lr, config.min_lr,
                                 config.warmup_steps, 0.0)
            wd = cosine_schedule(step, config.total_steps, config.weight_decay,
                                 config.weight_decay_end)
            t_temp = linear_warmup_constant(step, config.warmup_teacher_temp_steps,
                                            config.warmup_teacher_temp, config.teacher_temp)
            momentum = cosine_schedule(step, config.total_steps, config.momentum_teacher, 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
                group["weight_decay"] = wd if group["apply_wd"] else 0.0

            masks = None
            if patch_criterion is not None:
                n_rows = batch["global_keep"].shape[0]
                # a generator per (seed, rank, step): the masks do not depend on how many
                # draws anything else took from torch's global generator, so resume is exact
                seq = np.random.SeedSequence([config.seed, env.rank, step])
                gen = torch.Generator().manual_seed(int(seq.generate_state(1)[0]))
                masks = block_masks(n_rows, mask_grid, config.mask_probability,
                                    config.mask_ratio, gen).to(env.device)
            with _autocast(config, env.device):
                with torch.no_grad():
                    t_out = teacher(batch["global"], batch["global_keep"], masks=masks,
                                    mask_tokens=False)
                s_out = model(batch["global"], batch["global_keep"], batch.get("local"),
                              batch.get("local_keep"), return_global_features=True,
                              masks=masks)
            if masks is None:
                t_logits, (s_logits, s_global) = t_out, s_out
            else:
                (t_logits, t_patch), (s_logits, s_global, s_patch) = t_out, s_out
            weights = inverse_frequency_weights(batch["class_proportions"], class_freq,
                                                config.center_alpha)
            loss = criterion(s_logits.float(), t_logits.float(), t_temp, weights)
            objective, koleo, patch_loss = loss, None, None
            if patch_criterion is not None:
                patch_t = patch_criterion(s_patch.float(), t_patch.float(), masks, t_temp)
                objective = objective + config.ibot_weight * patch_t
                patch_loss = float(patch_t.detach())
            if config.koleo_weight > 0:
                # per global view, over the samples of this rank's batch (as DINOv2)
                koleo_t = torch.stack([koleo_loss(f) for f in s_global.chunk(2)]).mean()
                objective = objective + config.koleo_weight * koleo_t
                koleo = float(koleo_t.detach())
            if not torch.isfinite(objective):
                raise FloatingPointError(f"loss is {objective.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(student.parameters(), config.clip_grad)
            if step < freeze_steps:
                for p in student.head.last_layer_parameters():
                    p.grad = None
            optimizer.step()
            update_teacher(student, teacher, momentum)
            step += 1
            t_end = time.perf_counter()

            loss_value = float(loss.detach())
            result.losses.append(loss_value)
            wait_acc += t_data - t0
            time_acc += t_end - t0
            n_acc += 1
            if step % config.log_every == 0 or step == max_steps:
                log.log({
                    "step": step, "epoch": epoch, "loss": loss_value, "lr": lr,
                    "weight_decay": wd, "teacher_temp": t_temp, "teacher_momentum": momentum,
                    "teacher_entropy": criterion.last_teacher_entropy,
                    "teacher_marginal_entropy": criterion.last_teacher_marginal_entropy,
                    "koleo": koleo,
                    "patch_loss": patch_loss,
                    "patch_teacher_entropy": (patch_criterion.last_teacher_entropy
                                              if patch_criterion is not None else None),
                    "patch_teacher_marginal_entropy": (
                        patch_criterion.last_teacher_marginal_entropy
                        if patch_criterion is not None else None),
                    "samples_per_s": n_acc * global_batch / max(time_acc, 1e-9),
                    "data_wait_fraction": wait_acc / max(time_acc, 1e-9),
                })
                wait_acc = time_acc = 0.0
                n_acc = 0
            log.advance()
            if step % config.checkpoint_every == 0 or step == max_steps:
                _save(ckpt_path, config, env, student, teacher, optimizer, criterion, step,
                      epoch, consumed, patch_criterion)
    finally:
        log.close()
    result.step = step
    if env.rank == 0:
        result.export_path = output / EXPORT_NAME
        export_backbone(teacher.backbone, result.export_path)
    env.barrier()
    return result


def _save(path: Path, config: PretrainConfig, env: _Dist, student: MultiViewModel,
          teacher: MultiViewModel, optimizer: torch.optim.Optimizer,
          criterion: DualCenteringDINOLoss, step: int, epoch: int, consumed: int,
          patch_criterion: MaskedPatchLoss | None = None) -> None:
    position = torch.tensor([epoch, consumed], dtype=torch.int64)
    rng = capture_rng_state()
    if env.enabled:
        gathered = [torch.zeros_like(position) for _ in range(env.world)]
        dist.all_gather(gathered, position)
        rngs: list = [None] * env.world
        dist.all_gather_object(rngs, rng)
    else:
        gathered, rngs = [position], [rng]
    if env.rank == 0:
        state = {
            "step": step,
            "world_size": env.world,
            "config": config.to_dict(),
            "modalities": list(student.modalities),
            "student": student.state_dict(),
            "teacher": teacher.state_dict(),
            "optimizer": optimizer.state_dict(),
            "criterion": criterion.state_dict(),
            **({"patch_criterion": patch_criterion.state_dict()}
               if patch_criterion is not None else {}),
            "data_position": [[int(v) for v in p.tolist()] for p in gathered],
            "rng": rngs,
            "numpy_version": np.__version__,
        }
        save_checkpoint(state, path)
    env.barrier()
