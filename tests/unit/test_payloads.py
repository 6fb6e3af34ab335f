"""Validation's Durable payloads: each record reads back what it wrote, through JSON, and writes
the keys the steps exchanged before they were typed (an orchestration in flight replays them)."""

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.validation.payloads import (
    Begin,
    Finish,
    JobPass,
    JobRef,
    Listing,
    ListingLimits,
    ListingRound,
    Move,
    Pages,
    PagesRequest,
    ReshardPlan,
    Scan,
    Slice,
    Sweep,
    begun,
)

ticks = st.integers(0, 10**18)
spans = st.none() | st.tuples(ticks, ticks)
small = st.integers(0, 10**6)
refs = st.builds(JobRef, st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64), st.none() | st.text())
scans = st.builds(Scan, refs, st.text(min_size=1), ticks, ticks, small, small, st.integers(1, 1000), small, spans)
slices = st.builds(Slice, ticks, ticks, st.none() | st.text(), small)
limits = st.builds(ListingLimits, small, small, small)
listings = st.builds(Listing, st.lists(slices, max_size=5).map(tuple), small, small, small, small, spans, st.booleans())
sweep_results = st.fixed_dictionaries({"checked": small, "missing": small})
plans = st.builds(ReshardPlan, refs, small, small)
records = st.one_of(
    refs,
    st.builds(JobPass, refs, limits),
    st.builds(Begin, refs, st.none() | small),
    plans,
    st.builds(Move, plans, small),
    scans,
    slices,
    st.builds(PagesRequest, scans, slices, st.booleans(), small),
    st.builds(Pages, st.none() | st.text(), small, small, small, spans),
    st.just(Pages(split=True)),
    st.just(Pages(gone=True)),
    listings,
    st.builds(ListingRound, scans, limits, listings),
    st.builds(Sweep, scans, small),
    st.builds(Finish, scans, st.lists(sweep_results, max_size=4).map(tuple), small, small, spans),
)


@given(records)
def test_every_record_reads_back_what_it_wrote_through_json(record):
    assert type(record).from_json(json.loads(json.dumps(record.to_json()))) == record


def test_the_steps_exchange_the_keys_they_did_before_they_were_typed():
    scan = Scan(JobRef("Render-42", "render-42"), "s1", 1000, 0, 3, 95, 10, 8, (5, 90))
    assert set(scan.to_json()) == {
        "jobId",
        "jobKey",
        "action",
        "scanId",
        "scanStartedTicks",
        "createdTicks",
        "partitions",
        "expectedTasks",
        "pageSize",
        "knownSpan",
        "parallelListings",
    }
    assert scan.to_json()["knownSpan"] == [5, 90] and scan.to_json()["action"] == "validate"
    assert Pages(split=True).to_json() == {"split": True} and Pages(gone=True).to_json() == {"gone": True}
    assert Slice(1, 2).to_json() == {"low": 1, "high": 2, "next": None, "pages": 0}
    assert JobPass(JobRef("A", "a")).to_json() == {"jobKey": "a", "jobId": "A", "limits": ListingLimits().to_json()}
    assert ListingLimits.from_json(None) == ListingLimits()  # inputs from before the limits travelled


def test_begin_answers_a_scan_a_reshard_or_the_outcome_as_it_is():
    scan = Scan(JobRef("A", "a"), "s1", 1000, 0, 3, 95, 10, 8)
    plan = ReshardPlan(JobRef("A", "a"), 2, 8)
    skipped = {"jobId": "A", "action": "skipped", "reason": "over the limit"}
    assert begun(scan.to_json()) == scan and begun(plan.to_json()) == plan and begun(skipped) is skipped
