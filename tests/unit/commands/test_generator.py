"""The systemd generator, run on temporary output folders as systemd runs it."""
import io
import os

from ethoscope_rsync.commands import generator
from ethoscope_rsync.config.switches import SWITCHES


def conf(tmp_path, text):
    path = tmp_path / "backup.conf"
    path.write_text(text)
    return path


def run(tmp_path, config, upstream=()):
    folders = tmp_path / "units"
    folders.mkdir(exist_ok=True)
    for name in upstream:
        os.symlink("/opt/ethoscope/services/" + name, folders / name)
    normal, late = tmp_path / "normal", tmp_path / "late"
    err = io.StringIO()
    generator.generate(normal, late, unit_folders=(str(folders),), config_path=config, err=err)
    return normal, late, err.getvalue()


def test_destinations_of_the_node_s_ethoscope_conf_are_opened(tmp_path):
    upstream = tmp_path / "ethoscope.conf"
    upstream.write_text('{"folders": {"results": {"path": "/mnt/data/results"}, '
                        '"video": {"path": "/mnt/data/videos"}}}')
    normal, late, err = run(tmp_path, conf(tmp_path, f"[paths]\nupstream_config = {upstream}\n"))
    text = (normal / "ethoscope-backup.service.d" / "50-destinations.conf").read_text()
    assert "ReadWritePaths=-/mnt/data/results -/mnt/data/videos\n" in text and err == ""
    assert (normal / "ethoscope-backup-verify.service.d" / "50-destinations.conf").is_file()


def test_a_bad_configuration_is_one_line_and_the_switches_still_exist(tmp_path):
    normal, late, err = run(tmp_path, conf(tmp_path, "[paths]\nresults = relative\n"))
    assert not normal.exists() and err.count("\n") == 1 and "configuration error" in err
    assert sorted(p.name for p in late.glob("*.service")) == sorted(f"{n}.service" for n in SWITCHES)


def test_a_destination_the_sandbox_cannot_take_is_named(tmp_path):
    normal, _, err = run(tmp_path, conf(tmp_path, "[paths]\nresults = /home/lab/results\nvideos = /srv/videos\n"
                                                  f"upstream_config = {tmp_path}/none\n"))
    assert "ProtectHome=yes" in err
    dropin = normal / "ethoscope-backup.service.d" / "50-destinations.conf"
    assert "ReadWritePaths=-/srv/videos\n" in dropin.read_text()


def test_backups_are_on_at_boot_only_where_the_upstream_tool_never_was(tmp_path):
    config = conf(tmp_path, f"[paths]\nupstream_config = {tmp_path}/none\n")
    _, late, _ = run(tmp_path, config)
    link = late / "multi-user.target.wants" / "ethoscope_backup_unified.service"
    assert os.readlink(link) == "../ethoscope_backup_unified.service"
    for upstream in (("ethoscope_backup_video.service",), ("ethoscope_backup_unified.service",)):
        other = tmp_path / upstream[0]
        other.mkdir()
        _, late, _ = run(other, config, upstream)
        assert not (late / "multi-user.target.wants").exists(), upstream


def test_main_takes_systemd_s_three_folders_and_never_fails(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(generator, "generate", lambda normal, late: seen.append((normal, late)))
    assert generator.main([str(tmp_path / "n"), str(tmp_path / "e"), str(tmp_path / "l")]) == 0
    assert seen == [(tmp_path / "n", tmp_path / "l")]
    assert generator.main([]) == 2

    def broken(normal, late):
        raise PermissionError(13, "Permission denied", str(normal))
    monkeypatch.setattr(generator, "generate", broken)
    assert generator.main([str(tmp_path / "n")]) == 0
