"""The MQTT source's journal: numbered records on disk, read back in order, torn tails cut off,
old segments deleted, redeliveries recognised."""

from __future__ import annotations

import stat

from floorsight.pipelines.mqtt_journal import Journal, JournalReader, journal_end


def records(n: int, start: int = 0, size: int = 10) -> list[tuple[str, bytes, float]]:
    return [(f"plant/L1/M01/s{i}", bytes([i % 256]) * size, 1.5 + i) for i in range(start, n)]


def test_records_come_back_in_order_across_segments_and_reopens(tmp_path) -> None:
    journal = Journal(tmp_path / "j", segment_bytes=500)
    assert journal.append(records(30)) == 30
    assert journal.append(records(50, start=30)) == 50
    assert len(list((tmp_path / "j").glob("*.seg"))) >= 3
    reader = JournalReader(tmp_path / "j")
    got = reader.read(0, 1000, journal.end)
    assert [(m.topic, m.payload, m.received) for m in got] == records(50)
    assert [m.seq for m in got] == list(range(50))
    # reading on from the middle, in pieces
    assert [m.seq for m in reader.read(17, 5, 50)] == [17, 18, 19, 20, 21]
    assert [m.seq for m in reader.read(22, 5, 50)] == [22, 23, 24, 25, 26]
    assert reader.read(48, 5, 49) == reader.read(48, 1, 50)  # nothing from `end` on
    journal.close()
    again = Journal(tmp_path / "j", segment_bytes=500)
    assert again.end == 50
    assert journal_end(tmp_path / "j") == 50
    assert [m.seq for m in reader.read(45, 100, again.end)] == [45, 46, 47, 48, 49]
    assert again.append(records(51, start=50)) == 51
    assert reader.read(50, 10, again.end)[0].topic == "plant/L1/M01/s50"


def test_the_folder_and_its_segments_are_private(tmp_path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(records(2))
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    for seg in (tmp_path / "j").glob("*.seg"):
        assert stat.S_IMODE(seg.stat().st_mode) & 0o077 == 0


def test_a_torn_last_record_is_cut_off_at_reopen(tmp_path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(records(5))
    journal.close()
    seg = sorted((tmp_path / "j").glob("*.seg"))[-1]
    whole = seg.read_bytes()
    seg.write_bytes(whole + whole[:20])  # a crash in the middle of the next record
    again = Journal(tmp_path / "j")
    assert again.end == 5
    assert seg.read_bytes() == whole
    again.append(records(6, start=5))
    assert [m.topic for m in JournalReader(tmp_path / "j").read(0, 10, 6)][-1] == "plant/L1/M01/s5"


def test_release_deletes_only_segments_wholly_below(tmp_path) -> None:
    journal = Journal(tmp_path / "j", segment_bytes=200)
    for start in range(0, 40, 4):
        journal.append(records(start + 4, start=start))
    reader = JournalReader(tmp_path / "j")
    before = sorted(p.stem for p in (tmp_path / "j").glob("*.seg"))
    assert reader.release(25) > 0
    assert 0 < reader.first <= 25
    assert [m.seq for m in reader.read(25, 100, 40)] == list(range(25, 40))
    after = sorted(p.stem for p in (tmp_path / "j").glob("*.seg"))
    assert len(after) < len(before)
    # the segment being written is never deleted
    reader.release(10_000)
    assert len(list((tmp_path / "j").glob("*.seg"))) == 1
    assert journal.append(records(41, start=40)) == 41


def test_an_empty_journal_numbers_on_from_the_resume_position(tmp_path) -> None:
    journal = Journal(tmp_path / "j", start=1234)
    assert journal.end == 1234
    journal.append(records(3))
    assert JournalReader(tmp_path / "j").first == 1234
    assert [m.seq for m in JournalReader(tmp_path / "j").read(1234, 10, 1237)] == [1234, 1235, 1236]


def test_redelivered_messages_are_recognised_after_a_reopen(tmp_path) -> None:
    journal = Journal(tmp_path / "j", recent=10)
    journal.append(records(30))
    journal.close()
    again = Journal(tmp_path / "j", recent=10)
    assert again.seen("plant/L1/M01/s29", bytes([29]) * 10)
    assert not again.seen("plant/L1/M01/s29", bytes([28]) * 10)
    assert not again.seen("plant/L1/M01/s3", bytes([3]) * 10)  # older than the last 10
