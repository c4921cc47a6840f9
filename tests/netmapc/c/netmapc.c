/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * netmap's own C, run in userspace: netmap_kloop.c, unmodified (from
 * ../shared/reference/netmap, found on the include path), compiled
 * against FreeBSD 15's kernel headers with WITH_PTNETMAP, as a kernel
 * built with it compiles the file. Included here, not compiled apart,
 * because the host's per-ring sync (netmap_sync_kloop_tx_ring(),
 * netmap_sync_kloop_rx_ring()) is static in it.
 *
 * Around it: what it calls from the rest of netmap (the ring prologues
 * and netmap_ring_reinit() of netmap.c; the user-memory accessors of
 * the CSB, which in userspace are plain loads and stores), and accessors
 * for the Rust side, which does not know struct netmap_kring's layout.
 */

/* The headers netmap_kloop.c includes, first, so that the Linux
 * definitions of the notification path come after them. */
#include <sys/cdefs.h>
#include <sys/param.h>
#include <sys/kernel.h>
#include <sys/types.h>
#include <sys/selinfo.h>
#include <sys/socket.h>
#include <sys/poll.h>
#include <net/if.h>
#include <net/if_var.h>
#include <machine/bus.h>
#include <net/netmap.h>
#include <dev/netmap/netmap_kern.h>
#include <net/netmap_virt.h>
#include <dev/netmap/netmap_mem2.h>

#define SYNC_KLOOP_POLL
#include "linux_poll.h"
#include "netmap_kloop.c"
#include "nm_prologue.h"

u_int
nm_txsync_prologue(struct netmap_kring *kring, struct netmap_ring *ring)
{

	return (hk_txsync_prologue(kring, ring));
}

u_int
nm_rxsync_prologue(struct netmap_kring *kring, struct netmap_ring *ring)
{

	return (hk_rxsync_prologue(kring, ring));
}

/* Times netmap_ring_reinit() ran (a prologue refused the guest's pointers). */
unsigned long nmc_reinits;

/*
 * netmap_ring_reinit() (netmap.c): the ring's pointers back to the
 * kernel's when they are out of range. The slot checks of netmap.c are
 * left out: the slots are the simulator's, checked there.
 */
int
netmap_ring_reinit(struct netmap_kring *kring)
{
	int errors;

	__atomic_fetch_add(&nmc_reinits, 1, __ATOMIC_RELAXED);
	errors = hk_reinit_load(kring);
	if (errors)
		hk_reinit_reset(kring);
	return (errors ? 1 : 0);
}

/* fuword32(9)/suword32(9): the CSB is plain memory here. */
int32_t
fuword32(volatile const void *base)
{

	return (*(volatile const int32_t *)base);
}

int
suword32(volatile void *base, int32_t word)
{

	*(volatile int32_t *)base = word;
	return (0);
}

/* A kring with what netmap_kloop.c reaches through it. */
struct nmc_kring {
	struct netmap_kring	k;
	struct netmap_adapter	na;	/* not a zombie */
	struct netmap_ring	ring;	/* head, cur, tail (no slots) */
	void			*ctx;	/* the Rust side's, for nm_sync */
};

/* The pointers of a kring, as the Rust side passes them. */
struct nmc_ptrs {
	uint32_t	rhead, rcur, rtail, hwcur, hwtail;
	uint32_t	nointr;	/* NKR_NOINTR */
};

void nmc_gs_ensure(void);
size_t nmc_kring_size(void);
void nmc_kring_init(struct nmc_kring *, uint32_t,
    int (*)(struct netmap_kring *, int), void *);
void nmc_kring_get(const struct nmc_kring *, struct nmc_ptrs *);
void nmc_kring_set(struct nmc_kring *, const struct nmc_ptrs *);
void *nmc_kring_ctx(struct netmap_kring *);
bool nmc_guest_txsync(struct nm_csb_atok *, struct nm_csb_ktoa *,
    struct nmc_kring *, int);
