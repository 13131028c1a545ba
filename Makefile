# imgsearch: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
DEMO_QUERY ?= $(DATA)/photos/opencv/left01.jpg

.PHONY: install data demo test bench eval eval-family eval-verify clean-demo

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

demo: install data
	$(BIN)/imgsearch index $(DATA)/photos --index demo
	$(BIN)/imgsearch info --index demo
	$(BIN)/imgsearch query $(DEMO_QUERY) --index demo -k 8 --method ae --montage out/demo-query-ae.png
	$(BIN)/imgsearch query $(DEMO_QUERY) --index demo -k 8 --method pca --montage out/demo-query-pca.png
	$(BIN)/imgsearch reconstruct --index demo -n 8 --out out/demo-reconstruct.png
	$(BIN)/python scripts/compare_picture.py --index demo --query $(DEMO_QUERY) --edit \
		--methods pixels,ae -k 6 --out out/demo-pixels-vs-ae.png
	@echo "pictures: out/demo-query-ae.png out/demo-query-pca.png out/demo-reconstruct.png out/demo-pixels-vs-ae.png"

# The lint (rule set in pyproject.toml) and every test, the slow subprocess ones included.
test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: install data
	$(BIN)/python scripts/bench_ingest.py --photos $(DATA)/photos
	$(BIN)/python scripts/bench_index.py --n 200000 --out out/bench-index
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_encode.py
	$(BIN)/python scripts/bench_pca.py

# The evaluations in docs/RESULTS.md (about three hours on a 2-core CPU), as the docs ran them.
# `ae` is today's recipe; the figures docs/RESULTS.md gives before issue 23's fourth round are
# of the recipe before it, the variant `ae-before23` (docs/RESULTS.md, top).
eval: install data
	$(BIN)/python scripts/evaluate_fashion_mnist.py --methods pixels,pca,phash,ae-plain,ae,vae \
	    --steps 1500 --minutes 60 --tsne 3000 --work out/fm --out docs/results/fashion-mnist
	$(BIN)/python scripts/evaluate_fashion_mnist.py --methods pixels,ae-edits --steps 1500 \
	    --minutes 60 --work out/fm --out docs/results/fashion-mnist-ae-edits
	$(BIN)/python scripts/evaluate_copy_detection.py \
	    --methods pixels,pca,phash,ae-plain,ae-edits,ae,vae --steps 1000 --minutes 60 \
	    --work out/cd --out docs/results/copy-detection
	$(BIN)/python scripts/evaluate_copy_detection.py --holdout \
	    --methods pixels,pca,phash,ae --steps 600 --minutes 60 \
	    --work out/cd-holdout --out docs/results/copy-detection-holdout
	$(BIN)/python scripts/evaluate_versions.py --sizes 100,500 --methods pixels,pca,ae \
	    --minutes 2 --work out/versions --out docs/results/versions
	$(BIN)/python scripts/evaluate_duplicates.py --methods pixels,pca,ae \
	    --scale 100000 --work out/dups --out docs/results/duplicates

# The autoencoder family (docs/RESULTS.md, "The autoencoder family"; about 1.5 hours).
eval-family: install data
	$(BIN)/python scripts/evaluate_fashion_mnist.py \
	    --methods ae-tied,ae-tied-plain,tcvae,tcvae-plain,aae,aae-plain --steps 600 --minutes 60 \
	    --work out/fm-family --out docs/results/fashion-mnist-family
	$(BIN)/python scripts/evaluate_copy_detection.py \
	    --methods pixels,ae,ae-plain,ae-tied,ae-tied-plain,tcvae,tcvae-plain,aae,aae-plain \
	    --steps 300 --minutes 60 --work out/cd-family --out docs/results/copy-detection-family
	$(BIN)/python scripts/evaluate_versions.py --sizes 100 \
	    --methods pixels,pca,ae,vae,tcvae,aae --minutes 2 --work out/versions-family \
	    --out docs/results/versions-family

# Verification by geometry (docs/RESULTS.md, "Verified copies"; about an hour): matching on the
# demo photos, its speed, both duplicates benchmarks and copy detection, with and without it.
eval-verify: install data
	$(BIN)/imgsearch index $(DATA)/photos --index out/verify-index --methods pixels,pca
	$(BIN)/python scripts/evaluate_verification.py --photos $(DATA)/photos \
	    --out docs/results/verification
	$(BIN)/python scripts/bench_verify.py --photos $(DATA)/photos --index out/verify-index \
	    --image $(DEMO_QUERY) --runs 9 --out docs/results/bench-verify
	$(BIN)/python scripts/evaluate_duplicates.py --photos $(DATA)/photos --methods pixels,pca,ae \
	    --work out/dups-v --out docs/results/duplicates-verified
	$(BIN)/python scripts/evaluate_duplicates.py --photos $(DATA)/photos --methods pixels,pca,ae \
	    --edits second --hash-step 4 --work out/dups-v2 --out docs/results/duplicates-second
	$(BIN)/python scripts/evaluate_copy_detection.py --holdout --verify --methods pixels,pca,ae \
	    --steps 600 --minutes 60 --work out/cd-holdout-v \
	    --out docs/results/copy-detection-holdout-verified
	$(BIN)/python scripts/evaluate_copy_detection.py --verify --methods pixels,pca,ae \
	    --steps 1000 --minutes 60 --work out/cd-v --out docs/results/copy-detection-verified

clean-demo:
	rm -rf indexes/demo out/demo-*.png
