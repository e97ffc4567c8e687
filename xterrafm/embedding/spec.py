"""The explicit, picklable description of a model that block functions receive.

A :class:`ModelSpec` is what travels in the dask graph instead of the model: a few strings and
numbers. Each worker process turns it into a model once (:mod:`xterrafm.embedding.runtime`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xterrafm.models.precision import canonical_precision

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to rebuild the encoder and run it on a block.

    Attributes
    ----------
    model : str
        Variant name (``"terrafm-b"``, ``"terrafm-l"``, ``"terrafm-tiny"``).
    weights : str or None
        Path of a ``.safetensors``/``.pth`` weights file readable by every worker, ``"hf"``,
        or None for the seeded random initialisation (identical in every process).
    weights_sha256 : str
        SHA-256 of the weights (as recorded by :func:`xterrafm.load_model`); a worker that
        loads different weights refuses to run.
    seed : int
        Seed of the random initialisation (``weights=None``) and of fresh fusion parameters.
    modality : str
        Input modality (``"s1"``, ``"s2_l1c"``, ``"s2_l2a"``).
    normalize : str or None
        Name of the normalisation spec applied to physical units (None: the input is already
        normalised).
    device : str
        ``"auto"`` (CUDA when the worker has it, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    precision : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (a plan always carries the resolved one), or
        ``"auto"``, resolved in each process (:func:`xterrafm.models.precision.resolve_precision`:
        bf16 on CUDA and on CPUs with native bf16, else fp32).
    batch_size : int or None
        Windows per forward pass (None: 8 on CPU, 64 on CUDA).
    torch_threads : int or None
        Intra-op threads of torch in each worker process (None: the process's CPU share, see
        :func:`xterrafm.embedding.runtime.default_torch_threads`).
    weights_stamp : (int, int) or None
        Size in bytes and modification time in ns of the weights file when ``weights_sha256``
        was computed. A process that finds the file with the same stamp takes the recorded
        hash instead of hashing the tensors again; any other stamp means hashing and checking.
    """

    model: str
    weights: str | None
    weights_sha256: str
    modality: str
    normalize: str | None = "terrafm-v1"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    torch_threads: int | None = None
    weights_stamp: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        canonical_precision(self.precision)  # raises for an unknown one
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer; got {self.batch_size}")

    @property
    def cache_key(self) -> tuple:
        """Identity of the built model in a process: config, weights and where it runs."""
        return (self.model, self.weights, self.weights_sha256, self.seed, self.device,
                self.precision)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return asdict(self)
