"""Label selectors: the API server's grammar, validation, matching and printing.

Most cases come from, or were checked against, apimachinery's
``pkg/labels/selector.go`` and its tests, so that "accepted here" means
"accepted as ``?labelSelector=`` by the API server".
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterdns.labels import (
    EVERYTHING,
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
    selector_from_labels,
    validate_label_key,
    validate_label_value,
)

# --------------------------------------------------------------------------- valid selectors
#
# (text, canonical str(), label sets it matches, label sets it does not match)

VALID = [
    ("", "", [{}, {"x": "y"}], []),
    ("   \t\n", "", [{}, {"x": "y"}], []),
    ("x=y", "x=y", [{"x": "y"}, {"x": "y", "z": "w"}], [{}, {"x": "z"}, {"X": "y"}]),
    ("x==y", "x==y", [{"x": "y"}], [{"x": "z"}, {}]),
    ("x!=y", "x!=y", [{"x": "z"}, {}, {"y": "y"}], [{"x": "y"}]),
    ("x=y,z=w", "x=y,z=w", [{"x": "y", "z": "w"}], [{"x": "w", "z": "w"}, {"x": "y"}]),
    ("x!=y,z!=w", "x!=y,z!=w", [{"x": "z", "z": "a"}], [{"x": "z", "z": "w"}]),
    # requirements are printed sorted by key, whatever order they were written in
    ("z=1, a=2", "a=2,z=1", [{"a": "2", "z": "1"}], [{"a": "2"}]),
    ("env in (production, qa)", "env in (production,qa)", [{"env": "qa"}, {"env": "production"}], [{"env": "dev"}, {}]),
    ("tier notin (frontend)", "tier notin (frontend)", [{"tier": "backend"}, {}], [{"tier": "frontend"}]),
    ("partition", "partition", [{"partition": ""}, {"partition": "a"}], [{}, {"other": "x"}]),
    ("!canary", "!canary", [{}, {"x": "canary"}], [{"canary": ""}, {"canary": "true"}]),
    ("! canary", "!canary", [{}], [{"canary": "1"}]),
    ("\rx", "x", [{"x": "1"}], [{}]),
    ("a ", "a", [{"a": "1"}], [{}]),
    # empty values: "x=" and the empty member of a set
    ("x=", "x=", [{"x": ""}], [{}, {"x": "a"}]),
    ("x= ,z= ", "x=,z=", [{"x": "", "z": ""}], [{"x": ""}]),
    ("x in ()", "x in ()", [{"x": ""}], [{}, {"x": "a"}]),
    ("x notin ( )", "x notin ()", [{}, {"x": "a"}], [{"x": ""}]),
    ("x in (,)", "x in ()", [{"x": ""}], [{"x": "a"}]),
    ("x in (abc,)", "x in (,abc)", [{"x": ""}, {"x": "abc"}], [{"x": "b"}]),
    ("x notin (, a)", "x notin (,a)", [{"x": "b"}, {}], [{"x": ""}, {"x": "a"}]),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()", [{"x": "", "y": "1"}], [{"x": "foo"}]),
    ("x in (a,,,)", "x in (,a)", [{"x": ""}], []),
    # values are a set: sorted and de-duplicated
    ("x in (b, a, b)", "x in (a,b)", [{"x": "a"}], [{"x": "c"}]),
    # whitespace of every kind between tokens, none needed around symbols
    ("foo  in\t (abc)", "foo in (abc)", [{"foo": "abc"}], []),
    ("x notin\n (abc)", "x notin (abc)", [{}], [{"x": "abc"}]),
    ("x  notin\t\t(abc,def)", "x notin (abc,def)", [{"x": "z"}], [{"x": "def"}]),
    ("a notin(b)", "a notin (b)", [{"a": "c"}], [{"a": "b"}]),
    # "in"/"notin" are keywords only where an operator is expected
    ("in in (in)", "in in (in)", [{"in": "in"}], [{"in": "notin"}]),
    ("notin=in", "notin=in", [{"notin": "in"}], [{"notin": "x"}]),
    ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)", [{"a": "notin"}], [{"a": "q"}]),
    # integer comparisons
    ("x>1", "x>1", [{"x": "2"}, {"x": "100"}], [{"x": "1"}, {"x": "0"}, {"x": "v2"}, {}]),
    ("x<7", "x<7", [{"x": "6"}, {"x": "0"}], [{"x": "7"}, {"x": "a"}, {}]),
    ("x>1,z<5", "x>1,z<5", [{"x": "2", "z": "4"}], [{"x": "2", "z": "5"}]),
    # prefixed keys, values with dots, dashes and underscores, upper case in names
    ("this-is-a-dns.domain.com/key-with-dash", "this-is-a-dns.domain.com/key-with-dash",
     [{"this-is-a-dns.domain.com/key-with-dash": ""}], [{"key-with-dash": ""}]),
    ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)", "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
     [{"0.1.2.domain/99": "x"}], [{"0.1.2.domain/99": "tick.tack.clock"}]),
    ("app.kubernetes.io/Name=Web_App-1.2", "app.kubernetes.io/Name=Web_App-1.2",
     [{"app.kubernetes.io/Name": "Web_App-1.2"}], [{"app.kubernetes.io/name": "Web_App-1.2"}]),
    ("1234 in (bar)", "1234 in (bar)", [{"1234": "bar"}], []),
    # sorted by key, not by printed text: "k8s-app" < "node-role..." despite the "!"
    ("!node-role.kubernetes.io/control-plane,k8s-app=kube-dns",
     "k8s-app=kube-dns,!node-role.kubernetes.io/control-plane",
     [{"k8s-app": "kube-dns"}], [{"k8s-app": "kube-dns", "node-role.kubernetes.io/control-plane": ""}]),
    # duplicate keys are allowed and ANDed
    ("a!=1,a!=2", "a!=1,a!=2", [{"a": "3"}, {}], [{"a": "1"}, {"a": "2"}]),
    # limits: 63-character name and value, 253-character prefix
    ("a" * 63 + "=" + "b" * 63, "a" * 63 + "=" + "b" * 63, [{"a" * 63: "b" * 63}], []),
    ("p" * 253 + "/n", "p" * 253 + "/n", [{"p" * 253 + "/n": ""}], []),
]


@pytest.mark.parametrize("text,canonical,yes,no", VALID, ids=[repr(v[0])[:50] for v in VALID])
def test_valid_selector(text, canonical, yes, no):
    sel = parse_selector(text)
    assert str(sel) == canonical
    for labels in yes:
        assert sel.matches(labels), f"{text!r} should match {labels}"
        # label pairs (clusterdns.objects.Labels) work as well as mappings
        assert sel.matches(tuple(labels.items()))
    for labels in no:
        assert not sel.matches(labels), f"{text!r} should not match {labels}"
        assert not sel.matches(tuple(labels.items()))
    # the canonical form is itself valid and means the same thing
    assert parse_selector(canonical) == sel


# --------------------------------------------------------------------------- invalid selectors
#
# (text, the exact message).  Positions are 0-based character offsets;
# "end of string" is at len(text).

INVALID_MESSAGES = [
    ("env in (a, b", "labels \"env in (a, b\": expected ',' or ')', found end of string at position 12"),
    ("a,", "labels \"a,\": expected a label key or '!' after ',', found end of string at position 2"),
    (",a", "labels \",a\": expected a label key or '!', found \",\" at position 0"),
    ("x,,y", "labels \"x,,y\": expected a label key or '!' after ',', found \",\" at position 2"),
    ("a in", "labels \"a in\": expected '(', found end of string at position 4"),
    ("a in b", "labels \"a in b\": expected '(', found \"b\" at position 5"),
    ("!a=b", "labels \"!a=b\": expected ',' or end of string, found \"=\" at position 2"),
    ("!", "labels \"!\": expected a label key, found end of string at position 1"),
    ("x==a==b", "labels \"x==a==b\": expected ',' or end of string, found \"==\" at position 4"),
    ("a in (xyz abc)", "labels \"a in (xyz abc)\": expected ',' or ')', found \"abc\" at position 10"),
    ("a in ((a))", "labels \"a in ((a))\": expected a value, ',' or ')', found \"(\" at position 6"),
    ("a notin(", "labels \"a notin(\": expected a value, ',' or ')', found end of string at position 8"),
    ("a=(b)", "labels \"a=(b)\": expected a value, found \"(\" at position 2"),
    ("a in (xyz)b notin ()", "labels \"a in (xyz)b notin ()\": expected ',' or end of string, found \"b\" at position 10"),
    (
        "x nott in (y)",
        "labels \"x nott in (y)\": expected an operator ('=', '==', '!=', 'in', 'notin', '>', '<'), "
        "',' or end of string, found \"nott\" at position 2",
    ),
    (
        "Env.Example.com/tier=web",
        "labels \"Env.Example.com/tier=web\": invalid label key \"Env.Example.com/tier\" at position 0: "
        "prefix part must be a lowercase DNS subdomain (a-z, 0-9, '-' and '.', starting and ending with an "
        "alphanumeric character)",
    ),
    (
        "app, a/b/c",
        "labels \"app, a/b/c\": invalid label key \"a/b/c\" at position 5: a label key may contain at most one '/' "
        "(an optional DNS subdomain prefix, then a name)",
    ),
    ("/a", "labels \"/a\": invalid label key \"/a\" at position 0: prefix part must be non-empty"),
    ("a/ = 1", "labels \"a/ = 1\": invalid label key \"a/\" at position 0: name part must be non-empty"),
    (
        "tier=-web",
        "labels \"tier=-web\": invalid value \"-web\" for label \"tier\" at position 5: must be empty or consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    ),
    (
        "x=a||y=b",
        "labels \"x=a||y=b\": invalid value \"a||y\" for label \"x\" at position 2: must be empty or consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    ),
    ("x<a", "labels \"x<a\": invalid value \"a\" for label \"x\" at position 2: '>' and '<' compare integers"),
    ("x>", "labels \"x>\": invalid value \"\" for label \"x\" at position 2: '>' and '<' compare integers"),
    (
        "x in (a,,)",
        "labels \"x in (a,,)\": expected a value or ',' after ',,', found \")\" at position 9: "
        "the API server rejects ',,)'; write ',)' for an empty value",
    ),
    (
        "k=" + "v" * 64,
        f"labels \"k={'v' * 64}\": invalid value \"{'v' * 64}\" for label \"k\" at position 2: "
        "must be no more than 63 characters",
    ),
    (
        "n" * 64,
        f"labels \"{'n' * 64}\": invalid label key \"{'n' * 64}\" at position 0: name part must be no more than "
        "63 characters",
    ),
    # control characters are shown escaped, so the message stays on one line
    ("a=\x01", "labels \"a=\\u0001\": invalid value \"\\u0001\" for label \"a\" at position 2: must be empty or "
     "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
]


@pytest.mark.parametrize("text,message", INVALID_MESSAGES, ids=[repr(v[0])[:40] for v in INVALID_MESSAGES])
def test_invalid_selector_message(text, message):
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert str(info.value) == message
    assert info.value.text == text
    assert 0 <= info.value.position <= len(text)


# Rejected by the API server too (apimachinery selector_test.go and Parse()).
INVALID = [
    "x=a||y=b", "x==a==b", "!x=a", "x<a", ",x,y", "x,,y", "x nott in (y)", "a in (xyz),",
    "a in (xyz)b notin ()", "a in (xyz abc)", "a notin(", "a (", "(", ")", "=", "a!", "a in (,,)",
    "a in (a,,)", "a=b c", "a in (b),", "!!a", "a=!", "a>=1", "a>-1", "a<1.5", "a>99999999999999999999",
    "a" * 64, "a" * 254 + "/b", "A.com/b", "-a", "a-", "a=b-", "a=_b", "a b", "a in (b", "a=b,,c=d",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_selector(text):
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_selector_error_is_a_value_error_with_its_parts():
    with pytest.raises(ValueError) as info:
        parse_selector("env in (a, b")
    err = info.value
    assert isinstance(err, SelectorError)
    assert (err.text, err.position, err.reason, err.detail) == (
        "env in (a, b", 12, "expected ',' or ')', found end of string", "",
    )


def test_not_a_string():
    with pytest.raises(TypeError):
        parse_selector(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keys and values

@pytest.mark.parametrize("key", [
    "a", "A", "1", "a.b", "a_b", "a-b", "Ab9", "x" * 63, "example.com/x", "k8s.io/A_b.c-d",
    "a/b", "0.1.2.domain/99", ("p" * 63 + ".") * 3 + "p" * 61 + "/n",  # 253-character prefix
])
def test_valid_label_keys(key):
    assert validate_label_key(key) is None


@pytest.mark.parametrize("key,problem", [
    ("", "name part must be non-empty"),
    ("x" * 64, "name part must be no more than 63 characters"),
    ("-a", "must consist of"),
    ("a.", "must consist of"),
    ("a b", "must consist of"),
    ("a\n", "must consist of"),  # no Python "$ before trailing newline" leak
    ("é", "must consist of"),
    ("/a", "prefix part must be non-empty"),
    ("a/", "name part must be non-empty"),
    ("a/b/c", "at most one '/'"),
    ("Example.com/a", "prefix part must be a lowercase DNS subdomain"),
    ("ex_ample.com/a", "prefix part must be a lowercase DNS subdomain"),
    ("-example.com/a", "prefix part must be a lowercase DNS subdomain"),
    ("p" * 254 + "/a", "prefix part must be no more than 253 characters"),
    ("Bad_/a-", "prefix part must be a lowercase DNS subdomain"),
])
def test_invalid_label_keys(key, problem):
    found = validate_label_key(key)
    assert found is not None and problem in found


@pytest.mark.parametrize("value", ["", "a", "A-b_c.d", "1", "v" * 63, "10.10.100.1"])
def test_valid_label_values(value):
    assert validate_label_value(value) is None


@pytest.mark.parametrize("value", ["v" * 64, "-a", "a-", ".a", "a b", "a/b", "a\n", "ü"])
def test_invalid_label_values(value):
    assert validate_label_value(value) is not None


# --------------------------------------------------------------------------- values and helpers

def test_empty_selector_selects_everything():
    sel = parse_selector("")
    assert sel == EVERYTHING == Selector()
    assert sel.empty and not parse_selector("a").empty
    assert sel.matches({}) and sel.matches({"any": "thing"}) and sel.matches(())
    assert str(sel) == ""


def test_parse_is_deterministic():
    assert parse_selector("x=a,a=x") == parse_selector("a=x,x=a")
    assert str(parse_selector("x=a,a=x")) == "a=x,x=a"


def test_requirements_are_values():
    sel = parse_selector("tier in (b,a), !canary")
    assert sel.requirements == (
        Requirement("canary", Operator.DOES_NOT_EXIST),
        Requirement("tier", Operator.IN, ("a", "b")),
    )
    assert hash(sel) == hash(parse_selector("!canary,tier in (a,b)"))


def test_requirement_make_validates():
    assert Requirement.make("x", Operator.IN, ["b", "a", "b"]) == Requirement("x", Operator.IN, ("a", "b"))
    with pytest.raises(SelectorError, match="'in' needs at least one value"):
        Requirement.make("x", Operator.IN, [])
    with pytest.raises(SelectorError, match="'=' needs exactly one value"):
        Requirement.make("x", Operator.EQUALS, ["a", "b"])
    with pytest.raises(SelectorError, match="take no values"):
        Requirement.make("x", Operator.EXISTS, ["a"])
    with pytest.raises(SelectorError, match="invalid label key"):
        Requirement.make("-x", Operator.EXISTS)
    with pytest.raises(SelectorError, match="compare integers"):
        Requirement.make("x", Operator.GREATER_THAN, ["one"])


def test_selector_from_labels():
    sel = selector_from_labels({"k8s-app": "kube-dns", "app": "x"})
    assert str(sel) == "app=x,k8s-app=kube-dns"
    assert sel.matches({"k8s-app": "kube-dns", "app": "x", "pod-template-hash": "abc"})
    assert not sel.matches({"k8s-app": "kube-dns"})
    assert selector_from_labels({}) == EVERYTHING
    assert selector_from_labels((("a", "b"),)) == parse_selector("a=b")
    with pytest.raises(SelectorError):
        selector_from_labels({"a": "not valid"})


def test_integer_comparison_follows_go_parseint():
    sel = parse_selector("x>1")
    assert sel.matches({"x": "0002"})  # leading zeros are fine for ParseInt
    assert not sel.matches({"x": "2.5"})
    assert not sel.matches({"x": "99999999999999999999"})  # out of int64 range: not a number
    assert parse_selector("x<0").matches({"x": "-5"})  # label values can't be negative, but a matched one could


# --------------------------------------------------------------------------- properties

_NAME_CHARS = "abcXYZ019-_."
_names = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?", fullmatch=True)
_prefixes = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,5}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,5}[a-z0-9])?){0,2}", fullmatch=True)
_keys = st.one_of(_names, st.tuples(_prefixes, _names).map("/".join), st.sampled_from(["in", "notin"]))
_values = st.one_of(st.just(""), _names, st.sampled_from(["in", "notin"]))
_ints = st.integers(min_value=0, max_value=2**63 - 1).map(str)


@st.composite
def _requirements(draw):
    key = draw(_keys)
    op = draw(st.sampled_from(list(Operator)))
    if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        values = []
    elif op in (Operator.IN, Operator.NOT_IN):
        values = draw(st.lists(_values, min_size=1, max_size=4))
    elif op in (Operator.GREATER_THAN, Operator.LESS_THAN):
        values = [draw(_ints)]
    else:
        values = [draw(_values)]
    return Requirement.make(key, op, values)


_selectors = st.lists(_requirements(), max_size=5).map(
    lambda reqs: Selector(tuple(sorted(reqs, key=lambda r: r.key)))
)
_label_sets = st.dictionaries(st.one_of(_keys, st.sampled_from(["a", "b"])), st.one_of(_values, _ints), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_selectors, _label_sets)
def test_round_trip_through_the_canonical_string(sel, labels):
    text = str(sel)
    again = parse_selector(text)
    assert again == sel
    assert str(again) == text
    assert again.matches(labels) == sel.matches(labels)


_selector_alphabet = st.sampled_from(list("ab1-_./=!(),<> \tinot") + ["in", "notin", "==", "!="])


@settings(max_examples=500, deadline=None)
@given(st.lists(_selector_alphabet, max_size=20).map("".join))
def test_any_text_parses_or_fails_cleanly(text):
    try:
        sel = parse_selector(text)
    except SelectorError as err:
        assert 0 <= err.position <= len(text)
        assert err.text == text
        return
    # whatever was accepted prints to something that parses back to the same value
    assert parse_selector(str(sel)) == sel
