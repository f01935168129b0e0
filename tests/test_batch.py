"""Batch campaigns: YAML errors as one line, deterministic jobs, and resume after SIGKILL.

The fast tests use a stand-in renderer (seeded noise images) so that the runner's manifest,
checksum and resume logic is tested in seconds; `test_kill_and_resume_real_pipelines` runs the
real product pipeline on a tiny random SD model.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from app.batch.campaign import parse_campaign, safe_output_dir
from app.batch.jobs import AudienceMember, expand_jobs
from app.batch.runner import MANIFEST, run_campaign
from core.creative import Creative
from core.errors import InputError
from core.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]

CAMPAIGN = """\
name: test-campaign
products: [p1, p2, {image: bag.png, category: bag}]
audience:
  users: [u1, u2]
  segments: [{name: navy-fans, users: [u1, u3]}]
formats:
  product: true
  banner: {sizes: [300x250, 728x90]}
candidates: 2
seed: 7
"""


# --- a stand-in renderer: seeded noise, a little slow so a kill lands mid-run ------------------
class NoiseRenderer:
    """Deterministic images from the job's seed and id; `delay` seconds per job."""

    def __init__(self, campaign, campaign_dir, device=None, delay: float = 0.0):
        self.delay = delay

    def members(self):
        return [AudienceMember("u1", "user", ("u1",)), AudienceMember("u2", "user", ("u2",)),
                AudienceMember("segment-navy-fans", "segment", ("u1", "u3"))]

    def render(self, job):
        from PIL import Image

        time.sleep(self.delay)
        seed = int(hashlib.sha256(job.job_id.encode()).hexdigest()[:8], 16)
        w, h = job.size or (32, 32)
        pixels = np.random.default_rng(seed).integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        c = Creative(creative_id="x", pipeline=job.format, base_model="noise", prompt=f"{job.product.key} ad",
                     seed=job.seed, steps=1, guidance=0.0, width=img.width, height=img.height, user_id=job.member.key)
        return [(img, c)]


def run_noise(campaign_file: str, root: str, delay: float = 0.0) -> None:
    """Entry for the subprocess that gets killed."""
    run_campaign(campaign_file, output_root=root, progress=False,
                 renderer_factory=lambda c, d, dev: NoiseRenderer(c, d, dev, delay=delay))


@pytest.fixture
def campaign_file(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN)
    return path


