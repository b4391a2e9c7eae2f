"""Kinetics-skeleton: the ST-GCN release (one JSON per video + label JSON) or PYSKL's ``k400_hrnet.pkl``."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ..readers.kinetics import read_kinetics_json, read_kinetics_labels
from .base import DatasetSource, Item
from .pickled import pyskl_items
from .registry import register_source

__all__ = ["KineticsSource", "kinetics_json_items"]


def kinetics_json_items(root: Path, split: str, num_person_in: int = 5, num_person_out: int = 2,
                        layout: str = "openpose") -> Iterator[Item]:
    """The entries of the ST-GCN release layout under ``root``: ``kinetics_<split>_label.json`` lists the
    videos of ``kinetics_<split>/``; entries with ``has_skeleton: false`` and listed videos whose JSON file is
    absent are skipped with their reason (the feeder's ``num_person_in`` / ``num_person_out``)."""
    label_file = root / f"kinetics_{split}_label.json"
    folder = root / f"kinetics_{split}"
    labels = read_kinetics_labels(label_file)
    for vid, reason in labels.skipped.items():
        yield Item(vid, str(folder / f"{vid}.json"), skip=reason)
    for vid, label in labels.labels.items():
        path = folder / f"{vid}.json"
        if not path.is_file():
            yield Item(vid, str(path), skip="listed in the label file but the JSON file is missing")
            continue
        yield Item(vid, str(path), partial(read_kinetics_json, path, num_person_in=num_person_in,
                                           num_person_out=num_person_out, layout=layout, label=label))


@register_source
class KineticsSource(DatasetSource):
    """Kinetics-400 skeletons, 2-D: OpenPose-18 JSON of the ST-GCN release (coordinates already centred,
    score in channel 2) or COCO-17 HRNet poses of PYSKL's K400 pickle with its kpfiles.

    Options: ``ann_file``, ``kpfile_root``, ``box_thr`` (pickle form); ``num_person_in`` (default 5),
    ``num_person_out`` (default 2; also the person cap of the pickle form).
    """

    names = ("kinetics",)
    num_classes = 400
    layout = "openpose"
    dims = 2
    pipeline_kind = "2d-normalized"
    clip_len = 150
    num_person = 2
    option_names = ("ann_file", "kpfile_root", "box_thr", "num_person_in", "num_person_out")
    expected = ("the ST-GCN release layout `kinetics_train/`, `kinetics_val/` (one JSON per video) with "
                "`kinetics_train_label.json` and `kinetics_val_label.json`; or a PYSKL `k400_hrnet.pkl` (option "
                "ann_file=) with the kpfiles its `raw_file` entries name (option kpfile_root=)")
    origin = ("Kinetics-skeleton (ST-GCN release, OpenPose on Kinetics-400): see "
              "https://github.com/yysijie/st-gcn (README 'Kinetics-skeleton', 7.5 GB); or PYSKL's "
              "k400_hrnet.pkl with its kpfiles: https://github.com/kennymckormick/pyskl/blob/main/tools/data/"
              "README.md")
    #: The PYSKL pickle looked for under ``root`` and the layout of its poses.
    pickle_names = ("k400_hrnet.pkl",)
    pickle_layout = "coco"

    def locate(self) -> None:
        self.pickle = self.locate_pickle(self.pickle_names)
        if self.pickle is None:
            need = [self.root / n for n in ("kinetics_train", "kinetics_val")]
            labels = [self.root / f"kinetics_{s}_label.json" for s in ("train", "val")]
            missing = [str(p.name) for p in need + labels if not p.exists()]
            if missing:
                raise self.not_found("missing " + ", ".join(missing))

    def items(self, split: str) -> Iterator[Item]:
        o = self.options
        if self.pickle is not None:
            yield from pyskl_items(self.pickle, split, self.pickle_layout, o.get("kpfile_root"),
                                   o.get("box_thr"), int(o.get("num_person_out", 2)))
        else:
            yield from kinetics_json_items(self.root, split, int(o.get("num_person_in", 5)),
                                           int(o.get("num_person_out", 2)))
