/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The kernel symbols netmap_kloop.c references from code this crate
 * never runs (netmap_sync_kloop(), the ioctl that runs the loop in a
 * kernel; netmap_pt_guest_attach() and the krings callbacks of a guest
 * adapter). They exist so that the unmodified file links; reaching one
 * is a bug of this crate, and aborts.
 */

#include <asm/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NEVER(f)							\
	void f(void);							\
	void f(void) { fprintf(stderr, "netmapc: %s called\n", #f); abort(); }

NEVER(__netmap_mem_get)
NEVER(__netmap_mem_put)
NEVER(_sleep)
NEVER(_sx_xlock)
NEVER(_sx_xunlock)
NEVER(if_getnetmapadapter)
NEVER(microtime)
NEVER(netmap_attach_ext)
NEVER(netmap_hw_krings_create)
NEVER(netmap_hw_krings_delete)
NEVER(netmap_mem_pt_guest_ifp_del)
NEVER(netmap_mem_pt_guest_new)
NEVER(nm_os_free)
NEVER(nm_os_malloc)
NEVER(nm_os_selwakeup)
NEVER(nmreq_getoption)
NEVER(pause_sbt)

/* The Linux notification machinery of netmap_sync_kloop() (see
 * linux_poll.h). */
void nmc_never(const char *);
void
nmc_never(const char *what)
{
	fprintf(stderr, "netmapc: %s reached\n", what);
	abort();
}

/* Data the same code names: netmap's global lock, the tick length, the
 * per-CPU linker set. */
_Alignas(64) char netmap_global_lock[256];
long long tick_sbt;
char __start_set_pcpu[1], __stop_set_pcpu[1];

/*
 * The kernel's store-load barrier (<machine/atomic.h>,
 * __storeload_barrier(): "lock addl $0" on a word of the per-CPU area,
 * %gs:OFFSETOF_MONITORBUF) is what nm_stld_barrier() becomes. Each
 * thread that runs netmap's C gets a private area at its %gs base.
 */
void nmc_gs_ensure(void);
void
nmc_gs_ensure(void)
{
	static __thread int done;
	static __thread _Alignas(64) char pcpu[1024];

	if (!done) {
		if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)pcpu) != 0) {
			perror("netmapc: arch_prctl(ARCH_SET_GS)");
			abort();
		}
		done = 1;
	}
}
