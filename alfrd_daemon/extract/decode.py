"""Bytes to text: a byte-order mark, then strict UTF-8, then a declared charset, then a guess.

The guess comes from charset-normalizer, corrected for the Latin code pages it confuses on
short Western European text.
"""

from __future__ import annotations

import codecs

import charset_normalizer

# Longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Single-byte Latin code pages that charset-normalizer often picks for short Western European
# text where cp1252 is the truth (it calls German "cp1257" and French "cp1250").
_LATIN_FAMILY = frozenset({
    "cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4",
    "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16",
    "mac_latin2", "mac_roman", "mac_iceland", "mac_turkish",
    # DOS code pages for Latin scripts: charset-normalizer picks cp775 for short German text.
    "cp437", "cp775", "cp850", "cp852", "cp857", "cp858", "cp860", "cp861", "cp863", "cp865",
})
# What Central European / Baltic / Turkish letters turn into when read as cp1252 (ł→³, ą→¹,
# Ż→¯, Ą→¥, š→ð in cp1257, Turkish dotless i→ý ...). Their presence means cp1252 is the wrong guess.
_NOT_WESTERN = frozenset("¹³¯¥ðþÐÞýÝ")
_WESTERN = frozenset({"cp1252", "latin_1", "iso8859_15"})
_GUESS_SAMPLE = 1 << 20


def _decode(data: bytes, encoding: str, *, partial: bool, errors: str) -> str:
    # An incremental decoder drops a multi-byte sequence cut off by a capped read instead of
    # failing (strict) or inventing a replacement character for it.
    return codecs.getincrementaldecoder(encoding)(errors).decode(data, final=not partial)


def decode_text(data: bytes, *, partial: bool = False,
                declared: str | None = None) -> tuple[str, str]:
    """(text, encoding): BOM, then strict UTF-8, then a declared charset, then a guess."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom):], encoding, partial=partial, errors="replace"), encoding
    candidates = ["utf-8"] + ([declared] if declared else [])
    for encoding in candidates:
        try:
            return _decode(data, encoding, partial=partial, errors="strict"), encoding
        except (UnicodeDecodeError, LookupError):
            continue
    encoding = _guess_encoding(data) or "utf-8"
    return _decode(data, encoding, partial=partial, errors="replace"), encoding


def _guess_encoding(data: bytes) -> str | None:
    sample = data[:_GUESS_SAMPLE]
    if len(data) > _GUESS_SAMPLE and b"\n" in sample:
        sample = sample[:sample.rindex(b"\n")]  # never cut a multi-byte character in half
    candidates = [match.encoding for match in charset_normalizer.from_bytes(sample)]
    if not candidates or candidates[0] not in _LATIN_FAMILY:
        return candidates[0] if candidates else None
    if _reads_as_western(sample):
        return "cp1252"
    # Central European letters in it: the best Latin guess that is not the Western one.
    others = (name for name in candidates if name in _LATIN_FAMILY and name not in _WESTERN)
    return next(others, candidates[0])


def _reads_as_western(sample: bytes) -> bool:
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return _NOT_WESTERN.isdisjoint(text)
