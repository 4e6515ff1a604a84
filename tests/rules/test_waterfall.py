from __future__ import annotations

from typing import Any

import pytest

from mediation.rules.model import WaterfallEntry
from mediation.rules.waterfall import (
    DEFAULT_CLOSURE_WINDOW_MS,
    DEFAULT_GRACE_MS,
    DEFAULT_MAX_DEPTH,
    DEFAULT_SKEW_TOLERANCE_MS,
    ConfigError,
    RuntimeConfig,
    choose_waterfall,
    parse_config,
)


def _entry(source_id: str, floor: int, **targeting: Any) -> dict[str, Any]:
    return {"source_id": source_id, "floor_micros": floor, "timeout_ms": 1_500, **targeting}


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "closure_window_ms": 1_800_000,
        "grace_ms": 30_000,
        "skew_tolerance_ms": 300_000,
        "max_waterfall_depth": 5,
        "placements": {
            "home_banner": {
                "waterfall": [
                    _entry("net_a", 1_500_000, countries=["US", "CA"], os=["ios"]),
                    _entry("net_b", 1_000_000),
                ]
            }
        },
    }
    body.update(overrides)
    return body


def _config(*entries: dict[str, Any], depth: int = 5) -> RuntimeConfig:
    return parse_config(
        1, _body(max_waterfall_depth=depth, placements={"p": {"waterfall": list(entries)}})
    )


def _ids(waterfall: tuple[WaterfallEntry, ...] | None) -> list[str]:
    assert waterfall is not None
    return [entry.source_id for entry in waterfall]


# --- parse_config --------------------------------------------------------------------------


def test_parse_config_reads_a_valid_body():
    config = parse_config(7, _body())
    assert config.version == 7
    assert config.closure_window_ms == 1_800_000
    assert config.grace_ms == 30_000
    assert config.skew_tolerance_ms == 300_000
    assert config.max_waterfall_depth == 5
    assert set(config.placements) == {"home_banner"}
    (a, b) = config.placements["home_banner"].entries
    assert a.entry == WaterfallEntry("net_a", 1_500_000, 1_500)
    assert a.countries == frozenset({"US", "CA"})
    assert a.os == frozenset({"ios"})
    assert b.countries is None
    assert b.os is None


def test_parse_config_applies_defaults_for_missing_settings():
    config = parse_config(1, {"placements": {"p": {"waterfall": []}}})
    assert config.closure_window_ms == DEFAULT_CLOSURE_WINDOW_MS == 1_800_000
    assert config.grace_ms == DEFAULT_GRACE_MS == 30_000
    assert config.skew_tolerance_ms == DEFAULT_SKEW_TOLERANCE_MS == 300_000
    assert config.max_waterfall_depth == DEFAULT_MAX_DEPTH
    assert config.placements["p"].entries == ()


def test_parse_config_lists_all_errors_in_one_config_error():
    body = _body(
        grace_ms=0,
        max_waterfall_depth=True,
        placements={
            "ok": {"waterfall": [_entry("net_a", 1)]},
            "no_list": {"waterfall": "net_a"},
            "not_object": ["net_a"],
            "bad_items": {
                "waterfall": [
                    "net_a",
                    _entry("", 1),
                    _entry("net_b", -1),
                    _entry("net_c", 1.5),
                    {**_entry("net_d", 1), "timeout_ms": 0},
                    _entry("net_e", 1, countries="US"),
                    _entry("net_f", 1, os=["ios", 1]),
                ]
            },
        },
    )
    with pytest.raises(ConfigError) as info:
        parse_config(1, body)
    message = str(info.value)
    expected = [
        "grace_ms: must be an integer in 1..86400000, got 0",
        "max_waterfall_depth: must be an integer in 1..50, got True",
        "placements.no_list.waterfall: must be a list",
        "placements.not_object.waterfall: must be a list",
        "placements.bad_items.waterfall[0]: must be an object",
        "placements.bad_items.waterfall[1].source_id: must be a non-empty string",
        "placements.bad_items.waterfall[2].floor_micros: must be an integer >= 0, got -1",
        "placements.bad_items.waterfall[3].floor_micros: must be an integer >= 0, got 1.5",
        "placements.bad_items.waterfall[4].timeout_ms: must be a positive integer, got 0",
        "placements.bad_items.waterfall[5].countries: must be a list of strings",
        "placements.bad_items.waterfall[6].os: must be a list of strings",
    ]
    assert message.split("; ") == expected


