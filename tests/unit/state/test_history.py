"""The history's disk samples are objects in JSON; the positional lists earlier releases wrote still load."""
import json

from ethoscope_rsync.state.history import DiskSample, History, Usage


def test_a_disk_sample_is_written_as_an_object_and_read_back():
    sample = DiskSample(1_700_000_000.04, {"videos": Usage(10, 100, 40, 0, 7, 1234.56), "results": Usage(5, 50, 9)})
    doc = json.loads(json.dumps(sample.to_json()))
    assert doc == {"at": 1_700_000_000.0, "usage": {
        "videos": {"free": 10, "total": 100, "used": 40, "raw": 0, "fs": 7, "growth": 1234.6},
        "results": {"free": 5, "total": 50, "used": 9, "raw": 0, "fs": 0, "growth": None}}}
    back = DiskSample.from_json(doc)
    assert back.usage["videos"] == Usage(10, 100, 40, 0, 7, 1234.6) and back.usage["results"] == Usage(5, 50, 9)


def test_the_lists_an_earlier_release_wrote_still_load():
    old = {"disk": [[1_700_000_000.0, {"videos": [10, 100, 40, 0, 7, 12.5], "results": [5, 50, 9, 2, 7, None]}]]}
    history = History.from_json(old)
    (sample,) = history.disk
    assert sample.at == 1_700_000_000.0
    assert sample.usage == {"videos": Usage(10, 100, 40, 0, 7, 12.5), "results": Usage(5, 50, 9, 2, 7, None)}
    assert history.to_json()["disk"][0]["usage"]["results"]["raw"] == 2       # written back as objects


def test_what_is_not_a_sample_is_left_out():
    for bad in (None, [], [0, {}], {"at": "x"}, {"usage": {}}, [1.0, {"videos": [1, 2]}, 3]):
        assert DiskSample.from_json(bad) is None
    odd = {"videos": {"free": 1}, "tapes": {"free": 1, "total": 2, "used": 1}}
    assert DiskSample.from_json({"at": 5.0, "usage": odd}).usage == {}
    hand_edited = {"free": 1.0, "total": 2, "used": True}                  # a bool is no size
    assert Usage.from_json(hand_edited) == Usage(1, 2, 0)
