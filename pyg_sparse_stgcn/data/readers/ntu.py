"""NTU RGB+D 60/120 raw ``.skeleton`` files (Kinect v2), the official split protocols and the official
lists of samples with missing skeletons.

File layout (FORMATS.md §2.1): line 1 the frame count; per frame a body count (0 is legal), then per body
one line of 10 values (``bodyID`` a 64-bit tracking id, ..., ``trackingState``), the joint count (25) and 25
lines of 12 values ``x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ
trackingState``. Lines end in CRLF. The file name ``SsssCcccPpppRrrrAaaa`` gives setup, camera, performer,
replication and the 1-based action.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sample import SkeletonFormatError, SkeletonSample
from ._names import parse_sample_name

__all__ = [
    "read_ntu_skeleton", "parse_ntu_name", "NTUName", "ntu_split", "ntu_subset", "ntu_split_names",
    "is_missing_skeleton",
    "NTU60_MISSING_SKELETONS", "NTU120_MISSING_SKELETONS", "NTU60_XSUB_TRAIN_SUBJECTS",
    "NTU120_XSUB_TRAIN_SUBJECTS", "NTU60_XVIEW_TRAIN_CAMERAS", "NTU120_XSET_TRAIN_SETUPS", "NTU_BENCHMARKS",
]

#: Performers whose samples form the NTU-60 cross-subject training set (all others are validation).
NTU60_XSUB_TRAIN_SUBJECTS: frozenset[int] = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
#: Performers of the NTU-120 cross-subject training set (53 of 106).
NTU120_XSUB_TRAIN_SUBJECTS: frozenset[int] = NTU60_XSUB_TRAIN_SUBJECTS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92,
     93, 94, 95, 97, 98, 100, 103))
#: Cameras of the NTU-60 cross-view training set (camera 1 is validation).
NTU60_XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset((2, 3))
#: Setups of the NTU-120 cross-setup training set: the even setup ids (odd ones are validation).
NTU120_XSET_TRAIN_SETUPS: frozenset[int] = frozenset(range(2, 33, 2))
#: Benchmark names accepted by :func:`ntu_split` and :func:`ntu_split_names`.
NTU_BENCHMARKS = ("ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset")

# The official list "NTU_RGBD120_samples_with_missing_skeletons.txt" (shahroudy/NTURGB-D, 535 names). Its
# entries from setups 1-17 are exactly the NTU-60 list "NTU_RGBD_samples_with_missing_skeletons.txt" (302).
_MISSING_120 = """
    S001C002P005R002A008 S001C002P006R001A008 S001C003P002R001A055 S001C003P002R002A012 S001C003P005R002A004
    S001C003P005R002A005 S001C003P005R002A006 S001C003P006R002A008 S002C002P011R002A030 S002C003P008R001A020
    S002C003P010R002A010 S002C003P011R002A007 S002C003P011R002A011 S002C003P014R002A007 S003C001P019R001A055
    S003C002P002R002A055 S003C002P018R002A055 S003C003P002R001A055 S003C003P016R001A055 S003C003P018R002A024
    S004C002P003R001A013 S004C002P008R001A009 S004C002P020R001A003 S004C002P020R001A004 S004C002P020R001A012
    S004C002P020R001A020 S004C002P020R001A021 S004C002P020R001A036 S005C002P004R001A001 S005C002P004R001A003
    S005C002P010R001A016 S005C002P010R001A017 S005C002P010R001A048 S005C002P010R001A049 S005C002P016R001A009
    S005C002P016R001A010 S005C002P018R001A003 S005C002P018R001A028 S005C002P018R001A029 S005C003P016R002A009
    S005C003P018R002A013 S005C003P021R002A057 S006C001P001R002A055 S006C002P007R001A005 S006C002P007R001A006
    S006C002P016R001A043 S006C002P016R001A051 S006C002P016R001A052 S006C002P022R001A012 S006C002P023R001A020
    S006C002P023R001A021 S006C002P023R001A022 S006C002P023R001A023 S006C002P024R001A018 S006C002P024R001A019
    S006C003P001R002A013 S006C003P007R002A009 S006C003P007R002A010 S006C003P007R002A025 S006C003P016R001A060
    S006C003P017R001A055 S006C003P017R002A013 S006C003P017R002A014 S006C003P017R002A015 S006C003P022R002A013
    S007C001P018R002A050 S007C001P025R002A051 S007C001P028R001A050 S007C001P028R001A051 S007C001P028R001A052
    S007C002P008R002A008 S007C002P015R002A055 S007C002P026R001A008 S007C002P026R001A009 S007C002P026R001A010
    S007C002P026R001A011 S007C002P026R001A012 S007C002P026R001A050 S007C002P027R001A011 S007C002P027R001A013
    S007C002P028R002A055 S007C003P007R001A002 S007C003P007R001A004 S007C003P019R001A060 S007C003P027R002A001
    S007C003P027R002A002 S007C003P027R002A003 S007C003P027R002A004 S007C003P027R002A005 S007C003P027R002A006
    S007C003P027R002A007 S007C003P027R002A008 S007C003P027R002A009 S007C003P027R002A010 S007C003P027R002A011
    S007C003P027R002A012 S007C003P027R002A013 S008C002P001R001A009 S008C002P001R001A010 S008C002P001R001A014
    S008C002P001R001A015 S008C002P001R001A016 S008C002P001R001A018 S008C002P001R001A019 S008C002P008R002A059
    S008C002P025R001A060 S008C002P029R001A004 S008C002P031R001A005 S008C002P031R001A006 S008C002P032R001A018
    S008C002P034R001A018 S008C002P034R001A019 S008C002P035R001A059 S008C002P035R002A002 S008C002P035R002A005
    S008C003P007R001A009 S008C003P007R001A016 S008C003P007R001A017 S008C003P007R001A018 S008C003P007R001A019
    S008C003P007R001A020 S008C003P007R001A021 S008C003P007R001A022 S008C003P007R001A023 S008C003P007R001A025
    S008C003P007R001A026 S008C003P007R001A028 S008C003P007R001A029 S008C003P007R002A003 S008C003P008R002A050
    S008C003P025R002A002 S008C003P025R002A011 S008C003P025R002A012 S008C003P025R002A016 S008C003P025R002A020
    S008C003P025R002A022 S008C003P025R002A023 S008C003P025R002A030 S008C003P025R002A031 S008C003P025R002A032
    S008C003P025R002A033 S008C003P025R002A049 S008C003P025R002A060 S008C003P031R001A001 S008C003P031R002A004
    S008C003P031R002A014 S008C003P031R002A015 S008C003P031R002A016 S008C003P031R002A017 S008C003P032R002A013
    S008C003P033R002A001 S008C003P033R002A011 S008C003P033R002A012 S008C003P034R002A001 S008C003P034R002A012
    S008C003P034R002A022 S008C003P034R002A023 S008C003P034R002A024 S008C003P034R002A044 S008C003P034R002A045
    S008C003P035R002A016 S008C003P035R002A017 S008C003P035R002A018 S008C003P035R002A019 S008C003P035R002A020
    S008C003P035R002A021 S009C002P007R001A001 S009C002P007R001A003 S009C002P007R001A014 S009C002P008R001A014
    S009C002P015R002A050 S009C002P016R001A002 S009C002P017R001A028 S009C002P017R001A029 S009C003P017R002A030
    S009C003P025R002A054 S010C001P007R002A020 S010C002P016R002A055 S010C002P017R001A005 S010C002P017R001A018
    S010C002P017R001A019 S010C002P019R001A001 S010C002P025R001A012 S010C003P007R002A043 S010C003P008R002A003
    S010C003P016R001A055 S010C003P017R002A055 S011C001P002R001A008 S011C001P018R002A050 S011C002P008R002A059
    S011C002P016R002A055 S011C002P017R001A020 S011C002P017R001A021 S011C002P018R002A055 S011C002P027R001A009
    S011C002P027R001A010 S011C002P027R001A037 S011C003P001R001A055 S011C003P002R001A055 S011C003P008R002A012
    S011C003P015R001A055 S011C003P016R001A055 S011C003P019R001A055 S011C003P025R001A055 S011C003P028R002A055
    S012C001P019R001A060 S012C001P019R002A060 S012C002P015R001A055 S012C002P017R002A012 S012C002P025R001A060
    S012C003P008R001A057 S012C003P015R001A055 S012C003P015R002A055 S012C003P016R001A055 S012C003P017R002A055
    S012C003P018R001A055 S012C003P018R001A057 S012C003P019R002A011 S012C003P019R002A012 S012C003P025R001A055
    S012C003P027R001A055 S012C003P027R002A009 S012C003P028R001A035 S012C003P028R002A055 S013C001P015R001A054
    S013C001P017R002A054 S013C001P018R001A016 S013C001P028R001A040 S013C002P015R001A054 S013C002P017R002A054
    S013C002P028R001A040 S013C003P008R002A059 S013C003P015R001A054 S013C003P017R002A054 S013C003P025R002A022
    S013C003P027R001A055 S013C003P028R001A040 S014C001P027R002A040 S014C002P015R001A003 S014C002P019R001A029
    S014C002P025R002A059 S014C002P027R002A040 S014C002P039R001A050 S014C003P007R002A059 S014C003P015R002A055
    S014C003P019R002A055 S014C003P025R001A048 S014C003P027R002A040 S015C001P008R002A040 S015C001P016R001A055
    S015C001P017R001A055 S015C001P017R002A055 S015C002P007R001A059 S015C002P008R001A003 S015C002P008R001A004
    S015C002P008R002A040 S015C002P015R001A002 S015C002P016R001A001 S015C002P016R002A055 S015C003P008R002A007
    S015C003P008R002A011 S015C003P008R002A012 S015C003P008R002A028 S015C003P008R002A040 S015C003P025R002A012
    S015C003P025R002A017 S015C003P025R002A020 S015C003P025R002A021 S015C003P025R002A030 S015C003P025R002A033
    S015C003P025R002A034 S015C003P025R002A036 S015C003P025R002A037 S015C003P025R002A044 S016C001P019R002A040
    S016C001P025R001A011 S016C001P025R001A012 S016C001P025R001A060 S016C001P040R001A055 S016C001P040R002A055
    S016C002P008R001A011 S016C002P019R002A040 S016C002P025R002A012 S016C003P008R001A011 S016C003P008R002A002
    S016C003P008R002A003 S016C003P008R002A004 S016C003P008R002A006 S016C003P008R002A009 S016C003P019R002A040
    S016C003P039R002A016 S017C001P016R002A031 S017C002P007R001A013 S017C002P008R001A009 S017C002P015R001A042
    S017C002P016R002A031 S017C002P016R002A055 S017C003P007R002A013 S017C003P008R001A059 S017C003P016R002A031
    S017C003P017R001A055 S017C003P020R001A059 S019C001P046R001A075 S019C002P042R001A094 S019C002P042R001A095
    S019C002P042R001A096 S019C002P042R001A097 S019C002P042R001A098 S019C002P042R001A099 S019C002P042R001A100
    S019C002P042R001A101 S019C002P042R001A102 S019C002P049R002A074 S019C002P049R002A079 S019C002P051R001A061
    S019C003P046R001A061 S019C003P046R002A061 S019C003P046R002A062 S020C002P041R001A063 S020C002P041R001A064
    S020C002P044R001A063 S020C002P044R001A064 S020C002P044R001A066 S020C002P044R001A084 S020C002P054R001A081
    S021C001P059R001A108 S021C002P055R001A065 S021C002P055R001A092 S021C002P055R001A093 S021C002P057R001A064
    S021C002P058R001A063 S021C002P058R001A064 S021C002P059R001A074 S021C002P059R001A075 S021C002P059R001A076
    S021C002P059R001A077 S021C002P059R001A078 S021C002P059R001A079 S021C003P057R002A078 S021C003P057R002A079
    S021C003P057R002A094 S022C002P061R001A113 S022C003P061R002A061 S022C003P061R002A062 S022C003P063R002A061
    S022C003P063R002A062 S022C003P063R002A063 S022C003P063R002A064 S022C003P063R002A078 S022C003P064R002A061
    S022C003P064R002A062 S022C003P065R002A061 S022C003P065R002A062 S022C003P065R002A119 S022C003P067R002A064
    S023C002P055R001A114 S023C002P055R002A092 S023C002P059R001A075 S023C002P063R001A075 S023C003P055R002A093
    S023C003P055R002A094 S023C003P061R002A061 S023C003P064R001A092 S024C001P063R001A109 S024C002P062R002A074
    S024C002P067R001A100 S024C002P067R001A101 S024C002P067R001A102 S024C002P067R001A103 S024C003P062R002A074
    S024C003P063R002A061 S024C003P063R002A062 S025C001P055R002A119 S025C003P056R002A119 S025C003P059R002A115
    S026C002P044R001A061 S026C002P044R001A062 S026C002P070R001A092 S026C003P069R002A075 S026C003P074R002A061
    S026C003P074R002A062 S026C003P075R001A117 S026C003P075R001A118 S027C001P082R001A063 S027C002P044R002A092
    S027C002P079R001A061 S027C002P079R001A062 S027C002P079R001A063 S027C002P079R001A064 S027C002P082R001A092
    S027C002P084R001A061 S027C002P084R001A062 S027C002P086R001A061 S027C003P041R002A087 S027C003P080R002A061
    S027C003P082R002A061 S027C003P082R002A062 S027C003P086R002A061 S027C003P086R002A062 S028C001P087R001A061
    S028C002P041R001A091 S028C002P087R001A061 S028C003P042R002A064 S028C003P046R002A063 S028C003P046R002A066
    S028C003P046R002A067 S028C003P046R002A068 S028C003P046R002A069 S028C003P046R002A070 S028C003P046R002A071
    S028C003P046R002A072 S028C003P046R002A074 S028C003P046R002A075 S028C003P046R002A077 S028C003P046R002A081
    S028C003P046R002A082 S028C003P046R002A083 S028C003P046R002A084 S028C003P048R002A061 S028C003P048R002A062
    S028C003P048R002A073 S028C003P073R002A073 S028C003P087R001A061 S028C003P087R002A061 S028C003P087R002A062
    S029C001P043R002A092 S029C001P044R002A092 S029C001P048R001A073 S029C001P089R001A063 S029C002P041R001A074
    S029C002P041R001A084 S029C002P044R001A091 S029C002P048R001A075 S029C002P048R001A081 S029C002P074R001A081
    S029C002P074R001A095 S029C002P074R001A096 S029C002P080R001A091 S029C002P088R001A066 S029C002P089R001A065
    S029C002P090R001A067 S029C003P008R002A065 S029C003P008R002A067 S029C003P041R001A089 S029C003P043R001A080
    S029C003P043R001A092 S029C003P043R001A105 S029C003P043R002A085 S029C003P043R002A086 S029C003P044R002A106
    S029C003P048R001A065 S029C003P048R002A073 S029C003P048R002A074 S029C003P048R002A075 S029C003P048R002A076
    S029C003P048R002A092 S029C003P048R002A094 S029C003P051R002A073 S029C003P051R002A074 S029C003P051R002A075
    S029C003P051R002A076 S029C003P051R002A077 S029C003P051R002A078 S029C003P051R002A079 S029C003P051R002A080
    S029C003P051R002A081 S029C003P051R002A082 S029C003P051R002A083 S029C003P051R002A084 S029C003P051R002A085
    S029C003P051R002A086 S029C003P051R002A110 S029C003P067R001A098 S029C003P074R002A110 S029C003P080R002A066
    S029C003P088R002A078 S029C003P089R001A075 S029C003P089R002A061 S029C003P089R002A062 S029C003P089R002A063
    S029C003P090R002A092 S029C003P090R002A095 S030C002P091R002A091 S030C002P091R002A092 S030C002P091R002A093
    S030C002P091R002A094 S030C002P091R002A095 S030C002P091R002A096 S030C002P091R002A097 S030C002P091R002A098
    S030C002P091R002A099 S030C002P091R002A100 S030C002P091R002A101 S030C002P091R002A102 S030C002P091R002A103
    S030C002P091R002A104 S030C002P091R002A105 S030C003P044R002A065 S030C003P044R002A081 S030C003P044R002A084
    S031C002P042R001A111 S031C002P051R001A061 S031C002P051R001A062 S031C002P067R001A067 S031C002P067R001A068
    S031C002P067R001A069 S031C002P067R001A070 S031C002P067R001A071 S031C002P067R001A072 S031C002P082R001A075
    S031C002P082R002A117 S031C002P097R001A061 S031C002P097R001A062 S031C003P043R002A074 S031C003P043R002A075
    S031C003P044R002A094 S031C003P082R002A067 S031C003P082R002A068 S031C003P082R002A069 S031C003P082R002A070
    S031C003P082R002A071 S031C003P082R002A072 S031C003P082R002A073 S031C003P082R002A075 S031C003P082R002A076
    S031C003P082R002A077 S031C003P082R002A084 S031C003P082R002A085 S031C003P082R002A086 S032C002P067R001A092
    S032C003P067R002A066 S032C003P067R002A067 S032C003P067R002A075 S032C003P067R002A076 S032C003P067R002A077
