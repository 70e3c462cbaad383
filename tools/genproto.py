"""Generate the Python gRPC stubs in planner_api/ from proto/, reproducibly.

protoc names generated modules after the .proto path (planner/v1/...), which would collide with
the pure domain package `planner`; the stubs therefore live in `planner_api.v1` and the one
import protoc writes with the proto path is rewritten. The descriptor keeps the original file
name, so server reflection shows planner/v1/planner.proto.

    python tools/genproto.py            # write planner_api/v1/
    python tools/genproto.py --check    # exit 1 if the checked-in stubs differ from a fresh run
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = ROOT / "planner_api" / "v1"
PROTO_FILES = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def generate(destination: Path) -> list[Path]:
    """Run protoc into a scratch directory and copy the fixed-up stubs to `destination`."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    # protoc finds the mypy plugins (protoc-gen-mypy*) on PATH: use this interpreter's scripts.
    scripts = str(Path(sys.executable).parent)
    os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--mypy_out={scratch}",
            f"--mypy_grpc_out={scratch}",
            *PROTO_FILES,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        destination.mkdir(parents=True, exist_ok=True)
        for source in sorted((Path(scratch) / "planner" / "v1").iterdir()):
            text = source.read_text()
            text = text.replace("from planner.v1 import", "from planner_api.v1 import")
            text = text.replace("import planner.v1.", "import planner_api.v1.")
            target = destination / source.name
            target.write_text(text)
            written.append(target)
    (destination / "__init__.py").write_text(
        '"""Generated gRPC stubs of planner.v1 (tools/genproto.py)."""\n'
    )
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT_PACKAGE, ignore_errors=True)
        for path in generate(OUT_PACKAGE):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as fresh_dir:
        fresh = Path(fresh_dir)
        generate(fresh)
        fresh_names = sorted(p.name for p in fresh.iterdir())
        current_names = sorted(p.name for p in OUT_PACKAGE.iterdir() if p.suffix in {".py", ".pyi"})
        _, mismatch, errors = filecmp.cmpfiles(fresh, OUT_PACKAGE, fresh_names, shallow=False)
        stale = sorted(set(current_names) - set(fresh_names))
        if mismatch or errors or stale:
            print(f"stubs out of date: differ {mismatch}, missing {errors}, extra {stale}")
            print("run: python tools/genproto.py")
            return 1
    print("stubs match proto/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
