"""Window features: point-in-time windows, and cluster timing synchrony."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from detector.window.batches import account_batches, account_features_in_parts
from detector.window.compact import coded_rows
from detector.window.features import account_features, cluster_features
from detector.window.state import ACCOUNT_SCHEMA, BUCKET_SCHEMA, KEY_SCHEMA, TEMPLATE_SCHEMA, WindowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
Q = timedelta(minutes=15)


def _bucket(acct: str, i: int, requests: int = 1, cot: int = 0) -> dict[str, object]:
    row: dict[str, object] = {c: 0 for c in BUCKET_SCHEMA}
    row.update(account_id=acct, bucket=T0 + i * Q, requests=requests, cot=cot)
    return row


def _state(rows: list[dict[str, object]], accounts: list[str]) -> WindowState:
    st = WindowState()
    st.ids, st.buckets, st.templates = coded_rows(
        pl.DataFrame(rows, schema=BUCKET_SCHEMA), pl.DataFrame(schema=TEMPLATE_SCHEMA)
    )
    st.accounts = pl.DataFrame(
        [(a, T0, T0 + timedelta(days=1), T0 - timedelta(days=1), "free", None, None) for a in accounts],
        schema=ACCOUNT_SCHEMA,
        orient="row",
    )
    return st


def test_each_point_sees_only_buckets_before_its_tick() -> None:
    st = _state([_bucket("a", i, requests=1, cot=i % 2) for i in range(8)], ["a"])
    points = pl.DataFrame({"account_id": ["a", "a", "a"], "tick_end": [T0 + 2 * Q, T0 + 4 * Q, T0 + 8 * Q]})
    f = account_features(st, points, timedelta(hours=1), timedelta(hours=24)).sort("tick_end")
    assert f["requests_24h"].to_list() == [2, 4, 8]
    assert f["requests_1h"].to_list() == [2, 4, 4]  # the last point's hour holds buckets 4..7
    assert f["cot_share_24h"].to_list() == [0.5, 0.5, 0.5]
    assert f["first_bucket"].to_list() == [T0, T0, T0]


def test_long_window_drops_old_buckets() -> None:
    st = _state([_bucket("a", 0, requests=5), _bucket("a", 100, requests=1)], ["a"])
    points = pl.DataFrame({"account_id": ["a"], "tick_end": [T0 + 101 * Q]})
    f = account_features(st, points, timedelta(hours=1), timedelta(hours=24))
    assert f["requests_24h"].to_list() == [1]  # bucket 0 is 25 hours before the tick
    assert f["first_bucket"].to_list() == [T0 + 100 * Q]


def _evidence(cid: str) -> pl.DataFrame:
    return pl.DataFrame({"cluster_id": [cid], "link_families": [2]})


def test_synchrony_is_one_when_members_move_together_and_low_when_not() -> None:
    together = [_bucket(a, i) for a in ("a", "b", "c", "d") for i in range(0, 20, 2)]
    apart = [_bucket(a, i + 20 * k) for k, a in enumerate(("e", "f", "g", "h")) for i in range(0, 20, 2)]
    names = list("abcdefgh")
    st = _state(together + apart, names)
    members = pl.DataFrame({"account_id": names, "cluster_id": ["x"] * 4 + ["y"] * 4})
    ev = pl.concat([_evidence("x"), _evidence("y")])
    f = cluster_features(
        st, members, ev, st.accounts, T0 + timedelta(hours=24), timedelta(hours=24), keys=st.key_rows()
    )
    sync = dict(zip(f["cluster_id"], f["synchrony_24h"], strict=True))
    assert sync["x"] == 1.0
    assert sync["y"] == 0.25


def test_a_routers_sub_accounts_count_as_their_own_orgs_and_payers() -> None:
    """Four sub-accounts under a router's one org and card are four customers, not one; the same four
    accounts as a company's own (not sub-accounts) are one org and one payer."""
    names = list("abcd")
    st = _state([_bucket(a, i) for a in names for i in range(4)], names)
    st.accounts = st.accounts.with_columns(pl.lit("orgR").alias("org_id"))
    keys = pl.DataFrame([(a, "payment", "pfR", T0, 1) for a in names], schema=KEY_SCHEMA, orient="row")
    members = pl.DataFrame({"account_id": names, "cluster_id": ["x"] * 4})
    now, long = T0 + timedelta(hours=24), timedelta(hours=24)
    own = cluster_features(st, members, _evidence("x"), st.accounts, now, long, keys=keys)
    assert own.select("orgs", "payers").row(0) == (1, 1)
    sub = pl.DataFrame({"account_id": names, "reseller": ["rs1"] * 4})
    resold = cluster_features(st, members, _evidence("x"), st.accounts, now, long, sub, keys=keys)
    assert resold.select("orgs", "payers").row(0) == (4, 4)


