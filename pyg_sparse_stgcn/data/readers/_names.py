"""Parsing of dataset sample names such as ``S001C002P003R001A010`` or ``a01_s01_e00_v01``."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def parse_sample_name(name: str | os.PathLike, pattern: re.Pattern, make: type[T], dataset: str,
                      expected: str, example: str, *, whole_stem: bool = True) -> T:
    """Match ``pattern`` against the file name of ``name`` (its stem when ``whole_stem``, else its start) and
    build ``make(*ints)`` from the groups; a name that does not match raises :class:`ValueError` naming the
    dataset, the expected pattern and an example."""
    base = Path(name).name
    m = pattern.fullmatch(base.split(".")[0]) if whole_stem else pattern.match(base)
    if m is None:
        raise ValueError(f"{name!r} is not an {dataset} sample name; expected {expected}, e.g. {example}")
    return make(*(int(g) for g in m.groups()))
