"""Labels as people write them (issue 11, item 5): a configured label with qualifier words
around it is still that label; an ordinary sentence with a colon is not a label.

A table of label lines (line -> field, or no label), the rule's config keys, and golden mails
in tests/golden/labels/ (raw mail -> outcome and report JSON -> notice text, see
goldencases.py).
"""

from __future__ import annotations

import pytest

from bridge.core.labels import DEFAULT_RULES, compile_rules, match_label, rules_from_config
from bridge.core.report import read_labels
from goldencases import GOLDEN, case_names, check_case

C = compile_rules(DEFAULT_RULES)

# line as written in a mail -> the report field it fills (None: no label; the line continues
# the value before it, or ends it as an unknown label, but fills no field)
LINES: list[tuple[str, str | None]] = [
    # a configured label with qualifier words (Dutch)
    ("Begin storing: 28-11-2026 09:42", "start"),
    ("Begin van de storing: 28-11-2026 09:42", "start"),
    ("Starttijd onderhoud: 03-12-2026 00:00", "start"),
    ("Geplande starttijd: 03-12-2026 00:00", "start"),
    ("Einde werkzaamheden: 03-12-2026 06:00", "end"),
    ("Einde van de werkzaamheden: 03-12-2026 06:00", "end"),
    ("Eindtijd onderhoud: 06:00", "end"),
    ("Verwachte eindtijd storing: 14:00", "expected_end"),
    ("Nieuwe verwachte eindtijd: 17:30", "expected_end"),
    ("Verwacht herstel storing: 14:00", "expected_end"),
    ("Getroffen plaatsen: Harderwijk, Hierden", "places"),
    ("Betrokken plaatsen: Ermelo", "places"),
    ("Getroffen regio: Veluwe", "places"),
    ("Ticketnummer storing: INC000012345678", "ticket"),
    ("Status storing: Opgelost", "status"),
    ("Status van de werkzaamheden: Aangekondigd", "status"),
    ("Omschrijving storing: Kabelbreuk.", "description"),
    ("Duur onderbreking onderhoud: 4 uur", "downtime"),
    ("Datum werkzaamheden: 03-12-2026", "date"),  # configured as a whole
    ("Datum storing: 28-11-2026", "date"),
    ("**Begin storing:** 09:42", "start"),  # bold in a converted HTML mail
    ("- Einde storing: 11:00", "end"),  # a bullet
    ("Begin storing       28-11-2026 09:42", "start"),  # aligned, no colon
    # English
    ("Start of maintenance: 2026-12-03 00:00", "start"),
    ("Start time of outage: 09:42", "start"),
    ("End of maintenance: 06:00", "end"),
    ("Maintenance end: 06:00", "end"),
    ("Expected end time of outage: 14:00", "expected_end"),
    ("Affected locations: Eindhoven, Veldhoven", "places"),
    ("Impacted services: Internet", "services"),
    ("Outage description: Fibre cut.", "description"),
    ("Planned maintenance window: 00:00 - 06:00", "period"),
    # configured labels as whole strings still work
    ("Ticket nummer: INC000012345678", "ticket"),
    ("Getroffen gebied: Amersfoort", "places"),
    ("Klantnaam: J. Jansen", "customer"),
    ("Aansluitnummer storing: 0341-123456", "customer"),
    # ordinary sentences with a colon, and words that change the meaning: no label
    ("Monteurs zijn onderweg: herstel volgt", None),
    ("Let op: herstart het modem", None),
    ("Storing: Internet - Amersfoort", None),  # only qualifier words
    ("Werkzaamheden: 28-11-2026 00:00 - 06:00", None),  # a kind word, not a window
    ("De storing is verholpen: alles werkt", None),
    ("Oorspronkelijke eindtijd: 14:00", None),  # the old value, not the end
    ("Vorige starttijd: 09:42", None),
    ("Original end time: 14:00", None),
    ("Date: Sat, 28 Nov 2026 09:45:00 +0100", None),  # a forward header
    ("Begin storing van de glasvezel bij de wijkcentrale: 09:42", None),  # too many words
    ("Update om 10:15: kabel gevonden", None),  # digits: a sentence
    ("Begin, storing: 09:42", None),  # a comma: a sentence
    ("Ter info, de storing: 09:42", None),
]


def test_the_table_is_large_enough():
    assert len(LINES) >= 30
    assert sum(1 for _, f in LINES if f is None) >= 10