def test_a_routers_sub_accounts_carry_no_verification_of_their_own() -> None:
    """Round 7 (issue 17): a sub-account's ``verified`` is its tenant's verification, so a group of
    sub-accounts counts as unverified (no trust for the group) and says it sits inside a tenant; the
    same accounts as a company's own keep their verification."""
    names = list("abcd")
    st = _state([_bucket(a, i) for a in names for i in range(4)], names)
    st.accounts = st.accounts.with_columns(pl.lit("orgR").alias("org_id"), pl.lit(True).alias("verified"))
    members = pl.DataFrame({"account_id": names, "cluster_id": ["x"] * 4})
    now, long = T0 + timedelta(hours=24), timedelta(hours=24)
    own = cluster_features(st, members, _evidence("x"), st.accounts, now, long, keys=st.key_rows())
    assert own.select("verified_share", "tenant_share").row(0) == (1.0, 0.0)
    sub = pl.DataFrame({"account_id": names[:3], "reseller": ["rs1"] * 3})
    resold = cluster_features(st, members, _evidence("x"), st.accounts, now, long, sub, keys=st.key_rows())
    assert resold.select("verified_share", "tenant_share").row(0) == (0.25, 0.75)


def test_account_batches_bound_parts_and_never_split_an_account() -> None:
    # account "a" has 7 points (more than a part), the others 1 to 3
    per = {"a": 7, "b": 1, "c": 3, "d": 2, "e": 3, "f": 1}
    points = pl.DataFrame(
        {
            "account_id": [a for a, n in per.items() for _ in range(n)],
            "tick_end": [T0 + (i + 1) * Q for n in per.values() for i in range(n)],
        }
    )
    parts = account_batches(points, 4)
    # a part takes the accounts (in id order) whose first point falls in one run of 4 points
    assert [p.get_column("account_id").to_list() for p in parts] == [
        ["a"] * 7 + ["b"],  # "b" alone would be a lone point: it joins the part before
        ["c", "c", "c", "d", "d"],
        ["e", "e", "e", "f"],
    ]
    assert sorted(pl.concat(parts).rows()) == sorted(points.rows())
    assert account_batches(points, 17) == [points]


def test_account_features_are_the_same_in_batches() -> None:
    rows = [
        _bucket(a, i, requests=1 + i % 3, cot=(i + k) % 2) for k, a in enumerate("abcde") for i in range(9)
    ]
    st = _state(rows, list("abcde"))
    points = pl.DataFrame(
        {
            "account_id": [a for a in "abcde" for _ in range(3)],
            "tick_end": [T0 + t * Q for _ in "abcde" for t in (3, 6, 10)],
        }
    )
    whole = account_features(st, points, timedelta(hours=1), timedelta(hours=24))
    for batch in (1, 2, 4, 7):
        assert_frame_equal(
            account_features_in_parts(st, points, timedelta(hours=1), timedelta(hours=24), batch), whole
        )