"""
#: The 535 NTU-120 samples with missing or incomplete skeletons (official list); ignore them.
NTU120_MISSING_SKELETONS: frozenset[str] = frozenset(_MISSING_120.split())
#: The 302 NTU-60 samples with missing skeletons (official list; setups 1-17 of the NTU-120 list).
NTU60_MISSING_SKELETONS: frozenset[str] = frozenset(n for n in NTU120_MISSING_SKELETONS if int(n[1:4]) <= 17)

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
NUM_JOINTS = 25


@dataclass(frozen=True)
class NTUName:
    """The ids encoded in an NTU sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based as in the name)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """0-based class index (``action - 1``)."""
        return self.action - 1


def parse_ntu_name(name: str | os.PathLike) -> NTUName:
    """Parse ``SsssCcccPpppRrrrAaaa`` (a sample name, file name or path; the extension is ignored).

    Raises:
        ValueError: If the name does not follow the pattern.
    """
    return parse_sample_name(name, _NAME_RE, NTUName, "NTU", "SsssCcccPpppRrrrAaaa", "S001C002P003R001A010")


def is_missing_skeleton(name: str | os.PathLike, dataset: str = "ntu120") -> bool:
    """Whether ``name`` is on the official missing-skeleton list of ``dataset`` (``'ntu60'`` or
    ``'ntu120'``)."""
    if dataset not in ("ntu60", "ntu120"):
        raise ValueError(f"dataset must be 'ntu60' or 'ntu120', got {dataset!r}")
    stem = Path(name).name.split(".")[0]
    return stem in (NTU60_MISSING_SKELETONS if dataset == "ntu60" else NTU120_MISSING_SKELETONS)


