# ptnet: driver core, simulator and tests.
#
#   make run     set up, build, and run the simulator demo
#   make test    set up, then every check and test
#   make bench   benchmarks with same-run baselines (JSON)
#   make miri    the driver core's unit tests under Miri

CARGO ?= cargo
PYTHON ?= python3
NIGHTLY ?= nightly
SIM = target/release/ptnet-sim

.PHONY: run test bench miri setup setup-nightly check kernel-build sim

# Toolchains and tools a fresh Debian machine with rustup lacks.
setup:
	rustup show active-toolchain >/dev/null
	rustup target add x86_64-unknown-none
	rustup component add rustfmt clippy
	$(PYTHON) -c 'import ziglang' 2>/dev/null || $(PYTHON) -m pip install --quiet ziglang \
		|| $(PYTHON) -m pip install --quiet --break-system-packages ziglang

setup-nightly:
	rustup toolchain install $(NIGHTLY) --profile minimal --component miri,rust-src

sim: setup
	$(CARGO) build --release -p ptnet-host-sim

run: sim
	$(SIM) demo

# The driver core as the kernel builds it: no_std, no panics reachable.
kernel-build:
	$(CARGO) build -p ptnet --target x86_64-unknown-none --release

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p ptnet --target x86_64-unknown-none -- -D warnings

miri: setup-nightly
	$(CARGO) +$(NIGHTLY) miri test -p ptnet

test: setup check kernel-build miri
	$(CARGO) test --workspace --release

bench: sim
	$(SIM) bench native --json
	$(SIM) bench ifnet --json
