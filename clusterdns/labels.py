"""Kubernetes label selectors: parse the text form, match label sets, print it back.

The grammar and the validation rules are the API server's own
(``k8s.io/apimachinery/pkg/labels``), so a selector accepted here is accepted as
a ``labelSelector`` query parameter and means the same thing there::

    selector    ::= "" | requirement ( "," requirement )*
    requirement ::= [ "!" ] KEY
                  | KEY ( "=" | "==" | "!=" ) VALUE
                  | KEY ( "in" | "notin" ) "(" VALUE ( "," VALUE )* ")"
                  | KEY ( ">" | "<" ) INTEGER

Requirements are ANDed.  Whitespace (space, tab, CR, LF) may appear between
tokens.  ``in`` and ``notin`` are keywords only where an operator is expected,
so ``in in (in)`` is a valid selector.  A VALUE may be empty (``tier=``,
``tier in (a,)``).

:func:`parse_selector` raises :class:`SelectorError` (a :class:`ValueError`)
naming the first offending token and its position.  ``str(selector)`` gives the
canonical form the API server itself would print: requirements sorted by key,
values of a set sorted and de-duplicated, no spaces except around ``in``/``notin``.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = [
    "Operator",
    "Requirement",
    "Selector",
    "SelectorError",
    "parse_selector",
    "selector_from_labels",
    "validate_label_key",
    "validate_label_value",
    "EVERYTHING",
]

LabelsLike = Mapping[str, str] | Iterable[tuple[str, str]]


class Operator(enum.Enum):
    """A requirement's operator; the value is how it is spelled in Kubernetes' ``selection`` package."""

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_EXACT = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS)
_SET = (Operator.IN, Operator.NOT_IN)
_UNARY = (Operator.EXISTS, Operator.DOES_NOT_EXIST)
_NUMERIC = (Operator.GREATER_THAN, Operator.LESS_THAN)


class SelectorError(ValueError):
    """A label selector that Kubernetes would reject.

    ``text`` is the whole selector, ``position`` the 0-based character offset of
    the offending token (``len(text)`` for "end of string"), ``reason`` what is
    wrong there and ``detail`` (possibly empty) why, e.g. which rule a label key
    breaks.  ``str()`` reads::

        labels "env in (a, b": expected ',' or ')', found end of string at position 12
        labels "Env/x=1": invalid label key "Env/x" at position 0: prefix part must be ...
    """

    def __init__(self, text: str, position: int, reason: str, detail: str = ""):
        self.text = text
        self.position = position
        self.reason = reason
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"labels {_quote(self.text)}: {self.reason} at position {self.position}"
        return f"{where}: {self.detail}" if self.detail else where


# --------------------------------------------------------------------------- validation
#
# k8s.io/apimachinery/pkg/util/validation: IsQualifiedName (keys) and
# IsValidLabelValue (values).  fullmatch, not match: Go's `^...$` has no
# Python-style "$ matches before a trailing newline" quirk.

_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_MAX = 63
_PREFIX_MAX = 253
_VALUE_MAX = 63
_NAME_CHARS = "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"


def validate_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid label key (``[prefix/]name``), or None if it is."""
    parts = key.split("/")
    if len(parts) > 2:
        return "a label key may contain at most one '/' (an optional DNS subdomain prefix, then a name)"
    problems = []
    if len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif len(prefix) > _PREFIX_MAX:
            problems.append(f"prefix part must be no more than {_PREFIX_MAX} characters")
        elif not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            problems.append(
                "prefix part must be a lowercase DNS subdomain (a-z, 0-9, '-' and '.', "
                "starting and ending with an alphanumeric character)"
            )
    else:
        name = key
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > _NAME_MAX:
        problems.append(f"name part must be no more than {_NAME_MAX} characters")
    elif not _NAME_RE.fullmatch(name):
        problems.append(f"name part must consist of {_NAME_CHARS}")
    return "; ".join(problems) or None


