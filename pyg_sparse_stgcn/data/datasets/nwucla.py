"""NW-UCLA: CTR-GCN's ``all_sqe`` JSON files, views 1-2 train and view 3 val."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from ..readers.nwucla import NWUCLA_CLASSES, nwucla_split, read_nwucla_json
from .base import DatasetSource, Item
from .locate import data_folder, glob_files
from .registry import register_source

__all__ = ["NWUCLASource"]


@register_source
class NWUCLASource(DatasetSource):
    """Northwestern-UCLA Multiview Action3D, 10 classes, 20 Kinect v1 joints, one person."""

    names = ("nw-ucla",)
    num_classes = 10
    #: The class names in label order.
    class_names = NWUCLA_CLASSES
    layout = "nw-ucla"
    dims = 3
    pipeline_kind = "3d"
    clip_len = 52
    num_person = 1
    expected = ("the CTR-GCN `all_sqe` JSON files `aAA_sSS_eEE_vVV.json` (in `all_sqe/` or directly under root); "
                "views 1-2 train, view 3 val")
    origin = ("Northwestern-UCLA Multiview Action3D (Wang et al., CVPR 2014); the all_sqe.zip JSON conversion "
              "linked from https://github.com/Uason-Chen/CTR-GCN (README, NW-UCLA)")

    def locate(self) -> None:
        self.files = glob_files(data_folder(self.root, "all_sqe"), "a*_s*_e*_v*.json")
        if not self.files:
            raise self.not_found()

    def items(self, split: str) -> Iterator[Item]:
        for f in self.files:
            try:
                sub = nwucla_split(f)
            except ValueError as e:
                yield Item(f.stem, str(f), skip=str(e))
                continue
            if sub == split:
                yield Item(f.stem, str(f), partial(read_nwucla_json, f))
