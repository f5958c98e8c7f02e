"""An opt-out said in the person's own words ("Niet meer sturen aub", "Geen appjes meer",
"Kunnen jullie stoppen met appen?"), for messages that are not a keyword or a listed
phrase. Pure: clauses of folded tokens in, a verdict out.

:func:`read_optout` returns ``("unsubscribe", wording)`` when the wish to stop the
messages is clear, ``("confirm_stop", wording)`` when it is likely but not certain (the
bridge then asks "Wil je geen storingsberichten meer? Stuur STOP."), and None otherwise.

The rules, per clause (a sentence: text between . ! ? ; or a line break):

1. **stop + messages**: a stop verb ("stop", "stoppen", "ophouden", "hou op", "kappen")
   with a message word ("berichten", "appjes", "meldingen") or a send verb ("sturen",
   "appen") near it: "stoppen met appen", "hoe stop ik deze berichten". A stop verb whose
   subject or object is the outage ("de storing stopt", "stop de storing") is about the
   outage, not the messages. With "waarom"/"wanneer" or a negation it is only likely.
2. **negation + messages**: "niet meer sturen", "geen appjes meer", "app me niet meer",
   "I don't want these messages". Not when it reads as a complaint about *not receiving*:
   a receive verb ("ik krijg geen berichten meer"), "heb", "waarom", or a time ("geen
   berichten ontvangen vandaag"), unless a want stands before the negation ("ik wil geen
   ... meer ontvangen") or "nodig" after it. A statement about the sender ("jullie sturen
   geen berichten meer") or one with "kunnen" is only likely.
3. **leaving**: a word of leaving anywhere ("afmelden", "uitschrijven", "unsubscribe";
   "afgemeld worden" with a want), not negated. With "waarom" only likely.
4. **a bare stop verb** in a short message without outage words: "ik wil stoppen" is
   clear, "hou op!" or "hoe kan ik dit stoppen?" likely.
5. **likely phrases** (annoyance, wrong number, never signed up, no longer a customer:
   "dit is spam", "verkeerd nummer", "ik ben geen klant meer") in a message without
   outage words: likely.

Judgement (documented in docs/architecture.md): a complaint that tells the outage to
stop ("stop de storing!", "hou op met die storingen") is about the outage, not an
opt-out; only when it starts with the keyword STOP does it get the question (see
:func:`bridge.core.inbound.classify`), never an unsubscription.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.fuzzy import find, loose_eq, short_eq, strict_eq, word_eq

__all__ = ["Lexicon", "read_optout", "has_outage", "has_message"]

# Words skipped when measuring how near two words stand ("stuur me niks meer").
_GLUE = frozenset(
    "de het een die dit deze dat the these this those that me mij mn mijn m my any te to "
    "met with van of ons us nou eens maar even toch alle al zo so also ook nog er ermee "
    "mee hier for voor aub ajb graag please pls plz alsjeblieft alstublieft svp t s want "
    "wil wilt willen hoef hoeft hoeven je jullie u ze you they any of meer more".split())
_NEGATIONS = frozenset(
    "geen niet nooit niets niks nee no not dont don never nothing none nimmer didn didnt "
    "doesn doesnt".split())
_NEG_TYPO = ("geen", "niet", "niks", "niets", "nooit")  # "gene", "neit"
_AGAIN = frozenset("meer more anymore again langer nodig".split())
_WANT = frozenset("wil wilt willen hoef hoeft hoeven liever want wish graag".split())
_WHY = frozenset("waarom wanneer hoezo why when".split())
_CAN = frozenset("kan kun kunnen kunt can could".split())
_REQUEST = frozenset(
    "kan kun kunnen kunt wil wilt willen moeten moet hoeven hoeft graag aub ajb alsjeblieft "
    "alstublieft please pls plz svp can could".split())
_THEY = frozenset("jullie ze zij u they you".split())
_RECEIVE_PREFIX = ("ontvang", "ontving", "krijg", "kreeg", "gekregen", "receiv")
_RECEIVE = frozenset("binnen get getting got".split())
_HAVE = frozenset("heb hebben had have has".split())
_TIME = frozenset(
    "vandaag gisteren sinds vanochtend vanmorgen vanmiddag vanavond vannacht laatst dagen "
    "week weken today yesterday since".split())
_PARTICIPLE_ENDS = ("gemeld", "geschreven", "subscribed", "gezegd")
_SHORT = 8  # a "short message" for the bare stop verb rule (tokens)
_THIRD_PERSON = ("stopt", "stops", "stopping", "houdt")


@dataclass(frozen=True)
class Lexicon:
    """The compiled word lists (from :class:`bridge.core.inbound.Keywords`)."""

    stop_verbs: tuple[tuple[str, ...], ...]  # each a word sequence: ("hou", "op")
    send_verbs: tuple[str, ...]
    message_words: tuple[str, ...]
    outage_words: tuple[str, ...]
    leave_words: tuple[str, ...]
    likely_phrases: tuple[tuple[tuple[str, ...], ...], ...]


def _verb_eq(token: str, word: str) -> bool:
    return short_eq(token, word) if len(word) < 7 else strict_eq(token, word)


def _is_neg(t: str) -> bool:
    return t in _NEGATIONS or any(short_eq(t, w) for w in _NEG_TYPO)


def _is_msg(t: str, lex: Lexicon) -> bool:
    return (any(loose_eq(t, w) for w in lex.message_words)
            or any(_verb_eq(t, w) for w in lex.send_verbs))


def _is_receive(t: str) -> bool:
    return t.startswith(_RECEIVE_PREFIX) or t in _RECEIVE


def _is_outage(t: str, lex: Lexicon) -> bool:
    return any(loose_eq(t, w) for w in lex.outage_words)


def has_outage(tokens: list[str], lex: Lexicon) -> bool:
    """A word about the outage or the connection ("storing", "internet", "tv")."""
    return any(_is_outage(t, lex) for t in tokens)


def has_message(tokens: list[str], lex: Lexicon) -> bool:
    """A word for the bridge's messages or for sending them ("berichten", "appen")."""
    return any(_is_msg(t, lex) for t in tokens)


