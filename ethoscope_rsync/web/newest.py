"""``/status/<device>`` lists each tree's newest files: the history names only a few of them (its
summaries stay small, so that every other answer reads it fast); the rest come from the inventory
database (:func:`ethoscope_rsync.state.inventory.newest_files`), for that one device only."""
from __future__ import annotations

from ethoscope_rsync.state.inventory import newest_files
from ethoscope_rsync.state.model import FILES_LISTED, KINDS, mapping


def with_newest(history, key: str, inventory_file, count: int = FILES_LISTED):
    """The history document with device `key`'s trees naming their `count` newest files as well;
    the document itself is not changed (a shallow copy along the way), nor returned copied when the
    database has nothing to add."""
    device = mapping(mapping(history).get("devices")).get(key)
    if inventory_file is None or not isinstance(device, dict):
        return history
    newest = newest_files(inventory_file, key, KINDS, count)
    trees = dict(mapping(device.get("inventory")))
    for kind, files in newest.items():
        tree = trees.get(kind)
        if files and isinstance(tree, dict):
            trees[kind] = dict(tree, present={**files, **mapping(tree.get("present"))})
    if trees == mapping(device.get("inventory")):
        return history
    return dict(history, devices=dict(history["devices"], **{key: dict(device, inventory=trees)}))
