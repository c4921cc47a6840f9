# ptnet: driver core, simulator and tests.
#
#   make run     set up, build, and run the simulator demo
#   make test    set up, then every check and test
#   make bench   benchmarks with same-run baselines (JSON)
#   make miri    the driver core's unit tests under Miri
#   make kmod    ptnrs.ko (and the WITH_PTNETMAP build) against FreeBSD 15 headers
#   make kmod-audit  the linked modules and their Rust object, checked for the kld loader
#   make fuzz    each fuzz target for FUZZ_SECONDS (default 600)
#   make soak    mixed load for SOAK_MINUTES (default 10), then the ledgers
#   make chaos-sweep  tcp and pktgen under a hostile host, CHAOS_SEEDS seeds each

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
# The kernel archive's -Z flags and Miri need nightly: a dated one, so
# that a new nightly cannot break the module build on any given day.
NIGHTLY ?= nightly-2026-05-20
SIM = target/release/ptnet-sim
# FreeBSD 15's kernel headers, laid out by the kit beside the checkout.
FREEBSD_KIT ?= $(abspath ../shared/freebsd-sys)
FREEBSD_SYS = $(CURDIR)/target/freebsd-sys

.PHONY: run test bench miri setup setup-debian setup-nightly check kernel-build sim kmod-lib kmod kmod-audit kmod-header kmod-man fuzz-setup fuzz-smoke fuzz soak soak-smoke chaos-sweep chaos-sweep-smoke

# Toolchains and tools a fresh Debian machine with rustup lacks.
DEBIAN_TOOLS = mandoc:mandoc ip:iproute2 ethtool:ethtool g++:g++ ld:binutils clang:clang ld.lld:lld
setup: setup-debian
	rustup show active-toolchain >/dev/null
	rustup target add x86_64-unknown-none
	rustup component add rustfmt clippy
	$(PYTHON) -c 'import ziglang' 2>/dev/null || $(PYTHON) -m pip install --quiet ziglang \
		|| $(PYTHON) -m pip install --quiet --break-system-packages ziglang

# The Debian packages the tests use, installed when their command is
# missing (root, or sudo).
setup-debian:
	@need=""; for t in $(DEBIAN_TOOLS); do \
		command -v $${t%%:*} >/dev/null || need="$$need $${t##*:}"; \
	done; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi

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
	$(MAKE) chaos-sweep-smoke

# Netmap traffic with PTCTL restarts next to TCP with link flaps, then
# every packet, kick, buffer and byte of memory accounted for.
SOAK_MINUTES ?= 10
soak: sim
	$(SIM) soak --minutes $(SOAK_MINUTES)

soak-smoke: sim
	$(SIM) soak --minutes 0.5 --json

# tcp --chaos and pktgen --chaos over many seeds, each in its own process,
# with two busy threads competing for the cores. A failing run's replay
# file stays in target/chaos-sweep (ptnet-sim ... --chaos-replay FILE).
CHAOS_SEEDS ?= 1000
CHAOS_FIRST ?= 1
chaos-sweep: sim
	$(SIM) chaos-sweep --first $(CHAOS_FIRST) --seeds $(CHAOS_SEEDS)

# The short sweep of every CI run (about two minutes): seeds no test
# uses, the same ones each run, so that a failure names its seed.
chaos-sweep-smoke: sim
	$(SIM) chaos-sweep --first 100001 --seeds 20

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

# FreeBSD 15's sys/ headers, assembled again when the kit changes.
$(FREEBSD_SYS)/.assembled: $(FREEBSD_KIT)/assemble.sh
	$(FREEBSD_KIT)/assemble.sh $(FREEBSD_SYS)
	touch $@

# The kit is built from where it is, never copied in: a checkout that is
# not beside shared/ says so instead of failing in a build script.
$(FREEBSD_KIT)/assemble.sh:
	@echo "$@ not found: this checkout builds from ../shared (FreeBSD's headers, netmap's reference C)." >&2
	@echo "Clone it beside shared/, or set FREEBSD_KIT=<shared>/freebsd-sys and NETMAP_REFERENCE=<shared>/reference/netmap." >&2
	@exit 1

# ptnrs.ko as FreeBSD builds it (kmod/GNUmakefile: clang for the FreeBSD
# target, the kernel's warnings, -Werror, ld -r), for stock kernels, and
# the zero-copy build for kernels built with WITH_PTNETMAP.
KO = $(KMOD_DIR)/obj/ptnrs.ko
KO_PT = $(KMOD_DIR)/obj-ptnetmap/ptnrs.ko
kmod: kmod-lib $(FREEBSD_SYS)/.assembled
	$(MAKE) -C kmod SYSDIR=$(FREEBSD_SYS)
	$(MAKE) -C kmod SYSDIR=$(FREEBSD_SYS) WITH_PTNETMAP=1

# The audit (tests/src/kmod_audit.rs): the Rust object alone, linked as the
# module link pulls it (ld -r, the header's entry points as roots), may
# only need the kernel's memcpy family; each module may only need the
# kernel symbols its list names (each with the FreeBSD file exporting it).
AUDIT = $(CARGO) run -q --release -p ptnet-tests --bin kmod-audit --
kmod-audit: kmod
	ld -r -o $(KMOD_DIR)/ptnet_rs.o $$(sed -n 's/^[a-z].* \(ptnet_rs_[a-z_0-9]*\)(.*/-u \1/p' kmod/ptnet_rs.h) $(KMOD_LIB)
	$(AUDIT) $(KMOD_DIR)/ptnet_rs.o
	$(AUDIT) $(KO) --symbols kmod/kernel-symbols
	$(AUDIT) $(KO_PT) --symbols kmod/kernel-symbols --symbols kmod/kernel-symbols-ptnetmap

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
FUZZ_TARGETS = attach rx sync tx netmapc
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
