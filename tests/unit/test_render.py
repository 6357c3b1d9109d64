"""Unit tests of ethoscope_rsync.render on fixtures (no I/O in the code under test)."""
import copy
import json
import os
import re
import time
import unittest

from ethoscope_rsync import render

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
ID_RE = re.compile(r"[0-9a-f]{32}")


def load(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def upstream_sample():
    # a copy of shared/fixtures/upstream-status-sample.json: a real /status answer of the upstream tool
    with open(os.path.join(FIXTURES, "upstream-status-sample.json")) as f:
        return json.load(f)


def key_paths(doc, prefix=()):
    """All key paths, with device ids → <ID> and file names → <FILE>."""
    out = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            if prefix and prefix[-1] == "devices":
                k = "<ID>"
            elif prefix and prefix[-1] in ("files", "detailed_files"):
                k = "<FILE>"
            p = prefix + (k,)
            out.add(p)
            out |= key_paths(v, p)
    return out


NOW = 1795673957.4 + 3600  # an hour after the fixture's run ended
DAY = 86400.0


class StatusDocument(unittest.TestCase):
    def setUp(self):
        self.status = load("status-two-devices.json")
        self.history = load("status-history.json")

    def test_every_upstream_key_path_exists(self):
        sample = upstream_sample()
        ours = render.status_document(self.status, None, NOW, DAY)
        missing = key_paths(sample) - key_paths(ours)
        self.assertEqual(missing, set(), "upstream key paths missing from /status")

    def test_every_device_has_every_device_level_path(self):
        sample = upstream_sample()
        wanted = {p[2:] for p in key_paths(sample)
                  if p[0] == "devices" and len(p) > 2 and "<FILE>" not in p}
        ours = render.status_document(self.status, self.history, NOW, DAY)
        for dev_id, dev in ours["devices"].items():
            have = {p for p in key_paths(dev)}
            self.assertEqual(wanted - have, set(), dev_id)

    def test_values_are_ours_and_correct(self):
        doc = render.status_document(self.status, None, NOW, DAY)
        d1 = doc["devices"]["47a0c52fb795c850d968a87ab26b9464"]
        d2 = doc["devices"]["59de4712c3e30e298e1f8394cab03558"]
        self.assertEqual(d1["progress"]["status"], "completed")
        self.assertEqual(d1["progress"]["backup_method"], "rsync")
        self.assertEqual(d2["progress"]["status"], "error")
        self.assertEqual(d1["ended"], 1795673357)
        self.assertFalse(d1["stale"])
        self.assertTrue(d2["stale"])  # never succeeded
        self.assertEqual(doc["stale_devices"], ["59de4712c3e30e298e1f8394cab03558"])
        self.assertEqual(d1["files_transferred"], 5)
        self.assertEqual(doc["disk_usage_summary"]["combined"]["total_files"], 7)
        self.assertEqual(doc["status"], "idle")
        self.assertEqual(doc["run"]["outcome"], "failed")

    def test_inputs_not_modified(self):
        s, h = copy.deepcopy(self.status), copy.deepcopy(self.history)
        render.status_document(s, h, NOW, DAY)
        render.render_html(s, h, NOW, DAY)
        render.render_metrics(s, h, NOW, DAY)
        self.assertEqual(s, self.status)
        self.assertEqual(h, self.history)

    def test_history_only_devices_appear(self):
        doc = render.status_document(self.status, self.history, NOW, DAY)
        d = doc["devices"]["fedcba9876543210fedcba9876543210"]
        self.assertEqual(d["name"], "ETHOSCOPE_017")
        self.assertTrue(d["from_history"])
        self.assertEqual(d["progress"]["status"], "completed")
        self.assertEqual(d["last_success"], 1795600000)
        self.assertFalse(d["stale"])  # 1795600000 is within a day of NOW
        self.assertTrue(render.status_document(self.status, self.history, NOW + 2 * DAY, DAY)
                        ["devices"]["fedcba9876543210fedcba9876543210"]["stale"])
        # history's last_success is used when newer than the status's one
        d2 = doc["devices"]["59de4712c3e30e298e1f8394cab03558"]
        self.assertEqual(d2["last_success"], 1795000000)

    def test_stale_threshold(self):
        self.assertFalse(render.is_stale(1000, 1000 + DAY, DAY))
        self.assertTrue(render.is_stale(1000, 1001 + DAY, DAY))
        self.assertTrue(render.is_stale(0, 5, DAY))

    def test_no_files_at_all(self):
        doc = render.status_document(None, None, NOW, DAY)
        self.assertEqual(doc["devices"], {})
        self.assertEqual(doc["status"], "idle")
        self.assertEqual(doc["last_backup"], "")
        self.assertIn("no backup run yet", doc["message"])
        self.assertEqual(doc["disk_usage_summary"]["combined"]["total_files"], 0)
        json.dumps(doc, allow_nan=False)

    def test_after_reboot_history_only(self):
        doc = render.status_document(None, self.history, NOW, DAY)
        self.assertEqual(len(doc["devices"]), 3)
        self.assertEqual(doc["last_backup"], render.format_time(1795673957.4))

    def test_garbage_fields_do_not_crash(self):
        bad = {"devices": {"x": {"progress": "nope", "synced": [], "transfer_details": {"results": 5},
                                 "last_success": "soon", "name": None}, "y": 7},
               "run": None, "disk_usage_summary": "x", "last_backup": None}
        doc = render.status_document(bad, {"devices": []}, NOW, DAY)
        self.assertIn("x", doc["devices"])
        json.dumps(doc)
        render.render_html(bad, None, NOW, DAY)
        render.render_metrics(bad, None, NOW, DAY)


class RootDocument(unittest.TestCase):
    def test_from_status(self):
        st = load("status-two-devices.json")
        self.assertEqual(render.root_document(st, None),
                         {"status": "idle", "last_backup": st["last_backup"]})

    def test_running(self):
        self.assertEqual(render.root_document(load("status-running.json"), None)["status"], "running")

    def test_from_history_when_status_missing(self):
        h = {"schema": 1, "last_backup": 1700000000.0, "devices": {}}
        expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1700000000))
        self.assertEqual(render.root_document(None, h), {"status": "idle", "last_backup": expected})

    def test_nothing(self):
        self.assertEqual(render.root_document(None, None), {"status": "idle", "last_backup": ""})
        self.assertEqual(render.root_document({}, {"last_backup": 0}), {"status": "idle", "last_backup": ""})


