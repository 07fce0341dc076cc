"""`virtjob.paths`: the one rule for "inside a directory" and the one way paths are shown.

Before, the rule lived in three places (files, virtjobd's path policy, the QEMU driver's
disk confinement), paths that are not UTF-8 were rendered three ways, and naming an allowed
directory itself was an `AccessDeniedError` for virtjobd but an `InvalidArgError` for the
file layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtjob.daemon.security import PathPolicy
from virtjob.drivers.base import Confinement
from virtjob.errors import InvalidArgError
from virtjob.files import check_target, open_source
from virtjob.paths import is_inside, is_text, printable, shown_path


@pytest.mark.parametrize(
    ("path", "directory", "inside"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b/c", "/a/b", True),
        ("/a/b/c", "/a/b/", True),
        ("/a/bc", "/a/b", False),
        ("/a", "/a/b", False),
        ("/a", "/", True),
        ("/", "/", True),
    ],
)
def test_is_inside(path: str, directory: str, inside: bool) -> None:
    assert is_inside(path, directory) is inside


def test_text_that_is_not_utf8_is_printed_as_escapes() -> None:
    bad = os.fsdecode(b"/srv/caf\xe9.save")
    assert not is_text(bad)
    assert printable(bad) == "/srv/caf\\udce9.save"
    assert printable("/srv/café.save") == "/srv/café.save"
    printable(bad).encode("utf-8")  # always encodable


def test_shown_path_says_what_a_path_resolves_to_only_when_it_differs() -> None:
    assert shown_path("/a/b") == "/a/b"
    assert shown_path("/a/b", "/a/b") == "/a/b"
    assert shown_path("/a/link", "/a/b") == "/a/link (resolves to /a/b)"
    bad = os.fsdecode(b"/a/\xff")
    assert shown_path(bad, "/a/b") == "/a/\\udcff (resolves to /a/b)"


def test_an_allowed_directory_itself_is_refused_alike_by_the_daemon_and_the_file_layer(
    tmp_path: Path,
) -> None:
    """Naming the allowed directory as a file is an invalid argument (it is a directory, not a
    file), worded the same by virtjobd's path policy and by the file targets."""
    allowed = tmp_path / "files"
    allowed.mkdir()
    policy = PathPolicy([str(allowed)])
    confinement = Confinement(dirs=(str(allowed),))
    with pytest.raises(InvalidArgError) as by_policy:
        policy.check(str(allowed), "save file")
    with pytest.raises(InvalidArgError) as by_target:
        check_target(str(allowed), "a save", confinement)
    with pytest.raises(InvalidArgError) as by_source:
        open_source(str(allowed), confinement)
    said = "is an allowed directory itself, not a file; name a file inside it"
    for caught in (by_policy, by_target, by_source):
        assert f"{allowed} {said}" in caught.value.message
    assert policy.check(str(allowed / "x.save"), "save file") == str(allowed / "x.save")
