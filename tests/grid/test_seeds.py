"""Recorded seeds: a record git cannot commit stays written and is reported in one line."""

from whitebox.grid import seeds


def test_a_record_that_git_cannot_commit_stays_written_and_is_reported_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no repository here: every git call fails
    monkeypatch.setattr(seeds.time, "sleep", lambda s: None)
    record = tmp_path / "s0.json"
    record.write_text("{}")
    assert seeds.commit_record(record, "seed recorded", tries=2) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "written but not committed" in out[0] and "commit it by hand" in out[0]
    assert record.read_text() == "{}"


def test_a_commit_in_a_repository_lands(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "config", "user.email", "t@t"], check=True)
    subprocess.run(["git", "config", "user.name", "t"], check=True)
    (tmp_path / "s0.json").write_text("{}")
    assert seeds.commit_record(tmp_path / "s0.json", "seed s0 recorded")
    log = subprocess.run(["git", "log", "--format=%s", "--", "s0.json"], capture_output=True, text=True).stdout
    assert log.strip() == "seed s0 recorded"
