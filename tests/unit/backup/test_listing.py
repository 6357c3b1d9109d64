"""What an rsync listed, bounded as the inventory keeps it."""
from ethoscope_rsync.backup.listing import Listing
from ethoscope_rsync.state.inventory import FILES_MAX, PATH_MAX


def test_a_listing_keeps_at_most_the_inventory_s_bound_and_counts_the_rest():
    listing = Listing()
    listing.add("d/" + "x" * PATH_MAX, 100)              # too long a name: counted only
    for n in range(FILES_MAX + 5):
        listing.add(f"d/{n:07d}", 1)
    listing.add("d/0000000", 3)                            # a file named again keeps its place
    assert len(listing.files) == FILES_MAX and listing.files["d/0000000"] == 3
    assert (listing.untracked, listing.untracked_bytes) == (6, 105)
    event = listing.event("k", "results", {"d/x.db": 9})
    assert event.untracked == (6, 105) and dict(event.files)["d/x.db"] == 9 and len(event.files) == FILES_MAX + 1
