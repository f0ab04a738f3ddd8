# avio-kvm: the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what it needs (Debian packages, a .venv with the project).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint host test-host venv clean test-nested nested-image vagrant-box \
	vagrant-test

host:
	@bash scripts/setup-host.sh

test-host:
	@bash scripts/setup-host.sh --test-tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: host $(STAMP)

lint: venv
	$(BIN)/ruff check .

test: test-host $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# A real Debian host (L1) inside QEMU with an IOMMU: the nested test subset
# (tests/nested) runs there; see scripts/nested-host.sh.
nested-image: host
	@bash scripts/nested-host.sh build

test-nested: venv
	@bash scripts/nested-host.sh test

# The same host as a vagrant-libvirt box (avio-kvm/nested), and the nested
# subset run in a Vagrant VM made from it (vagrant/README.md; not in .ci/run).
vagrant-box: host
	@bash scripts/vagrant-box.sh

vagrant-test: venv
	@bash scripts/vagrant-test.sh

demo: venv
	@bash scripts/demo.sh

bench: venv
	$(BIN)/python bench/translate.py
	$(BIN)/python bench/hotplug.py
	$(BIN)/python bench/resize.py
	$(BIN)/python bench/uevent_cost.py
	$(BIN)/python bench/vlan.py
	$(BIN)/python bench/clone.py
	$(BIN)/python bench/admin.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
