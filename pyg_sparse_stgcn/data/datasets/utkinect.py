"""UTKinect-Action3D: ``joints_sSS_eEE.txt`` recordings cut into actions by the label file."""
from __future__ import annotations

from collections.abc import Iterator

from ..readers.utkinect import UTKINECT_CLASSES, read_utkinect, read_utkinect_labels, utkinect_split
from .base import DatasetSource, Item
from .locate import data_folder, glob_files
from .msr import split_items
from .registry import register_source

__all__ = ["UTKinectSource"]


@register_source
class UTKinectSource(DatasetSource):
    """UTKinect-Action3D, 10 classes, 20 Kinect v1 joints; each recording yields its labelled segments. Option
    ``label_file`` (default ``actionLabel.txt``; e.g. ``actionLabel_modified.txt``)."""

    names = ("utkinect",)
    num_classes = 10
    #: The class names in label order.
    class_names = UTKINECT_CLASSES
    layout = "nw-ucla"
    dims = 3
    pipeline_kind = "3d"
    clip_len = 32
    num_person = 1
    option_names = ("label_file",)
    expected = ("`joints/joints_sSS_eEE.txt` and `joints/actionLabel.txt` (or both directly under root); odd "
                "subjects train, even subjects val")
    origin = ("UTKinect-Action3D (Xia, Chen, Aggarwal, CVPRW 2012): https://cvrc.ece.utexas.edu/KinectDatasets/"
              "HOJ3D.html")

    def locate(self) -> None:
        folder = data_folder(self.root, "joints")
        self.label_file = folder / self.options.get("label_file", "actionLabel.txt")
        self.files = glob_files(folder, "joints_s*_e*.txt")
        if not self.files or not self.label_file.is_file():
            detail = f"label file {self.label_file} missing" if self.files else \
                f"no joints_sSS_eEE.txt files in {folder}"
            raise self.not_found(detail)

    def items(self, split: str) -> Iterator[Item]:
        yield from split_items(((f.stem.replace("joints_", ""), f) for f in self.files), split, utkinect_split,
                               read_utkinect, read_utkinect_labels(self.label_file))
