"""Events are checked plain data; the math layer imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deniable.errors import InvalidParameterError
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    Neighbouring,
    PoissonSampledEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    sensitivity_under,
)


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianEvent(0.0),
        lambda: GaussianEvent(1.0, sensitivity=-1.0),
        lambda: GaussianEvent(float("nan")),
        lambda: LaplaceEvent(float("inf")),
        lambda: RandomizedResponseEvent(1.0, num_buckets=1),
        lambda: PoissonSampledEvent(0.0, GaussianEvent(1.0)),
        lambda: PoissonSampledEvent(1.1, GaussianEvent(1.0)),
        lambda: SampledWithoutReplacementEvent(10, 11, GaussianEvent(1.0)),
        lambda: SelfComposedEvent(GaussianEvent(1.0), 0),
        lambda: ComposedEvent(["not an event"]),  # type: ignore[list-item]
    ],
)
def test_malformed_events_are_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError):
        build()


def test_replace_one_sensitivity_defaults_to_twice_add_remove() -> None:
    event = GaussianEvent(sigma=3.0, sensitivity=1.5)
    assert sensitivity_under(event, Neighbouring.ADD_REMOVE) == 1.5
    assert sensitivity_under(event, Neighbouring.REPLACE_ONE) == 3.0
    stated = GaussianEvent(sigma=3.0, sensitivity=1.0, replace_one_sensitivity=0.01)
    assert sensitivity_under(stated, Neighbouring.REPLACE_ONE) == 0.01


def test_events_serialise_to_json() -> None:
    event = SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.1)), 100)
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == "SelfComposedEvent"
    assert data["event"]["event"] == {
        "type": "GaussianEvent",
        "sigma": 1.1,
        "sensitivity": 1.0,
        "replace_one_sensitivity": None,
    }
    composed = ComposedEvent([GaussianEvent(1.0), LaplaceEvent(2.0)]).to_dict()
    assert [e["type"] for e in composed["events"]] == ["GaussianEvent", "LaplaceEvent"]


def test_math_layer_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import deniable.events, deniable.accounting, deniable.accounting.pld, "
        "deniable.accounting.rdp, deniable.accounting.basic, deniable.accounting.calibrate\n"
        "assert 'torch' not in sys.modules, 'the math layer imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_events_round_trip_through_dicts() -> None:
    from deniable.events import DiscreteLaplaceEvent, PureDpEvent, event_from_dict

    event = ComposedEvent(
        [
            SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.1, 1.0, 0.5)), 100),
            SampledWithoutReplacementEvent(100, 10, LaplaceEvent(2.0, dimension=3)),
            DiscreteLaplaceEvent(4.0, 2.0),
            PureDpEvent(0.3),
        ]
    )
    assert event_from_dict(json.loads(json.dumps(event.to_dict()))) == event
    with pytest.raises(InvalidParameterError):
        event_from_dict({"type": "MadeUpEvent"})
    with pytest.raises(InvalidParameterError):
        event_from_dict({"type": "GaussianEvent", "sigma": 1.0, "colour": "red"})