@pytest.mark.parametrize("placements", [None, {}, [], "home_banner"])
def test_parse_config_requires_a_non_empty_placements_object(placements):
    body = _body(placements=placements)
    if placements is None:
        del body["placements"]
    with pytest.raises(ConfigError, match="placements: must be a non-empty object"):
        parse_config(1, body)


@pytest.mark.parametrize(
    "key", ["closure_window_ms", "grace_ms", "skew_tolerance_ms", "max_waterfall_depth"]
)
@pytest.mark.parametrize("value", [0, -1, 1.5, "10", None, False])
def test_parse_config_refuses_non_positive_integer_settings(key, value):
    with pytest.raises(ConfigError, match=f"{key}: must be an integer in 1\\.\\."):
        parse_config(1, _body(**{key: value}))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_zero_floor_is_allowed():
    config = _config(_entry("net_a", 0))
    assert _ids(choose_waterfall(config, "p", {})) == ["net_a"]


# --- choose_waterfall ----------------------------------------------------------------------


def test_unknown_placement_is_none():
    assert choose_waterfall(parse_config(1, _body()), "nope", {"country": "US"}) is None


def test_entries_are_ordered_by_floor_descending():
    config = _config(_entry("low", 100), _entry("high", 900), _entry("mid", 500))
    assert _ids(choose_waterfall(config, "p", {})) == ["high", "mid", "low"]


def test_equal_floors_keep_their_configured_order():
    config = _config(
        _entry("b", 500), _entry("a", 500), _entry("top", 900), _entry("c", 500), _entry("z", 1)
    )
    assert _ids(choose_waterfall(config, "p", {})) == ["top", "b", "a", "c", "z"]


def test_waterfall_is_capped_at_max_depth():
    entries = [_entry(f"net_{i}", 1_000 - i) for i in range(8)]
    assert _ids(choose_waterfall(_config(*entries, depth=3), "p", {})) == [
        "net_0",
        "net_1",
        "net_2",
    ]
    assert len(choose_waterfall(_config(*entries, depth=20), "p", {}) or ()) == 8


def test_depth_cap_keeps_the_highest_floors_after_targeting():
    config = _config(
        _entry("best_ca", 900, countries=["CA"]),
        _entry("good", 500),
        _entry("ok", 400),
        _entry("meh", 300),
        depth=2,
    )
    assert _ids(choose_waterfall(config, "p", {"country": "US"})) == ["good", "ok"]
    assert _ids(choose_waterfall(config, "p", {"country": "CA"})) == ["best_ca", "good"]


def test_targeting_on_country_and_os():
    config = _config(
        _entry("us_ios", 900, countries=["US"], os=["ios"]),
        _entry("us_any", 800, countries=["US", "CA"]),
        _entry("android_any", 700, os=["android"]),
        _entry("everyone", 100),
    )
    assert _ids(choose_waterfall(config, "p", {"country": "US", "os": "ios"})) == [
        "us_ios",
        "us_any",
        "everyone",
    ]
    assert _ids(choose_waterfall(config, "p", {"country": "CA", "os": "android"})) == [
        "us_any",
        "android_any",
        "everyone",
    ]
    assert _ids(choose_waterfall(config, "p", {"country": "DE", "os": "ios"})) == ["everyone"]


def test_targeted_entries_do_not_match_requests_without_that_context():
    config = _config(_entry("us", 900, countries=["US"]), _entry("ios", 800, os=["ios"]))
    assert choose_waterfall(config, "p", {}) == ()
    assert _ids(choose_waterfall(config, "p", {"os": "ios"})) == ["ios"]


def test_empty_targeting_list_matches_nobody():
    config = _config(_entry("nobody", 900, countries=[]), _entry("all", 1))
    assert _ids(choose_waterfall(config, "p", {"country": "US"})) == ["all"]


def test_nothing_eligible_is_an_empty_waterfall():
    config = _config(_entry("us", 900, countries=["US"]))
    assert choose_waterfall(config, "p", {"country": "FR"}) == ()
    assert choose_waterfall(_config(), "p", {"country": "US"}) == ()


def test_chosen_entries_are_plain_waterfall_entries():
    config = _config(_entry("net_a", 900, countries=["US"]))
    assert choose_waterfall(config, "p", {"country": "US"}) == (
        WaterfallEntry("net_a", 900, 1_500),
    )
