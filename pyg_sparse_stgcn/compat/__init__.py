"""Compatibility with other code bases (PYSKL / mmaction2 checkpoints)."""
from .pyskl import (
           PYSKL_MODELS,
           convert_pyskl_state_dict,
           detect_backbone,
           load_checkpoint_state,
           load_pyskl,
           load_pyskl_stgcn,
)

__all__ = ["load_pyskl", "load_pyskl_stgcn", "load_checkpoint_state", "convert_pyskl_state_dict", "PYSKL_MODELS",
           "detect_backbone"]
