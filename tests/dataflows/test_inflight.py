"""Batch markers: when everything read has reached the closing step."""

from __future__ import annotations

from dataflows.inflight import DeliveryLedger, Marker


def test_a_batch_is_complete_when_every_bucket_applied_its_marker() -> None:
    ledger = DeliveryLedger()
    first = sorted(ledger.issue(["a", "b", "a"]))
    second = ledger.issue(["a"])
    assert [key for key, _marker in first] == ["a", "b"]  # one marker per bucket
    assert ledger.progress() == (2, 0)
    ledger.applied(second[0][1])  # the later batch first: the earlier still holds
    assert ledger.progress() == (2, 0)
    ledger.applied(first[0][1])
    assert ledger.progress() == (2, 0)
    assert ledger.outstanding() == 1
    ledger.applied(first[1][1])
    assert ledger.progress() == (2, 2)
    assert ledger.outstanding() == 0


def test_a_batch_of_dead_letters_only_is_complete_at_once() -> None:
    ledger = DeliveryLedger()
    assert ledger.issue([]) == []
    assert ledger.progress() == (1, 1)


def test_receipts_of_other_senders_are_owed_to_them_once() -> None:
    ledger = DeliveryLedger(0)
    marker = Marker("1:other", 7, "a")
    ledger.applied(marker)
    ledger.applied(marker)
    assert ledger.take_remote() == {"1:other": {"7|a"}}
    assert ledger.take_remote() == {}
    ledger.owe("1:other", {"7|a"})  # a failed relay puts them back
    assert ledger.take_remote() == {"1:other": {"7|a"}}


def test_receipts_are_idempotent_and_those_of_an_earlier_run_ignored() -> None:
    ledger = DeliveryLedger(0)
    (_key, marker), (_other_key, other) = sorted(ledger.issue(["a", "b"]))
    ledger.acknowledge([marker.receipt, marker.receipt, "99|a"])
    assert ledger.progress() == (1, 0)  # "b" is still due
    ledger.acknowledge([other.receipt])
    assert ledger.progress() == (1, 1)
