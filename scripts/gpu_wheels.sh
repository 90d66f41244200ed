#!/usr/bin/env bash
# Fetch the wheels a GPU machine without network needs besides its own torch stack, into DIR
# (default .whl/, git-ignored), for CPython 3.12 on manylinux x86_64: scripts/gpu_run.sh installs
# them there. Run this where pip can reach a package index; copy DIR beside the repository.
#
#   scripts/gpu_wheels.sh [DIR]
#
# pycocoevalcap's wheel (100 MB) is slimmed to its BLEU / ROUGE-L / CIDEr-D scorers (about 0.1 MB):
# the Java parts (PTB tokenizer, METEOR, SPICE jars and METEOR's paraphrase table) are dropped,
# which the GPU run never uses (it scores captions with use_java false).
set -euo pipefail
dir=${1:-.whl}
python=${PYTHON:-python3}
mkdir -p "$dir"
# Pinned to the versions verified on the development machine (2026-12-04).
packages=(
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
  jiwer==4.0.0 rapidfuzz==3.14.6 click==8.3.1
  soundfile==0.14.0 cffi==2.0.0 pycparser==2.23
  pycocoevalcap==1.2 espeakng-loader==0.2.4 einops==0.8.2 nvidia-ml-py==13.615.71
)
for package in "${packages[@]}"; do
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" "$package"
done
"$python" - "$dir" <<'PY'
"""Drop pycocoevalcap's Java parts from its wheel (and from its RECORD), in place."""
import os
import sys
import tempfile
import zipfile
from pathlib import Path

wheel = next(Path(sys.argv[1]).glob("pycocoevalcap-*.whl"))
drop = ("pycocoevalcap/meteor/", "pycocoevalcap/spice/", "pycocoevalcap/tokenizer/stanford-corenlp")
keep_java_free = lambda name: not name.startswith(drop)  # noqa: E731
with zipfile.ZipFile(wheel) as source:
    names = [name for name in source.namelist() if keep_java_free(name)]
    if len(names) == len(source.namelist()):
        sys.exit(0)  # already slim
    handle, tmp = tempfile.mkstemp(dir=wheel.parent, suffix=".whl")
    os.close(handle)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as target:
        for name in names:
            data = source.read(name)
            if name.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if keep_java_free(line.split(",")[0])) + "\n").encode()
            target.writestr(name, data)
os.replace(tmp, wheel)
print(f"{wheel.name}: kept {len(names)} files (Java parts dropped)")
PY
du -sh "$dir"
