"""NTU RGB+D 60 / 120: the four official benchmarks, from ``.skeleton`` files or PYSKL's ``*_3danno.pkl``."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..readers.ntu import NTU_BENCHMARKS, is_missing_skeleton, ntu_subset, parse_ntu_name, read_ntu_skeleton
from .base import DatasetSource, Item
from .locate import find_files
from .pickled import pyskl_items
from .registry import register_source

__all__ = ["NTUSource", "NTUBenchmark", "NTU120_CLASSES"]

#: The official NTU RGB+D 120 action names, A1 ... A120 at indices 0 ... 119 (the first 60 are NTU RGB+D 60's),
#: as the dataset's authors list them (github.com/shahroudy/NTURGB-D).
NTU120_CLASSES: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw", "sitting down",
    "standing up (from sitting position)", "clapping", "reading", "writing", "tear up paper", "wear jacket",
    "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone", "playing with phone/tablet",
    "typing on a keyboard", "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person", "giving something to other person",
    "touch other person's pocket", "handshaking", "walking towards each other", "walking apart from each other",
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball", "tennis bat swing",
    "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up", "thumb down", "make ok sign",
    "make victory sign", "staple book", "counting money", "cutting nails", "cutting paper (using scissors)",
    "snapping fingers", "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper",
    "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag", "take off bag",
    "put something into a bag", "take something out of a bag", "open a box", "move heavy objects", "shake fist",
    "throw up cap/hat", "hands up (both hands)", "cross arms", "arm circles", "arm swings", "running on the spot",
    "butt kicks (kick backward)", "cross toe touch", "side kick", "yawn", "stretch oneself", "blow nose",
    "hit other person with something", "wield knife towards other person", "knock over other person (hit with body)",
    "grab other person's stuff", "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person", "follow other person",
    "whisper in other person's ear", "exchange things with other person", "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)


class NTUBenchmark(NamedTuple):
    """The facts that differ between the NTU benchmarks."""

    release: str          # "ntu60" or "ntu120": the missing-skeleton list and the sample range
    num_classes: int
    pickle: str           # PYSKL's annotation pickle of the release
    protocol: str         # the pickle's split prefix: "xsub", "xview" or "xset"


_BENCHMARKS = {b: NTUBenchmark(b.split("-")[0], 60 if b.startswith("ntu60") else 120,
                               f"{b.split('-')[0]}_3danno.pkl", b.split("-")[1]) for b in NTU_BENCHMARKS}


def _expected(pkl: str) -> str:
    return ("either the raw NTU RGB+D skeleton files `*.skeleton` (any folder depth, e.g. "
            f"`nturgb+d_skeletons/S001C001P001R001A001.skeleton`), or the PYSKL annotation pickle `{pkl}`")


def _origin(pkl: str) -> str:
    return ("NTU RGB+D / NTU RGB+D 120 (ROSE Lab, NTU Singapore): request the skeleton archives "
            "(nturgb+d_skeletons.zip, nturgbd_skeletons_s018_to_s032.zip) at "
            "https://rose1.ntu.edu.sg/dataset/actionRecognition/ ; PYSKL's pre-processed "
            f"{pkl} is at https://download.openmmlab.com/mmaction/pyskl/data/nturgbd/{pkl}")


@register_source
class NTUSource(DatasetSource):
    """NTU RGB+D 60 (xsub, xview) and 120 (xsub, xset), 3-D Kinect v2 joints.

    Either every ``*.skeleton`` file under ``root`` (any depth; the official split rule of
    :func:`~pyg_sparse_stgcn.data.readers.ntu_subset`, samples of the missing-skeleton lists skipped and
    listed, NTU-120-only samples left out of the NTU-60 benchmarks) or PYSKL's annotation pickle (splits
    ``<protocol>_train`` / ``<protocol>_val``). Options: ``ann_file``, ``max_bodies`` (default 2).
    """

    names = NTU_BENCHMARKS
    #: Per benchmark: release, classes, PYSKL pickle, pickle split prefix.
    benchmarks: ClassVar[dict[str, NTUBenchmark]] = _BENCHMARKS
    variants = {b: {"num_classes": f.num_classes, "expected": _expected(f.pickle), "origin": _origin(f.pickle)}
                for b, f in _BENCHMARKS.items()}
    #: Per benchmark: its class names in label order (NTU-60: A1 ... A60, NTU-120: A1 ... A120).
    class_names: ClassVar[dict[str, tuple[str, ...]]] = {b: NTU120_CLASSES[: f.num_classes]
                                                          for b, f in _BENCHMARKS.items()}
    layout = "nturgb+d"
    dims = 3
    pipeline_kind = "3d"
    clip_len = 100
    num_person = 2
    option_names = ("ann_file", "max_bodies")

    @property
    def benchmark(self) -> NTUBenchmark:
        """The facts of this benchmark."""
        return self.benchmarks[self.name]

    def locate(self) -> None:
        self.pickle = self.locate_pickle((self.benchmark.pickle,))
        self.files: list[Path] = []
        if self.pickle is None:
            if self.root.is_dir():
                self.files = find_files(self.root, "*.skeleton")
            if not self.files:
                raise self.not_found()

    def items(self, split: str) -> Iterator[Item]:
        if self.pickle is not None:
            yield from pyskl_items(self.pickle, f"{self.benchmark.protocol}_{split}", self.layout)
            return
        release = self.benchmark.release
        max_bodies = int(self.options.get("max_bodies", 2))
        for f in self.files:
            stem = f.name.split(".")[0]
            try:
                subset = ntu_subset(parse_ntu_name(stem), self.name)
            except ValueError as e:
                yield Item(stem, str(f), skip=f"not an NTU sample name: {e}")
                continue
            if subset != split:
                continue  # the other split, or an NTU-120 sample outside the NTU-60 benchmarks
            if is_missing_skeleton(stem, release):
                yield Item(stem, str(f), skip=f"on the official {release} missing-skeleton list")
            else:
                yield Item(stem, str(f), partial(read_ntu_skeleton, f, max_bodies=max_bodies))
