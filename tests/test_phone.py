"""bridge.core.phone: normalising, masking and WhatsApp chat ids."""

from __future__ import annotations

import re
import time

import pytest

from bridge.core.phone import (
    PhoneError,
    chat_id,
    from_chat_id,
    mask,
    mask_text,
    national_forms,
    normalise,
)

NL = "+31612345678"


@pytest.mark.parametrize("raw", [
    "06-12345678",
    "06 1234 5678",
    "06 12 34 56 78",
    "0612345678",
    "(06) 12345678",
    "06.12345678",
    "+31 6 12345678",
    "+31 (0)6 12345678",
    "+31612345678",
    "+31-6-1234-5678",
    "0031612345678",
    "0031 6 12345678",
    "31612345678",  # Cloud API wa_id
    "31612345678@c.us",  # whatsapp-web.js chat id
    "31612345678@s.whatsapp.net",
    "  06-12345678\n",
    "06\u00a012345678",
])
def test_normalise_dutch_mobile(raw):
    assert normalise(raw) == NL


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("085 48 69 699", "NL", "+31854869699"),
    ("020-1234567", "NL", "+31201234567"),
    ("+4915112345678", "NL", "+4915112345678"),
    ("4915112345678", "NL", "+4915112345678"),  # wa_id of a German number
    ("015112345678", "DE", "+4915112345678"),
    ("+1 202 555 0123", "NL", "+12025550123"),
    ("12025550123", "NL", "+12025550123"),
    ("0470 12 34 56", "BE", "+32470123456"),
    ("32470123456@c.us", "NL", "+32470123456"),
])
def test_normalise_other_numbers(raw, region, expected):
    assert normalise(raw, region) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "abc", "12", "0612345", "061234567890123", "+3161234567", "0800-FLOWERS",
    "06-1234567a", "+31 6 1234 5678 9999 9999", "++31612345678", "user:abc",
    "1234567890@g.us", "٠٦١٢٣٤٥٦٧٨",
])
def test_normalise_rejects(raw):
    with pytest.raises(PhoneError) as e:
        normalise(raw)
    msg = str(e.value)
    assert msg.startswith("not a valid phone number")
    assert not re.search(r"\d{5}", msg), msg  # the input is named masked


def test_phone_error_is_value_error_and_masks_input():
    with pytest.raises(ValueError) as e:
        normalise("+31 6 1234567")  # one digit short
    assert "1234567" not in str(e.value)
    assert "+31 6 ***4567" in str(e.value) or "****" in str(e.value)


def test_normalise_rejects_non_strings():
    with pytest.raises(PhoneError):
        normalise(612345678)  # type: ignore[arg-type]


def test_nine_bare_digits_are_national():
    # no leading zero and too short for a country code: read in the given region
    assert normalise("612345678") == NL


# --- mask -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("+31612345678", "+316****5678"),
    ("+31854869699", "+318****9699"),
    ("+4915112345678", "+491******5678"),
    ("+12025550123", "+12*****0123"),
    ("+32470123456", "+324****3456"),
    ("31612345678@c.us", "316****5678@c.us"),
    ("user:abcdef123456", "user:abc…"),
    ("user:ab", "user:a…"),
    ("user:", "user:…"),
    ("", ""),
])
def test_mask(value, expected):
    assert mask(value) == expected


@pytest.mark.parametrize("value", ["+3161234", "+31612", "+12345678901234", "0612345678",
                                   "06-12345678", "garbage-1234567"])
def test_mask_hides_enough(value):
    out = mask(value)
    digits = sum(c.isdigit() for c in value)
    hidden = out.count("*")
    assert hidden >= max(1, digits // 3), (value, out)
    assert out != value


def test_mask_of_masked_is_stable():
    assert mask_text(mask(NL)) == mask(NL)


# --- mask_text --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("inbound from +31612345678", "inbound from +316****5678"),
    ("to 31612345678@c.us ok", "to 316****5678@c.us ok"),
    ("wa_id=31612345678", "wa_id=316****5678"),
    ("call 06-12345678 now", "call 06-****5678 now"),
    ("call 06 1234 5678 now", "call 06 **** 5678 now"),
    ("call 0612345678.", "call 06****5678."),
    ("tel:+31612345678", "tel:+316****5678"),
    ("+31 6 12345678", "+31 6 ****5678"),
    ("0031612345678", "00316****5678"),
    ("(0612345678)", "(06****5678)"),
    ("**0612345678**", "**06****5678**"),
    ("0612345678:", "06****5678:"),
    ("a 0612345678 0687654321 b", "a 06****5678 06****4321 b"),
    ("2026-11-28 0612345678", "2026-11-28 06****5678"),
    ("28-11-2026 06-12345678", "28-11-2026 06-****5678"),
    ("+4915112345678", "+491******5678"),
    ("020 123 4567", "02* *** 4567"),
])
def test_mask_text_masks(text, expected):
    assert mask_text(text) == expected