@pytest.mark.parametrize("line,field", LINES, ids=[line[:40] for line, _ in LINES])
def test_label_line(line, field):
    got = read_labels(line + "\n", DEFAULT_RULES)
    want = {field} if field else set()
    assert set(got) == want, got


def test_match_label_directly():
    assert match_label("Begin storing", C) == "start"
    assert match_label("Verwachte eindtijd storing", C) == "expected_end"
    assert match_label("Eindtijd", C) == "end"  # whole configured labels first
    assert match_label("Storing", C) is None  # qualifier words only
    assert match_label("", C) is None
    assert match_label("x" * 500, C) is None


def test_a_qualified_label_ends_the_value_before_it():
    text = ("Omschrijving: Kabelbreuk bij de wijkcentrale.\n"
            "Begin storing: 28-11-2026 09:42\n"
            "Verwachte eindtijd storing: 28-11-2026 14:00\n")
    got = read_labels(text)
    assert got == {"description": "Kabelbreuk bij de wijkcentrale.",
                   "start": "28-11-2026 09:42", "expected_end": "28-11-2026 14:00"}


def test_a_sentence_with_a_colon_continues_the_description():
    text = ("Omschrijving: Door graafwerk is een kabel beschadigd. Monteurs zijn\n"
            "onderweg: herstel volgt zo snel mogelijk. Let op: herstart\n"
            "daarna het modem.\n"
            "Begin storing: 09:42\n")
    assert read_labels(text) == {
        "description": "Door graafwerk is een kabel beschadigd. Monteurs zijn onderweg: "
                       "herstel volgt zo snel mogelijk. Let op: herstart daarna het modem.",
        "start": "09:42"}


def test_qualifier_words_and_the_bound_come_from_config():
    rules = rules_from_config({"label_qualifier_words": ["incidentje"], "label_max_words": 2})
    c = compile_rules(rules)
    assert match_label("Begin incidentje", c) == "start"
    assert match_label("Begin storing", c) is None  # no longer a qualifier
    assert match_label("Begin van incidentje", c) is None  # "van" no longer either
    rules = rules_from_config({"label_max_words": 1})
    assert match_label("Begin storing", compile_rules(rules)) is None  # two words > 1
    off = compile_rules(rules_from_config({"label_qualifier_words": []}))
    assert match_label("Begin storing", off) is None
    assert match_label("Begin", off) == "start"


@pytest.mark.parametrize("cfg,fragment", [
    ({"label_max_words": 0}, "parser.label_max_words: expected an integer from 1 to 12"),
    ({"label_max_words": "6"}, "parser.label_max_words"),
    ({"label_max_words": True}, "parser.label_max_words"),
    ({"label_qualifier_words": "storing"}, "parser.label_qualifier_words: expected a list"),
    ({"customer_labels": [3]}, "parser.customer_labels"),
    ({"address_pattern": "("}, "parser.address_pattern: invalid regular expression"),
])
def test_rule_config_errors(cfg, fragment):
    with pytest.raises(ValueError) as exc:
        rules_from_config(cfg)
    assert fragment in str(exc.value)


def test_matching_stays_cheap_on_hostile_labels():
    import time

    lines = ["storing " * 6 + ": x", ("storing " * 5 + "begin: x\n") * 2000,
             "Begin" + " storing" * 20000 + ": x", "Begin" + " " * 100_000 + "storing   x"]
    for text in lines:
        t0 = time.perf_counter()
        read_labels(text)
        assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("case", case_names(GOLDEN / "labels"))
def test_golden_label_mails(case):
    check_case(GOLDEN / "labels", case)


def test_a_whole_label_wins_over_an_earlier_qualified_one():
    text = ("Storing opgelost: de kabel is hersteld\n"
            "Eindtijd: 28-11-2026 11:02\n"
            "Begin storing: 28-11-2026 07:10\n"
            "Starttijd: 28-11-2026 07:05\n"
            "Einde werkzaamheden: 12:00\n")
    got = read_labels(text)
    assert got["end"] == "28-11-2026 11:02"  # not the sentence before it
    assert got["start"] == "28-11-2026 07:05"
    # among qualified (or among whole) labels the first still wins
    assert read_labels("Begin storing: 07:10\nStart of outage: 07:20\n")["start"] == "07:10"
    assert read_labels("Starttijd: 07:05\nBegin storing: 07:10\n")["start"] == "07:05"
