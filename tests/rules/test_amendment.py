"""``archive_changes``: the field-by-field difference a late event would make."""

from __future__ import annotations

from dataclasses import replace

from mediation.rules.amendment import AMENDABLE_FIELDS, archive_changes
from mediation.rules.closure import close_opportunity


def test_no_difference_means_no_changes(make_opportunity, make_event):
    archive = close_opportunity(make_opportunity(), [make_event(type="loaded", at=100)]).archive
    assert archive_changes(archive, archive) == {}


def test_each_changed_field_shows_both_values(make_opportunity, make_event):
    opportunity = make_opportunity()
    before = close_opportunity(
        opportunity, [make_event(type="impression", event_id="e1", at=100)]
    ).archive
    after = close_opportunity(
        opportunity,
        [
            make_event(type="impression", event_id="e1", at=100),
            make_event(type="click", event_id="e2", at=200),
        ],
    ).archive
    changes = archive_changes(before, after)
    assert changes["outcome"] == {"archived": before.outcome, "with_late": "clicked"}
    assert changes["counts"] == {"archived": dict(before.counts), "with_late": dict(after.counts)}
    assert set(changes) <= set(AMENDABLE_FIELDS)


def test_identity_fields_are_not_compared(make_opportunity, make_event):
    archive = close_opportunity(make_opportunity(), [make_event(type="loaded", at=100)]).archive
    assert archive_changes(archive, replace(archive, config_version=99)) == {}
