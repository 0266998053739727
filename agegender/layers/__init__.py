"""Each Caffe layer type understood once.

``spec.py`` parses a LayerParameter into a typed spec (shapes, parameter blobs, multiply-accumulates);
``net.py`` assembles specs into a phase-filtered, shape-checked graph. Backends build from these:
``torch_ops.py`` (training) and ``openvino_ops.py`` (compiling), one function per layer type each;
``fillers.py`` initialises a fresh layer's blobs as Caffe's fillers do.
"""
