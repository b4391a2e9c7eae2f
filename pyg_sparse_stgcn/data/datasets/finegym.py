"""``finegym``: FineGYM's HRNet 2-D poses as PYSKL's ``gym_hrnet.pkl``."""
from __future__ import annotations

from .pickled import PysklPickleSource
from .registry import register_source

__all__ = ["FineGymSource"]


@register_source
class FineGymSource(PysklPickleSource):
    """FineGYM (99 element classes, COCO-17 2-D poses), splits ``train``/``val`` of the pickle."""

    names = ("finegym",)
    pickle_names = ("gym_hrnet.pkl",)
    num_classes = 99
    layout = "coco"
    clip_len = 100
    num_person = 1
    expected = "the PYSKL annotation pickle `gym_hrnet.pkl` (HRNet 2-D poses, splits train/val)"
    origin = ("FineGYM (Shao et al., CVPR 2020) poses by PYSKL: "
              "https://download.openmmlab.com/mmaction/pyskl/data/gym/gym_hrnet.pkl")
