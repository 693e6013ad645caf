from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from pice_bench.main import build_spec, parse_modes, parse_rates, quick_pick
from pice_bench.modes import Endpoints
from pice_bench.questions import Question
from pice_bench.records import Mode
from pice_bench.stack import gateway_record
from pice_cli.main import build_parser


def test_bench_is_a_pice_subcommand_with_its_defaults() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--gateway-url", "http://g/v1"])
    assert args.quick is True
    assert args.gateway_url == "http://g/v1"
    assert args.cloud == "edge"
    assert args.pin is True
    assert parse_modes(args.modes) == [
        Mode.CLOUD, Mode.SOT, Mode.PICE, Mode.PICE_AUTO, Mode.FLEET,
    ]  # fmt: skip
    assert (args.profile, args.placement) == (None, None)


def test_default_load_steps_send_thirty_requests_each_with_no_window() -> None:
    args = build_parser().parse_args(
        ["bench", "--gateway-url", "http://g/v1", "--no-judge", "--profile", "heterogeneous",
         "--placement", "eft"]
    )  # fmt: skip
    assert (args.profile, args.placement) == ("heterogeneous", "eft")
    spec = build_spec(args, Endpoints("http://g/v1", None, ""), [], {})
    assert spec.load is not None
    assert spec.load.max_count >= 30
    assert spec.load.max_duration == math.inf
    quick = build_spec(
        build_parser().parse_args(["bench", "--quick", "--no-judge"]),
        Endpoints("http://g/v1", None, ""), [], {},
    )  # fmt: skip
    assert quick.load is not None
    assert quick.load.max_count == 3


def test_parse_modes_and_rates() -> None:
    assert parse_modes("pice-progressive, cloud-only") == [Mode.PICE, Mode.CLOUD]
    with pytest.raises(SystemExit, match="unknown mode"):
        parse_modes("pice,cloud")
    assert parse_rates("0.1,0.05") == (0.1, 0.05)
    with pytest.raises(SystemExit, match="positive"):
        parse_rates("0.1,0")


def test_quick_pick_spreads_over_categories() -> None:
    qs = [
        Question("a1", "a", "?", True),
        Question("a2", "a", "?", True),
        Question("b1", "b", "?", True),
        Question("m1", "math", "?", False),
        Question("m2", "math", "?", False),
    ]
    assert [q.id for q in quick_pick(qs, suitable=2, other=1)] == ["a1", "b1", "m1"]


def test_suitable_selection_and_answer_budget_flags() -> None:
    args = build_parser().parse_args(["bench", "--suitable", "48", "--unsuitable", "20"])
    assert (args.suitable, args.unsuitable, args.max_tokens) == (48, 20, None)
    assert build_parser().parse_args(["bench"]).suitable is None


def test_the_record_counts_the_edges_a_profile_started_not_the_edges_flag() -> None:
    args = build_parser().parse_args(["bench", "--no-judge", "--profile", "heterogeneous"])
    endpoints = Endpoints("http://g/v1", "http://c/v1", "m")
    assert build_spec(args, endpoints, [], {"edges": ["1", "1"]}).config["edges"] == 2
    assert build_spec(args, endpoints, [], {}).config["edges"] == args.edges


def test_load_only_skips_the_latency_pass_and_the_judge() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "--gateway-url", "http://g/v1", "--load-only"])
    spec = build_spec(args, Endpoints("http://g/v1", "http://c/v1", "m"), [], {})
    assert (spec.latency, spec.judge) == (False, None)
    assert spec.load is not None
    default = parser.parse_args(["bench", "--gateway-url", "http://g/v1", "--no-judge"])
    assert build_spec(default, Endpoints("http://g/v1", None, ""), [], {}).latency is True
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--load-only", "--no-load"])


def test_the_gateways_effective_settings_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a bench-started gateway runs with, from its file *and* the environment it inherits
    (a run said to have hedging on must show it), with no secret in the record."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "progressive": {"placement": "least-loaded"},
                "edge_client": {"token": "edge-secret"},
                "cloud": {"api_key": "cloud-secret"},
            }
        )
    )
    monkeypatch.setenv("PICE_API_KEYS", '["client-secret"]')
    record = gateway_record(config)
    assert set(record) == {"progressive", "router", "admission", "load_decision"}
    assert record["progressive"]["placement"] == "least-loaded"
    assert record["progressive"]["hedging"]["enabled"] is False  # the default
    assert "secret" not in json.dumps(record)
    monkeypatch.setenv("PICE_PROGRESSIVE__HEDGING__ENABLED", "true")
    monkeypatch.setenv("PICE_ROUTER__EARLY_EXIT", "false")
    record = gateway_record(config)
    assert record["progressive"]["hedging"]["enabled"] is True
    assert record["router"]["early_exit"] is False

    args = build_parser().parse_args(["bench", "--no-judge", "--out", str(tmp_path)])
    spec = build_spec(args, Endpoints("http://g/v1", None, ""), [], {}, record)
    assert spec.config["gateway_settings"] == record
    assert (
        build_spec(args, Endpoints("http://g/v1", None, ""), [], {}).config["gateway_settings"]
        is None
    )  # an external gateway's settings are not known to the bench
