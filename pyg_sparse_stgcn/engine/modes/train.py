"""``--mode train``: a dense classifier."""
from __future__ import annotations

from typing import Any

from ..models import build_classifier
from ..session import Session
from .base import Mode, register_mode


@register_mode
class TrainMode(Mode):
    """Train a dense ST-GCN / ST-GCN++ (stage ``train``), evaluate it on the test split and export it."""

    name = "train"
    label = "trained"

    def run(self, session: Session) -> dict[str, Any]:
        model = build_classifier(session.cfg, session.data)
        out = session.fit("train", model)
        session.export(model, "classifier", "train", out)
        return out
