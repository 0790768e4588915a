"""What an INT8 file leaves in float32: the nodes after the last convolution."""

import pytest
import torch
from torch import nn

from capdist.io.quantize import QuantizationError, head_nodes, to_int8

onnx = pytest.importorskip("onnx")


def test_the_head_is_everything_after_the_last_convolution(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 12, 12), str(path), input_names=["images"], dynamo=False)
    nodes = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    head = head_nodes(path)
    assert [nodes[n] for n in head] == ["Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    first_relu = [n for n, op in nodes.items() if op == "Relu"][0]
    assert first_relu not in head  # it feeds the second convolution


def test_an_unknown_head_precision_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(QuantizationError, match="unknown INT8 head precision 'int4'; choose one of: fp32, int8"):
        to_int8(tmp_path / "missing.onnx", tmp_path / "out.onnx", [torch.zeros(1, 3, 4, 4)], head="int4")
    assert not list(tmp_path.iterdir())
