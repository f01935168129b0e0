"""The History tab's functions (issue 18 item 7): past runs read from the output folder's manifests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.creative import Creative, Manifest


def _run(folder: Path, prompt: str, created: float, backbone: str | None, n: int = 2) -> None:
    folder.mkdir(parents=True)
    manifest = Manifest(folder / "manifest.jsonl")
    for k in range(n):
        Image.new("RGB", (16, 16), (50 * k, 90, 160)).save(folder / f"c{k}.png")
        condition = {"user_id": "u0007", "source": backbone} if backbone else None
        manifest.append(Creative(creative_id=f"{folder.name}-{k}", pipeline="product", base_model="tiny",
                                 prompt=prompt, seed=10 + k, steps=3, guidance=6.5, width=16, height=16,
                                 image_path=f"c{k}.png", user_id="u0007", condition=condition, created_at=created))


def test_past_runs_newest_first_with_their_images_and_settings(tmp_path):
    from app.ui.history import past_runs, run_details, run_rows, run_thumbnails
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model="none"))
    sessions = ws.config.out_dir / "sessions"
    _run(sessions / "aaa" / "shopper-20261201-100000-abc123", "a red shirt", 1_000.0, "ease")
    _run(sessions / "bbb" / "studio-20261202-100000-def456", "a beach at dusk", 2_000.0, None, n=1)
    broken = sessions / "ccc" / "xy-20261203-100000-000000"
    broken.mkdir(parents=True)
    (broken / "manifest.jsonl").write_text("{not json\n")
    (sessions / "ddd" / "outfit-empty").mkdir(parents=True)  # a job that made nothing: no manifest

    runs = past_runs(ws)
    assert [r.kind for r in runs] == ["studio", "shopper"], "newest first; unreadable and empty folders left out"
    rows = run_rows(runs)
    assert [row[1:] for row in rows] == [["studio", "—", 1, "a beach at dusk"], ["shopper", "ease", 2, "a red shirt"]]
    thumbs = run_thumbnails(runs)
    assert Path(thumbs[1][0]).is_file() and "shopper · ease" in thumbs[1][1]

    images, text = run_details(runs[1], ws.config.out_dir)
    assert [Path(p).name for p, _ in images] == ["c0.png", "c1.png"] and all(Path(p).is_file() for p, _ in images)
    assert "**Prompt:** a red shirt" in text and "**steps** 3" in text and "**guidance** 6.5" in text
    assert "**seeds** 10, 11" in text and "backbone:** ease" in text and "sessions/aaa/shopper-" in text
    assert str(tmp_path) not in text, "the folder is shown relative to the output root"
