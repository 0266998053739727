"""Batches on their way to a GPU: a silenced image top (expanded zeros) is neither pinned nor copied."""
import torch

from agegender.train.data import broadcast, pin_batch, to_device


def test_broadcast_tells_expanded_zeros_from_real_tensors():
    assert broadcast(torch.zeros(()).expand(4, 3, 8, 8))
    assert not broadcast(torch.zeros(4, 3, 8, 8))
    assert not broadcast(torch.zeros(4))


def test_to_device_rebuilds_a_broadcast_top_and_copies_the_rest():
    labels = torch.arange(4, dtype=torch.float32)
    moved = to_device({"data_g": torch.zeros(()).expand(4, 3, 8, 8), "label": labels}, torch.device("cpu"))
    assert moved["data_g"].shape == (4, 3, 8, 8) and broadcast(moved["data_g"])
    assert float(moved["data_g"].abs().sum()) == 0
    assert torch.equal(moved["label"], labels)


def test_pin_batch_leaves_broadcast_tensors_alone(monkeypatch):
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(tuple(self.shape)) or self)
    silenced = torch.zeros(()).expand(4, 3, 8, 8)
    out = pin_batch({"data_g": silenced, "label": torch.zeros(4)})
    assert out["data_g"] is silenced and pinned == [(4,)]


def test_to_device_keeps_the_values_of_a_broadcast_tensor():
    rows = torch.arange(4, dtype=torch.float32).unsqueeze(1).expand(4, 3)
    moved = to_device({"x": rows}, torch.device("cpu"))["x"]
    assert torch.equal(moved, rows) and broadcast(moved)
