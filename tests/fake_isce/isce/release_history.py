# Stand-in for ISCE2's release_history.py (tests only): the same Tag layout ISCE uses.
import collections

Tag = collections.namedtuple("Tag", "version svn_revision yyyymmdd")

releases = (
    Tag("2.6.4", "", "20250101"),
    Tag("2.6.5", "", "20250601"),
)

release_version = releases[-1].version