class DeviceDocument(unittest.TestCase):
    def test_lookup_forms(self):
        st, h = load("status-two-devices.json"), load("status-history.json")
        for key in ("59de4712c3e30e298e1f8394cab03558", "ETHOSCOPE_002", "ethoscope_002", "002", "2"):
            doc = render.device_document(st, h, key, NOW, DAY)
            self.assertIsNotNone(doc, key)
            self.assertEqual(doc["id"], "59de4712c3e30e298e1f8394cab03558")
        self.assertEqual(render.device_document(st, h, "17", NOW, DAY)["device"]["name"], "ETHOSCOPE_017")
        for key in ("3", "ETHOSCOPE_003", "", "../etc", "x" * 300):
            self.assertIsNone(render.device_document(st, h, key, NOW, DAY), key)


class Html(unittest.TestCase):
    def test_rows_and_no_refresh_when_idle(self):
        page = render.render_html(load("status-two-devices.json"), load("status-history.json"), NOW, DAY)
        self.assertEqual(page.count('<tr class="device'), 3)
        self.assertNotIn('http-equiv="refresh"', page)
        self.assertIn("ETHOSCOPE_001", page)
        self.assertIn("Backup timed out", page)
        self.assertIn("(70 min ago)", page)

    def test_refresh_while_running_and_escaping(self):
        page = render.render_html(load("status-running.json"), None, NOW, DAY)
        self.assertIn('http-equiv="refresh"', page)
        self.assertNotIn("<script>", page)
        self.assertNotIn("<b>9", page)
        self.assertIn("&lt;script&gt;", page)
        self.assertIn("width:42.5%", page)

    def test_empty(self):
        page = render.render_html(None, None, NOW, DAY)
        self.assertIn("No backup run yet", page)


class Metrics(unittest.TestCase):
    def parse(self, text):
        samples, helps, types = {}, set(), {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split()[2])
            elif line.startswith("# TYPE "):
                types[line.split()[2]] = line.split()[3]
            elif line:
                name_labels, value = line.rsplit(" ", 1)
                samples[name_labels] = float(value)
        return samples, helps, types

    def test_exposition(self):
        text = render.render_metrics(load("status-two-devices.json"), load("status-history.json"), NOW, DAY)
        self.assertTrue(text.endswith("\n"))
        samples, helps, types = self.parse(text)
        self.assertEqual(set(types), helps)
        for name in samples:
            self.assertIn(name.split("{")[0], types)
        self.assertEqual(samples["ethoscope_backup_run_active"], 0)
        self.assertEqual(samples["ethoscope_backup_stale_devices"], 1)
        self.assertEqual(samples['ethoscope_backup_device_last_success_timestamp_seconds'
                                 '{device_id="47a0c52fb795c850d968a87ab26b9464",device_name="ETHOSCOPE_001"}'],
                         1795673357)
        self.assertEqual(samples['ethoscope_backup_device_last_outcome{device_id="59de4712c3e30e298e1f8394cab03558",'
                                 'device_name="ETHOSCOPE_002",outcome="error"}'], 1)
        self.assertEqual(samples['ethoscope_backup_device_files_transferred'
                                 '{device_id="47a0c52fb795c850d968a87ab26b9464",device_name="ETHOSCOPE_001"}'], 5)
        self.assertAlmostEqual(samples["ethoscope_backup_run_duration_seconds"], 637.4, places=2)

    def test_label_escaping_and_running(self):
        text = render.render_metrics(load("status-running.json"), None, NOW, DAY)
        self.assertIn('device_name="ETHOSCOPE_<b>9\\"\\\\x</b>"', text)
        samples, _, _ = self.parse(text)
        self.assertEqual(samples["ethoscope_backup_run_active"], 1)
        self.assertTrue(all(not line or line.startswith("#") or line.count(" ") >= 1
                            for line in text.splitlines()))

    def test_empty(self):
        samples, _, _ = self.parse(render.render_metrics(None, None, NOW, DAY))
        self.assertEqual(samples["ethoscope_backup_stale_devices"], 0)


class Helpers(unittest.TestCase):
    def test_human_size_matches_upstream(self):
        self.assertEqual(render.human_size(108), "108 B")
        self.assertEqual(render.human_size(106496), "104.0 KB")
        self.assertEqual(render.human_size(33554432), "32.0 MB")
        self.assertEqual(render.human_size(177471596), "169.3 MB")

    def test_next_change(self):
        st = load("status-two-devices.json")
        t = render.next_change(st, None, NOW, DAY)
        self.assertEqual(t, 1795673357 + DAY)
        self.assertEqual(render.next_change(load("status-running.json"), None, NOW, DAY), NOW + 1)


if __name__ == "__main__":
    unittest.main()
