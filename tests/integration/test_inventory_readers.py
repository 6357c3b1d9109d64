"""The status service reads a device's newest files from the inventory database under its unit's
sandbox (ProtectSystem=strict: the state folder mounted read-only, where SQLite cannot create the
WAL's shared-memory file), between passes and while one writes. The read-only mount is made in a
mount namespace of its own (unshare), as systemd makes it."""
import subprocess
import textwrap

from tests.integration.safety_checks import PYTHON, ROOT

ID = "0123456789abcdef0123456789abcdef"


def read_only(state, code: str) -> str:
    """stdout of `code` run with `state` mounted read-only."""
    script = (f"mount --bind {state} {state} && mount -o remount,bind,ro {state} && "
              f"! touch {state}/probe 2>/dev/null && exec {PYTHON} -c \"$0\"")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


READ = textwrap.dedent(f"""
    from ethoscope_rsync.state.inventory import newest_files
    print(sorted(newest_files("PATH", "{ID}", ("videos",), 3).get("videos", ())))
""")


def test_newest_files_are_read_from_a_read_only_state_folder(tmp_path):
    from ethoscope_rsync.state.inventory import Inventories
    state = tmp_path / "state"
    path = state / "inventory.sqlite"
    writer = Inventories(path)
    writer.replace(ID, "videos", {f"{ID}/x/{n:03d}.h264": n for n in range(100)})
    newest = str([f"{ID}/x/097.h264", f"{ID}/x/098.h264", f"{ID}/x/099.h264"])
    assert read_only(state, READ.replace("PATH", str(path))) == newest              # while the pass has it open
    writer.close()
    assert not (state / "inventory.sqlite-wal").exists()
    assert read_only(state, READ.replace("PATH", str(path))) == newest              # between passes
