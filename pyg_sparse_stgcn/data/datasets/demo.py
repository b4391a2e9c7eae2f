"""``demo``: the SYNTHETIC dataset, generated into ``root`` on first use and read as Kinetics-skeleton JSON."""
from __future__ import annotations

from collections.abc import Iterator

from ..readers.demo import DEMO_CLASSES, generate_demo
from .base import DatasetSource, Item
from .kinetics import kinetics_json_items
from .registry import register_source

__all__ = ["DemoSource"]


@register_source
class DemoSource(DatasetSource):
    """Eight procedurally generated actions on the OpenPose-18 layout (no files shipped): :meth:`locate`
    writes them with :func:`~pyg_sparse_stgcn.data.readers.demo.generate_demo` (reused when complete) and
    :meth:`items` reads them back through the Kinetics-skeleton reader. Options are the generator's:
    ``seed``, ``num_train``, ``num_val``, ``num_empty``, ``min_frames``, ``max_frames``.
    """

    names = ("demo",)
    num_classes = 8
    #: The class names in label order.
    class_names = DEMO_CLASSES
    layout = "openpose"
    dims = 2
    pipeline_kind = "2d-normalized"
    clip_len = 32
    num_person = 2
    synthetic = True
    option_names = ("seed", "num_train", "num_val", "num_empty", "min_frames", "max_frames")
    expected = "nothing: the SYNTHETIC demo data are generated into root on first use (Kinetics-skeleton JSON layout)"
    origin = "pyg_sparse_stgcn.data.readers.demo.generate_demo (procedural, synthetic; no real recordings)"

    def locate(self) -> None:
        generate_demo(self.root, **self.options)

    def items(self, split: str) -> Iterator[Item]:
        yield from kinetics_json_items(self.root, split)
