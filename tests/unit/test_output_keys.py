"""Output keys name their upload attempt (pipeline.adapters.storage.attempt_dir). No services."""
from __future__ import annotations

from pipeline.adapters.storage import attempt_dir, output_key


def test_one_attempt_writes_the_same_keys_again_and_another_attempt_other_keys():
    # Given two upload attempts of one job (their lease owners are their task ids)
    first, second = attempt_dir("3f1c-task-a"), attempt_dir("9b2e-task-b")
    # Then the same attempt (its task retried) gets the same key, another attempt a different one
    assert output_key("job_1", 0, "image/png", first) == output_key("job_1", 0, "image/png", attempt_dir("3f1c-task-a"))
    assert output_key("job_1", 0, "image/png", first) != output_key("job_1", 0, "image/png", second)
    # And every key stays under the job's folder, which retention deletes whole
    assert output_key("job_1", 2, "image/webp", first) == f"outputs/job_1/{first}/2.webp"
    assert first.isalnum() and len(first) == 16
