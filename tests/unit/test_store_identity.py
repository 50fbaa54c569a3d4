"""A store's identity: made once, read on every open, the same for everyone who opens it."""

from __future__ import annotations

import stat
import threading
import uuid
from pathlib import Path

import pytest

from alfrd_daemon.ingest.reconcile import classify, holder
from alfrd_daemon.ingest.store import IDENTITY_NAME, Store, StoreIdentityError, parse_identity


def test_parse_identity_accepts_a_uuid_and_nothing_else() -> None:
    given = uuid.uuid4()
    assert parse_identity(f"{given}\n") == str(given)
    assert parse_identity(str(given).upper()) == str(given)  # canonical form
    for junk in ("", "\n", "not-an-id", "12345", str(given)[:-1]):
        assert parse_identity(junk) is None


def test_the_first_open_makes_the_id_and_every_later_open_reads_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert Store(root).read_identity() is None  # reading never creates
    assert not root.exists()
    first = Store(root, fsync=False)
    first.open()
    assert first.id is not None and uuid.UUID(first.id)
    again = Store(root, fsync=False)
    again.open()
    assert again.id == first.id == Store(root).read_identity()
    ident = root / IDENTITY_NAME
    assert stat.S_IMODE(ident.stat().st_mode) == 0o640
    assert [p.name for p in root.iterdir()] == [IDENTITY_NAME]  # no temporary file left


def test_stores_opened_at_once_agree_on_one_id(tmp_path: Path) -> None:
    """Daemons starting together on one fresh store (or on one NFS export) end with one id."""
    root = tmp_path / "store"
    stores = [Store(root, fsync=False) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_it(store: Store) -> None:
        barrier.wait()
        try:
            store.open()
        except BaseException as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert len({s.id for s in stores}) == 1
    assert [p.name for p in root.iterdir()] == [IDENTITY_NAME]


def test_a_corrupt_identity_file_is_an_error_naming_it_never_a_new_id(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / IDENTITY_NAME).write_text("garbage\n")
    with pytest.raises(StoreIdentityError) as caught:
        Store(root).open()
    assert caught.value.filename == str(root / IDENTITY_NAME)
    assert "expected a UUID" in caught.value.strerror
    assert (root / IDENTITY_NAME).read_text() == "garbage\n"  # left for a person to fix


def test_whose_row_and_the_id_file_in_a_check() -> None:
    assert holder("a", "a") == "local"
    assert holder("b", "a") == "other"
    assert holder("b", None) == "other"  # this store has no id yet: every recorded row is
    assert holder(None, "a") == "unrecorded"  # another's; an old row is whoever has the file
    assert classify(IDENTITY_NAME) == ("identity", None)
    assert classify(f"ab/{IDENTITY_NAME}")[0] == "stray"  # only at the store's root