bool nmc_guest_rxsync(struct nm_csb_atok *, struct nm_csb_ktoa *,
    struct nmc_kring *, int);
void nmc_sync_tail(struct nm_csb_ktoa *, struct nmc_kring *);
void nmc_kloop_ring(struct nmc_kring *, int, struct nm_csb_atok *,
    struct nm_csb_ktoa *, struct eventfd_ctx *, bool, bool);

size_t
nmc_kring_size(void)
{

	return (sizeof(struct nmc_kring));
}

void
nmc_kring_init(struct nmc_kring *kr, uint32_t num_slots,
    int (*sync)(struct netmap_kring *, int), void *ctx)
{

	memset(kr, 0, sizeof(*kr));
	kr->k.nkr_num_slots = num_slots;
	kr->k.na = &kr->na;
	kr->k.ring = &kr->ring;
	kr->k.nm_sync = sync;
	kr->ctx = ctx;
	memcpy(kr->k.name, "nmc", sizeof("nmc"));
}

void
nmc_kring_get(const struct nmc_kring *kr, struct nmc_ptrs *p)
{

	p->rhead = kr->k.rhead;
	p->rcur = kr->k.rcur;
	p->rtail = kr->k.rtail;
	p->hwcur = kr->k.nr_hwcur;
	p->hwtail = kr->k.nr_hwtail;
	p->nointr = (kr->k.nr_kflags & NKR_NOINTR) != 0;
}

void
nmc_kring_set(struct nmc_kring *kr, const struct nmc_ptrs *p)
{

	kr->k.rhead = kr->ring.head = p->rhead;
	kr->k.rcur = kr->ring.cur = p->rcur;
	kr->k.rtail = kr->ring.tail = p->rtail;
	kr->k.nr_hwcur = p->hwcur;
	kr->k.nr_hwtail = p->hwtail;
	if (p->nointr)
		kr->k.nr_kflags |= NKR_NOINTR;
	else
		kr->k.nr_kflags &= ~NKR_NOINTR;
}

void *
nmc_kring_ctx(struct netmap_kring *k)
{

	return (((struct nmc_kring *)k)->ctx);
}

bool
nmc_guest_txsync(struct nm_csb_atok *atok, struct nm_csb_ktoa *ktoa,
    struct nmc_kring *kr, int flags)
{

	nmc_gs_ensure();
	return (netmap_pt_guest_txsync(atok, ktoa, &kr->k, flags));
}

bool
nmc_guest_rxsync(struct nm_csb_atok *atok, struct nm_csb_ktoa *ktoa,
    struct nmc_kring *kr, int flags)
{

	nmc_gs_ensure();
	return (netmap_pt_guest_rxsync(atok, ktoa, &kr->k, flags));
}

void
nmc_sync_tail(struct nm_csb_ktoa *ktoa, struct nmc_kring *kr)
{

	nmc_gs_ensure();
	ptnet_sync_tail(ktoa, &kr->k);
}

/*
 * One pass of the host's sync kloop over one ring (tx: NR_TX), as
 * netmap_sync_kloop() makes it; irq is the ring's irqfd (NULL: none, as
 * in direct mode).
 */
void
nmc_kloop_ring(struct nmc_kring *kr, int tx, struct nm_csb_atok *atok,
    struct nm_csb_ktoa *ktoa, struct eventfd_ctx *irq, bool busy_wait,
    bool direct)
{
	struct sync_kloop_ring_args a = {
		.kring = &kr->k,
		.csb_atok = atok,
		.csb_ktoa = ktoa,
		.irq_ctx = irq,
		.busy_wait = busy_wait,
		.direct = direct,
	};

	nmc_gs_ensure();
	if (tx)
		netmap_sync_kloop_tx_ring(&a);
	else
		netmap_sync_kloop_rx_ring(&a);
}
