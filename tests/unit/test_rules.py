"""Rules: each matcher, the validator's one-line problems, and the peers' failures
(paperless-ngx #3848 a `none` rule that still assigned tags, #9041 tags silently not set,
#11475 a removed tag coming back)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from alfrd_daemon.config.parse import ConfigError, load_settings
from alfrd_daemon.rules.apply import apply_rules, changed
from alfrd_daemon.rules.load import RulesError, RuleSource, compile_rules
from alfrd_daemon.rules.model import Document, RuleSet

REPO = Path(__file__).resolve().parents[2]


def rules(*data: dict[str, Any], timeout: float = 0.25) -> RuleSet:
    return compile_rules([RuleSource("alfrd.yaml", d) for d in data], regex_timeout=timeout)


def doc(text: str = "", name: str = "scan.pdf", path: str | None = None, **kw: Any) -> Document:
    return Document(text=text, original_name=name, source_path=path or name, **kw)


def run(text: str, *data: dict[str, Any], **kw: Any) -> Any:
    return apply_rules(doc(text, **kw), rules(*data))


# --- matchers ------------------------------------------------------------------------------
def test_any_matches_whole_words_only_case_insensitive() -> None:
    rule = {"name": "power", "any": "strom electricity", "tags": ["energy"]}
    assert run("Your ELECTRICITY bill", rule).matched == {"power": ["ELECTRICITY"]}
    assert run("Stromberg GmbH", rule).matched == {}  # no word boundary after "strom"


def test_all_needs_every_word() -> None:
    rule = {"name": "inv", "all": ["invoice", "kwh"], "document_type": "invoice"}
    assert run("invoice for 300 kWh", rule).document_type == "invoice"
    assert run("invoice for 300 units", rule).document_type is None


def test_exact_phrase_across_line_breaks() -> None:
    rule = {"name": "sw", "exact": "Stadtwerke München", "correspondent": "Stadtwerke"}
    out = run("Von: stadtwerke\nmünchen GmbH", rule)
    assert out.correspondent == "Stadtwerke"
    assert run("München Stadtwerke", rule).correspondent is None


def test_case_sensitive_rule() -> None:
    rule = {"name": "it", "any": "IT", "case_sensitive": True, "tags": ["it"]}
    assert run("the IT department", rule).tags == ["it"]
    assert run("take it easy", rule).tags == []


def test_regex_match_and_matched_text_recorded() -> None:
    rule = {"name": "cust", "regex": r"kundennr\.?\s*\d{6}", "tags": ["customer"]}
    out = run("Kundennr. 123456 bitte angeben", rule)
    assert out.matched == {"cust": ["Kundennr. 123456"]}


def test_fuzzy_tolerates_ocr_errors() -> None:
    rule = {"name": "fa", "fuzzy": {"text": "Finanzamt Hamburg", "threshold": 80},
            "correspondent": "Finanzamt"}
    assert run("Absender: Flnanzamt  Harnburg-Nord", rule).correspondent == "Finanzamt"
    assert run("Absender: Stadtwerke Bremen", rule).correspondent is None


def test_filename_glob_and_folder() -> None:
    rule = {"name": "bank", "filename": "kontoauszug_*.pdf", "folder": "bank",
            "tags": ["bank"]}
    assert run("", rule, name="Kontoauszug_2024.PDF",
               path="bank/2024/Kontoauszug_2024.PDF").tags == ["bank"]
    assert run("", rule, name="Kontoauszug_2024.pdf", path="Kontoauszug_2024.pdf").tags == []
    assert run("", rule, name="other.pdf", path="bank/other.pdf").tags == []


def test_catastrophic_regex_counts_as_no_match_and_is_reported() -> None:
    hostile = {"name": "evil", "regex": "(a+)+$", "tags": ["x"]}
    fine = {"name": "fine", "any": "aaaa", "tags": ["y"]}
    out = apply_rules(doc("a" * 40_000 + "b"), rules(hostile, fine, timeout=0.05))
    assert out.timed_out == {"evil": ["(a+)+$"]}
    assert "evil" not in out.matched
    assert out.tags == []  # "aaaa" is no whole word in "aaa…ab"


# --- actions -------------------------------------------------------------------------------
def test_title_template() -> None:
    rule = {"name": "bill", "any": "rechnung", "correspondent": "Stadtwerke",
            "document_type": "Invoice", "title": "{correspondent} {document_type} {date:%Y-%m}"}
    out = apply_rules(doc("Rechnung", document_date=dt.date(2024, 3, 5)), rules(rule))
    assert out.title == "Stadtwerke Invoice 2024-03"
    # No document date: the ingest date stands in; no correspondent: no double space.
    rule2 = {"name": "b2", "any": "rechnung", "title": "{correspondent} {filename} {date:%Y}"}
    out = apply_rules(doc("Rechnung", name="x.pdf", ingested=dt.date(2023, 1, 2)),
                      rules(rule2))
    assert out.title == "x 2023"


def test_first_rule_wins_and_later_ones_say_so() -> None:
    a = {"name": "a", "any": "bill", "document_type": "invoice"}
    b = {"name": "b", "any": "bill", "document_type": "receipt", "tags": ["b"]}
    out = run("bill", a, b)
    assert out.document_type == "invoice"
    assert out.set_by == {"document_type": "a"}
    assert any("'b' " not in s and "rule 'a' came first" in s for s in out.skipped)
    assert out.tags == ["b"]


# --- the peers' failures -------------------------------------------------------------------
def test_none_vetoes_every_action_3848() -> None:
    rule = {"name": "bill", "any": "invoice", "none": "reminder mahnung",
            "tags": ["bills"], "document_type": "invoice", "title": "{document_type}"}
    out = run("Invoice - Mahnung", rule)
    assert (out.tags, out.document_type, out.title, out.matched) == ([], None, None, {})
    assert out.vetoed == {"bill": "Mahnung"}
    assert run("Invoice", rule).tags == ["bills"]


def test_none_alone_is_refused_at_load_3848() -> None:
    with pytest.raises(RulesError) as err:
        rules({"name": "lonely", "none": "spam", "tags": ["x"]})
    assert "a rule with only `none` would match every document" in err.value.problems[0]


def test_rule_tags_join_folder_tags_and_are_never_silently_dropped_9041() -> None:
    rule = {"name": "t", "any": "bill", "tags": ["Bills", "energy"]}
    out = apply_rules(doc("bill", tags=["bills", "inbox"]), rules(rule))
    assert out.tags == ["bills", "inbox", "energy"]  # "Bills" is already there as "bills"
    assert out.rule_tags == ["energy"]
    # Tags set by hand: nothing is added, and the outcome says why.
    out = apply_rules(doc("bill", tags=["mine"], user_fields=["tags"]), rules(rule))
    assert out.tags == ["mine"]
    assert len(out.skipped) == 2 and "set by hand" in out.skipped[0]


def test_removed_tag_never_comes_back_11475() -> None:
    rule = {"name": "t", "any": "bill", "tags": ["energy", "bills"]}
    d = doc("bill", tags=["bills"], rule_tags=["bills"], user_removed_tags=["energy"])
    out = apply_rules(d, rules(rule))
    assert out.tags == ["bills"] and "energy" not in out.rule_tags
    assert "the user removed it" in out.skipped[0]


def test_rerun_takes_back_only_its_own_tags_and_fields() -> None:
    rule = {"name": "t", "any": "bill", "tags": ["energy"], "document_type": "invoice"}
    d = doc("no longer matching", tags=["folder", "energy"], rule_tags=["energy"],
            document_type="invoice", metadata={"rules_set": {"document_type": "t"}})
    out = apply_rules(d, rules(rule))
    assert out.tags == ["folder"] and out.rule_tags == [] and out.document_type is None
    # A type that did not come from rules (an import, say) stays.
    d2 = doc("nothing", document_type="letter")
    assert apply_rules(d2, rules(rule)).document_type == "letter"


def test_user_fields_are_never_written() -> None:
    rule = {"name": "t", "any": "bill", "document_type": "invoice", "correspondent": "X",
            "title": "{correspondent}"}
    d = doc("bill", document_type="mine", correspondent="me", title="My title",
            user_fields=["document_type", "correspondent", "title"])
    out = apply_rules(d, rules(rule))
    assert (out.document_type, out.correspondent, out.title) == ("mine", "me", "My title")


def test_unchanged_rerun_writes_nothing() -> None:
    rule = {"name": "t", "any": "bill", "tags": ["energy"]}
    d = doc("bill")
    out = apply_rules(d, rules(rule))
    d.tags, d.rule_tags, d.metadata = out.tags, out.rule_tags, out.metadata()
    assert not changed(d, apply_rules(d, rules(rule)))


def test_disabled_rule_does_nothing() -> None:
    assert rules({"name": "off", "enabled": False, "any": "x", "tags": ["x"]}).rules == ()


# --- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "expected"), [
    ({"name": "r", "regex": "(unclosed", "tags": ["x"]},
     "rule 'r', key 'regex': got '(unclosed', expected a valid regular expression"),
    ({"name": "r", "any": "x", "tagz": ["x"]}, "rule 'r', key 'tagz': got ['x'], expected one of"),
    ({"name": "r", "any": "x", "title": "{sender}"},
     "rule 'r', key 'title': got '{sender}', expected fields among {correspondent}, "
     "{document_type}, {date}, {filename}, {folder} ({sender} is not one)"),
    ({"name": "r", "any": "x", "title": "{correspondent.__class__}"}, "is not one"),
    ({"name": "r", "any": "x", "title": "{date:%Y", "tags": ["x"]}, "expected a valid template"),
    ({"name": "r", "any": "x", "title": "{date:>10}"}, "expected a strftime date format"),
    ({"name": "r", "any": "x", "title": "{correspondent:>10}"}, "a format only on {date}"),
    ({"name": "r", "fuzzy": {"text": "x", "threshold": 10}, "tags": ["x"]},
     "key 'fuzzy.threshold': got 10, expected a number from 50 to 100"),
    ({"name": "r", "any": 5, "tags": ["x"]}, "key 'any': got 5, expected a string or a list"),
    ({"name": "r", "any": "x"}, "expected at least one action"),
    ({"any": "x", "tags": ["x"]}, "rule '#1', key 'name': got None"),
    ({"name": "r", "any": "x", "tags": ["x"], "case_sensitive": "yes"},
     "key 'case_sensitive': got 'yes', expected true or false"),
    ("just text", "rule #1: got 'just text', expected a mapping"),
])
def test_validation_names_rule_key_value_and_expectation(rule: Any, expected: str) -> None:
    with pytest.raises(RulesError) as err:
        rules(rule)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert all("\n" not in p and p.startswith("alfrd.yaml: rule") for p in err.value.problems)


def test_every_problem_reported_at_once_and_duplicate_names() -> None:
    with pytest.raises(RulesError) as err:
        rules({"name": "a", "regex": "(", "tags": ["x"]}, {"name": "b", "any": "x"},
              {"name": "c", "any": "x", "tags": ["x"]}, {"name": "c", "any": "y", "tags": ["y"]})
    assert len(err.value.problems) == 3
    assert "a name no other rule has" in err.value.problems[2]


def test_words_with_other_characters_and_casefolding() -> None:
    rule = {"name": "w", "any": ["e-mail", "straße"], "tags": ["x"]}
    assert run("send an E-Mail", rule).matched == {"w": ["E-Mail"]}
    assert run("Hauptstrasse 5", rule).matched == {}  # a whole word only
    assert run("STRASSE 5", rule).matched == {"w": ["STRASSE"]}  # ß casefolds to ss
    assert run("email", rule).matched == {}


# --- configuration: inline rules, rules.d, and the documented examples ---------------------
def test_config_reads_inline_rules_and_rules_d_in_order(tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "20-b.yaml").write_text(yaml.safe_dump(
        [{"name": "b", "any": "x", "tags": ["b"]}]))
    (tmp_path / "rules.d" / "10-a.yml").write_text(yaml.safe_dump(
        {"rules": [{"name": "a", "any": "x", "tags": ["a"]}]}))
    (tmp_path / "rules.d" / "notes.txt").write_text("not a rule file")
    config = tmp_path / "alfrd.yaml"
    config.write_text(yaml.safe_dump({"rules": [{"name": "inline", "any": "x",
                                                 "tags": ["i"]}]}))
    settings = load_settings(str(config), environ={})
    ruleset = compile_rules(settings.rules.inline)
    assert [r.name for r in ruleset.rules] == ["inline", "a", "b"]
    assert ruleset.rules[1].origin.endswith("rules.d/10-a.yml")


@pytest.mark.parametrize(("rules_file", "expected"), [
    ("- name: [", "invalid YAML at line 1"),
    ("name: x", "expected a list of rules"),
])
def test_a_bad_rules_file_is_a_config_problem(tmp_path: Path, rules_file: str,
                                              expected: str) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "bad.yaml").write_text(rules_file)
    (tmp_path / "alfrd.yaml").write_text("{}")
    with pytest.raises(ConfigError) as err:
        load_settings(str(tmp_path / "alfrd.yaml"), environ={})
    assert expected in err.value.problems[0] and "bad.yaml" in err.value.problems[0]


def test_rules_dir_must_exist_and_the_section_is_checked(tmp_path: Path) -> None:
    (tmp_path / "alfrd.yaml").write_text(yaml.safe_dump(
        {"rules": {"dir": "missing", "regex_timeout": 0, "inlin": []}}))
    with pytest.raises(ConfigError) as err:
        load_settings(str(tmp_path / "alfrd.yaml"), environ={})
    text = "\n".join(err.value.problems)
    assert "At 'rules.dir'" in text and "At 'rules.regex_timeout'" in text
    assert "At 'rules.inlin': unknown setting" in text


def test_the_documented_example_rules_compile() -> None:
    text = (REPO / "config" / "alfrd.yaml").read_text(encoding="utf-8")
    start = text.index("#   rules:\n")
    block = []
    for line in text[start:].splitlines():
        if not line.startswith("#"):
            break
        block.append(line[2:])
    data = yaml.safe_load("\n".join(block))
    ruleset = compile_rules([RuleSource("alfrd.yaml", r) for r in data["rules"]["inline"]])
    kinds = {k for r in data["rules"]["inline"] for k in r}
    assert {"any", "all", "none", "exact", "regex", "fuzzy", "filename", "folder"} <= kinds
    out = apply_rules(doc("Strom 300 kWh"), ruleset)
    assert (out.document_type, out.correspondent) == ("invoice", "Stadtwerke")
    out = apply_rules(doc("Kundennr. 123456"), ruleset)
    assert out.tags == ["customer"]


def test_values_the_database_would_refuse_are_refused_at_load() -> None:
    with pytest.raises(RulesError) as err:
        rules({"name": "r", "any": "x", "tags": ["a\x00b"], "correspondent": "line\nbreak"})
    assert len(err.value.problems) == 2
    assert all("printable characters" in p for p in err.value.problems)


def test_a_title_a_rule_no_longer_gives_goes_back_to_the_one_it_replaced() -> None:
    rule = {"name": "t", "any": "bill", "title": "{filename} bill"}
    first = apply_rules(doc("bill", name="x.pdf", title="PDF title"), rules(rule))
    assert first.title == "x bill"
    stored = doc("no longer", name="x.pdf", title=first.title, metadata=first.metadata())
    assert apply_rules(stored, rules(rule)).title == "PDF title"
    # Still matching: the same title, and the replaced one is kept for later.
    again = apply_rules(doc("bill", name="x.pdf", title=first.title,
                            metadata=first.metadata()), rules(rule))
    assert (again.title, again.title_before) == ("x bill", "PDF title")