def ntu_subset(n: NTUName, benchmark: str) -> str | None:
    """The official subset of a parsed sample name, by the benchmark's rule alone (the missing-skeleton
    lists are not consulted): ``'train'``, ``'val'``, or :obj:`None` for an NTU-120-only sample (setup > 17 or
    action > 60) in an NTU-60 benchmark. This is the one place the split rules are written down.

    Args:
        n (NTUName): The parsed name (:func:`parse_ntu_name`).
        benchmark (str): One of :data:`NTU_BENCHMARKS` (see :func:`ntu_split`).
    """
    if benchmark not in NTU_BENCHMARKS:
        raise ValueError(f"unknown NTU benchmark {benchmark!r}; valid: {', '.join(NTU_BENCHMARKS)}")
    if benchmark.startswith("ntu60-") and (n.setup > 17 or n.action > 60):
        return None
    if benchmark == "ntu60-xsub":
        train = n.performer in NTU60_XSUB_TRAIN_SUBJECTS
    elif benchmark == "ntu60-xview":
        train = n.camera in NTU60_XVIEW_TRAIN_CAMERAS
    elif benchmark == "ntu120-xsub":
        train = n.performer in NTU120_XSUB_TRAIN_SUBJECTS
    else:
        train = n.setup in NTU120_XSET_TRAIN_SETUPS
    return "train" if train else "val"


