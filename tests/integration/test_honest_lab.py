"""check on the simulated lab: a device asked for with -e that discovery does not list fails, naming it;
one that is there passes."""
from tests.integration.backup_node import Node


def test_check_e_fails_for_a_device_it_cannot_find(make_lab, tmp_path):
    lab = make_lab(2)
    node = Node(lab, tmp_path)
    result = node.run("-e", "099", command="check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  ETHOSCOPE_099: not found (node server lists no such device" in result.stdout
    present = node.run("-e", lab.devices[0].name, command="check")
    assert present.returncode == 0, present.stdout + present.stderr
    assert f"ok    {lab.devices[0].name}" in present.stdout and "not found" not in present.stdout