def validate_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None if it is (the empty string is valid)."""
    if len(value) > _VALUE_MAX:
        return f"must be no more than {_VALUE_MAX} characters"
    if value and not _NAME_RE.fullmatch(value):
        return f"must be empty or consist of {_NAME_CHARS}"
    return None


def _parse_int64(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 10, 64)``: optional sign, decimal digits, in int64 range."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


# --------------------------------------------------------------------------- values


def _labels_dict(labels: LabelsLike) -> Mapping[str, str]:
    return labels if isinstance(labels, Mapping) else dict(labels)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term: ``key`` related to ``values`` by ``operator``.

    ``values`` is sorted and de-duplicated; it is empty for exists/does-not-exist
    and has exactly one element for the exact-match and numeric operators.
    Build one with :meth:`make` (validates) or :func:`parse_selector`.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def make(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> "Requirement":
        """A validated requirement.

        Raises :class:`SelectorError` (whose ``text`` is the key, position 0)
        when Kubernetes' ``NewRequirement`` would refuse it.
        """
        values = tuple(sorted(set(values)))
        problem = _requirement_problem(key, operator, values)
        if problem:
            raise SelectorError(key, 0, *problem)
        return cls(key, operator, values)

    def matches(self, labels: LabelsLike) -> bool:
        """Does this requirement hold for ``labels``?  Same truth table as Kubernetes.

        ``!=`` and ``notin`` hold when the key is absent; ``>``/``<`` need the
        label to be present and an integer.
        """
        labels = _labels_dict(labels)
        op = self.operator
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        # GREATER_THAN / LESS_THAN
        if self.key not in labels:
            return False
        have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if op in _SET:
            return f"{self.key} {op.value} ({','.join(self.values)})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{self.values[0] if self.values else ''}"


@dataclass(frozen=True, slots=True)
class Selector:
    """An AND of requirements, sorted by key.  The empty selector selects everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (``""``)."""
        return not self.requirements

    def matches(self, labels: LabelsLike) -> bool:
        """Do ``labels`` (a mapping, or ``(key, value)`` pairs) satisfy every requirement?"""
        labels = _labels_dict(labels)
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()


def selector_from_labels(labels: LabelsLike) -> Selector:
    """The selector ``k1=v1,k2=v2,...`` for a Service-style ``spec.selector`` map (validated)."""
    reqs = [Requirement.make(k, Operator.EQUALS, [v]) for k, v in _labels_dict(labels).items()]
    return Selector(tuple(sorted(reqs, key=lambda r: r.key)))


def _requirement_problem(key: str, operator: Operator, values: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, detail) when Kubernetes' NewRequirement would refuse this, else None."""
    problem = validate_label_key(key)
    if problem:
        return f"invalid label key {_quote(key)}", problem
    if operator in _SET and not values:
        return f"'{operator.value}' needs at least one value", ""
    if operator in _EXACT + _NUMERIC and len(values) != 1:
        return f"'{operator.value}' needs exactly one value", ""
    if operator in _UNARY and values:
        return "exists / does-not-exist take no values", ""
    for value in values:
        problem = _value_problem(operator, value)
        if problem:
            return f"invalid value {_quote(value)} for label {_quote(key)}", problem
    return None


def _value_problem(operator: Operator, value: str) -> str | None:
    problem = validate_label_value(value)
    if problem:
        return problem
    if operator in _NUMERIC and _parse_int64(value) is None:
        return "'>' and '<' compare integers"
    return None


# --------------------------------------------------------------------------- lexer

_WHITESPACE = " \t\r\n"
_SPECIAL = "=!(),><"
# Longest match among these wins ("!=" over "!", "==" over "=").
_SYMBOLS = {"=", "==", "!=", "!", "(", ")", ",", ">", "<"}

