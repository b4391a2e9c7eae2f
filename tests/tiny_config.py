"""The tiny demo recipe shared by the CLI and DDP tests (seconds per mode)."""

TINY_DEMO = """
# tiny demo: 32 train / 16 val synthetic videos, a 3-stage 8-channel ST-GCN, seconds per mode
[data]
name = "demo"
clip_len = 16
batch_size = 8
kwargs = {num_train = 32, num_val = 16, num_empty = 1, min_frames = 16, max_frames = 20}

[model]
base_channels = 8
num_stages = 3
backend = "dense"
backbone = {inflate_stages = [3], down_stages = [3]}

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
