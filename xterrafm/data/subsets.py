"""Names of the rules for which modalities a multi-crop view keeps (standard library only).

Kept apart from :mod:`xterrafm.data.views` so that configuration checks can name the valid
rules without importing torch.
"""

from __future__ import annotations

__all__ = ["MODALITY_SUBSET_RULES"]

#: Which modalities a view keeps: ``"uniform"`` a non-empty subset of the present ones, drawn
#: uniformly over subsets (modality as augmentation, the default); ``"all"`` every present
#: modality; ``"single"`` one present modality, drawn uniformly; ``"global_all"`` every present
#: modality in the global views (what the teacher sees), a uniform subset in the local views.
MODALITY_SUBSET_RULES: tuple[str, ...] = ("uniform", "all", "single", "global_all")
