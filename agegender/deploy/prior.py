"""Class priors at deployment: a net trained on the age-balanced oversampled lists (the original's recipe) learns
p(bin | face) for a world where every age bin is equally common; the faces it meets are not. Adding
``weight * log(natural / trained)`` to its last InnerProduct's bias before the softmax moves its predictions
back towards the class frequencies of the training faces themselves (post-hoc logit adjustment: Menon et al.,
"Long-tail learning via logit adjustment", ICLR 2021, run in reverse; weight 1 is Bayes' rule for the natural
frequencies, 0 leaves the net as trained). The frequencies are read from build_dataset.py's lists
(data/DEF/age_train_natural.txt: each training face once; data/DEF/age_train.txt: the list the net trained
on). ``agegender compile --prior`` folds it into the IR, so every runtime and device gets it for free.

Imports neither torch nor openvino.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from agegender.caffe import array_to_blob, blob_to_array, read_caffemodel, write_caffemodel
from agegender.caffe.listfile import read_list
from agegender.errors import AgegenderError

SMOOTHING = 1.0  # added to every class count (Laplace), so a class absent from a list is rare, not impossible


def label_frequencies(path: str | os.PathLike, n_classes: int) -> np.ndarray:
    """Class frequencies of a ``path label`` list, smoothed by SMOOTHING; labels outside the classes are errors."""
    labels = [label for _, label in read_list(path)]
    if not labels:
        raise AgegenderError(f"list {path} is empty; the class prior needs its labels")
    if max(labels) >= n_classes:
        raise AgegenderError(f"list {path} has label {max(labels)} but the net has {n_classes} classes; give the "
                             f"lists of this net's task")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64) + SMOOTHING
    return counts / counts.sum()


def log_adjustment(natural: str | os.PathLike, trained: str | os.PathLike, n_classes: int,
                   weight: float) -> np.ndarray:
    """``weight * (log f_natural - log f_trained)`` per class: what the last layer's bias gains."""
    if not 0 <= weight <= 2:
        raise AgegenderError(f"--prior-weight {weight} is outside [0, 2] (0: none, 1: Bayes' rule for the "
                             f"natural frequencies)")
    return weight * (np.log(label_frequencies(natural, n_classes)) - np.log(label_frequencies(trained, n_classes)))


def logits_layer(net, output: str) -> str:
    """The InnerProduct layer whose outputs the Softmax writing ``output`` normalises (AgeNet: fc8)."""
    writer = {top: node for node in net.nodes for top in node.tops}
    softmax = writer.get(output)
    if softmax is None or softmax.type != "Softmax":
        raise AgegenderError(f"{net.source}: output {output} is not written by a Softmax layer; a class prior "
                             f"needs probabilities from an InnerProduct + Softmax")
    layer = writer.get(softmax.bottoms[0])
    if layer is None or layer.type != "InnerProduct" or len(layer.blob_shapes) < 2:
        raise AgegenderError(f"{net.source}: the Softmax of {output} does not read an InnerProduct with a bias; "
                             f"a class prior cannot be folded into it")
    return layer.name


def adjusted_caffemodel(weights: str | os.PathLike, layer: str, delta: np.ndarray,
                        output: str | os.PathLike) -> Path:
    """A copy of the caffemodel with ``delta`` added to ``layer``'s bias, written atomically to ``output``."""
    model = read_caffemodel(weights)
    for param in model.layer:
        if param.name == layer and len(param.blobs) >= 2:
            bias = blob_to_array(param.blobs[1])
            if bias.size != delta.size:
                raise AgegenderError(f"{weights}: {layer} has {bias.size} outputs, the prior {delta.size} classes")
            param.blobs[1].CopyFrom(array_to_blob((bias.reshape(-1) + delta).reshape(bias.shape)))
            return write_caffemodel(model, output)
    raise AgegenderError(f"{weights} has no bias for layer {layer}; is it this prototxt's caffemodel?")


def describe(natural: str | os.PathLike, trained: str | os.PathLike, weight: float, task: str, layer: str,
             delta: np.ndarray) -> dict:
    """The sidecar's record of the prior (IRMetadata.prior)."""
    return {"natural_list": str(natural), "trained_list": str(trained), "weight": weight, "task": task,
            "layer": layer, "bias_added": [round(float(v), 6) for v in delta]}

