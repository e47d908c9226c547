"""A writer started with the old partition count after `tables repartition` is told the new count to use."""

from __future__ import annotations

import pytest

from syncwd_fast import ConfigurationError, Syncwd, Table, repartition_table


def test_an_old_count_writer_is_told_to_restart_with_the_new_count(r, prefix):
    Syncwd(r, prefix=prefix).update(Table("nu_parts", partitions=4), {"id": 1, "v": 1})
    repartition_table(r, "nu_parts", 8, prefix=prefix)
    with pytest.raises(ConfigurationError) as refused:
        Syncwd(r, prefix=prefix).update(Table("nu_parts", partitions=4), {"id": 2, "v": 2})
    message = str(refused.value)
    # The fix after a repartition is the writer's count; repartitioning back is the other choice, not the only one.
    assert "Table(..., partitions=8)" in message, message
    assert not list(r.scan_iter(match=f"{prefix}:{{nu_parts:*}}:v:2"))  # nothing of the refused call written
