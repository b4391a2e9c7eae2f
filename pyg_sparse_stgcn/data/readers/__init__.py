"""Native skeleton readers: each returns a :class:`~pyg_sparse_stgcn.data.SkeletonSample` and raises
:class:`~pyg_sparse_stgcn.data.SkeletonFormatError`
(naming the file and line / JSON path / key) on bad input."""
from .demo import DEMO_CLASSES, generate_demo
from .kinetics import KineticsLabels, read_kinetics_json, read_kinetics_labels
from .msr import (
    MSR_ACTION3D_CLASSES,
    MSR_ACTION_SETS,
    MSR_EXCLUDED_SEQUENCES,
    MSR_TO_KINECT_V1,
    MSRName,
    msr_action3d_split,
    parse_msr_name,
    read_msr_action3d,
    read_msr_file_list,
)
from .npy import read_skeleton_npy
from .ntu import (
    NTU60_MISSING_SKELETONS,
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU60_XVIEW_TRAIN_CAMERAS,
    NTU120_MISSING_SKELETONS,
    NTU120_XSET_TRAIN_SETUPS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    NTU_BENCHMARKS,
    NTUName,
    is_missing_skeleton,
    ntu_split,
    ntu_split_names,
    ntu_subset,
    parse_ntu_name,
    read_ntu_skeleton,
)
from .nwucla import (
    NWUCLA_ACTION_TO_LABEL,
    NWUCLA_CLASSES,
    NWUCLA_TRAIN_VIEWS,
    NWUCLAName,
    nwucla_split,
    parse_nwucla_name,
    read_nwucla_index,
    read_nwucla_json,
)
from .pyskl import (
    PysklItem,
    infer_layout,
    iter_pyskl_annotations,
    iter_pyskl_items,
    pyskl_splits,
    read_pyskl_annotations,
)
from .utkinect import UTKINECT_CLASSES, read_utkinect, read_utkinect_labels, utkinect_split

__all__ = [
    "KineticsLabels", "read_kinetics_json", "read_kinetics_labels",
    "NTU60_MISSING_SKELETONS", "NTU60_XSUB_TRAIN_SUBJECTS", "NTU60_XVIEW_TRAIN_CAMERAS",
    "NTU120_MISSING_SKELETONS", "NTU120_XSET_TRAIN_SETUPS", "NTU120_XSUB_TRAIN_SUBJECTS", "NTU_BENCHMARKS",
    "NTUName", "is_missing_skeleton",
    "ntu_split", "ntu_split_names", "ntu_subset", "parse_ntu_name", "read_ntu_skeleton",
    "read_skeleton_npy",
    "NWUCLA_ACTION_TO_LABEL", "NWUCLA_CLASSES", "NWUCLA_TRAIN_VIEWS", "NWUCLAName", "nwucla_split",
    "parse_nwucla_name", "read_nwucla_index", "read_nwucla_json",
    "PysklItem", "infer_layout", "iter_pyskl_annotations", "iter_pyskl_items", "pyskl_splits",
    "read_pyskl_annotations",
    "MSR_ACTION3D_CLASSES", "MSR_ACTION_SETS", "MSR_EXCLUDED_SEQUENCES", "MSR_TO_KINECT_V1", "MSRName",
    "msr_action3d_split", "parse_msr_name", "read_msr_action3d", "read_msr_file_list",
    "UTKINECT_CLASSES", "read_utkinect", "read_utkinect_labels", "utkinect_split",
    "DEMO_CLASSES", "generate_demo",
]
