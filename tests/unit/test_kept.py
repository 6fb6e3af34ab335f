"""What a writer keeps of the partitions it wrote last (shared.store.kept), pure: rows merged while the
counter's ETag chains, let go when it does not, bounded, and completeness lost with any row."""

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import TaskState, TaskStatus
from shared.store.kept import KeptPartitions, KeptRow


def row(n: int, etag: str = "e") -> KeptRow:
    return KeptRow(TaskStatus(TaskState.ACTIVE, None, 1, f"{n:040d}"), None, etag, False)


def rows(*numbers: int) -> dict[str, KeptRow]:
    return {f"t{n}": row(n) for n in numbers}


def test_rows_written_from_the_kept_etag_add_to_the_kept_ones_and_others_replace_them():
    kept = KeptPartitions()
    kept.keep("p", {"c": 1}, "e1", rows(1, 2), complete=True, since=None)
    kept.keep("p", {"c": 2}, "e2", rows(3), complete=False, since="e1")  # written from what was kept
    assert set(kept.get("p").rows) == {"t1", "t2", "t3"} and kept.get("p").complete and kept.get("p").etag == "e2"
    kept.keep("p", {"c": 3}, "e9", rows(4), complete=False, since="e5")  # read afresh: another writer wrote
    assert set(kept.get("p").rows) == {"t4"} and not kept.get("p").complete
    assert kept.rows == 1
    kept.keep("p", None, None, {}, complete=False, since=None)  # no counter row: nothing to keep
    assert kept.get("p") is None and kept.rows == 0


def test_the_least_recently_written_partitions_let_their_rows_go_first_and_with_them_completeness():
    kept = KeptPartitions(rows_kept=5, partitions_kept=3)
    kept.keep("a", {}, "a1", rows(1, 2), complete=True, since=None)
    kept.keep("b", {}, "b1", rows(1, 2), complete=True, since=None)
    kept.keep("a", {}, "a2", rows(3), complete=True, since="a1")  # a is now the most recent
    kept.keep("c", {}, "c1", rows(1), complete=True, since=None)
    assert kept.get("b").rows == {} and not kept.get("b").complete and kept.get("b").etag == "b1"  # counter kept
    assert kept.get("a").complete and kept.rows == 4
    kept.keep("d", {}, "d1", rows(1), complete=True, since=None)
    assert kept.get("b") is None  # past partitions_kept: the least recent goes whole
    kept.keep("e", {}, "e1", rows(*range(10)), complete=True, since=None)  # alone over the bound
    assert kept.get("e").rows == {} and not kept.get("e").complete and kept.rows <= 5


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.lists(st.integers(0, 30), max_size=8), st.booleans(), st.booleans()),
        max_size=60,
    )
)
def test_the_row_count_is_exact_and_bounded_whatever_is_kept(steps):
    kept = KeptPartitions(rows_kept=12, partitions_kept=4)
    etags = {}
    for pk, numbers, chained, complete in steps:
        since = etags.get(pk) if chained else None
        etags[pk] = f"{pk}{len(etags)}{len(numbers)}{since}"
        kept.keep(pk, {}, etags[pk], rows(*numbers), complete, since)
        held = [kept.get(p) for p in "abcdef" if kept.get(p) is not None]
        assert kept.rows == sum(len(p.rows) for p in held) <= 12 and len(held) <= 4
