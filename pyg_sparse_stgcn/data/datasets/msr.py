"""MSR Action3D: the "real world coordinates" skeleton files, odd subjects train."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from ..readers.msr import msr_action3d_split, read_msr_action3d, read_msr_file_list
from .base import DatasetSource, Item
from .locate import data_folder, glob_files
from .registry import register_source

__all__ = ["MSRAction3DSource"]


@register_source
class MSRAction3DSource(DatasetSource):
    """MSR Action3D, 20 classes, joints reordered to the NW-UCLA (Kinect v1) layout. Option ``subset``:
    ``"cvpr12"`` (default: the 557 sequences of ``files_used_in_cvpr12_paper.txt`` when present) or
    ``"all"``."""

    names = ("msr-action3d",)
    num_classes = 20
    layout = "nw-ucla"
    dims = 3
    pipeline_kind = "3d"
    clip_len = 52
    num_person = 1
    option_names = ("subset",)
    #: Values of the ``subset`` option.
    subsets = ("cvpr12", "all")
    expected = ("`real_world_coordinates/aAA_sSS_eEE_skeleton3D.txt` (or the .txt files directly under root) and "
                "`files_used_in_cvpr12_paper.txt` (the 557 sequences of the standard protocol; without it all "
                "files are used); odd subjects train, even subjects val")
    origin = ("MSR Action3D (Li, Zhang, Liu, CVPRW 2010; Microsoft Research), skeleton 'real world "
              "coordinates' release: https://sites.google.com/view/wanqingli/data-sets/msr-action3d")

    def locate(self) -> None:
        subset = self.options.get("subset", "cvpr12")
        if subset not in self.subsets:
            raise ValueError(f"msr-action3d: subset must be 'cvpr12' (the 557 listed files) or 'all', "
                             f"got {subset!r}")
        folder = data_folder(self.root, "real_world_coordinates")
        self.files = glob_files(folder, "a*_s*_e*_skeleton3D.txt")
        if not self.files:
            raise self.not_found()
        listing = folder / "files_used_in_cvpr12_paper.txt"
        self.used = set(read_msr_file_list(listing)) if subset == "cvpr12" and listing.is_file() else None

    def items(self, split: str) -> Iterator[Item]:
        for f in self.files:
            key = f.name.replace("_skeleton3D.txt", "")
            if self.used is not None and key not in self.used:
                continue
            try:
                sub = msr_action3d_split(key)
            except ValueError as e:
                yield Item(key, str(f), skip=str(e))
                continue
            if sub == split:
                yield Item(key, str(f), partial(read_msr_action3d, f))