# --- schema --------------------------------------------------------------------------------------
BAD_CASES = {
    "unknown key": (CAMPAIGN.replace("seed: 7", "sede: 7"), 10, "sede: unknown key"),
    "negative count": (CAMPAIGN.replace("candidates: 2", "candidates: -2"), 9, "greater than or equal to 1"),
    "wrong type": (CAMPAIGN.replace("candidates: 2", "candidates: two"), 9, "valid integer"),
    "syntax": (CAMPAIGN.replace("[p1, p2,", "[p1, p2"), 2, "YAML syntax error"),
    "bad size": (CAMPAIGN.replace("728x90", "728by90"), 8, "size must look like"),
    "nested unknown key": (CAMPAIGN.replace("product: true", "product: {size: 64x64}"), 7, "formats.product.size"),
    "duplicate key": (CAMPAIGN + "seed: 8\n", 11, "duplicate key 'seed'"),
    "alias": (CAMPAIGN.replace("users: [u1, u2]", "users: &a [u1, u2]\n  x: *a"), 5, "aliases"),
    "empty audience": (CAMPAIGN.replace("  users: [u1, u2]\n  segments: [{name: navy-fans, users: [u1, u3]}]\n",
                                        "  users: []\n"), 4, "audience is empty"),
    "no formats": (CAMPAIGN.replace("  product: true\n  banner: {sizes: [300x250, 728x90]}\n", "  product: false\n"),
                   7, "no formats"),
    "not a mapping": ("- just\n- a list\n", 1, "must be a YAML mapping"),
    "item and image": (CAMPAIGN.replace("{image: bag.png, category: bag}", "{item: p3, image: bag.png}"), 2,
                       "exactly one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_campaign_yaml_gives_one_line_with_its_line_number(case):
    text, line, needle = BAD_CASES[case]
    with pytest.raises(InputError) as err:
        parse_campaign(text, "c.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"c.yaml:{line}: "), msg
    assert needle in msg, msg


@pytest.mark.parametrize("output", ["../escape", "/etc/atelier", "a/../../b", "", "C:\\temp"])
def test_output_paths_escaping_the_root_are_refused(tmp_path, output):
    with pytest.raises(InputError):
        safe_output_dir(output, tmp_path)
    assert safe_output_dir("ok/sub", tmp_path) == (tmp_path / "ok" / "sub").resolve()


def test_cli_reports_bad_campaign_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CASES["negative count"][0])
    proc = subprocess.run([sys.executable, "-m", "app.cli", "batch", str(bad), "--output-root", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:9: candidates"), proc.stderr


def test_jobs_are_deterministic_and_cover_everything(campaign_file):
    spec = parse_campaign(campaign_file.read_text())
    members = NoiseRenderer(spec, campaign_file.parent).members()
    jobs = expand_jobs(spec, members)
    # 3 members x 3 products x (product: 1 size + banner: 2 sizes) x 2 candidates
    assert len(jobs) == 3 * 3 * 3 * 2
    assert len({j.job_id for j in jobs}) == len(jobs)
    assert [j.job_id for j in expand_jobs(parse_campaign(campaign_file.read_text()), members)] == [j.job_id for j in jobs]
    assert {j.seed for j in jobs} == {7, 8}
    changed = parse_campaign(campaign_file.read_text().replace("seed: 7", "seed: 7\nmodel: {steps: 3}"))
    assert not {j.job_id for j in expand_jobs(changed, members)} & {j.job_id for j in jobs}


# --- runner: resume ------------------------------------------------------------------------------
def _check_output(out: Path, n_jobs: int) -> dict[str, str]:
    """Every job exactly once in the manifest, every image present with its checksum; returns id -> sha."""
    records = read_jsonl(out / MANIFEST)
    ids = [r["creative_id"] for r in records]
    assert len(ids) == len(set(ids)) == n_jobs
    shas = {}
    for r in records:
        data = (out / r["image_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["extra"]["sha256"]
        shas[r["creative_id"]] = r["extra"]["sha256"]
    assert not list(out.rglob(".*.tmp"))
    assert (out / "index.html").is_file()
    return shas


def test_rerun_skips_done_jobs_and_redoes_broken_ones(tmp_path, campaign_file):
    factory = lambda c, d, dev: NoiseRenderer(c, d, dev)  # noqa: E731
    first = run_campaign(campaign_file, output_root=tmp_path / "out", progress=False, renderer_factory=factory)
    assert first.rendered == first.jobs == 54 and first.skipped == 0
    out = Path(first.output_dir)
    shas = _check_output(out, 54)
    html = (out / "index.html").read_text()
    assert "segment-navy-fans" in html and html.count("<figure") == 54

    again = run_campaign(campaign_file, output_root=tmp_path / "out", progress=False, renderer_factory=factory)
    assert (again.rendered, again.skipped) == (0, 54)

    # Damage the output the ways a crash or a person can: a corrupted image, a deleted image,
    # a duplicated record, a torn last line, a leftover temp file.
    records = read_jsonl(out / MANIFEST)
    (out / records[0]["image_path"]).write_bytes(b"not a png")
    (out / records[1]["image_path"]).unlink()
    with open(out / MANIFEST, "a") as f:
        f.write(json.dumps(records[2]) + "\n" + "garbage in the middle\n" + '{"creative_id": "torn')
    escaped = dict(records[3], image_path="../../elsewhere.png")  # a record pointing outside its job's file
    with open(out / "manifest.rank9.jsonl", "w") as f:
        f.write(json.dumps(escaped) + "\n")
    (out / "images" / ".half.png.abc.tmp").write_bytes(b"x")
    fixed = run_campaign(campaign_file, output_root=tmp_path / "out", progress=False, renderer_factory=factory)
    assert (fixed.rendered, fixed.skipped) == (2, 52)
    assert _check_output(out, 54) == shas  # the redone images are byte-identical


def test_kill_midway_then_resume_has_no_duplicates_or_gaps(tmp_path, campaign_file):
    # Reference: one uninterrupted run.
    run_noise(str(campaign_file), str(tmp_path / "ref"))
    reference = _check_output(tmp_path / "ref" / "test-campaign", 54)

    code = f"from tests.test_batch import run_noise; run_noise({str(campaign_file)!r}, {str(tmp_path / 'run')!r}, 0.1)"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    manifest = tmp_path / "run" / "test-campaign" / MANIFEST
    deadline = time.time() + 60
    while time.time() < deadline:
        if manifest.exists() and manifest.read_text().count("\n") >= 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = manifest.read_text().count("\n")
    assert 10 <= partial < 54, f"the kill did not land mid-run ({partial} of 54 done)"

    resumed = run_campaign(campaign_file, output_root=tmp_path / "run", progress=False,
                           renderer_factory=lambda c, d, dev: NoiseRenderer(c, d, dev))
    assert resumed.skipped >= partial - 1 and resumed.skipped + resumed.rendered == 54
    assert _check_output(tmp_path / "run" / "test-campaign", 54) == reference


@pytest.mark.slow
def test_kill_and_resume_real_pipelines(tmp_path, tiny_sd):
    """SIGKILL `atelier batch` on the real pipelines (tiny random SD), resume: same bytes as a clean run."""
    sd = tiny_sd
    campaign = tmp_path / "tiny.yaml"
    campaign.write_text(textwrap.dedent(f"""\
        name: tiny
        products: [p0010, p0004]
        audience: {{top_users: 2, segments: [classic]}}
        formats: {{product: {{}}, banner: {{sizes: [300x250]}}}}
        candidates: 2
        model: {{base: {sd}, steps: 2}}
        """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "app.cli", "batch", str(campaign), "--json"]

    def run(root: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, "--output-root", str(root)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)

    ref = run(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    n_jobs = json.loads(ref.stdout)["jobs"]
    assert n_jobs == 3 * 2 * 2 * 2
    reference = _check_output(tmp_path / "ref" / "tiny", n_jobs)

    manifest = tmp_path / "run" / "tiny" / MANIFEST
    proc = subprocess.Popen([*cmd, "--output-root", str(tmp_path / "run")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = manifest.read_text().count("\n")
    assert 3 <= partial < n_jobs, f"the kill did not land mid-run ({partial} of {n_jobs})"

    resumed = run(tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] >= partial - 1 and summary["skipped"] + summary["rendered"] == n_jobs
    assert _check_output(tmp_path / "run" / "tiny", n_jobs) == reference


def test_a_second_run_of_the_same_campaign_is_refused_while_one_runs(tmp_path, campaign_file):
    from app.batch.runner import _campaign_lock

    out = tmp_path / "out" / "test-campaign"
    with _campaign_lock(out):
        with pytest.raises(InputError, match="another run"):
            run_campaign(campaign_file, output_root=tmp_path / "out", progress=False,
                         renderer_factory=lambda c, d, dev: NoiseRenderer(c, d, dev))
    done = run_campaign(campaign_file, output_root=tmp_path / "out", progress=False,
                        renderer_factory=lambda c, d, dev: NoiseRenderer(c, d, dev))
    assert done.rendered == 54


# --- audience on the demo shop -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_data():
    from app.batch.audience import ShopData

    return ShopData("demo", ROOT, "ease")


def test_audience_resolves_users_segments_and_conditions(demo_data):
    spec = parse_campaign(textwrap.dedent("""\
        name: aud
        products: [p0010]
        audience:
          users: [u0001]
          top_users: 2
          segments: [classic, {name: navy, where: {color: navy}, max_users: 5}]
        formats: {product: {}}
        """))
    members = demo_data.members(spec)
    assert [m.kind for m in members] == ["user"] * 3 + ["segment"] * 2
    assert members[1].key == demo_data.most_active(1)[0]
    classic = members[3]
    assert len(classic.user_ids) == 50 and all(demo_data.shop.segment_of(u) == "classic" for u in classic.user_ids)
    navy = members[4]
    assert 1 <= len(navy.user_ids) <= 5
    cond = demo_data.condition(navy)
    assert cond.user_id == "segment-navy" and cond.source == "ease"
    assert "navy" in cond.top_keywords(3)["color"]  # the members' favourite is among the condition's top colors


@pytest.mark.parametrize("change, line, needle", [
    ("products: [p9999]", 2, "unknown catalog item 'p9999'"),
    ("products: [{image: missing.png}]", 2, "products.0.image: image not found"),
    ("audience: {users: [u0001, nobody]}", 3, "audience.users.1: user 'nobody' has no interactions"),
    ("audience: {segments: [hipsters]}", 3, "unknown shop segment 'hipsters'"),
    ("model: {lora: evil.bin}", 5, "model.lora: LoRA weights must be .safetensors"),
])
def test_campaign_errors_found_against_the_shop_name_the_line_and_write_nothing(tmp_path, demo_data, change, line,
                                                                                  needle):
    text = "name: bad\nproducts: [p0010]\naudience: {users: [u0001]}\nformats: {banner: {}}\n"
    key = change.split(":")[0]
    if key + ":" in text:
        text = "\n".join(change if ln.startswith(key + ":") else ln for ln in text.splitlines()) + "\n"
    else:
        text += change + "\n"
    (tmp_path / "evil.bin").write_bytes(b"pickle")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    from app.batch.render import CampaignRenderer

    with pytest.raises(InputError) as err:
        spec = parse_campaign(text, path)
        r = CampaignRenderer.__new__(CampaignRenderer)  # the renderer's checks, on the module's fitted shop data
        r.campaign, r.dir, r.data = spec, tmp_path, demo_data
        r._check_products()
        demo_data.members(spec)
    assert str(err.value).startswith(f"{path}:{line}: ") and needle in str(err.value), str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "evil.bin"]  # nothing written


def test_contact_sheet_escapes_what_users_typed(tmp_path):
    from app.batch.sheet import write_contact_sheet

    spec = parse_campaign(CAMPAIGN)
    c = Creative(creative_id="x1", pipeline="banner", base_model="m", prompt="<script>alert(1)</script> navy",
                 seed=0, steps=1, guidance=1.0, width=8, height=8, image_path="images/x1.png",
                 extra={"audience": "u1", "format": "banner", "product": "p1"})
    html = write_contact_sheet(tmp_path, spec, [c]).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and 'src="images/x1.png"' in html
