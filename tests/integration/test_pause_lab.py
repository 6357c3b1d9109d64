"""pause on the simulated lab: a paused device is not copied (its new files stay on it), the pass is
still a success, verify still checks its copies, status says it is paused; resumed, it is copied."""
import json

from tests.integration.backup_node import Node, tree_digest


def test_a_paused_device_is_left_out_then_copied_again(make_lab, tmp_path):
    lab = make_lab(2, populate=True)
    node = Node(lab, tmp_path)
    first = node.run()
    assert first.returncode == 0, first.stderr
    paused = lab.devices[1]
    done = node.run(paused.name,
                    "--reason", "experiment over", command="pause")
    assert done.returncode == 0 and "paused: experiment over" in done.stdout, done.stdout + done.stderr
    lab.populate(paused, experiments=1, db_rows=50, video_chunks=1, chunk_bytes=32 << 10)
    before = tree_digest(node.videos)
    second = node.run()
    assert second.returncode == 0, second.stderr
    assert "%s is paused (experiment over): not copied" % paused.name in second.stderr
    status = json.loads(node.status_file.read_text())
    assert paused.id not in status["devices"] and lab.devices[0].id in status["devices"]
    assert tree_digest(node.videos) == before                                  # its new chunk stays on it
    shown = node.run(command="status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith("1/1 safe, 1 paused") and "%s paused: experiment over" % paused.name in shown.stdout
    checked = node.run(command="verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = json.loads((node.state / "verify.json").read_text())
    assert paused.id in json.dumps(verified)                                   # still verified
    assert node.run(paused.name, command="resume").returncode == 0
    third = node.run()
    assert third.returncode == 0, third.stderr
    assert len(tree_digest(node.videos)) > len(before)                         # now copied
