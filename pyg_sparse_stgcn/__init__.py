"""pyg-sparse-stgcn: sparse spatial-temporal graph convolutional networks on PyTorch Geometric."""
__version__ = "0.1.0"
