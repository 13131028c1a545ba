# imgsearch: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
DEMO_QUERY ?= $(DATA)/photos/opencv/left01.jpg

.PHONY: install data demo test bench eval clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test,eval]'
	touch $@

data: $(DATA)/photos/.fetched

$(DATA)/photos/.fetched: scripts/fetch_data.sh
	bash scripts/fetch_data.sh $(DATA)
	touch $@

DEMO_MINUTES ?= 3

demo: install data
	$(BIN)/imgsearch index $(DATA)/photos --index demo --train-minutes $(DEMO_MINUTES)
	$(BIN)/imgsearch info --index demo
	$(BIN)/imgsearch query $(DEMO_QUERY) --index demo -k 8 --method ae --montage out/demo-query-ae.png
	$(BIN)/imgsearch query $(DEMO_QUERY) --index demo -k 8 --method pca --montage out/demo-query-pca.png
	$(BIN)/imgsearch reconstruct --index demo -n 8 --out out/demo-reconstruct.png
	@echo "pictures: out/demo-query-ae.png out/demo-query-pca.png out/demo-reconstruct.png"

# The lint (rule set in pyproject.toml) and every test, the slow subprocess ones included.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install data
	$(BIN)/python scripts/bench_ingest.py --photos $(DATA)/photos
	$(BIN)/python scripts/bench_index.py --fashion-mnist $(DATA)/fashion-mnist
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_encode.py
	$(BIN)/python scripts/bench_pca.py

# The evaluations in docs/RESULTS.md (one to two hours on a 2-core CPU).
eval: install data
	$(BIN)/python scripts/evaluate_fashion_mnist.py --data $(DATA)/fashion-mnist \
	    --methods pixels,pca,ae,vae-beta0.1 --minutes 40 --epochs 8 --tsne 5000 \
	    --work out/fashion-mnist --out docs/results/fashion-mnist-tsne5000
	$(BIN)/python scripts/evaluate_copy_detection.py --photos $(DATA)/photos \
	    --methods pixels,pca,ae,ae-edits,vae,phash --steps 1500 \
	    --work out/copy-detection --out docs/results/copy-detection

clean-demo:
	rm -rf indexes/demo out/demo-*.png
