"""The Corefile grammar (clusterdns/corefile.py), on text and on files it imports."""

from __future__ import annotations

import pytest

from clusterdns.corefile import CorefileError, Directive, parse, parse_file, tokenize


def shape(directives: tuple[Directive, ...] | None):
    """Directives as nested lists of texts, for compact comparisons."""
    if directives is None:
        return None
    return [[d.name, *d.values] + ([shape(d.block)] if d.block is not None else []) for d in directives]


KUBEADM = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def test_a_server_block_with_nested_option_blocks():
    (block,) = parse(KUBEADM)
    assert [k.text for k in block.keys] == [".:53"]
    assert shape(block.directives) == [
        ["errors"],
        ["health", [["lameduck", "5s"]]],
        ["ready"],
        ["kubernetes", "cluster.local", "in-addr.arpa", "ip6.arpa",
         [["pods", "insecure"], ["fallthrough", "in-addr.arpa", "ip6.arpa"], ["ttl", "30"]]],
        ["prometheus", ":9153"],
        ["forward", ".", "/etc/resolv.conf", [["max_concurrent", "1000"]]],
        ["cache", "30"], ["loop"], ["reload"], ["loadbalance"],
    ]


def test_every_token_keeps_its_line():
    (block,) = parse(KUBEADM, "kubeadm.Corefile")
    by_name = {d.name: d for d in block.directives}
    assert by_name["kubernetes"].where == "kubeadm.Corefile:7"
    assert by_name["kubernetes"].block[2].args[0].line == 10
    assert by_name["loadbalance"].where == "kubeadm.Corefile:19"


def test_several_blocks_and_several_keys_per_block():
    blocks = parse("cluster.local:53 example.org:53 {\n whoami\n}\ndns://.:1053, a.b:1053 {\n log\n}\n")
    assert [[k.text for k in b.keys] for b in blocks] == [["cluster.local:53", "example.org:53"], ["dns://.:1053", "a.b:1053"]]
    assert [shape(b.directives) for b in blocks] == [[["whoami"]], [["log"]]]


def test_keys_continue_on_the_next_line_after_a_comma():
    (block,) = parse("a.local:53,\n b.local:53 {\n errors\n}\n")
    assert [k.text for k in block.keys] == ["a.local:53", "b.local:53"]


def test_a_single_block_may_leave_out_its_braces():
    (block,) = parse(".:53\nerrors\nlog\n")
    assert shape(block.directives) == [["errors"], ["log"]]


def test_inline_blocks_and_braces_on_one_line():
    (block,) = parse(".:53 { health { lameduck 5s } ready }\n")
    assert shape(block.directives) == [["health", [["lameduck", "5s"]]], ["ready"]]


def test_quoted_tokens_comments_and_escaped_quotes():
    text = '.:53 {  # a comment\n  hosts {\n    "1.2.3.4"   "two words"  # trailing\n    fallthrough\n  }\n  log . "{remote} \\"q\\""\n}\n'
    (block,) = parse(text)
    assert shape(block.directives) == [
        ["hosts", [["1.2.3.4", "two words"], ["fallthrough"]]],
        ["log", ".", '{remote} "q"'],
    ]
    assert block.directives[1].args[1].quoted


def test_a_hash_inside_a_token_starts_a_comment_as_in_caddy():
    (block,) = parse(".:53 {\n errors#not an argument\n}\n")
    assert shape(block.directives) == [["errors"]]


def test_a_quoted_token_spanning_lines_counts_its_lines():
    tokens = tokenize('a "b\nc" d\ne', "F")
    assert [(t.text, t.line, t.end_line) for t in tokens] == [("a", 1, 1), ("b\nc", 1, 2), ("d", 2, 2), ("e", 3, 3)]
    (block,) = parse('.:53 {\n log "x\ny" z\n errors\n}\n')
    assert shape(block.directives) == [["log", "x\ny", "z"], ["errors"]]


def test_environment_placeholders():
    env = {"ZONE": "cluster.local", "UP": "127.0.0.1:5300", "TTL": "7"}
    (block,) = parse(".:{$PORT}53 {\n kubernetes {env.ZONE}\n forward . {%UP%}\n cache {$TTL} {$UNSET}x\n}\n", env=env)
    assert block.keys[0].text == ".:53"
    assert shape(block.directives) == [["kubernetes", "cluster.local"], ["forward", ".", "127.0.0.1:5300"], ["cache", "7", "x"]]