def ntu_split(name: str | os.PathLike, benchmark: str) -> str | None:
    """The official subset of one sample: ``'train'``, ``'val'``, or :obj:`None` when the benchmark does not
    contain it (an NTU-120-only sample in an NTU-60 benchmark, or a sample on the missing-skeleton list).

    Args:
        name (str or os.PathLike): Sample name, file name or path.
        benchmark (str): One of ``'ntu60-xsub'`` (performers :data:`NTU60_XSUB_TRAIN_SUBJECTS` train),
            ``'ntu60-xview'`` (cameras 2 and 3 train, camera 1 val), ``'ntu120-xsub'``
            (:data:`NTU120_XSUB_TRAIN_SUBJECTS`) or ``'ntu120-xset'`` (even setup ids train).
    """
    if benchmark not in NTU_BENCHMARKS:
        raise ValueError(f"unknown NTU benchmark {benchmark!r}; valid: {', '.join(NTU_BENCHMARKS)}")
    subset = ntu_subset(parse_ntu_name(name), benchmark)
    if subset is None or is_missing_skeleton(name, "ntu60" if benchmark.startswith("ntu60-") else "ntu120"):
        return None
    return subset


def ntu_split_names(names: Iterable[str | os.PathLike], benchmark: str) -> dict[str, list[str]]:
    """Split sample names into ``{'train': [...], 'val': [...]}`` for ``benchmark`` (see :func:`ntu_split`);
    names the benchmark does not contain are left out. The lists hold bare sample names, in input order."""
    out: dict[str, list[str]] = {"train": [], "val": []}
    for name in names:
        sub = ntu_split(name, benchmark)
        if sub is not None:
            out[sub].append(Path(name).name.split(".")[0])
    return out


