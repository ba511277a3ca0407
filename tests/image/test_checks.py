"""The image test's own judgement of "writes nothing outside /tmp", on a directory tree standing for a rootfs."""

from __future__ import annotations

from pathlib import Path

from tests.image.checks import changes, snapshot


def tree(root: Path) -> Path:
    for directory in ("tmp", "var/tmp", "run/lock", "etc", "opt/tflock/bin"):
        (root / directory).mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "opt" / "tflock" / "bin" / "tflock-bot").write_text("#!/bin/sh\n")
    return root


def test_writes_under_tmp_are_allowed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    before = snapshot(root)
    (root / "tmp" / "tflock.db").write_bytes(b"sqlite")
    (root / "tmp" / "sub").mkdir()
    assert changes(before, snapshot(root)) == []


def test_created_changed_removed_and_chmodded_paths_are_reported(tmp_path: Path) -> None:
    root = tree(tmp_path)
    before = snapshot(root)
    (root / "var" / "tmp" / "cache").write_text("x")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    (root / "opt" / "tflock" / "bin" / "tflock-bot").chmod(0o777)
    (root / "run" / "lock").rmdir()
    found = changes(before, snapshot(root))
    assert "created /var/tmp/cache" in found
    assert "changed /var/tmp" in found
    assert "changed /etc/passwd" in found
    assert "changed /opt/tflock/bin/tflock-bot" in found
    assert "removed /run/lock" in found


def test_buildahs_own_touch_of_run_is_ignored_but_not_what_is_created_there(tmp_path: Path) -> None:
    root = tree(tmp_path)
    before = snapshot(root)
    marker = root / "run" / ".containerenv"  # what `buildah run` writes and removes
    marker.write_text("")
    marker.unlink()
    assert changes(before, snapshot(root)) == []
    (root / "run" / "tflock.pid").write_text("1")
    assert changes(before, snapshot(root)) == ["created /run/tflock.pid"]
