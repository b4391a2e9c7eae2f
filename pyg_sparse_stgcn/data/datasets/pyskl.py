"""``pyskl``: any PYSKL / mmaction2 annotation pickle, with the split names of the file."""
from __future__ import annotations

from .pickled import PysklPickleSource
from .registry import register_source

__all__ = ["PysklSource"]


@register_source
class PysklSource(PysklPickleSource):
    """Any PYSKL ``{split, annotations}`` pickle; classes and layout come from the file."""

    names = ("pyskl",)
    num_classes = None
    layout = None
    clip_len = 100
    num_person = 2
    any_split = True
    expected = ("one PYSKL / mmaction2 annotation pickle `{split, annotations}` (pass ann_file= or keep exactly "
                "one .pkl under root); split = any key of its 'split' dict")
    origin = "PYSKL pre-processed annotations: https://github.com/kennymckormick/pyskl/blob/main/tools/data/README.md"
