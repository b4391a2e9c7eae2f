"""Skeleton data: native readers, safe loading, samples."""
from .sample import SkeletonData, SkeletonFormatError, SkeletonSample

__all__ = ["SkeletonData", "SkeletonFormatError", "SkeletonSample"]
