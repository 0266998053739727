"""agegender: Caffe-format age and gender CNNs, trained with PyTorch, deployed with OpenVINO."""

__version__ = "0.1.0"
