# alm — every command a newcomer needs. `make setup` is idempotent and run by every target.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST_ARGS ?=
# make bench BACKBONE=sd15-tiny: that backbone at batch 1 and 4, with the authors'-loop baseline
# make bench TASK=wide: wide-image canvases (tiny SD 2.1-base, batch 1 and 4, vs the authors' wide loop); TASK=video: tiny LaVie
BACKBONE ?=
TASK ?=
BENCH_ARGS ?=
comma := ,

.PHONY: setup demo test test-all bench table-gmm table-embedded sweep-embedded study-acceleration table1 table2 table3 table6 fig4 fig7 table4 table5 table7 eval paper-ranks clean-runs help

help:
	@echo "make setup      create $(VENV) and install alm with exactly pinned dependencies (constraints.txt)"
	@echo "make demo       set up, then run the default job (python run.py) and print its table"
	@echo "make test       set up, then run the test suite (PYTEST_ARGS=--runslow adds slow tests)"
	@echo "make bench      seconds per sample and ratios ALM / SyncSDE, core overhead vs bare network"
	@echo "                (BACKBONE=sd15-tiny: batch 1 and 4, and the ratio vs the authors' per-image loop;"
	@echo "                 TASK=wide: canvases of windows, every wide method vs the authors' wide loop; TASK=video: the same along frames)"
	@echo "make table-gmm  all methods on the exact Gaussian-mixture testbed -> results/gmm/"
	@echo "make table-wide-gp  every wide-canvas method on the exact Gaussian-process canvas -> results/wide_gp/"
	@echo "make table-video-gp  every long-video method on the exact Gaussian-process clip (104 frames) -> results/video_gp/"
	@echo "make table-embedded  every method on the embedded MNIST backbone, 500 test pairs -> results/embedded/"
	@echo "make sweep-embedded  only the validation sweeps of that table -> results/embedded/sweep.md + plots"
	@echo "make study-acceleration  ALM with N likelihood iterations per step -> results/embedded/acceleration/"
	@echo "make table-wide-texture  every wide method on the texture backbone (strips of 5 windows) -> results/wide_texture/"
	@echo "make table-video-digits  every long-video method on the moving-digits backbone (104 frames) -> results/video_digits/"
	@echo "make fig7       the paper's Fig. 7 / 11 long videos (6 prompts, 104 frames) on LaVie (GPU + weights) -> results/fig7/;"
	@echo "                 SMOKE=1: tiny random LaVie, CPU, minutes (MP4s + strips)"
	@echo "make table1 | table2 | table6 | fig4   the paper's inpainting tables on SD (GPU + weights + data);"
	@echo "                 SMOKE=1 runs the same composition on tiny random models and stand-in pictures (CPU, minutes)"
	@echo "make table4     the paper's motion tables on HumanML3D with CondMDI's U-Net (GPU + files: README 'Motion'):"
	@echo "  table5 table7   table4 first/middle half, table5 ALM vs w/o ALM, table7 in-betweening -> results/table{4,5,7}/;"
	@echo "                 SMOKE=1: tiny random U-Net and evaluator on a synthetic HumanML3D folder (CPU, minutes)"
	@echo "make table3     the paper's wide-image table (+ Fig. 5 grid) on SD 2.1-base (GPU + weights) -> results/table3/;"
	@echo "                 SMOKE=1 as above (tiny SD 2.1, tiny stand-in metric networks)"
	@echo "make eval       evaluate run folders (RUNS=..., EVAL_ARGS='metrics=inpaint ...') -> table with a Rank column"
	@echo "make paper-ranks  check that the rank rule reproduces the paper's printed Rank columns"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $@

demo: setup
	$(PY) run.py

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q --runslow $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench.py $(if $(TASK),--task $(TASK)) $(if $(BACKBONE),--backbone $(BACKBONE) --batch 1$(comma)4) $(BENCH_ARGS)

table-gmm: setup
	$(PY) scripts/run_experiment.py experiments/gmm.yaml

.PHONY: table-wide-gp
table-wide-gp: setup
	$(PY) scripts/run_experiment.py experiments/wide_gp.yaml $(EXP_ARGS)

.PHONY: table-video-gp
table-video-gp: setup
	$(PY) scripts/run_experiment.py experiments/video_gp.yaml $(EXP_ARGS)

RUNS ?= results/runs
eval: setup
	$(PY) -m alm.evaluate $(RUNS) $(EVAL_ARGS)

paper-ranks: setup
	$(PY) -m alm.rank results/paper/table1.csv --lower lpips,mse --higher ssim,cs --group dataset,rows --check paper_rank
	$(PY) -m alm.rank results/paper/table3.csv --lower fid,kid --higher aesthetic,clip --check paper_rank
	$(PY) -m alm.rank results/paper/table4.csv --lower fid,matching --higher r_precision,diversity --group scenario --check paper_rank
	$(PY) -m alm.rank results/paper/table7.csv --lower fid,matching --higher r_precision,diversity --check paper_rank

clean-runs:
	rm -rf results/runs

# EXP_ARGS: extra driver arguments, e.g. EXP_ARGS="threads=1" on a busy machine, or "--only alm,ddim"
table-embedded: setup
	$(PY) scripts/run_experiment.py experiments/embedded.yaml $(EXP_ARGS)

sweep-embedded: setup
	$(PY) scripts/run_experiment.py experiments/embedded.yaml --sweeps $(EXP_ARGS)

study-acceleration: setup
	$(PY) scripts/run_experiment.py experiments/acceleration.yaml $(EXP_ARGS)

.PHONY: table-wide-texture
table-wide-texture: setup
	$(PY) scripts/run_experiment.py experiments/wide_texture.yaml $(EXP_ARGS)

# The moving-digits video testbed: every long-video method, then the same measures on the real clips (the ceiling).
.PHONY: table-video-digits
table-video-digits: setup
	$(PY) scripts/run_experiment.py experiments/video_digits.yaml $(EXP_ARGS)
	$(PY) scripts/score_real_clips.py --out results/video_digits/real_clips.md

# The paper's inpainting tables and its wide-image table (table3) on Stable Diffusion (README: "Reproducing the paper on a GPU").
# SMOKE=1: the same composition on tiny random models and stand-in pictures, output in results/runs/smoke/.
SMOKE_FLAG = $(if $(SMOKE),--smoke)
table1 table2 table3 table6 fig4 fig7 table4 table5 table7: setup
	$(PY) scripts/run_experiment.py experiments/$@.yaml $(SMOKE_FLAG) $(EXP_ARGS)