@pytest.mark.parametrize("text", [
    "2026-11-28 09:42:00",
    "2026-11-28T09:42:00+00:00",
    "2026-11-28 09:42:00,123 INFO bridge.outbox: sent 3 of 12 in 0.53 s",
    "28-11-2026 09:42",
    "20261128",
    "sent 3 messages, 0 failed, 12 queued",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "ticket INC000012345678 opened",
    "took 0.123456789 s",
    "postcode 3811 AB en 3812",
    "version 8.13.27",
    "+316****5678",
    "06-****5678",
    "",
    "no digits here",
])
def test_mask_text_leaves_alone(text):
    assert mask_text(text) == text


def test_mask_text_never_leaves_a_full_number():
    forms = national_forms(NL)
    line = " | ".join(sorted(forms)) + " | 31612345678@c.us | 0031 6 12345678"
    out = mask_text(line)
    for form in forms:
        assert form not in out, (form, out)
    assert "5678" in out  # the last four stay for recognition


def test_mask_text_is_idempotent():
    text = "from +31612345678 / 06-12345678 / 31612345678@c.us at 2026-11-28 09:42:00"
    once = mask_text(text)
    assert mask_text(once) == once


def test_mask_text_is_fast():
    line = ("2026-11-28 09:42:00,123 INFO bridge.inbound: inbound from +31612345678 "
            "kind=subscribe id=wamid.HBgLMzE2MTIzNDU2NzgVAgARGBI count 3 of 12")
    start = time.perf_counter()
    for _ in range(2000):
        mask_text(line)
    assert time.perf_counter() - start < 2.0  # ~50 µs a line on a slow machine


# --- chat ids and forms -----------------------------------------------------------------


def test_chat_id_round_trip():
    assert chat_id(NL) == "31612345678@c.us"
    assert from_chat_id("31612345678@c.us") == NL
    assert from_chat_id("31612345678@s.whatsapp.net") == NL
    assert from_chat_id(chat_id("+4915112345678")) == "+4915112345678"


@pytest.mark.parametrize("bad", ["31612345678", "120363025246125486@g.us", "abc@c.us", "",
                                 "12@c.us"])
def test_from_chat_id_rejects(bad):
    with pytest.raises(PhoneError):
        from_chat_id(bad)


def test_chat_id_rejects_invalid():
    with pytest.raises(PhoneError):
        chat_id("12")


def test_national_forms_dutch_mobile():
    forms = national_forms(NL)
    assert {"+31612345678", "31612345678", "0612345678", "06-12345678",
            "06 12345678"} <= forms
    for f in forms:
        assert normalise(f) == NL, f


def test_national_forms_landline():
    forms = national_forms("+31854869699")
    assert {"+31854869699", "31854869699", "0854869699"} <= forms
    for f in forms:
        assert normalise(f) == "+31854869699", f


# --- mask_text: phone numbers only, other long numbers stay readable ----------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("imap: UIDVALIDITY 1700005773 changed; 3 mails", "imap: UIDVALIDITY 1700005773 changed; 3 mails"),
    ("imap:1700005773:4211 stored", "imap:1700005773:4211 stored"),
    ("listening on 127.0.0.1:8080", "listening on 127.0.0.1:8080"),
    ("at 1732871234 (unix), 1732871234567 ms", "at 1732871234 (unix), 1732871234567 ms"),
    ("phone_number_id 106540352242922", "phone_number_id 106540352242922"),
    ("delivery 123456789 done", "delivery 123456789 done"),
    ("4294967295 uidvalidity", "4294967295 uidvalidity"),
    ("sent 412, retrying 88 (130429 x80)", "sent 412, retrying 88 (130429 x80)"),
])
def test_mask_text_keeps_numbers_that_are_no_phone_number(text, expected):
    assert mask_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("wa_id 31612345678 in", "wa_id 316****5678 in"),
    ("chat 31612345678@s.whatsapp.net", "chat 316****5678@s.whatsapp.net"),
    ("chat 31612345678@c.us", "chat 316****5678@c.us"),
    ("linked 140000000001101@lid", "linked 140…@lid"),
    ("bare 0612345678 and 0201234567", "bare 06****5678 and 02****4567"),
    ("a US number 17328712345", "a US number 17*****2345"),
    ("+31 6 12345678 and 06 1234 5678", "+31 6 ****5678 and 06 **** 5678"),
    ("UIDVALIDITY 1700005773 from +31612345678", "UIDVALIDITY 1700005773 from +316****5678"),
])
def test_mask_text_masks_what_parses_as_a_phone_number(text, expected):
    assert mask_text(text) == expected
