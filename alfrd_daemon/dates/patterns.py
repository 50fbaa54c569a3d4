"""The patterns that find date candidates. They only locate and classify a substring (which
order its numbers are in, whether it names a day or just a month); dateparser reads it.

Month names come from dateparser's own locale data, so every language in dates.languages is
recognised in written dates without a list kept here."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator

MONTH_KEYS = ("january", "february", "march", "april", "may", "june", "july", "august",
              "september", "october", "november", "december")

# Digits around a numeric date must not continue it: "12.03.2024" inside "112.03.20245" or a
# version "1.2.3.4" is no date.
_NOT_BEFORE = r"(?<![^\W_]|[.,/-])"  # nor a letter: "v1.2.2024" is a version
_NOT_AFTER = r"(?![\d]|[.,/-]\d)"
_ORDINAL = r"(?:st|nd|rd|th)?"
_YEAR4 = r"(?P<y>(?:1[89]|2\d)\d\d)"

# Numeric forms. Year first (ISO 8601 and the like) is unambiguous; year last takes the order
# from dates.order unless a number above 12 settles it.
_YMD = (rf"{_NOT_BEFORE}(?P<ymd>{_YEAR4}(?P<s1>[-/.])(?P<m1>\d{{1,2}})(?P=s1)"
        rf"(?P<d1>\d{{1,2}})){_NOT_AFTER}")
_XXY = (rf"{_NOT_BEFORE}(?P<xxy>(?P<a>\d{{1,2}})(?P<s2>[./-])(?P<b>\d{{1,2}})(?P=s2)"
        rf"(?P<y2>(?:1[89]|2\d)\d\d|\d\d)){_NOT_AFTER}")
# File names: 20240305 (cameras and scanners: IMG_20240305_101500.jpg), 2024_03_05.
_COMPACT = (r"(?<!\d)(?P<compact>(?P<cy>(?:19|20)\d\d)(?P<cm>0[1-9]|1[0-2])"
            r"(?P<cd>0[1-9]|[12]\d|3[01]))(?!\d)")
_UNDERSCORED = (r"(?<!\d)(?P<under>(?P<uy>(?:19|20)\d\d)_(?P<um>\d{1,2})_(?P<ud>\d{1,2}))"
                r"(?!\d)")


def fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@functools.lru_cache(maxsize=16)
def month_numbers(language: str) -> dict[str, int]:
    """Every spelling of a month name in `language` (dateparser's locale data), case-folded
    and without a trailing dot, with the month's number."""
    from dateparser.languages.loader import default_loader

    try:
        info = default_loader.get_locale(language).info
    except (KeyError, ValueError):
        return {}  # the config checks languages at load; here a missing one finds nothing
    names: dict[str, int] = {}
    for number, key in enumerate(MONTH_KEYS, start=1):
        for name in info.get(key, ()):
            folded = fold(str(name)).rstrip(".")
            if len(folded) >= 3 and not any(ch.isdigit() for ch in folded):
                names.setdefault(folded, number)
    return names


def month_of(word: str, languages: tuple[str, ...]) -> tuple[int, tuple[str, ...]] | None:
    """The month `word` names and the languages among `languages` it names it in; None when
    it is no month in any of them."""
    folded = fold(word).rstrip(".")
    found = [(lang, month_numbers(lang).get(folded)) for lang in languages]
    months = {m for _, m in found if m is not None}
    if len(months) != 1:
        return None  # no month, or a word that is a different month in two languages
    return months.pop(), tuple(lang for lang, m in found if m is not None)


# Between the parts of a written date: spaces, or underscores in a file name (05_März_2024).
_GAP = r"[\s_]"
# A written date starts after no letter, digit or dot (not "Rechnung5. März" nor "v1.Mai").
_WORD_START = r"(?<![^\W_]|\.)"
# Any word where a month name may stand: which words are months is checked after the match
# (a set lookup), which costs far less than an alternation of every month name at every
# position of the text.
_MON = r"[^\W\d_]{3,12}\.?"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_WYEAR = r"(?:1[89]|2\d)\d\d(?!\d)"
_DMY_W = (rf"(?P<dmy_w>(?P<wd1>{_DAY}){_ORDINAL}\.?{_GAP}*(?:of{_GAP}+)?(?P<mon1>{_MON}),?"
          rf"{_GAP}+(?P<wy1>{_WYEAR}))")
_MDY_W = (rf"(?P<mdy_w>(?P<mon2>{_MON}){_GAP}+(?P<wd2>{_DAY}){_ORDINAL},?{_GAP}+"
          rf"(?P<wy2>{_WYEAR}))")
_MONTH_W = rf"(?P<month_w>(?P<mon3>{_MON}),?{_GAP}+(?P<wy3>{_WYEAR}))"


@functools.lru_cache(maxsize=4)
def compiled(*, filename: bool = False) -> re.Pattern[str]:
    """One pattern for every form. Alternatives starting with a digit and those starting with
    a word are split by a look-ahead, so each position tries only the forms it can start.
    Among those, the first that matches wins: a full written date ("Jul 5, 2019") is taken
    before the month alone ("Jul 2019") could be. The compact forms (20240305) only count in
    file names: in a text they are as likely an invoice or customer number.

    The standard library's re, not the regex module with its time limit: these patterns have
    no nested repetition, so a scan is linear in the (capped) text, and re scans it two to
    four times faster."""
    numeric = [_YMD, _XXY] + ([_COMPACT, _UNDERSCORED] if filename else [])
    digit_first = "|".join([*numeric, rf"{_WORD_START}{_DMY_W}"])
    word_first = rf"{_WORD_START}(?:{_MDY_W}|{_MONTH_W})"
    return re.compile(rf"(?=\d)(?:{digit_first})|(?=[^\W\d_]){word_first}", re.IGNORECASE)


# Where the pattern can match, so that a scan does not try it at every letter (~140 ns a
# character, ~140 µs for a 1 KB text; most of it is the written forms' look at every word).
# Every form holds a run of digits and ends with a digit that no digit follows, so a match
# ends where a run of digits ends, and the end of its first run of digits is at most
# LONGEST_NON_GAP characters that are not gaps ([\s_]) from its start, with runs of gaps of
# any length between them: a month word of up to 12 letters and its dot, a comma, a 4-digit
# year ("September., 2024"); every other form starts with its day or a number. Each run of
# digits opens a window that far back, and windows that meet are joined.
LONGEST_NON_GAP = 18
_DIGIT_RUN = re.compile(r"\d+")
_BACK = re.compile(rf"(?:[\s_]*[^\s_]){{1,{LONGEST_NON_GAP}}}")
# A window reaches this far past its last digit: the look-aheads after a match read at most
# two characters ("12.03.2024" must not go on as ".5"), so they see what the whole text says.
_PAST_END = 2


def candidate_windows(text: str) -> Iterator[tuple[int, int]]:
    """Disjoint [start, end) spans, in order, that hold every match of compiled() in `text`
    (searching each with pos and endpos finds exactly the matches a scan of the whole text
    finds there: look-behinds see before pos, and no window ends within two characters of a
    digit)."""
    backwards = text[::-1]
    start = end = -1
    for run in _DIGIT_RUN.finditer(text):
        stop = run.end()
        if run.start() <= end:  # its window reaches back at least this far: it joins
            end = stop + _PAST_END
            continue
        back = _BACK.match(backwards, len(text) - stop)
        first = stop - (back.end() - back.start()) if back else run.start()
        if first <= end:
            end = stop + _PAST_END
            continue
        if end >= 0:
            yield start, end
        start, end = first, stop + _PAST_END
    if end >= 0:
        yield start, end
