"""Each device on its own clock, on the simulated lab (real sshd, rsync, shaped links): a straggler
— a long copy over a slow link, a device trickling its data, crafted databases that take the whole
check timeout — never delays the other devices' next copies; SIGTERM stops a scheduled pass with a
long copy under way in bounded time and leaves no partial file under a final name."""
import os
import signal
import subprocess
import time

from tests.integration.backup_node import PYTHON, ROOT, Node
from tests.lab.crafted import craft

BIG = 48 << 20          # the straggler's copy ahead


def start_scheduled(node):
    return subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "run", "--scheduled", "-c", str(node.conf)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout, what, proc=None):
    """Poll `predicate` until it is true; fails after `timeout` seconds (or when `proc` ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the pass ended ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def device_state(node, device):
    try:
        return node.status()["devices"].get(device.id, {})
    except (OSError, ValueError, KeyError):
        return {}


def running(node, device) -> bool:
    return bool(device_state(node, device).get("processing"))


def arrived(node, device, path, size) -> bool:
    copy = node.videos / path.relative_to(device.data_root / "videos")
    return copy.is_file() and copy.stat().st_size == size


def stop(proc, timeout=60):
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"SIGTERM did not stop the scheduled pass within {timeout}s")
    return time.monotonic() - started


def final_names_whole(node, device):
    """Every file of the device's video tree on the node under its final (not hidden) name is the
    device's whole file; returns how many there are."""
    mine = node.videos / device.id
    count = 0
    for root, dirs, files in os.walk(mine):
        dirs[:] = [d for d in dirs if not d.startswith(".")]      # the partial files' own folder
        for name in files:
            if name.startswith("."):
                continue                  # rsync's temporary names
            copy = os.path.join(root, name)
            original = device.data_root / "videos" / os.path.relpath(copy, node.videos)
            assert original.is_file() and os.path.getsize(copy) == original.stat().st_size, \
                f"{copy}: {os.path.getsize(copy)} bytes under its final name, the device has {original.stat().st_size}"
            count += 1
    return count


def test_a_slow_copy_holds_nobody_and_sigterm_stops_it_cleanly(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    slow, healthy = lab.devices
    node = Node(lab, tmp_path, extra="interval = 3\n")
    first = node.run()
    assert first.returncode == 0, first.stderr
    time.sleep(3.5)              # the interval passes: every device is due when the scheduled pass starts
    big = lab.add_video_chunk(slow, BIG)
    lab.rate_limit(slow, "4mbit")                  # 48 MB: about 100 s
    proc = start_scheduled(node)
    try:
        wait_for(lambda: running(node, slow) and device_state(node, slow)["progress"]["bytes_transferred"] > 0,
                 60, "the slow device's long copy under way", proc)
        chunk = lab.add_video_chunk(healthy, 256 << 10)
        wait_for(lambda: arrived(node, healthy, chunk, 256 << 10), 30,
                 "a new file of the healthy device on the node", proc)
        assert running(node, slow), "the slow copy ended before the healthy device's next copy"
        assert not arrived(node, slow, big, BIG)
        took = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"\nSIGTERM stopped the scheduled pass in {took:.1f} s")
    assert proc.returncode in (-signal.SIGTERM, 1), proc.stderr.read()[-2000:]
    assert final_names_whole(node, slow) >= 2      # the first copy's chunks, and not the cut one
    assert not arrived(node, slow, big, BIG)
    lab.clear_rate_limit(slow)


def test_a_trickling_device_and_crafted_databases_do_not_delay_the_others(make_lab, tmp_path):
    lab = make_lab(n_devices=3, populate=True)
    trickle, crafted, healthy = lab.devices
    node = Node(lab, tmp_path, extra="interval = 3\ndatabase_check_timeout = 40\n")
    first = node.run()
    assert first.returncode == 0, first.stderr
    time.sleep(3.5)              # the interval passes: every device is due when the scheduled pass starts
    own = min((crafted.data_root / "results").rglob("*.db"))
    craft(own, crafted, own.parent.name, "cpu", "generated", rows=100_000)     # an hour of CPU to check
    lab._chown_tree(crafted.data_root, own.parent)
    lab.add_video_chunk(trickle, 8 << 20)
    lab.rate_limit(trickle, "256kbit")             # data keeps coming, never idle for io_timeout: minutes
    proc = start_scheduled(node)
    try:
        wait_for(lambda: running(node, trickle) and running(node, crafted)
                 and device_state(node, healthy).get("status") == "completed",
                 60, "both stragglers at work and the healthy device copied", proc)
        for _ in range(3):                          # three next copies while the stragglers hold on
            chunk = lab.add_video_chunk(healthy, 128 << 10)
            wait_for(lambda: arrived(node, healthy, chunk, 128 << 10), 30,
                     "a new file of the healthy device on the node", proc)
        assert running(node, trickle) and running(node, crafted), \
            "a straggler ended before the healthy device's next copies"
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lab.clear_rate_limit(trickle)


def test_the_timers_starts_say_nothing_until_a_device_is_due(make_lab, tmp_path):
    """The timer starts a scheduled pass every 30 s: one that finds nothing due, and the alert run its end
    triggers, write nothing to the journal and leave the status as it was; one with a device due says so."""
    lab = make_lab(n_devices=1, populate=True)
    node = Node(lab, tmp_path, extra="interval = 3600\n")
    first = node.run()
    ended = time.time()                  # the pass's copy ended before this
    assert first.returncode == 0, first.stderr
    status = node.status_file.read_bytes()
    for command in ("run", "alert", "run", "alert"):
        quick = node.run("--scheduled", command=command) if command == "run" else node.run(command=command)
        assert (quick.returncode, quick.stdout, quick.stderr) == (0, "", ""), f"{command}: {quick.stderr}"
    assert node.status_file.read_bytes() == status
    due = Node(lab, tmp_path, extra="interval = 1\n")          # the same node, its devices due a second after
    time.sleep(max(0.0, ended + 1.0 - time.time()))          # that second has passed (not a timing assertion)
    again = due.run("--scheduled")
    assert again.returncode == 0, again.stderr
    assert "pass started: 1 device(s) from node server" in again.stderr, again.stderr
