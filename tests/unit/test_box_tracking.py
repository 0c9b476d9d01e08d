"""Track ids of a detector's boxes across camera frames (pipelines/box_tracking.py)."""

from __future__ import annotations

from xrserve.pipelines.box_tracking import MAX_MISSES, BoxTracker


def boxes(*items: tuple[int, float, float]) -> list[dict]:
    """(class, x, y) -> 40x40 boxes at (x, y)."""
    return [{"class": cls, "box": [x, y, x + 40, y + 40]} for cls, x, y in items]


def test_moving_objects_keep_their_ids_and_new_ones_get_new_ids() -> None:
    tracker = BoxTracker()
    first = boxes((0, 0, 0), (1, 200, 0))
    tracker.assign(first)
    ids = [b["track"] for b in first]
    assert len(set(ids)) == 2
    for step in range(1, 10):  # both move 8 px a frame; the order of the boxes changes
        frame = boxes((1, 200 - 8 * step, 0), (0, 8 * step, 0))
        tracker.assign(frame)
        assert [b["track"] for b in frame] == ids[::-1]
    newcomer = boxes((0, 72, 0), (1, 128, 0), (0, 400, 400))
    tracker.assign(newcomer)
    assert newcomer[2]["track"] not in ids


def test_a_box_of_another_class_never_takes_an_id() -> None:
    tracker = BoxTracker()
    cup = boxes((0, 10, 10))
    tracker.assign(cup)
    book = boxes((1, 10, 10))
    tracker.assign(book)
    assert book[0]["track"] != cup[0]["track"]


def test_a_box_missing_for_a_few_frames_keeps_its_id_then_it_is_forgotten() -> None:
    tracker = BoxTracker()
    seen = boxes((0, 50, 50))
    tracker.assign(seen)
    for _ in range(MAX_MISSES):
        tracker.assign([])
    back = boxes((0, 52, 50))
    tracker.assign(back)
    assert back[0]["track"] == seen[0]["track"]
    for _ in range(MAX_MISSES + 1):
        tracker.assign([])
    gone = boxes((0, 52, 50))
    tracker.assign(gone)
    assert gone[0]["track"] != seen[0]["track"]