class _Lines:
    """The lines of a text file with 1-based, error-reporting access."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path, self.lines = path, lines

    def get(self, i: int, what: str) -> str:
        if i >= len(self.lines):
            raise SkeletonFormatError(self.path, f"file ends early: expected {what}", where=f"line {i + 1}")
        return self.lines[i]

    def int(self, i: int, what: str) -> int:
        s = self.get(i, what).strip()
        try:
            v = int(s)
        except ValueError:
            raise SkeletonFormatError(self.path, f"expected {what} (an int), got {s[:40]!r}",
                                      where=f"line {i + 1}") from None
        if v < 0:
            raise SkeletonFormatError(self.path, f"{what} must be >= 0, got {v}", where=f"line {i + 1}")
        return v


def _locate_bad_joint_line(lines: _Lines, starts: list[int]) -> None:
    for s in starts:
        for i in range(s, s + NUM_JOINTS):
            fields = lines.lines[i].split()
            if len(fields) != 12:
                raise SkeletonFormatError(lines.path, f"joint line must hold 12 values, got {len(fields)}",
                                          where=f"line {i + 1}")
            for k, f in enumerate(fields):
                try:
                    float(f)
                except ValueError:
                    raise SkeletonFormatError(lines.path, f"value {f!r} (column {k + 1}) is not a number",
                                              where=f"line {i + 1}") from None


def read_ntu_skeleton(path: str | os.PathLike, max_bodies: int = 2,
                      with_extras: bool = False) -> SkeletonSample:
    r"""Read one NTU RGB+D ``.skeleton`` file.

    Bodies are followed across frames by their 64-bit ``bodyID`` (a *track*). Tracks are placed into at most
    ``max_bodies`` person slots: each track goes into the first slot it does not overlap in time, so a person
    whose id changes mid-sequence continues in the same slot. When the file holds more tracks than
    ``max_bodies`` (spurious Kinect bodies), tracks are taken in order of decreasing motion energy

    .. math::
        E = \sum_{v, c} \operatorname{Var}_t\big(x_{t,v,c}\big)

    (variance over the frames where the track is present, as the SGN/CTR-GCN denoising ranks actors) and
    tracks that find no free slot are dropped (listed in ``meta['dropped_body_ids']``); otherwise tracks are
    taken in order of first appearance, which keeps the file's body order. The spread-ratio denoising of those
    pipelines is not applied. Frames with 0 bodies stay in the sequence as zeros.

    Args:
        path (str or os.PathLike): The ``.skeleton`` file (CRLF or LF line endings).
        max_bodies (int, optional): Person slots :math:`M_{max}` (default: :obj:`2`).
        with_extras (bool, optional): Also return, in ``meta``, ``tracking_state`` :math:`(M, T, V)` int8,
            ``depth_xy`` and ``color_xy`` :math:`(M, T, V, 2)` pixel positions and ``orientation``
            :math:`(M, T, V, 4)` quaternions ``(w, x, y, z)`` (default: :obj:`False`).

    Returns:
        SkeletonSample: ``keypoint`` :math:`(M, T, 25, 3)` camera-space ``x, y, z`` in metres with
        :math:`M` = the number of occupied slots (PYSKL keeps no empty persons); ``layout='nturgb+d'``;
        ``frame_dir`` the file stem; ``label`` = action - 1 when the name follows ``SsssCcccPpppRrrrAaaa``
        (else :obj:`None`); ``meta`` holds ``setup, camera, performer, replication, action``,
        ``body_ids`` (per slot, the ids placed there), ``dropped_body_ids`` and ``bodies_per_frame``.

    Raises:
        SkeletonFormatError: On a truncated file, a non-integer count, a body line without 10 values, a joint
            count other than 25, a joint line without 12 numbers, data after the last frame, or a file in
            which no frame holds a body; the message names the file and the line.
    """
    if max_bodies < 1:
        raise ValueError(f"max_bodies must be >= 1, got {max_bodies}")
    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise SkeletonFormatError(p, "not an ASCII .skeleton text file", where=f"byte {e.start}") from None
    lines = _Lines(p, text.splitlines())
    T = lines.int(0, "the frame count")
    if T > len(lines.lines):
        raise SkeletonFormatError(p, f"frame count {T} exceeds the {len(lines.lines)} lines of the file",
                                  where="line 1")
    i = 1
    starts: list[int] = []           # first joint line of each body
    body_frame: list[int] = []       # frame of each body
    body_key: list[tuple[int, int]] = []  # (bodyID, duplicate index within the frame)
    bodies_per_frame = np.zeros(T, dtype=np.int16)
    for t in range(T):
        nb = lines.int(i, f"the body count of frame {t + 1}")
        bodies_per_frame[t] = nb
        i += 1
        seen: dict[int, int] = {}
        for _ in range(nb):
            fields = lines.get(i, "a body line").split()
            if len(fields) != 10:
                raise SkeletonFormatError(p, f"body line must hold 10 values, got {len(fields)}",
                                          where=f"line {i + 1}")
            try:
                bid = int(fields[0])
            except ValueError:
                raise SkeletonFormatError(p, f"bodyID {fields[0]!r} is not an integer",
                                          where=f"line {i + 1}") from None
            nj = lines.int(i + 1, "the joint count")
            if nj != NUM_JOINTS:
                raise SkeletonFormatError(p, f"joint count must be {NUM_JOINTS}, got {nj}",
                                          where=f"line {i + 2}")
            if i + 2 + nj > len(lines.lines):
                raise SkeletonFormatError(p, f"file ends early: expected {nj} joint lines",
                                          where=f"line {len(lines.lines) + 1}")
            starts.append(i + 2)
            body_frame.append(t)
            body_key.append((bid, seen.get(bid, 0)))
            seen[bid] = seen.get(bid, 0) + 1
            i += 2 + nj
    rest = [k for k in range(i, len(lines.lines)) if lines.lines[k].strip()]
    if rest:
        raise SkeletonFormatError(p, f"unexpected data after the last of {T} frames",
                                  where=f"line {rest[0] + 1}")
    if not starts:
        raise SkeletonFormatError(p, f"no frame holds a body ({T} frames); NTU lists such samples as "
                                  "'missing skeletons'", where="line 1")

    joint_lines = [ln for s in starts for ln in lines.lines[s:s + NUM_JOINTS]]
    try:  # numpy's C text parser; it also rejects lines whose column count differs
        vals = np.loadtxt(joint_lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        vals = None
    if vals is None or vals.shape != (len(joint_lines), 12):
        _locate_bad_joint_line(lines, starts)
        raise SkeletonFormatError(p, "joint lines are not 12 numbers each", where="joint lines")
    joints = vals.reshape(len(starts), NUM_JOINTS, 12)

    # group bodies into tracks by id
    tracks: dict[tuple[int, int], list[int]] = {}
    for b, key in enumerate(body_key):
        tracks.setdefault(key, []).append(b)
    keys = list(tracks)  # order of first appearance
    if len(keys) > max_bodies:
        energy = {k: float(joints[tracks[k], :, :3].var(axis=0).sum()) for k in keys}
        keys.sort(key=lambda k: -energy[k])  # stable: ties keep first appearance
    slot_frames: list[set[int]] = []
    slot_tracks: list[list[tuple[int, int]]] = []
    dropped: list[int] = []
    for k in keys:
        frames = {body_frame[b] for b in tracks[k]}
        for s in range(max_bodies):
            if s == len(slot_frames):
                slot_frames.append(set())
                slot_tracks.append([])
            if not frames & slot_frames[s]:
                slot_frames[s] |= frames
                slot_tracks[s].append(k)
                break
        else:
            dropped.append(k[0])
    M = len(slot_frames)
    slot_of_body = np.full(len(starts), -1, dtype=np.int64)
    for s, ks in enumerate(slot_tracks):
        for k in ks:
            slot_of_body[tracks[k]] = s
    keep = slot_of_body >= 0
    bf = np.asarray(body_frame, dtype=np.int64)
    keypoint = np.zeros((M, T, NUM_JOINTS, 3), dtype=np.float32)
    keypoint[slot_of_body[keep], bf[keep]] = joints[keep, :, :3]

    meta: dict = {"body_ids": [[k[0] for k in ks] for ks in slot_tracks], "dropped_body_ids": dropped,
                  "bodies_per_frame": bodies_per_frame, "source": str(p)}
    label = None
    try:
        name = parse_ntu_name(p)
    except ValueError:
        name = None
    if name is not None:
        label = name.label
        meta.update(setup=name.setup, camera=name.camera, performer=name.performer,
                    replication=name.replication, action=name.action)
    if with_extras:
        extras: tuple[tuple[str, slice | int, type], ...] = (
            ("depth_xy", slice(3, 5), np.float32), ("color_xy", slice(5, 7), np.float32),
            ("orientation", slice(7, 11), np.float32), ("tracking_state", 11, np.int8))
        for extra, cols, dtype in extras:
            arr: np.ndarray = np.zeros((M, T, NUM_JOINTS) + joints[0, 0, cols].shape, dtype=dtype)
            arr[slot_of_body[keep], bf[keep]] = joints[keep][:, :, cols]
            meta[extra] = arr
    return SkeletonSample(keypoint=keypoint, label=label, frame_dir=p.name.split(".")[0], total_frames=T,
                          layout="nturgb+d", meta=meta)
