# imgsearch: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
DEMO_QUERY ?= $(DATA)/photos/opencv/left01.jpg

.PHONY: install data demo test bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

data: $(DATA)/photos/.fetched

$(DATA)/photos/.fetched: scripts/fetch_data.sh
	bash scripts/fetch_data.sh $(DATA)
	touch $@

demo: install data
	$(BIN)/imgsearch index $(DATA)/photos --index demo
	$(BIN)/imgsearch info --index demo
	$(BIN)/imgsearch query $(DEMO_QUERY) --index demo -k 8 --montage out/demo-query.png
	@echo "contact sheet: out/demo-query.png"

test: install
	$(BIN)/python -m pytest -q

bench: install data
	$(BIN)/python scripts/bench_ingest.py --photos $(DATA)/photos
	$(BIN)/python scripts/bench_index.py

clean-demo:
	rm -rf indexes/demo out/demo-query.png
