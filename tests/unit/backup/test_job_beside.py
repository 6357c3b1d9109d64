"""The videos are copied beside the results (a second thread of the device's job, on its one shared
connection): proved by the scripted processes waiting for each other, never by timing; either tree
failing fails the attempt, and the retries, messages and events stay what they were."""
import threading

from ethoscope_rsync.state import events as ev
from tests.unit.backup.job_fakes import CHUNK, DB, LIVE, MID, FakeProcesses, Step, file_line, lane, probe_answer, \
    raw_copy, run_job, without_videos

LOST = Step(code=12, stderr="rsync: connection unexpectedly closed (0 bytes received so far)\n")
FULL = Step(code=11, stderr='rsync: write failed on "x": No space left on device (28)\n')


def test_the_videos_move_while_the_databases_are_held(config):
    """The raw copy of a held database waits for the videos' rsync to have started: were the trees
    copied one after the other, it would wait in vain (and the test fail), not slow down."""
    videos_started, seen = threading.Event(), []
    fake = FakeProcesses({
        "results:raw": [Step((file_line(">f+++++++++", 8192, DB),),
                             effect=lambda: (seen.append(videos_started.wait(30)), raw_copy(config, 3)()))],
        "videos": [Step((file_line(">f+++++++++", 1000, CHUNK),), effect=videos_started.set)]},
        probe=[Step((probe_answer(LIVE),))])
    result, sent, _ = run_job(config, fake)
    assert result.ok and seen == [True]
    assert without_videos(fake.calls) == ["probe", "results:skip", "holder", "holder ready", "results:raw",
                                          "holder released", "ssh -O exit"]
    assert lane(sent, "videos") == ["FileReceived", "TransferEnded", "Listed"]
    assert lane(sent, "results") == ["TransferEnded", "DatabaseChecked", "FileReceived", "Listed"]
    assert isinstance(sent[-1], ev.Finished) and sent[-1].ok


def test_a_lost_videos_transfer_fails_the_attempt_and_both_trees_are_tried_again(config):
    fake = FakeProcesses({"videos": [LOST, Step()]})
    result, sent, stop = run_job(config, fake)
    assert result.ok and stop.waits == [5.0]
    assert fake.calls.count("videos") == 2 and fake.calls.count("results:skip") == 2
    assert [e.attempt for e in sent if isinstance(e, ev.Started)] == [1, 2]
    ended = [(e.kind, e.ok) for e in sent if isinstance(e, ev.TransferEnded)]
    assert sorted(ended) == [("results", True), ("results", True), ("videos", False), ("videos", True)]


def test_a_failed_results_tree_fails_the_device_once_the_videos_have_ended(config):
    videos_ended = []
    fake = FakeProcesses({"results:skip": [LOST],
                          "videos": [Step((file_line(">f+++++++++", 1000, CHUNK),),
                                          effect=lambda: videos_ended.append(True))]})
    result, sent, stop = run_job(config, fake)
    assert not result.ok and stop.waits == [5.0, 10.0] and videos_ended == [True] * 3
    assert result.message.startswith("error in rsync protocol data stream (connection lost): rsync: connection")
    assert [type(e).__name__ for e in sent].count("Listed") == 3           # the videos, every attempt
    assert sent[-1] == ev.Finished(MID, False, result.message, sent[-1].at)


def test_of_two_failures_the_one_not_to_retry_is_reported(config):
    fake = FakeProcesses({"results:skip": [LOST], "videos": [FULL]})
    result, _, stop = run_job(config, fake)
    assert not result.ok and stop.waits == [] and "destination full" in result.message
    assert fake.calls.count("videos") == 1 and fake.calls.count("results:skip") == 1


def test_a_bug_beside_a_failure_is_not_hidden(config):
    def bug():
        raise ZeroDivisionError("in the videos' thread")
    fake = FakeProcesses({"results:skip": [LOST], "videos": [Step(effect=bug)]})
    result, sent, _ = run_job(config, fake)
    assert not result.ok and result.message == "internal error: ZeroDivisionError: in the videos' thread"


def test_one_tree_alone_runs_in_the_job_s_own_thread(config):
    threads = []
    fake = FakeProcesses({"videos": [Step(effect=lambda: threads.append(threading.current_thread()))]})
    result, _, _ = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert result.ok and threads == [threading.current_thread()]
    assert "results:skip" not in fake.calls
