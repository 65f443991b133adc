"""The flow's per-context-version cache: a value derived from a frame is reused for that frame
only, never for a new frame that took the old one's memory address after a reload."""

from __future__ import annotations

from floorsight.pipelines.flow import _per_version


class Frame:
    """Stands for a context frame: a reload makes a new one."""

    def __init__(self, version: int) -> None:
        self.version = version


def test_the_same_frame_is_derived_once() -> None:
    calls = []
    current = Frame(1)
    get = _per_version(lambda: current, lambda f: calls.append(f.version) or f.version)
    assert [get(), get(), get()] == [1, 1, 1]
    assert calls == [1]


def test_a_reload_is_derived_again_even_at_the_old_frames_address() -> None:
    current = [Frame(1)]
    get = _per_version(lambda: current[0], lambda f: f.version)
    assert get() == 1
    old_id = id(current[0])
    current[0] = None  # the reload drops the old frame: only the cache may still hold it
    # CPython hands a freed block to the next object of its size: the first new frame usually
    # lands at the old address (keeping the others alive walks on to the next addresses)
    alive = []
    for version in range(2, 1_000):
        frame = Frame(version)
        if id(frame) == old_id:
            break
        alive.append(frame)
    current[0] = frame
    assert get() == frame.version
