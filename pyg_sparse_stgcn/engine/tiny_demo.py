"""The tiny demo recipe: 32 train / 16 val synthetic videos and a 3-stage 8-channel ST-GCN, seconds per mode
on two CPU cores. One text for the CLI tests (``tests/tiny_config.py``) and
``scripts/make_analysis_figures.py``; not a shipped recipe (those are ``pyg_sparse_stgcn/configs/*.toml``)."""
from __future__ import annotations

#: The ``[model]`` table alone (a 3-stage 8-channel dense ST-GCN), for recipes that pair it with other settings.
TINY_MODEL = """
[model]
base_channels = 8
num_stages = 3
backend = "dense"
backbone = {inflate_stages = [3], down_stages = [3]}
"""

TINY_DEMO = """
# tiny demo: 32 train / 16 val synthetic videos, a 3-stage 8-channel ST-GCN, seconds per mode
[data]
name = "demo"
clip_len = 16
batch_size = 8
kwargs = {num_train = 32, num_val = 16, num_empty = 1, min_frames = 16, max_frames = 20}
""" + TINY_MODEL + """
[train]
epochs = 2
lr = 0.05
progress = false

[run]
threads = 1

[lottery]
levels = 1

[ensemble]
sparsities = [0.5, 0.9]

[prune]
finetune_epochs = 1
"""
