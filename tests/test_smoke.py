from initviz import NetworkSpec, profile


def test_profile_runs_and_has_one_row_per_layer():
    result = profile(NetworkSpec.stack(64, 3), batch=32)
    assert list(result.layers["layer"]) == [1, 2, 3]
