"""The CLI's modes: one module per mode, each a :class:`~.base.Mode` subclass registered with
:func:`~.base.register_mode`. ``mode_names()`` (the ``--mode`` choices) lists them in registration order."""
import importlib

from .base import COMMON_READS, MODES, Invocation, Mode, get_mode, mode_names, register_mode

__all__ = ["Mode", "Invocation", "register_mode", "get_mode", "mode_names", "MODES", "COMMON_READS"]

#: The modules that define the shipped modes, in the order ``--mode`` lists them.
MODE_MODULES = ("train", "prune", "lottery", "generate", "ensemble", "evaluate", "analyze", "predict")


def _load_all() -> None:
    """Import every mode module (each registers its mode); idempotent."""
    for name in MODE_MODULES:
        importlib.import_module(f"{__name__}.{name}")


_load_all()
