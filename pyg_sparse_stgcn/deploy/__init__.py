r"""Deployment: classify skeleton files with a checkpoint's own pipeline (:class:`Predictor`), recognise
actions on a live skeleton feed (:class:`StreamingRecognizer`), and export folded dense and pruned models to
ONNX through a dense aggregation path (:func:`export_onnx`, run with :class:`OnnxModel`).

Imports only from ``graph``, ``data``, ``nn`` and ``sparsity``; the engine's ``predict`` mode and the CLI
build on it. ``onnx`` / ``onnxruntime`` come with the ``deploy`` extra (``pip install
pyg-sparse-stgcn[deploy]``) and are imported only when used.
"""
from .onnx import DenseGraphConv, OnnxModel, export_onnx, onnx_ready
from .predict import RUNTIMES, PipelineSpec, Prediction, Predictor, label_names, read_input
from .streaming import StreamFormatError, StreamingRecognizer, StreamPrediction, parse_frame, run_stream

__all__ = ["PipelineSpec", "Predictor", "Prediction", "read_input", "label_names", "RUNTIMES",
           "StreamingRecognizer", "StreamPrediction", "StreamFormatError", "parse_frame", "run_stream",
           "export_onnx", "OnnxModel", "DenseGraphConv", "onnx_ready"]
