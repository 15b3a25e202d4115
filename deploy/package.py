"""``make package``: everything spark-submit and the image need, under ``dist/``.

- ``oneid-<v>-py3-none-any.whl``: the package with its pinned dependencies (the image installs it);
- ``oneid-<v>-py.zip``: the same ``oneid`` package for ``spark-submit --py-files``;
- ``jars/``: the pinned JVM jars, resolved by ``oneid jars`` (cache, folders, Maven mirror);
- ``oneid-<v>-deploy.tar.gz``: wheel, zip, jars, ``jobs/``, ``conf/`` and the deploy scripts in
  the repository's layout, so ``deploy/submit.sh`` runs the same from an unpacked bundle.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("jobs/*.py", "conf/*.yaml", "deploy/submit.sh", "deploy/daily.py", "deploy/daily.yaml")


def build_wheel(dist: Path) -> Path:
    """``pip wheel`` of the project (no dependencies) into ``dist``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--wheel-dir", tmp, str(ROOT)],
            check=True,
        )  # fmt: skip
        (built,) = Path(tmp).glob("oneid-*.whl")
        target = dist / built.name
        shutil.move(built, target)
    return target


def py_files_zip(wheel: Path, version: str) -> Path:
    """The wheel's ``oneid/`` tree (code and package data) as a zip for ``--py-files``."""
    target = wheel.with_name(f"oneid-{version}-py.zip")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            if info.filename.startswith("oneid/"):
                out.writestr(info, source.read(info), zipfile.ZIP_DEFLATED)
    return target


def copy_jars(dist: Path, env: str) -> list[Path]:
    """Resolve the jars with the project's resolver (``oneid jars``) and copy them to dist/jars."""
    command = [sys.executable, "-m", "oneid", "jars", "-q", "--env", env]
    command += ["--conf-dir", str(ROOT / "conf")]
    listing = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()
    folder = dist / "jars"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    copies = []
    for path in filter(None, listing.split(",")):
        target = folder / Path(path).name
        shutil.copyfile(path, target)
        target.chmod(0o644)  # the cache keeps them private; the image's spark user must read them
        copies.append(target)
    return copies


def bundle(dist: Path, version: str, artifacts: list[Path]) -> Path:
    """A tarball ``oneid-<v>/`` with the repository's layout (jobs/, conf/, deploy/, dist/)."""
    target = dist / f"oneid-{version}-deploy.tar.gz"
    prefix = f"oneid-{version}"
    with tarfile.open(target, "w:gz") as tar:
        for pattern in BUNDLED:
            for path in sorted(ROOT.glob(pattern)):
                tar.add(path, f"{prefix}/{path.relative_to(ROOT)}")
        for path in artifacts:
            tar.add(path, f"{prefix}/dist/{path.relative_to(dist)}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--env", default="cluster", help="conf env whose jars.* settings to use")
    args = parser.parse_args(argv)
    dist = args.dist.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("oneid-*"):
        old.unlink()
    wheel = build_wheel(dist)
    version = wheel.name.split("-")[1]
    artifacts = [wheel, py_files_zip(wheel, version), *copy_jars(dist, args.env)]
    artifacts.append(bundle(dist, version, artifacts))
    for path in artifacts:
        print(path.relative_to(dist.parent) if dist.parent in path.parents else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
