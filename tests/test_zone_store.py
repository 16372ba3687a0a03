"""How the zone stores record sets: compact values, and names shared by several owners, against a plain model."""

import random

from clusterdns.settings import Settings
from clusterdns.zone import OneKey, OneRecord, TwoKeys, Zone, compact_sets


def test_one_record_reads_as_the_mapping_it_stands_for():
    plain = {1: ("10.0.0.1",)}
    one = compact_sets(plain)
    assert isinstance(one, OneRecord)
    assert one == plain and dict(one.items()) == plain and list(one.values()) == [("10.0.0.1",)]
    assert one[1] == ("10.0.0.1",) and one.get(1) == ("10.0.0.1",) and one.get(28) is None and one.get(28, ()) == ()
    assert 1 in one and 28 not in one and list(one) == [1] and len(one) == 1
    assert repr(one) == repr(plain)
    two = compact_sets({1: ("10.0.0.1", "10.0.0.2")})
    assert type(two) is OneKey and two == {1: ("10.0.0.1", "10.0.0.2")}
    pair = {1: ("10.0.0.1",), 33: ((0, 100, 80, "web."),)}
    kept = compact_sets(pair)
    assert type(kept) is TwoKeys and kept == pair and dict(kept.items()) == pair and repr(kept) == repr(pair)
    assert kept[33] == pair[33] and kept.get(1) == pair[1] and kept.get(28) is None and 28 not in kept
    assert list(kept) == [1, 33] and len(kept) == 2 and list(kept.values()) == list(pair.values())
    several = {1: ("10.0.0.1",), 28: ("fd00::1",), 33: ((0, 100, 80, "web."),)}
    assert compact_sets(several) is several


def _expected(contributions: dict[str, dict[str, dict[int, tuple]]]) -> dict[str, dict[int, tuple]]:
    """The merged view, computed from scratch: per name, every owner's sets in repr order, repeats dropped."""
    by_name: dict[str, list[dict[int, tuple]]] = {}
    for records in contributions.values():
        for name, sets in records.items():
            by_name.setdefault(name, []).append(sets)
    merged = {}
    for name, all_sets in by_name.items():
        out: dict[int, list] = {}
        for sets in sorted(all_sets, key=repr):
            for qtype, values in sets.items():
                bucket = out.setdefault(qtype, [])
                bucket.extend(v for v in values if v not in bucket)
        merged[name] = {qtype: tuple(values) for qtype, values in out.items()}
    return merged


def test_owners_sharing_names_in_any_order_give_the_merged_view_from_scratch():
    rng = random.Random(7)
    zone = Zone(Settings())
    names = [f"{i}.0.10.in-addr.arpa." for i in range(6)] + [f"n{i}.default.svc.cluster.local." for i in range(4)]
    owners = [("svc", "default", f"s{i}") for i in range(5)]
    contributions: dict = {}
    for _ in range(600):
        owner = rng.choice(owners)
        records = {
            # (records.py drops repeats within an owner's set; the zone merges repeats across owners)
            name: {12: tuple(dict.fromkeys(f"t{rng.randrange(3)}.s{rng.randrange(2)}." for _ in range(rng.randrange(1, 3))))}
            if name.endswith("arpa.")
            else {1: (f"10.0.0.{rng.randrange(4)}",), **({33: ((0, 100, 80, "t."),)} if rng.random() < 0.5 else {})}
            for name in rng.sample(names, rng.randrange(0, 4))
        }
        zone.replace(owner, records)
        contributions[owner] = records
        expected = _expected(contributions)
        assert {name: dict(zone.records(name).items()) for name in zone.names()} == expected
        assert zone.record_count == sum(len(v) for sets in expected.values() for v in sets.values())
        assert zone.exists("0.10.in-addr.arpa.") == any(n.endswith(".0.10.in-addr.arpa.") for n in expected)
    for owner in owners:
        zone.replace(owner, {})
    assert zone.names() == [] and zone.record_count == 0 and not zone.exists("svc.cluster.local.")
