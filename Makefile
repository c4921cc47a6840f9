# ptnet: driver core, simulator and tests.
#
#   make run     set up, build, and run the simulator demo
#   make test    set up, then every check and test
#   make bench   benchmarks with same-run baselines (JSON)
#   make miri    the driver core's unit tests under Miri
#   make kmod-audit  the kernel module's Rust object, checked for the kld loader
#   make fuzz    each fuzz target for FUZZ_SECONDS (default 600)
#   make soak    mixed load for SOAK_MINUTES (default 10), then the ledgers

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
NIGHTLY ?= nightly
SIM = target/release/ptnet-sim

.PHONY: run test bench miri setup setup-nightly check kernel-build sim kmod-lib kmod-audit kmod-header kmod-man fuzz-setup fuzz-smoke fuzz soak soak-smoke

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
	$(CARGO) build -p ptnet -p ptnet-ffi --target x86_64-unknown-none --release

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p ptnet -p ptnet-ffi --target x86_64-unknown-none -- -D warnings

miri: setup-nightly
	$(CARGO) +$(NIGHTLY) miri test -p ptnet

test: setup check kernel-build miri kmod-audit kmod-man fuzz-smoke
	$(CARGO) test --workspace --release
	$(MAKE) soak-smoke

# Netmap traffic with PTCTL restarts next to TCP with link flaps, then
# every packet, kick, buffer and byte of memory accounted for.
SOAK_MINUTES ?= 10
soak: sim
	$(SIM) soak --minutes $(SOAK_MINUTES)

soak-smoke: sim
	$(SIM) soak --minutes 0.5 --json

bench: sim
	$(SIM) bench native --json
	$(SIM) bench ifnet --json

# The kernel module's Rust archive, built as the kmod build uses it: the
# core and the boundary in one LTO unit with the kernel code model and
# static relocations (core recompiled from source, so nothing
# precompiled as PIC comes in), direct calls through the PLT32 form, and
# stack-size records for the audit. compiler_builtins is left out: its
# weak memcpy family would shadow the kernel's, and anything else it
# provides would show up as an undefined symbol in the audit.
KMOD_DIR = target/kmod
KMOD_LIB = $(KMOD_DIR)/libptnet_rs.a
KMOD_RUSTFLAGS = -C relocation-model=static -C code-model=kernel -Z plt=yes -Z emit-stack-sizes

kmod-lib: setup-nightly
	RUSTFLAGS="$(KMOD_RUSTFLAGS)" $(CARGO) +$(NIGHTLY) rustc -p ptnet-ffi --profile kmod \
		--target x86_64-unknown-none -Z build-std=core,compiler_builtins --crate-type staticlib \
		--target-dir $(KMOD_DIR)
	cp $(KMOD_DIR)/x86_64-unknown-none/kmod/libptnet_ffi.a $(KMOD_LIB)
	ar d $(KMOD_LIB) $$(ar t $(KMOD_LIB) | grep '^compiler_builtins-')

# Links the archive as the module link does (ld -r, the header's entry
# points as roots) and audits the object for the kld loader.
kmod-audit: kmod-lib
	ld -r -o $(KMOD_DIR)/ptnet_rs.o $$(sed -n 's/^[a-z].* \(ptnet_rs_[a-z_0-9]*\)(.*/-u \1/p' kmod/ptnet_rs.h) $(KMOD_LIB)
	$(CARGO) run -q --release -p ptnet-tests --bin kmod-audit -- $(KMOD_DIR)/ptnet_rs.o

# Rewrites kmod/ptnet_rs.h from ffi/src (the header test fails until then).
kmod-header:
	PTNET_UPDATE_HEADER=1 $(CARGO) test -q -p ptnet-ffi --test header

# The man page, as FreeBSD's tree checks it (Debian package mandoc; the
# FreeBSD pages it refers to are absent here, hence warnings and up).
kmod-man:
	mandoc -Tlint -Wwarning kmod/ptnrs.4

# libFuzzer targets (fuzz/): the receive path, attach, the sync protocol,
# the transmit header path. Seeds are in fuzz/seeds/<target>; what the
# fuzzer finds goes to fuzz/corpus-run/<target> (not committed).
FUZZ_TARGETS = attach rx sync tx
FUZZ_SECONDS ?= 600

fuzz-setup: setup-nightly
	cargo fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz-smoke: fuzz-setup
	$(MAKE) fuzz FUZZ_SECONDS=15

fuzz: fuzz-setup
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus-run/$$t && \
		$(CARGO) +$(NIGHTLY) fuzz run -O $$t corpus-run/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | \
			grep -E 'stat::number_of_executed_units|Done|ERROR|SUMMARY|panicked' ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