def _stop_spans(tokens: list[str], lex: Lexicon) -> list[tuple[int, int]]:
    """(start, end) of each stop verb; a multi-word one ("hou op") only with glue words
    between its words, and "op de hoogte" (keep informed) is no stop."""
    out = []
    n = len(tokens)
    for i in range(n):
        for seq in lex.stop_verbs:
            if not _verb_eq(tokens[i], seq[0]):
                continue
            j, ok = i + 1, True
            for w in seq[1:]:
                while j < n and tokens[j] in _GLUE and not _verb_eq(tokens[j], w):
                    j += 1
                if j >= n or not _verb_eq(tokens[j], w):
                    ok = False
                    break
                j += 1
            if ok and not (len(seq) > 1 and tokens[j - 1] == "op"
                           and tokens[j:j + 2] == ["de", "hoogte"]):
                out.append((i, j))
                break
    return out


def _near(tokens: list[str], start: int, step: int, limit: int, hit, lex: Lexicon) -> int | None:
    """Index of the first token from ``start`` in direction ``step`` for which
    ``hit(token)`` holds, within ``limit`` non-glue tokens; an outage word ends the search."""
    count, i = 0, start
    while 0 <= i < len(tokens):
        t = tokens[i]
        if hit(t):
            return i
        if _is_outage(t, lex):
            return None
        if t not in _GLUE:
            count += 1
            if count >= limit:
                return None
        i += step
    return None


def _words(tokens: list[str], a: int, b: int) -> str:
    return " ".join(tokens[max(a, 0):b])


def _complaint(clause: list[str], neg: int, after: int) -> bool:
    """The negation reads as a complaint about not receiving (see rule 2)."""
    if set(clause[max(0, neg - 3):neg]) & _WANT or "nodig" in clause[after:after + 3]:
        return False
    words = set(clause)
    if words & (_WHY | _TIME | _RECEIVE | _HAVE):
        return True
    return any(_is_receive(t) for t in clause)


def _rule_stop_messages(clause: list[str], lex: Lexicon) -> tuple[str, str] | None:
    is_msg = lambda t: _is_msg(t, lex)  # noqa: E731
    for start, end in _stop_spans(clause, lex):
        before = clause[max(0, start - 2):start]
        if any(_is_outage(t, lex) for t in before) or any(_is_neg(t) for t in before):
            continue  # "de storing stopt", "niet stoppen"
        j = _near(clause, end, 1, 5, is_msg, lex)
        if j is None:
            j = _near(clause, start - 1, -1, 3, is_msg, lex)
        if j is None:
            continue
        wording = _words(clause, min(start, j), max(end, j + 1))
        words = set(clause)
        if words & _WHY or any(_is_neg(t) for t in clause[end:]):
            return "confirm_stop", wording
        return "unsubscribe", wording
    return None


