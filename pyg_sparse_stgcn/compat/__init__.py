"""Compatibility with other code bases (PYSKL / mmaction2 checkpoints)."""
from .pyskl import convert_pyskl_state_dict, load_checkpoint_state, load_pyskl_stgcn

__all__ = ["load_pyskl_stgcn", "load_checkpoint_state", "convert_pyskl_state_dict"]
