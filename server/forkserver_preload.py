"""Imported by the solver pool's forkserver process only (multiprocessing's preload): it makes
the forkserver die with the server. Importing it anywhere else would tie that process to its
parent."""

from server.parent_death import die_with_parent

die_with_parent()
