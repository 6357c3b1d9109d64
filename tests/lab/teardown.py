"""Removing labs from their manifests: one lab, every lab, stale labs; listing labs."""
import json
import os
import shutil
from pathlib import Path

from .system import (LAB_ROOT, MANIFESTS, _cmdline, _is_mountpoint, _kill_wait, _link_exists, _netns_list,
                     _netns_pids, _pid_alive, _run)


class LabRegistry:
    """``Lab`` class methods over every lab recorded under MANIFESTS."""

    @classmethod
    def down_all(cls):
        """Tear down every lab with a manifest, and remove every lab directory under LAB_ROOT."""
        names = []
        if MANIFESTS.is_dir():
            names = [p.stem for p in MANIFESTS.glob("*.json")]
        for name in names:
            try:
                m = json.loads((MANIFESTS / (name + ".json")).read_text())
            except (OSError, ValueError):
                m = None
            _teardown(m, name)
        # leftovers without manifest (interfaces named by our scheme)
        for ns in _netns_list():
            if ns.startswith("elab-"):
                _kill_wait(_netns_pids(ns))
                _run(["ip", "netns", "del", ns], check=False)
        for ifname in os.listdir("/sys/class/net"):
            if ifname.startswith("elb") and len(ifname) == 7:
                _run(["ip", "link", "del", ifname], check=False)
        if LAB_ROOT.is_dir():
            for p in LAB_ROOT.iterdir():
                if p.is_dir() and not p.name.startswith("."):
                    shutil.rmtree(p, ignore_errors=True)
        _maybe_unmount_netns()
        return names

    @classmethod
    def down_stale(cls):
        """Tear down labs whose owning (test) process is dead. CLI labs (persistent) are left alone."""
        gone = []
        if not MANIFESTS.is_dir():
            return gone
        for p in MANIFESTS.glob("*.json"):
            try:
                m = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            owner = m.get("owner_pid")
            if owner and not _pid_alive(owner):
                _teardown(m, p.stem)
                gone.append(p.stem)
        return gone

    @staticmethod
    def list_labs():
        out = []
        if MANIFESTS.is_dir():
            for p in sorted(MANIFESTS.glob("*.json")):
                try:
                    m = json.loads(p.read_text())
                except (OSError, ValueError):
                    continue
                alive = [ns for ns in m.get("netns", []) if os.path.exists("/run/netns/" + ns)]
                out.append({"name": m.get("name"), "subnet": m.get("subnet"), "bridge": m.get("bridge"),
                            "devices": len(m.get("netns", [])), "netns_alive": len(alive),
                            "bridge_alive": _link_exists(m.get("bridge", "-")),
                            "owner_pid": m.get("owner_pid"), "base_dir": m.get("base_dir"),
                            "summary": os.path.join(m.get("base_dir", ""), "lab.json")})
        return out


def _maybe_unmount_netns():
    if _netns_list():
        return
    for _ in range(8):
        if not _is_mountpoint("/run/netns"):
            break
        if _run(["umount", "/run/netns"], check=False).returncode != 0:
            break


def _teardown(m, name, keep_data=False, base_dir=None):
    """Remove what a manifest (or the naming scheme for NAME) describes; every step tolerates absence."""
    if m:
        h = m.get("hash")
        netns = list(m.get("netns", []))
        bridge = m.get("bridge")
        base_dir = Path(m.get("base_dir") or base_dir or LAB_ROOT / name)
        pids = []
        for kind in ("node", "writers"):
            for pid in m.get("pids", {}).get(kind, []):
                if "tests.lab" in _cmdline(pid):
                    pids.append(pid)
        _kill_wait(pids)
    else:
        h, netns, bridge = None, [], None
        base_dir = Path(base_dir or LAB_ROOT / name)
    if h:  # also anything named by the scheme that the manifest might not list
        netns = sorted(set(netns) | {n for n in _netns_list() if n.startswith("elab-%s-" % h)})
    existing = set(_netns_list())
    netns = [n for n in netns if n in existing]
    all_pids = []
    for ns in netns:
        all_pids += _netns_pids(ns)
    _kill_wait(all_pids)
    veths = [v for v in (m or {}).get("veths", []) if _link_exists(v)]
    if veths:
        _run(["ip", "-force", "-batch", "-"], check=False, input="".join("link del %s\n" % v for v in veths))
    if netns:
        _run(["ip", "-force", "-batch", "-"], check=False, input="".join("netns del %s\n" % n for n in netns))
    if bridge and _link_exists(bridge):
        _run(["ip", "link", "del", bridge], check=False)
    looks_like_lab = any((base_dir / p).exists() for p in ("keys", "devices", "node", "lab.json"))
    if not keep_data and looks_like_lab:
        shutil.rmtree(base_dir, ignore_errors=True)
    mp = MANIFESTS / ("%s.json" % name)
    if mp.exists():
        mp.unlink()
    _maybe_unmount_netns()
