"""The width report's stages: layers grouped by their network's top-level blocks."""

from capdist.benchmarks.width_report import by_stage, stage_of


def test_layers_group_into_top_level_blocks():
    assert stage_of("layer1.0.conv1") == "layer1" and stage_of("conv1") == "conv1"
    assert stage_of("features.3.conv.0.0") == "features.3" and stage_of("features") == "features"
    assert by_stage({"": 9.0, "layer1.0.conv1": 1.0, "layer1.1.conv2": 2.5, "features.3.conv.1": 4.0, "fc": 0.5}) == {
        "layer1": 3.5, "features.3": 4.0, "fc": 0.5}
