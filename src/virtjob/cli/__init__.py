"""``virtjob``: the command line tool (virsh-like) over the public API.

Loading it (click, virtjob, the standard modules they use) builds some 15,000 objects that
live as long as the program; the cyclic garbage collector would look them all over some 25
times meanwhile and find nothing to free (2.5 ms of the 50 of ``virtjob list``). It is paused
while the modules load and then set back as it was (`main` freezes them out of later
collections: see there).
"""

import gc

_collecting = gc.isenabled()
gc.disable()
try:
    from virtjob.cli.main import cli, main
finally:
    if _collecting:
        gc.enable()

__all__ = ["cli", "main"]
