"""The built wheel, installed into a fresh virtual environment with the serving lock only
(requirements-serve.txt, from PyPI), serves the page and /predict through `carclf serve`:
templates/ and static/ travel as package data, and serving needs none of training's packages."""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from tests.conftest import ROOT, SHIPPED_MODEL
from tests.helpers import free_port, multipart_form, synthetic_photo

pytestmark = pytest.mark.server  # starts gunicorn (and installs the serving packages from PyPI)

# What the wheel is built from: the package's sources, the page and the metadata's readme.
SOURCES = ("pyproject.toml", "README.md", "app", "inference", "training", "templates", "static")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of the checkout (the build writes build/ and *.egg-info beside its sources)."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(dist), str(source)], check=True, timeout=600)
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh virtual environment with the serving lock and the wheel (no dependencies of its own)."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "--only-binary=:all:", "-r", str(ROOT / "requirements-serve.txt")],
                   check=True, timeout=1200)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    return folder


def test_the_wheel_holds_every_package_and_the_page(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(path.parent.relative_to(ROOT)) for folder in ("app", "inference", "training")
                for path in (ROOT / folder).rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names
    page = {f"app/templates/{path.name}" for path in (ROOT / "templates").iterdir()}
    page |= {f"app/static/{path.name}" for path in (ROOT / "static").iterdir()}
    assert page <= names and "app/openapi.json" in names


def test_the_installed_wheel_serves_the_page_and_predict(venv, tmp_path):
    port = free_port()
    environment = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
                   "CARCLF_MODEL_DIR": str(SHIPPED_MODEL)}
    # Started away from the checkout, so that only the installed packages can be imported.
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "carclf"), "serve", "--bind", f"127.0.0.1:{port}"], cwd=tmp_path,
                              env=environment, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/", timeout=10) as page:
            html = page.read().decode()
        assert page.status == 200 and 'src="/static/app.js"' in html
        with urllib.request.urlopen(f"{url}/static/style.css", timeout=10) as style:
            assert style.status == 200 and style.read() == (ROOT / "static" / "style.css").read_bytes()
        body, content_type = multipart_form(("file", "car.jpg", synthetic_photo(1)))
        request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.loads(answer.read())["predictions"]
        labels = json.loads((SHIPPED_MODEL / "metadata.json").read_text())["labels"]
        assert len(predictions) == 3 and {p["label"] for p in predictions} <= set(labels)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    installed = next(venv.glob("lib/python*/site-packages"))
    assert (installed / "app" / "templates" / "index.html").is_file()
    assert not (installed / "tensorflow").exists() and not (installed / "yaml").exists()  # the serving lock alone


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