def _rule_negated_messages(clause: list[str], lex: Lexicon) -> tuple[str, str] | None:
    is_msg = lambda t: _is_msg(t, lex)  # noqa: E731
    for i, t in enumerate(clause):
        if not _is_neg(t):
            continue
        if set(clause[max(0, i - 3):i]) & _WANT - {"graag"}:
            # "ik wil niks meer ontvangen", "hoef niets meer te krijgen"
            k = _near(clause, i + 1, 1, 3, _is_receive, lex)
            if k is not None:
                return "unsubscribe", _words(clause, i - 1, k + 1)
        # negation before the message word: "geen appjes meer", "niet meer sturen"
        j = _near(clause, i + 1, 1, 3, is_msg, lex)
        again = True
        if j is None:
            # or after it: "app me niet meer", "stuur me niks meer", "berichten zijn niet
            # meer nodig"; without "meer" ("stuur me niks") it is only likely
            j = _near(clause, i - 1, -1, 3, is_msg, lex)
            if j is None:
                continue
            again = bool(set(clause[i + 1:i + 3]) & _AGAIN)
            imperative = j == 0 and any(_verb_eq(clause[0], w) for w in lex.send_verbs)
            if not (again or imperative):
                continue
        span_end = max(i, j) + 1
        if _complaint(clause, i, span_end):
            continue
        wording = _words(clause, min(i, j), span_end + (1 if not again else 0))
        first = min(i, j)
        statement = (bool(set(clause[max(0, first - 3):first]) & _THEY)
                     and not set(clause) & _REQUEST)
        if not again or statement or set(clause) & _CAN:
            return "confirm_stop", wording
        return "unsubscribe", wording
    return None


def _rule_leave(clause: list[str], lex: Lexicon) -> tuple[str, str] | None:
    for i, t in enumerate(clause):
        if not any(strict_eq(t, w) for w in lex.leave_words):
            continue
        if any(_is_neg(x) for x in clause[max(0, i - 2):i]):
            continue
        wording = _words(clause, i - 2, i + 1)
        if t.endswith(_PARTICIPLE_ENDS):  # "afgemeld": only as a wish ("wil afgemeld worden")
            if set(clause) & (_WANT | {"please", "aub"}):
                return "unsubscribe", wording
            continue
        if set(clause) & _WHY:
            return "confirm_stop", wording
        return "unsubscribe", wording
    return None


def _rule_bare_stop(tokens: list[str], lex: Lexicon) -> tuple[str, str] | None:
    if len(tokens) > _SHORT or has_outage(tokens, lex) or set(tokens) & _WHY:
        return None  # "wanneer stopt het?" is about the outage
    for start, end in _stop_spans(tokens, lex):
        if any(_is_neg(t) for t in tokens[max(0, start - 2):start]):
            continue
        if tokens[start].endswith(_THIRD_PERSON):  # "stopt het ooit?": it, not me
            continue
        wording = _words(tokens, start - 2, end)
        if set(tokens[max(0, start - 2):start]) & _WANT:
            return "unsubscribe", wording  # "ik wil stoppen", "wil graag stoppen"
        return "confirm_stop", wording
    return None


def read_optout(clauses: list[list[str]], lex: Lexicon,
                max_words: int) -> tuple[str, str] | None:
    """Read a wish to stop the messages in folded ``clauses`` (lists of tokens, see
    :func:`bridge.core.words.fold`). Returns ``("unsubscribe" | "confirm_stop",
    wording)`` or None; a clear verdict in any clause beats a likely one."""
    likely: tuple[str, str] | None = None
    for clause in clauses:
        for rule in (_rule_stop_messages, _rule_negated_messages, _rule_leave):
            got = rule(clause, lex)
            if got and got[0] == "unsubscribe":
                return got
            likely = likely or got
    tokens = [t for c in clauses for t in c]
    if likely:
        return likely
    got = _rule_bare_stop(tokens, lex)
    if got:
        return got
    if len(tokens) <= max_words and not has_outage(tokens, lex):
        for phrase in lex.likely_phrases:
            span = find(tokens, phrase, (False,) * len(phrase), 1, word_eq)
            if span:
                return "confirm_stop", _words(tokens, *span)
    return None