def test_snippets_are_pasted_where_imported():
    text = "(common) {\n  errors\n  cache 30\n}\n.:53 {\n  import common\n  log\n}\nexample.org {\n  import common\n}\n"
    first, second = parse(text)
    assert shape(first.directives) == [["errors"], ["cache", "30"], ["log"]]
    assert shape(second.directives) == [["errors"], ["cache", "30"]]
    assert first.directives[1].where == "Corefile:3"  # the line of the snippet's text


def test_import_of_files_and_globs_relative_to_the_importing_file(tmp_path):
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "a.override").write_text("log\n")
    (custom / "b.override").write_text("rewrite name exact a.example. b.example.\n")
    (custom / "extra.server").write_text("extra.local:53 {\n  errors\n}\n")
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n  errors\n  import custom/*.override\n  ready\n}\nimport custom/*.server\nimport custom/*.none\n")
    first, second = parse_file(corefile)
    assert shape(first.directives) == [["errors"], ["log"], ["rewrite", "name", "exact", "a.example.", "b.example."], ["ready"]]
    assert first.directives[2].where == f"{custom / 'b.override'}:1"
    assert second.keys[0].text == "extra.local:53" and second.where == f"{custom / 'extra.server'}:1"


def test_a_glob_matching_nothing_is_fine_as_in_k3s(tmp_path):
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n  errors\n  import /nonexistent-dir/custom/*.override\n}\nimport /nonexistent-dir/custom/*.server\n")
    (block,) = parse_file(corefile)
    assert shape(block.directives) == [["errors"]]


@pytest.mark.parametrize(
    "text, message",
    [
        (".:53 {\n errors\n", "Corefile:1: block opened here (.:53) has no closing '}'"),
        (".:53 {\n errors\n}\n}\n", "Corefile:4: unexpected '}': no block is open"),
        (".:53 {\n health {\n lameduck 5s\n}\n", "Corefile:1: block opened here (.:53) has no closing '}'"),
        (".:53 {\n health {\n lameduck 5s\n", "Corefile:2: block opened here (health) has no closing '}'"),
        (".:53 {\n errors\n {\n }\n}\n", "Corefile:3: unexpected '{': a block must follow a directive on its line"),
        ('.:53 {\n log "unterminated\n}\n', "Corefile:2: unterminated quoted token"),
        (".:53 {\n import\n}\n", "Corefile:2: import takes one argument: a snippet name, a file or a glob"),
        (".:53 {\n import a b\n}\n", "Corefile:2: import takes one argument: a snippet name, a file or a glob"),
        (".:53 {\n errors\n}\nexample.org\nlog\n", "Corefile:4: server block example.org needs a { block }"),
        ("(snip)\n.:53 {\n}\n", "Corefile:1: snippet (snip) needs a { block }"),
        ("(snip) {\n errors\n", "Corefile:1: snippet (snip) has no closing '}'"),
        ("(s) {\n errors\n}\n(s) {\n log\n}\n", "Corefile:4: snippet (s) is defined twice"),
        ("(s) {\n import s\n}\n.:53 {\n import s\n}\n", "Corefile:2: import cycle: snippet s imports itself"),
        ("{\n errors\n}\n", "Corefile:1: a server block needs at least one key, such as .:53"),
    ],
)
def test_errors_name_the_file_and_line(text, message):
    with pytest.raises(CorefileError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_a_missing_plain_import_is_an_error(tmp_path):
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n  errors\n  import extra.conf\n}\n")
    with pytest.raises(CorefileError) as caught:
        parse_file(corefile)
    assert str(caught.value) == f"{corefile}:3: import extra.conf: no such snippet or file ({tmp_path / 'extra.conf'})"


def test_a_file_importing_itself_is_a_cycle(tmp_path):
    (tmp_path / "a").write_text("import b\n")
    (tmp_path / "b").write_text("import a\n")
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n import a\n}\n")
    with pytest.raises(CorefileError) as caught:
        parse_file(corefile)
    assert str(caught.value) == f"{tmp_path / 'b'}:1: import cycle: {tmp_path / 'a'} imports itself"


def test_an_unreadable_corefile(tmp_path):
    with pytest.raises(CorefileError) as caught:
        parse_file(tmp_path / "missing")
    assert str(caught.value) == f"{tmp_path / 'missing'}:0: cannot read: No such file or directory"
