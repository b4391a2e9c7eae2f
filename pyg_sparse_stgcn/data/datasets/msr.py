"""MSR Action3D: the "real world coordinates" skeleton files, odd subjects train."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..readers.msr import MSR_ACTION3D_CLASSES, msr_action3d_split, read_msr_action3d, read_msr_file_list
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
    #: The class names in label order.
    class_names = MSR_ACTION3D_CLASSES
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
        keyed = ((f.name.replace("_skeleton3D.txt", ""), f) for f in self.files)
        yield from split_items(((k, f) for k, f in keyed if self.used is None or k in self.used), split,
                               msr_action3d_split, read_msr_action3d)


def split_items(keyed: Iterable[tuple[str, Path]], split: str, split_of: Callable[[str], str],
                reader: Callable[..., Any], *args: Any) -> Iterator[Item]:
    """One :class:`Item` per ``(key, file)`` whose ``split_of(key)`` is ``split``, read by
    ``reader(file, *args)``; a key ``split_of`` rejects (:class:`ValueError`) is a skipped item with its message.
    Shared by the one-file-per-recording sources (MSR Action3D, UTKinect)."""
    for key, f in keyed:
        try:
            sub = split_of(key)
        except ValueError as e:
            yield Item(key, str(f), skip=str(e))
            continue
        if sub == split:
            yield Item(key, str(f), partial(reader, f, *args))
