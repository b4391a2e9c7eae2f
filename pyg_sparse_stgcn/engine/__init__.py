"""Training and evaluation engine: :class:`Trainer` (SGD + cosine, AMP, ``torch.compile``, DDP, atomic
checkpoints, exact resume), evaluation with multi-clip averaging and score fusion, metrics, run directories,
the typed configuration (:mod:`.config`), model builders (:mod:`.models`), the session that runs a mode
(:mod:`.session`) and the registered CLI modes (:mod:`.modes`)."""
from .config import (
    DEFAULTS,
    Config,
    ConfigError,
    apply_sets,
    load_recipe,
    load_toml,
    merge,
    parse_set,
    resolve_config,
    to_toml,
    validate_config,
)
from .distributed import DistributedBatchNorm, convert_sync_batchnorm, init_distributed
from .evaluate import evaluate, fuse_score_files, load_scores, predict, save_scores
from .metrics import (
    DEFAULT_FUSION,
    average_clips,
    classification_metrics,
    confusion_matrix,
    fuse_scores,
    mean_class_accuracy,
    top_k_accuracy,
)
from .rundir import RunDir, atomic_torch_save, atomic_write_json, atomic_write_text
from .trainer import EpochBudget, Trainer, TrainingInterrupted, resolve_device, seed_everything

__all__ = [
    "Trainer", "EpochBudget", "TrainingInterrupted", "seed_everything", "resolve_device",
    "evaluate", "predict", "save_scores", "load_scores", "fuse_score_files",
    "top_k_accuracy", "mean_class_accuracy", "confusion_matrix", "average_clips", "fuse_scores",
    "classification_metrics", "DEFAULT_FUSION",
    "RunDir", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
    "Config", "ConfigError", "resolve_config", "load_recipe", "load_toml", "parse_set", "to_toml",
    "DEFAULTS", "merge", "apply_sets", "validate_config",
    "init_distributed", "convert_sync_batchnorm", "DistributedBatchNorm",
]
