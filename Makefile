# multiattn — the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export JSONARGPARSE_DEPRECATION_WARNINGS := off
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint format demo readme-images bench clean browser fonts speech-sources

setup: $(STAMP)

# torch/torchvision/torchaudio are pinned to the combination verified on this machine
# (DEVELOPERS.md); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Headless Chromium for the explorer's browser test (Debian's package; Playwright's own
# browser download does not work offline). Without root or apt the browser test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and cannot be installed here: the browser test will be skipped"; fi; }

# Font packages for the spatial transformer's broad digit set (dozens of families) and its held-out
# evaluation families (Liberation, FreeFont), from Debian's archive; needs root and apt-get, says
# what to install otherwise. Nothing needs them: without them the broad set uses the fonts it finds.
fonts: setup
	$(BIN)/python -m multiattn.tasks.stn.sources.fonts install

# Debian packages the open-vocabulary speech corpus and its evaluation read: espeak-ng (the voices),
# wordnet-base (training text), fortunes-min (held-out text domain), flite and festival (the
# independent synthesisers, evaluation only). As root with apt-get; otherwise it lists what to
# install. The tests need none of them (they write tiny fixtures); training configs/asr.yaml and
# the speech benchmark do.
SPEECH_PACKAGES := espeak-ng wordnet-base fortunes-min flite festival festvox-kallpc16k
speech-sources:
	@missing=$$(for p in $(SPEECH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "speech sources installed: $(SPEECH_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "not installed (needs root and apt-get): apt-get install" $$missing; fi

test: setup lint browser
	$(BIN)/python -m pytest -q --timeout=900

# The demo writes only under outputs/; the README's pictures (docs/images/) are refreshed from
# its outputs by readme-images (the screenshot needs Chromium: make browser).
demo: setup
	$(BIN)/python scripts/demo.py

readme-images: setup
	$(BIN)/python scripts/readme_images.py

# Fonts and speech sources first; without root each says what to install (the broad digits then use
# the fonts found, and the open-vocabulary speech benchmark stops naming the missing package).
bench: setup
	-$(MAKE) --no-print-directory fonts speech-sources
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf outputs .pytest_cache .ruff_cache