# Token kinds.  Keywords are lexed as IDENT and recognised by the parser only
# where an operator may appear (Kubernetes' "KeyAndOperator" context).
_IDENT = "identifier"
_END = "end of string"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _IDENT, _END, or the symbol itself
    text: str
    position: int

    def describe(self) -> str:
        if self.kind == _END:
            return "end of string"
        return _quote(self.text)


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append(_Token(_END, "", n))
            return out
        start = i
        if text[i] in _SPECIAL:
            # Every single special character is itself a symbol, so this
            # always yields at least one character.
            j = i + 1
            while j < n and text[i : j + 1] in _SYMBOLS:
                j += 1
            out.append(_Token(text[i:j], text[i:j], start))
            i = j
        else:
            while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
                i += 1
            out.append(_Token(_IDENT, text[start:i], start))


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != _END:
            self.i += 1
        return tok

    def fail(self, tok: _Token, reason: str, detail: str = "") -> SelectorError:
        return SelectorError(self.text, tok.position, reason, detail)

    def expected(self, tok: _Token, what: str, detail: str = "") -> SelectorError:
        return self.fail(tok, f"expected {what}, found {tok.describe()}", detail)

    def selector(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek().kind == _END:
            return EVERYTHING
        while True:
            tok = self.peek()
            if tok.kind not in (_IDENT, "!"):
                what = "a label key or '!'" if not reqs else "a label key or '!' after ','"
                raise self.expected(tok, what)
            reqs.append(self.requirement())
            tok = self.take()
            if tok.kind == _END:
                break
            if tok.kind != ",":
                raise self.expected(tok, "',' or end of string")
        # Stable sort: same order Kubernetes prints, deterministic for equal keys.
        return Selector(tuple(sorted(reqs, key=lambda r: r.key)))

    def requirement(self) -> Requirement:
        negated = self.peek().kind == "!"
        if negated:
            self.take()
        key_tok = self.take()
        if key_tok.kind != _IDENT:
            raise self.expected(key_tok, "a label key")
        problem = validate_label_key(key_tok.text)
        if problem:
            raise self.fail(key_tok, f"invalid label key {_quote(key_tok.text)}", problem)
        key = key_tok.text

        if negated or self.peek().kind in (_END, ","):
            # "!key" is complete as it is; anything after it is reported by the
            # caller ("expected ',' or end of string"), as Kubernetes does.
            return Requirement(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS, ())

        op_tok = self.take()
        op = _OPERATOR_TOKENS.get(op_tok.text) if op_tok.kind != _END else None
        if op is None:
            raise self.expected(op_tok, "an operator ('=', '==', '!=', 'in', 'notin', '>', '<'), ',' or end of string")

        if op in _SET:
            values = self.value_set()
        else:
            values = [self.exact_value()]

        for value_tok in values:
            problem = _value_problem(op, value_tok.text)
            if problem:
                raise self.fail(value_tok, f"invalid value {_quote(value_tok.text)} for label {_quote(key)}", problem)
        return Requirement(key, op, tuple(sorted({v.text for v in values})))

    def exact_value(self) -> _Token:
        tok = self.peek()
        if tok.kind in (_END, ","):  # "key=" means the empty value
            return _Token(_IDENT, "", tok.position)
        tok = self.take()
        if tok.kind != _IDENT:
            raise self.expected(tok, "a value")
        return tok

    def value_set(self) -> list[_Token]:
        """``( v1, v2, ... )``; empty items are the empty value: ``()``, ``(a,)``, ``(,a)``, ``(a,,b)``.

        This follows apimachinery's ``parseIdentifiersList`` step for step,
        including its quirk that a doubled comma swallows the token after it
        ("(a,,)" and "(,,)" are rejected while "(a,,b)" and "(a,,,)" are not):
        the point is that whatever is accepted here is accepted by the API server.
        """
        open_tok = self.take()
        if open_tok.kind != "(":
            raise self.expected(open_tok, "'('")
        first = self.peek()
        if first.kind == ")":
            self.take()
            return [_Token(_IDENT, "", first.position)]
        if first.kind not in (_IDENT, ","):
            raise self.expected(first, "a value, ',' or ')'")
        values: list[_Token] = []
        while True:
            tok = self.take()
            if tok.kind == _IDENT:
                values.append(tok)
                nxt = self.peek()
                if nxt.kind == ",":
                    continue  # the comma is consumed by the next round
                if nxt.kind == ")":
                    self.take()
                    return values
                raise self.expected(nxt, "',' or ')'")
            if tok.kind == ",":
                if not values:  # leading comma: an empty value
                    values.append(_Token(_IDENT, "", tok.position))
                nxt = self.peek()
                if nxt.kind == ")":  # trailing comma: an empty value
                    values.append(_Token(_IDENT, "", nxt.position))
                    self.take()
                    return values
                if nxt.kind == ",":  # doubled comma: an empty value
                    self.take()
                    values.append(_Token(_IDENT, "", nxt.position))
                    after = self.peek()
                    if after.kind == ")":
                        raise self.expected(
                            after, "a value or ',' after ',,'", "the API server rejects ',,)'; write ',)' for an empty value"
                        )
                continue
            raise self.expected(tok, "a value or ','")


_OPERATOR_TOKENS = {
    "=": Operator.EQUALS,
    "==": Operator.DOUBLE_EQUALS,
    "!=": Operator.NOT_EQUALS,
    "in": Operator.IN,
    "notin": Operator.NOT_IN,
    ">": Operator.GREATER_THAN,
    "<": Operator.LESS_THAN,
}


def parse_selector(text: str) -> Selector:
    """Parse a label selector as the Kubernetes API server does.

    ``""`` (or only whitespace) is the selector that matches everything.
    Raises :class:`SelectorError` for anything the API server would reject,
    e.g. ``labels "env in (a, b": expected ',' or ')', found end of string at position 12``.
    """
    if not isinstance(text, str):
        raise TypeError(f"a label selector is a string, got {type(text).__name__}")
    return _Parser(text).selector()


def _quote(text: str) -> str:
    """Double-quoted, with control characters escaped, non-ASCII kept readable."""
    return json.dumps(text, ensure_ascii=False)
