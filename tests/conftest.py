"""Shared fixtures: offline environment, one torch thread, the benchmark data folder (skip if absent), the
tiny models and the demo shop (built once per session), and the browser. Helpers that are not fixtures
live in `tiny_models.py`, `crash_tools.py` and `browser_tools.py` (imported by those names: tests/ is on
sys.path under pytest); no test module imports another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ATELIER_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ATELIER_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tests share a small CPU; one thread is the fastest and most repeatable choice there."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data folder, or a skip with a message when this machine does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


# -- tiny models and data, built once per session (tests/tiny_models.py) ---------------------------------
@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random SD-1.x folder (64x64 images), shared by every test module. Tests read it, never write it."""
    from tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.getbasetemp() / "tiny_sd")


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory, tiny_sd) -> Path:
    """A tiny random ControlNet matching `tiny_sd`."""
    from tiny_models import build_tiny_controlnet

    return build_tiny_controlnet(tmp_path_factory.getbasetemp() / "tiny_controlnet", tiny_sd)


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory):
    """A 16-item catalog with pictures (4 categories x 4 colors)."""
    from tiny_models import build_tiny_catalog

    return build_tiny_catalog(tmp_path_factory.getbasetemp() / "tiny_catalog")


@pytest.fixture(scope="session")
def shop():
    """The shipped demo shop (catalog, shoppers with known tastes, logs)."""
    from recommenders.shop import DemoShop

    return DemoShop.load()


@pytest.fixture(scope="session")
def users(shop):
    """The demo shop's shoppers as conditions (EASE fitted on the logs): `finetune.data.UserConditions`."""
    from finetune.data import UserConditions

    return UserConditions(shop.interactions, shop.catalog)


# -- the browser tests (tests/browser_tools.py) ------------------------------------------------------
@pytest.fixture(scope="module")
def browser_model(tiny_sd) -> str:
    """The model `atelier serve` runs in browser tests: the tiny random one; ATELIER_BROWSER_MODEL=demo
    uses the shipped model instead."""
    return os.environ.get("ATELIER_BROWSER_MODEL") or str(tiny_sd)


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_model):
    """`atelier serve` in a subprocess for one browser-test module (stopped by its pid at the end): its url, log,
    output folder and A/B store. A module that must prepare the folder first defines its own `server`."""
    from browser_tools import serve_app, skip_without_shop

    skip_without_shop(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve")
    with serve_app(tmp, browser_model, os.environ.get("ATELIER_BROWSER_STEPS", "2")) as (url, _, log):
        yield {"url": url, "log": log, "out": tmp / "out", "db": tmp / "ab.sqlite", "model": browser_model}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver (skipped where either is missing)."""
    from browser_tools import CHROME_FLAGS, CHROMEDRIVER, CHROMIUM

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


# -- a real PostgreSQL server for the A/B store (tests/postgres_tools.py) ----------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server ($ATELIER_TEST_POSTGRES, or a cluster started here), or a skip."""
    import shutil
    import subprocess

    import postgres_tools

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    external = os.environ.get("ATELIER_TEST_POSTGRES")
    if external:
        yield postgres_tools.PostgresServer(external)
        return
    try:
        server = postgres_tools.start_cluster()
    except RuntimeError as e:
        pytest.skip(f"no PostgreSQL server for the tests: {e}")
    try:
        yield server
    finally:
        try:
            server.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            pass
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@pytest.fixture()
def postgres_db(postgres_server):

    """The DSN of a fresh database for one test, dropped afterwards."""
    import postgres_tools

    dsn = postgres_tools.create_database(postgres_server)
    yield dsn
    postgres_tools.drop_database(postgres_server, dsn)
