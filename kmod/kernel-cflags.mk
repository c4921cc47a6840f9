# What sys/conf/kern.mk and kmod.mk give an amd64 module, for building on
# Linux with clang against a FreeBSD sys/ tree (SYSDIR): the target, the
# code generation flags, the kernel's warnings with -Werror, and the
# generated headers a module build has. Included by kmod/GNUmakefile (the
# module) and tests/harness/GNUmakefile (the kernel harness, built the
# same way).

FREEBSD_TARGET ?= x86_64-unknown-freebsd15.0

# sys/conf/kern.mk's warnings for modules; __printf__ makes clang check
# printf(9) and device_printf(9) formats as the kernel's.
CWARNFLAGS := -Wall -Wredundant-decls -Wnested-externs -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wundef \
	-Wno-pointer-sign -D__printf__=__freebsd_kprintf__ \
	-Wmissing-include-dirs -fdiagnostics-show-option \
	-Wno-unknown-pragmas -Wno-error=tautological-compare -Werror

# The kernel code model, no FPU or SIMD, no red zone, frame pointers.
# -fno-stack-protector, where kern.mk has -fstack-protector: this clang
# (14, Debian's) never marks __stack_chk_guard dso_local on FreeBSD
# targets (LLVM's insertSSPDeclarations), so the guard is loaded through
# the GOT, a relocation (R_X86_64_REX_GOTPCRELX) that the amd64 kld loader
# (sys/amd64/amd64/elf_machdep.c) does not apply: the module would not
# load. The Rust half has no stack protector either.
KERN_CFLAGS = --target=$(FREEBSD_TARGET) -O2 -pipe -fno-strict-aliasing -std=gnu99 \
	-nostdinc -I$(CURDIR) -I$(OUT) -I$(SYSDIR) -I$(SYSDIR)/contrib/ck/include \
	-D_KERNEL -DKLD_MODULE -DHAVE_KERNEL_OPTION_HEADERS -include $(OUT)/opt_global.h \
	-fno-common -fno-pic -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer \
	-mcmodel=kernel -mno-red-zone -mno-mmx -mno-sse -msoft-float -mno-aes -mno-avx \
	-fno-asynchronous-unwind-tables -ffreestanding -fwrapv -fno-stack-protector \
	$(CWARNFLAGS)

# The generated interface and option headers of a module build, in $(OUT).
define KERN_HEADERS
	ln -sfn $(SYSDIR)/amd64/include $(OUT)/machine
	ln -sfn $(SYSDIR)/x86/include $(OUT)/x86
	for m in kern/device_if.m kern/bus_if.m dev/pci/pci_if.m; do \
		(cd $(OUT) && awk -f $(SYSDIR)/tools/makeobjops.awk $(SYSDIR)/$$m -h) || exit 1; \
	done
	touch $(OUT)/opt_global.h
endef
