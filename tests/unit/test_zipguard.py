"""The zip checks on central-directory entries alone: what a container may declare."""

from __future__ import annotations

import zipfile

import pytest

from alfrd_daemon.extract.zipguard import ZipRefused, check_members

MB = 1024 * 1024


def member(name: str, size: int, compressed: int, offset: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.file_size, info.compress_size, info.header_offset = size, compressed, offset
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def test_a_big_container_of_media_that_does_not_compress_passes() -> None:
    videos = [member(f"ppt/media/video{i}.mp4", 300 * MB, 299 * MB, i) for i in range(3)]
    summary = check_members([member("ppt/presentation.xml", 50_000, 5_000, 99), *videos],
                            archive_bytes=900 * MB)
    assert summary.members == 4 and summary.uncompressed_bytes == 900 * MB + 50_000


def test_many_small_members_that_unpack_to_gigabytes_are_a_bomb() -> None:
    infos = [member(f"xl/m{i}.xml", MB, 1024, i) for i in range(600)]
    with pytest.raises(ZipRefused, match=r"unpacks to more than 513 MB \(a zip bomb"):
        check_members(infos, archive_bytes=700 * 1024)


def test_one_huge_xml_part_is_refused_even_when_it_does_not_compress() -> None:
    with pytest.raises(ZipRefused, match=r"of XML \(limit 256 MB"):
        check_members([member("word/document.xml", 300 * MB, 300 * MB, 0)], 300 * MB)


@pytest.mark.parametrize(("names", "reason"), [
    (["../evil.xml"], "not a relative path"),
    (["/etc/passwd"], "not a relative path"),
    (["word/a.xml", "word/a.xml"], "appears twice"),
    (["word/" + "x" * 2000], "characters long"),
    (["word/inner.zip"], "holds another archive"),
])
def test_names_that_readers_could_disagree_on_are_refused(names: list[str],
                                                          reason: str) -> None:
    with pytest.raises(ZipRefused, match=reason):
        check_members([member(name, 10, 10, i) for i, name in enumerate(names)], 1000)


def test_an_embedded_workbook_is_counted_not_refused() -> None:
    summary = check_members([member("word/document.xml", 10, 10, 0),
                             member("word/embeddings/Sheet1.xlsx", 10, 10, 1)], 1000)
    assert summary.embedded_archives == 1


def test_encrypted_members_and_odd_methods_are_refused() -> None:
    locked = member("word/document.xml", 10, 10, 0)
    locked.flag_bits |= 0x1
    with pytest.raises(ZipRefused, match="encrypted"):
        check_members([locked], 1000)
    odd = member("word/document.xml", 10, 10, 0)
    odd.compress_type = zipfile.ZIP_LZMA
    with pytest.raises(ZipRefused, match="compression method 14"):
        check_members([odd], 1000)
