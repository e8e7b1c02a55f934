"""File storage's deletes, on a temporary folder (no services)."""
from __future__ import annotations

from pipeline.adapters.storage import output_key
from pipeline.adapters.storage.files import FileStorage


def test_delete_prefix_keeps_the_kept_keys_and_removes_the_emptied_folders(tmp_path):
    # Given a job with the outputs of two upload attempts, and another job
    storage = FileStorage(tmp_path)
    for attempt in ("a1", "a2"):
        for n in range(2):
            storage.put(output_key("job_two", n, "image/png", attempt), b"x", "image/png")
    storage.put(output_key("job_other", 0, "image/png"), b"x", "image/png")
    kept = [output_key("job_two", n, "image/png", "a2") for n in range(2)]
    # When the job's prefix is deleted except the second attempt's keys
    assert storage.delete_prefix("outputs/job_two/", keep=kept) == 2
    # Then only those stay, the first attempt's folder is gone, and the other job is untouched
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["outputs/job_other/0.png", *kept]
    assert not (tmp_path / "outputs" / "job_two" / "a1").exists()


def test_delete_prefix_without_keep_removes_the_whole_folder(tmp_path):
    storage = FileStorage(tmp_path)
    for n in range(3):
        storage.put(output_key("job_del", n, "image/png", "a1"), b"x", "image/png")
    assert storage.delete_prefix("outputs/job_del/") == 3
    assert not (tmp_path / "outputs" / "job_del").exists()
