"""Dopamine's replay format: hand-computed layouts, round trips and bad input."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fdt.replay import dopamine
from fdt.replay.dopamine import (
    FRAME_SHAPE,
    ReplayFormatError,
    checkpoint_numbers,
    episode_transitions,
    file_name,
    invalid_range,
    load_checkpoint,
    read_npy_gz,
    verify_npy_gz,
    write_checkpoint,
    write_npy_gz,
)
from tests.conftest import frame_of, write_episodes


@pytest.fixture(params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Run the test with python-isal inflating, then with the zlib fallback."""
    module = pytest.importorskip("isal.isal_zlib") if request.param == "isal" else zlib
    monkeypatch.setattr(dopamine, "INFLATER", module)
    return module


def test_isal_inflates_when_installed() -> None:
    pytest.importorskip("isal")
    assert dopamine.INFLATER.__name__ == "isal.isal_zlib"


def test_npy_round_trip_matches_numpy(tmp_path: Path, inflater: ModuleType) -> None:
    rng = np.random.default_rng(0)
    arrays = {"u8": rng.integers(0, 255, (7, 84, 84), dtype=np.uint8),
              "f32": rng.normal(size=13).astype(np.float32),
              "i64": np.array(123456789012, dtype=np.int64)}
    for name, array in arrays.items():
        path = tmp_path / f"{name}.gz"
        write_npy_gz(path, array)
        assert np.array_equal(read_npy_gz(path), array)
        with gzip.open(path) as f:  # what np.load of a Dopamine file sees
            assert np.array_equal(np.load(f), array)


def test_blockwise_write_equals_whole_write(tmp_path: Path) -> None:
    frames = np.arange(5 * 84 * 84, dtype=np.int64).astype(np.uint8).reshape(5, 84, 84)
    write_npy_gz(tmp_path / "whole.gz", frames)
    write_npy_gz(tmp_path / "blocks.gz", [frames[:2], frames[2:]], shape=frames.shape, dtype=np.uint8)
    assert np.array_equal(read_npy_gz(tmp_path / "blocks.gz"), read_npy_gz(tmp_path / "whole.gz"))
    assert verify_npy_gz(tmp_path / "blocks.gz").shape == (5, 84, 84)


def test_file_names_are_dopamines() -> None:
    assert file_name("observation", 3) == "$store$_observation_ckpt.3.gz"
    assert file_name("terminal", 0) == "$store$_terminal_ckpt.0.gz"
    assert file_name("add_count", 50) == "add_count_ckpt.50.gz"
    assert file_name("invalid_range", 7) == "invalid_range_ckpt.7.gz"
    assert invalid_range(999_999, 1_000_000).tolist() == [999_998, 999_999, 0, 1, 2]


