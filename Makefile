# ethoscope-rsync — developer entry points. Everything runs on Debian's /usr/bin/python3.
PYTHON := /usr/bin/python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all deps demo check unit integration system deb repo bench bench-quick clean

all: check

deps:            ## install what the demo and the tests need (Debian 12, as root)
	tests/install-deps.sh

demo: deps       ## bring up a simulated lab, run a real backup pass, serve the status on :8093
	$(PYTHON) -m tests.lab.demo

check: deps      ## the whole test suite: unit, integration (real sshd/rsync) and system (booted Debian 12 and 13 containers)
	$(PYTHON) -m pytest -p no:cacheprovider tests

unit:
	$(PYTHON) -m pytest -p no:cacheprovider tests/unit

integration:
	$(PYTHON) -m pytest -p no:cacheprovider tests/integration

system:
	$(PYTHON) -m pytest -p no:cacheprovider tests/system

deb:             ## build ../ethoscope-rsync_*.deb and copy it to dist/
	dpkg-buildpackage -us -uc -b
	mkdir -p dist && cp ../ethoscope-rsync_*_all.deb dist/

repo: deb        ## a signed APT repository of dist/*.deb in dist/repo (README, "Installing on a real node")
	packaging/apt-repository.sh dist/repo dist/ethoscope-rsync_*_all.deb

bench: deps
	$(PYTHON) -m bench

bench-quick:
	$(PYTHON) -m bench --quick

clean:
	rm -rf build dist *.egg-info .pybuild
