# The two commands a new user needs: `make demo` and `make test`.
# Each sets everything up first (idempotent: a second run only checks).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch lies on this kind of machine's disk; a bare `torch`
# requirement would pull a multi-GB CUDA build. Override for your own machine,
# e.g. `make setup TORCH=` to keep whatever torch the venv already has.
TORCH  ?= torch==2.13.0
# Optional extras installed with lossmap: the tests cover every one of them (the JAX
# backend, VTK and HDF5 files, the training callbacks, the notebooks, the docs site).
EXTRAS ?= dev,jax,vtk,li,hf,lightning,notebooks,docs,topology
# The curvature engine (extra `curvature`: curvlinops) and the peer libraries the tests
# compare against (PyHessian, hessian-eigenthings, landscaper). backpack-for-pytorch,
# curvlinops' dependency, asks for torchvision, and landscaper's topopy for numpy < 2: from
# PyPI those would replace the CPU torch with a CUDA build and downgrade numpy. So these go
# in without their dependencies, which are listed in PEERDEPS (nothing here needs torchvision;
# topopy and nglpy load with numpy 2). Elsewhere, `pip install lossmap[curvature]` is enough.
NODEPS ?= curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 unfoldNd==0.2.3 \
          einconv==0.1.0 linear_operator==0.6.1 pyhessian==0.1 hessian-eigenthings==1.0.0a5 \
          landscaper==1.3.1 topopy==1.0.4 nglpy==1.1.7
PEERDEPS ?= einops opt-einsum treelib drawsvg coloraide six pyDOE "ghalton<0.6.2"

# Debian packages the demo and the tests use: the Fashion-MNIST files, a
# headless browser for the report test, ffmpeg for the MP4 animations. Installed only when missing and when
# we are root with apt (elsewhere: install them yourself, or see README).
DEBS   ?= dataset-fashion-mnist chromium ffmpeg

.PHONY: setup system-deps demo test test-fast lint bench docs clean

system-deps:
	@missing=""; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: missing$$missing (not root or no apt): install them for the full demo/tests"; \
	  fi; \
	fi

$(VENV)/.stamp: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH)" ] && ! $(PY) -c "import torch" 2>/dev/null; then \
	    echo "installing $(TORCH) (CPU build)"; $(PY) -m pip install --quiet "$(TORCH)"; fi
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet $(PEERDEPS)
	$(PY) -m pip install --quiet --no-deps $(NODEPS)
	touch $@

setup: $(VENV)/.stamp system-deps

demo: setup
	$(VENV)/bin/lossmap demo

# The tests marked `gpu` (tests/test_cuda_paths.py) need CUDA: deselected where torch sees
# no GPU, run where it does (and by benchmarks/gpu.sh).
NOGPU  := import torch; print('' if torch.cuda.is_available() else 'not gpu')

test: setup
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q -m "$$($(PY) -c "$(NOGPU)")" -n auto --maxprocesses=4 --dist loadscope

# The unit tests only, in under a minute: no slow end-to-end runs, no browser,
# no JAX, no Fashion-MNIST files, no GPU (markers in tests/conftest.py). `make test`
# runs everything this machine can run.
FAST   ?= not slow and not browser and not jax and not hf and not data and not gpu

test-fast: $(VENV)/.stamp
	$(PY) -m pytest -q -m "$(FAST)" -n auto --maxprocesses=4 --dist loadscope

lint: setup
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks

bench: setup
	$(PY) benchmarks/run.py --compile

# The documentation site into site/ (mkdocs.yml; the CLI page and the demo's figures are
# generated at build time, nothing is downloaded). Installs the docs extra if missing.
docs: setup
	@$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || \
	    $(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
