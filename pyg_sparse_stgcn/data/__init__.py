"""Skeleton data: native readers, safe loading, samples, transforms, named datasets and the loader."""
from .datasets import (
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    SkeletonDataset,
    available_datasets,
    build_dataset,
    check_dataset,
    dataset_info,
    register_source,
)
from .loader import SkeletonBatch, SkeletonLoader, collate, collate_skeletons, make_loader
from .sample import SkeletonData, SkeletonFormatError, SkeletonSample
from .transforms import (
    FEATS,
    STREAMS,
    Compose,
    FormatGCNInput,
    GenSkeFeat,
    JointToBone,
    PadTo,
    PreNormalize2D,
    PreNormalize3D,
    RandomGaussianNoise,
    RandomRot,
    RandomScale,
    ToMotion,
    UniformSample,
    UniformSampleFrames,
    build_pipeline,
    register_transform,
    standard_pipeline,
)

__all__ = ["SkeletonData", "SkeletonFormatError", "SkeletonSample",
           "SkeletonDataset", "DatasetInfo", "DATASETS", "DatasetNotFoundError", "build_dataset",
           "dataset_info", "check_dataset", "available_datasets",
           "register_source", "SkeletonBatch", "SkeletonLoader", "collate", "collate_skeletons", "make_loader",
           "Compose", "PreNormalize3D", "PreNormalize2D", "UniformSampleFrames", "UniformSample", "PadTo",
           "RandomRot", "RandomScale", "RandomGaussianNoise", "JointToBone", "ToMotion", "GenSkeFeat",
           "FormatGCNInput", "build_pipeline", "standard_pipeline", "register_transform", "FEATS", "STREAMS"]
