#!/usr/bin/env bash
# The GPU run in one call: install what the machine's image lacks from the carried wheels, print
# the versions and nvidia-smi, run the GPU tests (tests/gpu), then the GPU benchmark
# (benchmarks/bench_gpu.py) within a time budget. Run from anywhere in the checkout:
#
#   scripts/gpu_run.sh [bench_gpu options, e.g. --budget 300 | --parts attention real_asr | --dry-run]
#
# Environment: OUT (default outputs/gpu_run): the log (gpu_run.log), the tests' JUnit XML and the
# benchmark's results are written there; PYTHON (default python3); BUDGET (default 300 s, the
# benchmark's --budget unless one is given); TESTS_TIMEOUT (default 150 s); SKIP_TESTS=1 skips the
# tests. Wheels: every $WHEELS/*.whl (default .whl/; scripts/gpu_wheels.sh fetches them) is
# installed into SITE (default /tmp/site), never into the machine's environment. Exit status: the first non-zero
# of the tests and the benchmark. About 1.5 + BUDGET/60 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-outputs/gpu_run}
mkdir -p "$out"
OUT=$(cd "$out" && pwd)
export OUT
python=${PYTHON:-python3}
site=${SITE:-/tmp/site}
wheels=${WHEELS:-.whl}

run() {
  local start=$SECONDS
  echo "== gpu_run $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $PWD"
  if compgen -G "$wheels/*.whl" >/dev/null; then
    echo "== installing $(ls "$wheels"/*.whl | wc -l) wheels into $site"
    local pip=("$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site")
    if ! "${pip[@]}" "$wheels"/*.whl; then  # one bad wheel fails them all: then one at a time
      local wheel
      for wheel in "$wheels"/*.whl; do "${pip[@]}" "$wheel" || echo "!! could not install $wheel"; done
    fi
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  # The checkout is used in place, not installed: register its entry points (the app commands)
  # with a metadata-only distribution beside the wheels, read from pyproject.toml.
  "$python" - "$site" <<'PY' || echo "!! could not register the entry points"
import sys, tomllib
from pathlib import Path
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
info = Path(sys.argv[1]) / f"{project['name']}-{project.get('version', '0')}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project.get('version', '0')}\n")
groups = dict(project.get("entry-points", {}))
if project.get("scripts"):
    groups["console_scripts"] = project["scripts"]
lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()]
(info / "entry_points.txt").write_text("\n".join(lines))
print(f"registered entry points: {', '.join(groups)}")
PY
  case ":$PYTHONPATH:" in *":$site:"*) ;; *) export PYTHONPATH="$PYTHONPATH:$site" ;; esac
  export JSONARGPARSE_DEPRECATION_WARNINGS=off PYTHONUNBUFFERED=1
  echo "== versions"
  "$python" - <<'PY'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "torchvision", "torchaudio", "lightning", "jsonargparse", "timm", "numpy", "jiwer", "soundfile", "pycocoevalcap", "espeakng_loader", "pynvml"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')} ({module.__file__})")
    except Exception as err:
        print(f"{name}: NOT importable ({type(err).__name__}: {err})")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
  nvidia-smi || echo "nvidia-smi: not available"
  local tests_rc=0 bench_rc=0
  if [ "${SKIP_TESTS:-0}" != 1 ]; then
    echo "== tests/gpu ($(( SECONDS - start )) s so far)"
    timeout "${TESTS_TIMEOUT:-150}" "$python" -m pytest tests/gpu -q -rs -p no:cacheprovider \
      --junitxml "$OUT/gpu_tests.xml" -o junit_family=xunit1
    tests_rc=$?
    echo "== tests/gpu exit status $tests_rc"
  fi
  local budget=${BUDGET:-300} given="" arg
  for arg in "$@"; do
    [ "$given" = next ] && { budget=$arg; given=yes; }
    [ "$arg" = --budget ] && given=next
  done
  [ -z "$given" ] && set -- --budget "$budget" "$@"
  echo "== bench_gpu $* ($(( SECONDS - start )) s so far)"
  timeout $(( ${budget%.*} + 60 )) "$python" -m benchmarks.bench_gpu "$@"
  bench_rc=$?
  echo "== bench_gpu exit status $bench_rc; total $(( SECONDS - start )) s; results in $OUT:"
  ls -la "$OUT"
  [ "$tests_rc" -ne 0 ] && return "$tests_rc"
  return "$bench_rc"
}

run "$@" 2>&1 | tee -a "$OUT/gpu_run.log"
exit "${PIPESTATUS[0]}"