def test_snapshot_order_and_replay_indices(episode_run: Path) -> None:
    ckpt = [load_checkpoint(episode_run, n) for n in range(4)]
    assert checkpoint_numbers(episode_run) == [0, 1, 2, 3]
    # The run's last file holds its cursor as add_count (batch_rl's log_final_buffer).
    assert [c.add_count for c in ckpt] == [9, 19, 29, 4]
    # File 0 never wrote its last slot; later files start with it.
    assert ckpt[0].new_slots().tolist() == list(range(9))
    assert ckpt[0].replay_indices(ckpt[0].new_slots()).tolist() == list(range(9))
    assert ckpt[1].new_slots().tolist() == [9, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert ckpt[1].replay_indices(ckpt[1].new_slots()).tolist() == list(range(9, 19))
    # The run's last file: cursor 4, so slots 4-8 are a stale copy of checkpoint 2's rows.
    assert (ckpt[3].cursor, ckpt[3].is_partial, ckpt[2].is_partial) == (4, True, False)
    assert ckpt[3].new_slots().tolist() == [9, 0, 1, 2, 3]
    assert ckpt[3].replay_indices(ckpt[3].new_slots()).tolist() == [29, 30, 31, 32, 33]
    assert ckpt[3].invalid_range.tolist() == [3, 4, 5, 6, 7]


def test_padding_rows_are_not_transitions(episode_run: Path) -> None:
    first = load_checkpoint(episode_run, 0)
    t = episode_transitions(first, None, load_checkpoint(episode_run, 1), episode_cap=100)
    assert t.replay_index.tolist() == [3, 4, 5, 6]
    assert t.slot.tolist() == [3, 4, 5, 6]
    assert t.step.tolist() == [0, 1, 2, 3]
    assert t.episode_id.tolist() == [3, 3, 3, 3]
    assert t.terminal.tolist() == [False, False, False, True]
    assert t.action.tolist() == [0, 1, 2, 3]
    assert t.reward.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert t.episode_return.tolist() == [1.0] * 4
    assert t.counts == {"rows_new": 9, "transitions": 4, "padding_rows": 5, "unused_slots": 1,
                        "episodes": 1, "episodes_ending_here": 1, "episodes_complete": 1,
                        "episodes_truncated": 0}


def test_episode_across_files(episode_run: Path) -> None:
    ckpt = [load_checkpoint(episode_run, n) for n in range(4)]
    one = episode_transitions(ckpt[1], ckpt[0], ckpt[2], episode_cap=100)
    assert one.replay_index.tolist() == [10, 11, 12, 13, 17, 18]
    assert one.slot.tolist() == [0, 1, 2, 3, 7, 8]
    assert one.step.tolist() == [0, 1, 2, 3, 0, 1]
    assert one.episode_id.tolist() == [10] * 4 + [17] * 2
    assert one.episode_length.tolist() == [4] * 4 + [6] * 2  # D ends in the next file
    assert one.episode_return.tolist() == [0.0] * 4 + [2.0] * 2
    assert one.episode_complete.all()
    assert one.counts["padding_rows"] == 4 and one.counts["episodes_ending_here"] == 1

    two = episode_transitions(ckpt[2], ckpt[1], ckpt[3], episode_cap=100)
    assert two.replay_index.tolist() == [19, 20, 21, 22, 26, 27, 28]
    assert two.slot.tolist() == [9, 0, 1, 2, 6, 7, 8]
    assert two.step.tolist() == [2, 3, 4, 5, 0, 1, 2]
    assert two.episode_id.tolist() == [17] * 4 + [26] * 3
    assert two.action.tolist() == [t % 4 for t in (10, 11, 12, 13, 14, 15, 16)]
    assert two.terminal.tolist() == [False, False, False, True, False, False, True]
    assert two.episode_return.tolist() == [2.0] * 4 + [0.0] * 3

    # Without checkpoint 1, D's start is unknown: its steps count from the first row seen.
    alone = episode_transitions(ckpt[2], None, ckpt[3], episode_cap=100)
    assert alone.episode_id.tolist() == [19] * 4 + [26] * 3
    assert alone.step.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert alone.episode_complete.tolist() == [False] * 4 + [True] * 3

    last = episode_transitions(ckpt[3], ckpt[2], None, episode_cap=100)
    assert last.replay_index.tolist() == [32, 33]
    assert last.slot.tolist() == [2, 3]
    assert last.episode_complete.tolist() == [False, False]  # F never ends
    assert last.counts["unused_slots"] == 5 and last.counts["padding_rows"] == 3


def test_episode_longer_than_a_file_is_refused(tmp_path: Path) -> None:
    write_episodes(tmp_path, 8, [2, 9, 2])  # 9 steps + 3 padding rows > 8 rows
    ckpt = [load_checkpoint(tmp_path, n) for n in range(3)]
    with pytest.raises(ReplayFormatError, match="checkpoint 1 has no episode end, so an episode spans more than two files"):
        episode_transitions(ckpt[2], ckpt[1], None)


def test_rewards_and_returns_per_episode(tmp_path: Path) -> None:
    # Transition counter t: A = 0..3, B = 4..9. Rewards at t=1 (A), t=5 and t=9 (B).
    write_episodes(tmp_path, 32, [4, 6], rewards={1: 1.0, 5: 1.0, 9: -1.0})
    t = episode_transitions(load_checkpoint(tmp_path, 0), None, None, episode_cap=100)
    assert t.reward.tolist() == [0, 1, 0, 0, 0, 1, 0, 0, 0, -1]
    assert t.episode_return.tolist() == [1.0] * 4 + [0.0] * 6
    assert t.episode_length.tolist() == [4] * 4 + [6] * 6


def test_episode_at_the_cap_is_truncated(tmp_path: Path) -> None:
    write_episodes(tmp_path, 64, [5, 4, 5])
    t = episode_transitions(load_checkpoint(tmp_path, 0), None, None, episode_cap=5)
    assert t.terminal.sum() == 3
    assert t.truncated.tolist() == [False] * 4 + [True] + [False] * 4 + [False] * 4 + [True]
    assert t.counts["episodes_truncated"] == 2


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def test_last_file_as_batch_rl_logs_it(episode_run: Path) -> None:
    """add_count = cursor in the run's last file: read, and its neighbour converts with it."""
    ckpt = [load_checkpoint(episode_run, n) for n in range(4)]
    assert ckpt[3].add_count == 4 and read_npy_gz(episode_run / file_name("add_count", 3)) == 4
    assert ckpt[3].stale_slots().tolist() == [4, 5, 6, 7, 8]
    before_last = episode_transitions(ckpt[2], ckpt[1], ckpt[3], episode_cap=100)
    assert before_last.replay_index.tolist() == [19, 20, 21, 22, 26, 27, 28]
    last = episode_transitions(ckpt[3], ckpt[2], None, episode_cap=100)
    assert last.replay_index.tolist() == [32, 33]


def test_last_file_logged_right_after_a_snapshot_has_no_new_rows(episode_run: Path,
                                                                  tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    two = load_checkpoint(run, 2)
    # log_final_buffer with the cursor at C-1: a copy of checkpoint 2 numbered 3.
    write_checkpoint(run, 3, observation=read_npy_gz(run / file_name("observation", 2)),
                     action=two.action, reward=two.reward, terminal=two.terminal, add_count=9)
    last = load_checkpoint(run, 3)
    assert last.is_partial and last.new_slots().tolist() == []
    assert len(episode_transitions(last, two, None, episode_cap=100)) == 0


def test_add_count_must_agree_with_invalid_range(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    write_npy_gz(run / file_name("add_count", 3), np.array(2, dtype=np.int64))  # shifted by 2
    # Either file may be the wrong one: both are named (issue 27 found only invalid_range named).
    with pytest.raises(ReplayFormatError, match=r"copy/add_count_ckpt\.3\.gz and \S+/invalid_range_ckpt"
                       r"\.3\.gz disagree on where the writer stopped: invalid_range \[3, 4, 5, 6, 7\] "
                       r"does not match add_count 2 \(cursor 2 gives \[1, 2, 3, 4, 5\]\)"):
        load_checkpoint(run, 3)
    # Both shifted alike: slots 2-3 are then claimed stale, but differ from checkpoint 2's.
    write_npy_gz(run / file_name("invalid_range", 3), invalid_range(2, 10))
    last = load_checkpoint(run, 3)
    with pytest.raises(ReplayFormatError, match=r"terminal_ckpt\.3\.gz: slot 2 should be a stale copy "
                       r"of checkpoint 2 \(add_count 2 puts the cursor at 2\)"):
        episode_transitions(last, load_checkpoint(run, 2), None, episode_cap=100)
    # And the neighbour's conversion, which reads the last file as its following one.
    with pytest.raises(ReplayFormatError, match="slot 2 should be a stale copy"):
        episode_transitions(load_checkpoint(run, 2), load_checkpoint(run, 1), last, episode_cap=100)


def _move_last_cursor(run: Path, number: int, cursor: int) -> None:
    """Rewrite a last file's add_count and invalid_range alike, as if the writer stopped at
    `cursor` (the rows themselves untouched)."""
    write_npy_gz(run / file_name("add_count", number), np.array(cursor, dtype=np.int64))
    write_npy_gz(run / file_name("invalid_range", number), invalid_range(cursor, 10))


def test_last_file_moved_forward_mid_episode_is_refused(episode_run: Path, tmp_path: Path) -> None:
    """Issue 27: the run stops inside F (cursor 4). Both counters moved to 6 make slots 4-5,
    stale copies of checkpoint 2's padding (indices 24-25), look like two more steps of F."""
    run = _copy(episode_run, tmp_path)
    _move_last_cursor(run, 3, 6)
    last, two = load_checkpoint(run, 3), load_checkpoint(run, 2)  # each file alone looks right
    message = (r"copy/add_count_ckpt\.3\.gz: add_count 6 puts the cursor at 6, but slot 5, the last "
               r"row it calls new, is identical \(frame included\) to slot 5 of checkpoint 2: a "
               r"stale copy.*invalid_range_ckpt\.3\.gz were moved forward \(the copy begins at slot 4")
    with pytest.raises(ReplayFormatError, match=message):
        episode_transitions(last, two, None, episode_cap=100)
    with pytest.raises(ReplayFormatError, match=message):  # checkpoint 2's conversion reads it too
        episode_transitions(two, load_checkpoint(run, 1), last, episode_cap=100)
    # The frame decides: the same small arrays with a frame the writer did write are accepted.
    observation = read_npy_gz(run / file_name("observation", 3))
    observation[5] = 77
    write_npy_gz(run / file_name("observation", 3), observation)
    accepted = episode_transitions(load_checkpoint(run, 3), two, None, episode_cap=100)
    assert accepted.replay_index.tolist() == [32, 33, 34, 35]


def test_last_file_moved_forward_after_an_episode_end_is_refused(tmp_path: Path) -> None:
    """Issue 27, the other ending: F (2 steps) ends at index 33, the cursor at slot 4. Moved to
    6, the claimed rows are padding copies (zeros) and only their sameness shows the shift;
    moved to 7, slot 6 holds E's first step where padding must be, and the message names that
    file and the add_count that placed it (it named only the folder)."""
    run = tmp_path / "replay_logs"
    assert write_episodes(run, 10, [4, 4, 6, 3, 2]) == [0, 1, 2, 3]
    two = load_checkpoint(run, 2)
    _move_last_cursor(run, 3, 6)
    with pytest.raises(ReplayFormatError, match=r"add_count_ckpt\.3\.gz: add_count 6 puts the cursor "
                       r"at 6, but slot 5, the last row it calls new, is identical"):
        episode_transitions(load_checkpoint(run, 3), two, None, episode_cap=100)
    _move_last_cursor(run, 3, 7)
    with pytest.raises(ReplayFormatError, match=r"replay_logs \(checkpoint 3\): replay index 36 falls in "
                       r"the 3 padding rows after an episode end, which Dopamine writes as zeros, but "
                       r"holds action 2, reward 0\.0 \(\S+/replay_logs/\$store\$_action_ckpt\.3\.gz; the rows are "
                       r"placed by \S+/add_count_ckpt\.3\.gz, add_count 7, which may be shifted\)"):
        load_checkpoint(run, 3)


def test_regular_add_count_in_a_last_file_form_is_refused(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    write_npy_gz(run / file_name("add_count", 3), np.array(34, dtype=np.int64))  # N*C + cursor
    with pytest.raises(ReplayFormatError, match=r"add_count 34 does not belong to checkpoint 3: a "
                       r"snapshot holds 3\*10 \+ 9 = 39 and a run's last file its cursor"):
        load_checkpoint(run, 3)


def test_padding_rows_must_be_zero(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    one = load_checkpoint(run, 1)
    action = one.action.copy()
    action[5] = 2  # replay index 15: the second padding row before D
    write_npy_gz(run / file_name("action", 1), action)
    with pytest.raises(ReplayFormatError, match=r"\(checkpoint 1\): replay index 15 falls in the 3 "
                       r"padding rows after an episode end, which Dopamine writes as zeros, but "
                       r"holds action 2, reward 0.0"):
        load_checkpoint(run, 1)
    # Padding across a file edge (index 9, slot 9 of checkpoint 1, after A ended in file 0) is
    # seen with the neighbour.
    action = one.action.copy()
    action[9] = 1
    write_npy_gz(run / file_name("action", 1), action)
    alone = load_checkpoint(run, 1)
    with pytest.raises(ReplayFormatError, match=r"replay index 9 falls in the 3 padding rows"):
        episode_transitions(alone, load_checkpoint(run, 0), None, episode_cap=100)


def test_missing_file_is_named(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    (run / "invalid_range_ckpt.1.gz").unlink()
    with pytest.raises(ReplayFormatError, match=r"checkpoint 1 is incomplete, missing invalid_range_ckpt\.1\.gz"):
        load_checkpoint(run, 1)


def test_add_count_of_another_checkpoint(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    write_npy_gz(run / "add_count_ckpt.1.gz", np.array(29, dtype=np.int64))  # belongs to 2
    with pytest.raises(ReplayFormatError, match=r"add_count_ckpt\.1\.gz: add_count 29 does not belong to checkpoint 1:.*skipped"):
        load_checkpoint(run, 1)


def test_wrong_dtype_and_shape(episode_run: Path, tmp_path: Path) -> None:
    run = _copy(episode_run, tmp_path)
    write_npy_gz(run / file_name("action", 0), np.zeros(10, dtype=np.int64))
    with pytest.raises(ReplayFormatError, match=r"action_ckpt\.0\.gz: expected dtype int32, found int64"):
        load_checkpoint(run, 0)
    write_npy_gz(run / file_name("reward", 1), np.zeros(9, dtype=np.float32))
    with pytest.raises(ReplayFormatError, match=r"reward_ckpt\.1\.gz: expected shape \(10,\), found \(9,\)"):
        load_checkpoint(run, 1)
    write_npy_gz(run / file_name("observation", 2), np.zeros((10, 84, 83), dtype=np.uint8))
    with pytest.raises(ReplayFormatError, match=r"observation_ckpt\.2\.gz: expected shape \(10, 84, 84\)"):
        load_checkpoint(run, 2)


def test_concatenated_gzip_members_read_as_one(tmp_path: Path, inflater: ModuleType) -> None:
    frames = np.random.default_rng(2).integers(0, 255, (9, 84, 84), dtype=np.uint8)
    write_npy_gz(tmp_path / "whole.gz", frames)
    whole = gzip.decompress((tmp_path / "whole.gz").read_bytes())
    cut = len(whole) // 3
    members = gzip.compress(whole[:cut]) + gzip.compress(whole[cut:])
    (tmp_path / "members.gz").write_bytes(members)
    assert np.array_equal(read_npy_gz(tmp_path / "members.gz"), frames)
    with dopamine.GzipReader(tmp_path / "members.gz", hash_raw=True) as reader:
        verify = reader.read(len(whole))
        reader.expect_end()
    assert verify == whole and reader.raw_bytes == len(members)
    assert reader.md5 is not None and reader.md5.hexdigest() == hashlib.md5(members).hexdigest()


def test_skip_passes_over_bytes_and_is_checked(tmp_path: Path, inflater: ModuleType) -> None:
    data = np.random.default_rng(4).integers(0, 255, 3 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "raw.gz").write_bytes(gzip.compress(data))
    with dopamine.GzipReader(tmp_path / "raw.gz") as reader:
        reader.skip(10)
        assert reader.read(5) == data[10:15]
        reader.skip(2 << 20)  # spans many inflated pieces
        assert reader.read(100) == data[15 + (2 << 20):115 + (2 << 20)]
        reader.skip(len(data) - 115 - (2 << 20))
        reader.expect_end()
    with dopamine.GzipReader(tmp_path / "raw.gz") as reader:
        with pytest.raises(ReplayFormatError, match=r"raw\.gz: truncated: expected 1 more bytes"):
            reader.skip(len(data) + 1)


def damaged_copies(tmp_path: Path) -> dict[str, Path]:
    """A gzip'd .npy cut in half, cut in its trailer, zeroed in the middle, and not gzip at all."""
    frames = np.random.default_rng(1).integers(0, 255, (40, 84, 84), dtype=np.uint8)
    write_npy_gz(tmp_path / "obs.gz", frames)
    data = (tmp_path / "obs.gz").read_bytes()
    corrupt = bytearray(data)
    corrupt[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    crc = bytearray(data)
    crc[-8] ^= 1  # the CRC-32 field of the trailer
    contents = {"short": data[: len(data) // 2], "trailer": data[:-4], "corrupt": bytes(corrupt),
                "crc": bytes(crc), "plain": b"not gzip at all"}
    paths = {}
    for name, content in contents.items():
        paths[name] = tmp_path / f"{name}.gz"
        paths[name].write_bytes(content)
    return paths


def test_truncated_and_corrupt_gzip(tmp_path: Path, inflater: ModuleType) -> None:
    files = damaged_copies(tmp_path)
    with pytest.raises(ReplayFormatError, match=r"short\.gz: truncated"):
        read_npy_gz(files["short"])
    with pytest.raises(ReplayFormatError, match=r"corrupt\.gz: (corrupt gzip data|truncated)"):
        verify_npy_gz(files["corrupt"])
    with pytest.raises(ReplayFormatError, match=r"trailer\.gz"):  # only the trailer's length lost
        verify_npy_gz(files["trailer"])
    with pytest.raises(ReplayFormatError, match=r"crc\.gz: corrupt gzip data"):
        verify_npy_gz(files["crc"])
    with pytest.raises(ReplayFormatError, match=r"plain\.gz: corrupt gzip data"):
        read_npy_gz(files["plain"])


def test_isal_and_zlib_give_the_same_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    for name, path in damaged_copies(tmp_path).items():
        messages = []
        for module in (isal_zlib, zlib):
            monkeypatch.setattr(dopamine, "INFLATER", module)
            with pytest.raises(ReplayFormatError) as caught:
                verify_npy_gz(path)
            messages.append(str(caught.value))
        assert messages[0] == messages[1], name


def test_terminal_inside_padding_is_rejected(tmp_path: Path) -> None:
    terminal = np.zeros(16, np.uint8)
    terminal[[5, 7]] = 1  # 7 falls in the padding rows 6-8 after the end at 5
    write_checkpoint(tmp_path, 0, observation=np.zeros((16, *FRAME_SHAPE), np.uint8),
                     action=np.zeros(16), reward=np.zeros(16), terminal=terminal, add_count=15)
    with pytest.raises(ReplayFormatError, match="replay index 7 falls in the 3 padding rows"):
        episode_transitions(load_checkpoint(tmp_path, 0))


def test_frames_follow_their_rows(episode_run: Path) -> None:
    observation = read_npy_gz(episode_run / file_name("observation", 1))
    # Slots 0-3 hold B (t = 4..7), 7-8 the start of D (t = 8, 9); 9 and 4-6 are padding.
    for slot in (9, 4, 5, 6):
        assert not observation[slot].any()
    for slot, t in [(0, 4), (1, 5), (2, 6), (3, 7), (7, 8), (8, 9)]:
        assert np.array_equal(observation[slot], frame_of(t))


def test_written_files_are_the_same_bytes_whatever_their_name(tmp_path: Path) -> None:
    """The gzip header holds no file name (it was the temporary's, with the writer's PID)."""
    array = np.arange(100, dtype=np.int32)
    write_npy_gz(tmp_path / "a.gz", array)
    write_npy_gz(tmp_path / "other.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "other.gz").read_bytes()
    assert (tmp_path / "a.gz").read_bytes()[3] & 0x08 == 0  # FNAME flag unset
