# ethoscope-rsync — developer entry points. Everything runs on Debian's /usr/bin/python3.
PYTHON := /usr/bin/python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all deps build-deps demo check unit integration system lint deb repo bench bench-quick clean

all: check

build-deps:      ## as root: only what `make deb` needs (debian/control's Build-Depends), nothing for the tests
	apt-get install -y --no-install-recommends dpkg-dev
	apt-get build-dep -y --no-install-recommends ./

deps:            ## install what the demo and the tests need (Debian 12, as root; not for a production node)
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

lint:            ## flake8 and mypy, as tests (settings in setup.cfg)
	$(PYTHON) -m pytest -p no:cacheprovider tests/lint

deb:             ## build ../ethoscope-rsync_*.deb and copy it to dist/ (make build-deps first, as root)
	@dpkg-checkbuilddeps 2>/dev/null || { dpkg-checkbuilddeps; echo "make deb: run 'make build-deps' as root first (it installs only the build dependencies)" >&2; exit 1; }
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
