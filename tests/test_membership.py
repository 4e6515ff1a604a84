"""Which partitions a worker process owns (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.membership import Membership, MembershipError


@given(count=st.integers(1, 24), partitions=st.integers(1, 96))
def test_the_members_of_a_layout_cover_every_partition_once(count: int, partitions: int) -> None:
    if count > partitions:
        with pytest.raises(MembershipError, match="bounds the number of worker processes"):
            Membership(0, count).owned(partitions)
        return
    owned = [Membership.parse_member(f"{i}/{count}").owned(partitions) for i in range(count)]
    assert sorted(p for share in owned for p in share) == list(range(partitions))
    assert max(map(len, owned)) - min(map(len, owned)) <= 1


def test_an_explicit_list_is_owned_as_given_and_checked_against_the_topics() -> None:
    member = Membership.parse_partitions("5, 0,3")
    assert member.owned(24) == {0, 3, 5}
    assert member.label == "partitions-0-3-5"
    with pytest.raises(MembershipError, match="partitions 5 do not exist: the input topics have 4"):
        member.owned(4)


def test_each_layout_has_its_own_recovery_store_name() -> None:
    assert Membership.parse_member("1/3").label == "member-1-of-3"
    assert Membership.parse_member("1/2").label != Membership.parse_member("1/3").label
    assert str(Membership.parse_member("0/1")) == "member 0/1"
