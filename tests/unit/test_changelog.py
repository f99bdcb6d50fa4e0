from driftline.state.store import Checkpoint, store_key
from driftline.topics.changelog import CHECKPOINT_KEY, checkpoint_of, checkpoint_record


def test_a_checkpoint_record_carries_its_checkpoint() -> None:
    checkpoint = Checkpoint(next_input_offset=41, sequence=7)
    key, value = checkpoint_record(checkpoint)
    assert (key, value) == (CHECKPOINT_KEY, b"[41,7]")  # the format SCHEMAS.md documents
    assert checkpoint_of(key, value) == checkpoint


def test_table_records_and_tombstones_carry_no_checkpoint() -> None:
    assert checkpoint_of(store_key("events", b"shop/fraud/e1"), b"{}") is None
    assert checkpoint_of(CHECKPOINT_KEY, None) is None
    assert checkpoint_of(None, b"[1,1]") is None
