"""The job index's rows, pure (shared.store.codec.jobs): what the store writes for a job's sync position
reads back as the same position, and a validation outcome sets only what it knows."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared.store.codec.activity import bucket_key, bucket_of, changed_row, job_key_of_changed
from shared.store.codec.jobs import JOBS_PARTITION, sync_position_of, sync_row, validation_row
from shared.store.records import SyncPosition

AT = datetime(2026, 12, 4, 12, tzinfo=UTC)
TICKS = st.none() | st.integers(min_value=0, max_value=10**18)


@given(
    watermark=TICKS,
    started=TICKS,
    link=st.none() | st.text(min_size=1, max_size=40),
    finished=st.booleans(),
    changed=st.none() | st.just(AT),
)
def test_a_sync_position_reads_back_as_written(watermark, started, link, finished, changed):
    position = SyncPosition("job-1", "Job-1", watermark, link, started, None, finished, changed)
    row = {**sync_row(position, AT), "JobId": "Job-1"}  # the id was written when the job was registered
    assert row["PartitionKey"] == JOBS_PARTITION
    read = sync_position_of(row)
    assert read == SyncPosition("job-1", "Job-1", watermark, link, started, AT, finished, changed)


def test_a_validation_outcome_sets_only_what_it_knows():
    row = validation_row("job-1", "unvalidated", None, None, None, None)
    assert row == {
        "PartitionKey": JOBS_PARTITION,
        "RowKey": "job-1",
        "ValidationStatus": "unvalidated",
        "ValidationNote": "",
    }  # merged: the last pass's time, summary and span stay
    full = validation_row("job-1", "validated", "ok", AT, {"corrected": 1}, (5, 9))
    assert full["LastValidatedAt"] == AT and full["LastValidation"] == '{"corrected":1}'
    assert full["CreatedSpan"].split("-") == [f"{5:019d}", f"{9:019d}"]


@given(st.lists(st.datetimes(timezones=st.just(UTC), min_value=datetime(2001, 1, 1)), min_size=2, max_size=5))
def test_change_marks_sort_by_bucket_and_name_their_job_whatever_its_account(times):
    rows = [changed_row("teamb~render-42", bucket_of(at)) for at in sorted(times)]
    assert [row["RowKey"] for row in rows] == sorted(row["RowKey"] for row in rows)
    assert {job_key_of_changed(row) for row in rows} == {"teamb~render-42"}
    earliest = bucket_of(min(times))
    assert all(row["RowKey"] >= bucket_key(earliest) for row in rows)  # "since a bucket" is one range
