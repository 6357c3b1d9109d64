"""The `config` fixture of the backup job's tests (job_fakes.py holds their fakes)."""
import pytest

from ethoscope_rsync.config.load import load_config


@pytest.fixture
def config(tmp_path):
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nresults = {tmp_path}/results\nvideos = {tmp_path}/videos\n"
                    f"state_dir = {tmp_path}/state\nupstream_config = {tmp_path}/none\n"
                    f"[transfer]\nretries = 2\nretry_delay = 5\nmin_free = 0\n")
    return load_config(conf)
