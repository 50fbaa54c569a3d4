"""Progress output: a bar on a terminal, occasional plain lines elsewhere; rows counted at a
rate (the DuckDB import) and the stages of a job (`alfrd jobs run`)."""

from __future__ import annotations

import io

from alfrd_daemon.progress import Progress, StageProgress, bar_line


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bar_line_shows_percent_count_and_rate() -> None:
    line = bar_line("documents", 50, 200, 2.0)
    assert "[" + "#" * 6 + "." * 18 + "]" in line
    assert " 25%" in line and "50/200" in line and "25 rows/s" in line
    assert "100%" in bar_line("x", 3, 3, 1.0)


def test_terminal_redraws_in_place_at_most_ten_times_a_second() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=True, clock=clock)
    p.start("documents", 100)
    for _ in range(100):
        clock.now += 0.01
        p.advance()
    p.finish()
    text = out.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")
    assert 8 <= text.count("\r") <= 13
    assert "100%" in text


def test_plain_output_has_no_carriage_returns() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=False, clock=clock, plain_every=5.0)
    p.start("documents", 10)
    for _ in range(10):
        clock.now += 1.0
        p.advance()
    p.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["documents: 10 rows", "documents: 5/10", "documents: 10/10",
                     "documents: 10/10 in 10.0 s"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stages_draw_a_bar_on_a_terminal() -> None:
    out = Terminal()
    bar = StageProgress("reindex", out)
    bar("recomputing", 50, 100)
    assert "\r" in out.getvalue() and "[" + "#" * 12 + "." * 12 + "]  50%" in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r\033[K")


def test_stages_print_a_plain_line_per_stage_and_per_tenth_elsewhere() -> None:
    out = io.StringIO()
    bar = StageProgress("reindex", out)
    for done in range(0, 1001, 50):
        bar("recomputing", done, 1000)
    bar("vacuum analyze", None, None)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "reindex: recomputing (0/1000)" and lines[-1] == "reindex: vacuum analyze"
    assert len(lines) == 12  # one per 10 %, plus the next stage
