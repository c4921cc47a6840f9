/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * netmap(4) of a stock GENERIC kernel (device netmap, no WITH_PTNETMAP),
 * as a native driver meets it, following sys/dev/netmap/netmap.c and
 * netmap_freebsd.c:
 *
 * - netmap_attach() (netmap_attach_ext): the adapter copied into a
 *   netmap_hw_adapter, NAF_HOST_RINGS | NAF_NATIVE, nm_register wrapped
 *   (netmap_hw_reg refuses a zombie), IFCAP_NETMAP in the capabilities
 *   (nm_os_onattach), "netmap queues/slots" printed; netmap_detach();
 * - registration (netmap_do_regif, NR_REG_ALL_NIC): nm_config
 *   (netmap_update_config), the krings with their host rings
 *   (netmap_krings_create), rings and buffers of netmap's own allocator
 *   (2048-byte buffers, 0 and 1 reserved, as netmap_mem2.c), the krings'
 *   nr_pending_mode on, then nm_register(na, 1); the last close puts the
 *   modes off and calls nm_register(na, 0) (netmap_do_unregif);
 * - nm_set_native_flags()/nm_clear_native_flags() divert if_transmit to
 *   netmap_transmit for the first/last user (nm_os_onenter/onexit);
 *   netmap_krings_mode_commit();
 * - NIOCTXSYNC/NIOCRXSYNC (netmap_ioctl): nm_kr_tryget, the prologues
 *   (nm_txsync_prologue, nm_rxsync_prologue; netmap_ring_reinit on a bad
 *   ring), the driver's sync with NAF_FORCE_RECLAIM or NAF_FORCE_READ,
 *   nm_sync_finalize; poll() (netmap_poll) syncs without those flags and
 *   sleeps until nm_notify;
 * - netmap_rx_irq()/netmap_tx_irq(): NM_IRQ_PASS unless the kring is in
 *   netmap mode, else NKR_PENDINTR and netmap_notify (NM_IRQ_COMPLETED).
 */

#include "hk.h"

#include <sys/socket.h>
#include <machine/bus.h>
#include <net/if.h>
#include <net/if_var.h>
#include <net/netmap.h>
#include <dev/netmap/netmap_kern.h>
#include <dev/netmap/netmap_mem2.h>

#include "nm_prologue.h"

NMG_LOCK_T netmap_global_lock;

MALLOC_DEFINE(M_NETMAP, "netmap", "Network memory map");

#define	HK_NM_BUF_SIZE	2048	/* netmap_mem2.c's default buffer size */
#define	HK_MAXNA	8

/* What the harness keeps of an adapter: wait queues and memory. */
struct hk_nmx {
	struct netmap_adapter	*na;
	void			*lock, *cond[NR_TXRX];
	uint64_t		 seq[NR_TXRX];	/* notifications */
	char			*bufs;		/* the buffer pool */
	struct lut_entry	*lut;
	uint32_t		 nbufs;
	char			*rings;
	uint64_t		 host_drops;	/* netmap_transmit */
	int			 pt_finalized;	/* holds the guest allocator */
};

static struct hk_nmx hk_nmxs[HK_MAXNA];
static int64_t hk_na_live;

static struct hk_nmx *
hk_nmx(struct netmap_adapter *na)
{
	int i;

	for (i = 0; i < HK_MAXNA; i++)
		if (hk_nmxs[i].na == na)
			return (&hk_nmxs[i]);
	return (NULL);
}

/* netmap_notify(): wakes the sleepers of the ring's direction. */
static int
hk_netmap_notify(struct netmap_kring *kring, int flags)
{
	struct hk_nmx *x = hk_nmx(kring->notify_na);
	enum txrx t = kring->tx;

	(void)flags;
	if (x != NULL) {
		hk->lock(x->lock);
		x->seq[t]++;
		hk->cond_broadcast(x->cond[t]);
		hk->unlock(x->lock);
	}
	return (NM_IRQ_COMPLETED);
}

/* netmap_hw_reg(): the driver's nm_register, unless it is gone. */
static int
hk_netmap_hw_reg(struct netmap_adapter *na, int onoff)
{
	struct netmap_hw_adapter *hwna = (struct netmap_hw_adapter *)na;

	if (na->na_flags & NAF_ZOMBIE) {
		if (onoff)
			return (ENXIO);
		na->na_flags &= ~NAF_NETMAP_ON;
		return (0);
	}
	return (hwna->nm_hw_register(na, onoff));
}

/*
 * netmap_attach_ext(): an adapter of `size` bytes (a netmap_hw_adapter
 * or a larger one that starts with it) copied from `arg`.
 */
int
hk_netmap_attach_ext(struct netmap_adapter *arg, size_t size,
    struct netmap_hw_adapter **out)
{
	struct netmap_hw_adapter *hwna;
	struct hk_nmx *x;
	if_t ifp;

	if (arg == NULL || arg->ifp == NULL)
		return (EINVAL);
	if (arg->num_tx_rings == 0 || arg->num_rx_rings == 0)
		return (EINVAL);
	if (arg->nm_register == NULL || arg->nm_txsync == NULL ||
	    arg->nm_rxsync == NULL)
		hk_panic(__builtin_return_address(0), "netmap_attach: "
		    "nm_register, nm_txsync and nm_rxsync are required");
	ifp = arg->ifp;
	/*
	 * netmap_attach_common() saves the interface's input function for
	 * the host rings (na->if_input = if_getinputfn(ifp)): attached
	 * before ether_ifattach(), it saves NULL, which the first packet a
	 * netmap application sends to the host stack calls.
	 */
	if (if_getinputfn(ifp) == NULL)
		hk_panic(__builtin_return_address(0), "netmap_attach: %s has no "
		    "if_input yet (netmap_attach() before ether_ifattach())",
		    if_name(ifp));
	if (if_getnetmapadapter(ifp) != NULL) {
		printf("Error: netmap adapter hook is busy\n");
		return (EBUSY);
	}
	hwna = malloc(size, M_NETMAP, M_NOWAIT | M_ZERO);
	if (hwna == NULL)
		return (ENOMEM);
	hwna->up = *arg;
	hwna->up.na_flags |= NAF_HOST_RINGS | NAF_NATIVE;
	strlcpy(hwna->up.name, if_name(ifp), sizeof(hwna->up.name));
	hwna->nm_hw_register = hwna->up.nm_register;
	hwna->up.nm_register = hk_netmap_hw_reg;
	/* netmap_attach_common() */
	if (hwna->up.num_host_rx_rings == 0)
		hwna->up.num_host_rx_rings = 1;
	if (hwna->up.num_host_tx_rings == 0)
		hwna->up.num_host_tx_rings = 1;
	hwna->up.nm_notify = hk_netmap_notify;
	if (hwna->up.nm_krings_create == NULL) {
		hwna->up.nm_krings_create = hk_krings_create;
		hwna->up.nm_krings_delete = hk_krings_delete;
	}
	hwna->up.if_input = if_getinputfn(ifp);
	hwna->up.na_refcount = 1;
	NMG_LOCK();
	for (x = hk_nmxs; x < hk_nmxs + HK_MAXNA && x->na != NULL; x++)
		;
	if (x == hk_nmxs + HK_MAXNA)
		hk_panic(NULL, "netmap_attach: too many adapters");
	bzero(x, sizeof(*x));
	x->na = &hwna->up;
	x->lock = hk->lock_new();
	x->cond[NR_TX] = hk->cond_new();
	x->cond[NR_RX] = hk->cond_new();
	NMG_UNLOCK();
	if_setnetmapadapter(ifp, &hwna->up);
	if_setcapabilitiesbit(ifp, IFCAP_NETMAP, 0);	/* nm_os_onattach */
	__atomic_add_fetch(&hk_na_live, 1, __ATOMIC_RELAXED);
	if_printf(ifp, "netmap queues/slots: TX %d/%d, RX %d/%d\n",
	    hwna->up.num_tx_rings, hwna->up.num_tx_desc,
	    hwna->up.num_rx_rings, hwna->up.num_rx_desc);
	*out = hwna;
	return (0);
}

int
netmap_attach(struct netmap_adapter *arg)
{
	struct netmap_hw_adapter *hwna;

	return (hk_netmap_attach_ext(arg, sizeof(*hwna), &hwna));
}

static void
hk_na_free(struct netmap_adapter *na)
{
	struct hk_nmx *x = hk_nmx(na);

	/* netmap_adapter_put() */
	if (na->nm_dtor != NULL)
		na->nm_dtor(na);
#ifdef WITH_PTNETMAP
	hk_ptmem_free(na->nm_mem);
#endif
	hk->cond_free(x->cond[NR_TX]);
	hk->cond_free(x->cond[NR_RX]);
	hk->lock_free(x->lock);
	x->na = NULL;
	free(na, M_NETMAP);
	__atomic_sub_fetch(&hk_na_live, 1, __ATOMIC_RELAXED);
}

void
netmap_detach(if_t ifp)
{
	struct netmap_adapter *na;

	hk_td_may_sleep("netmap_detach", __builtin_return_address(0));
	NMG_LOCK();
	na = if_getnetmapadapter(ifp);
	if (na == NULL) {
		NMG_UNLOCK();
		return;
	}
	if_setnetmapadapter(ifp, NULL);
	if (na->active_fds > 0) {
		/* Users notice NAF_ZOMBIE; the last close frees it. */
		na->na_flags |= NAF_ZOMBIE;
		na->ifp = NULL;
	} else
		hk_na_free(na);
	NMG_UNLOCK();
}

/* netmap_transmit(): the stack's packets while netmap holds the NIC. */
static int
hk_netmap_transmit(if_t ifp, struct mbuf *m)
{
	struct netmap_adapter *na = if_getnetmapadapter(ifp);
	struct netmap_kring *kring;
	u_int txr;

	if (na == NULL || !nm_netmap_on(na)) {
		m_freem(m);
		return (ENXIO);
	}
	txr = (M_HASHTYPE_GET(m) != M_HASHTYPE_NONE ? m->m_pkthdr.flowid : 0) %
	    na->num_tx_rings;
	kring = NMR(na, NR_TX)[txr];
	if (kring->nr_mode == NKR_NETMAP_OFF)
		return (na->if_transmit(ifp, m));
	/*
	 * To the host RX ring's queue; no application of the harness opens
	 * the host rings, so the queue would only fill: dropped, counted.
	 */
	__atomic_add_fetch(&hk_nmx(na)->host_drops, 1, __ATOMIC_RELAXED);
	if_inc_counter(ifp, IFCOUNTER_OQDROPS, 1);
	m_freem(m);
	return (0);
}

void
nm_set_native_flags(struct netmap_adapter *na)
{
	if_t ifp = na->ifp;

	if (na->active_fds > 0)
		return;
	na->na_flags |= NAF_NETMAP_ON;
	na->if_transmit = if_gettransmitfn(ifp);
	if_settransmitfn(ifp, hk_netmap_transmit);
	if_setcapenablebit(ifp, IFCAP_NETMAP, 0);
}

void
nm_clear_native_flags(struct netmap_adapter *na)
{
	if_t ifp = na->ifp;

	if (na->active_fds > 0)
		return;
	if_settransmitfn(ifp, na->if_transmit);
	if_setcapenablebit(ifp, 0, IFCAP_NETMAP);
	na->na_flags &= ~NAF_NETMAP_ON;
}

void
netmap_krings_mode_commit(struct netmap_adapter *na, int onoff)
{
	struct netmap_kring *kring;
	enum txrx t;
	u_int i;

	for_rx_tx(t) {
		for (i = 0; i < netmap_real_rings(na, t); i++) {
			kring = NMR(na, t)[i];
			if (onoff && nm_kring_pending_on(kring))
				kring->nr_mode = NKR_NETMAP_ON;
			else if (!onoff && nm_kring_pending_off(kring))
				kring->nr_mode = NKR_NETMAP_OFF;
		}
	}
}

int
netmap_rx_irq(if_t ifp, u_int q, u_int *work_done)
{
	struct netmap_adapter *na = if_getnetmapadapter(ifp);
	struct netmap_kring *kring;
	enum txrx t = work_done != NULL ? NR_RX : NR_TX;

	if (!nm_netmap_on(na))
		return (NM_IRQ_PASS);
	q &= NETMAP_RING_MASK;
	if (q >= nma_get_nrings(na, t))
		return (NM_IRQ_PASS);
	kring = NMR(na, t)[q];
	if (kring->nr_mode == NKR_NETMAP_OFF)
		return (NM_IRQ_PASS);
	if (t == NR_RX) {
		kring->nr_kflags |= NKR_PENDINTR;
		*work_done = 1;
	}
	return (kring->nm_notify(kring, 0));
}

/* ---- The application side: /dev/netmap. ---- */

struct hk_nmport {
	struct netmap_adapter	*na;
	char			 ifname[IFNAMSIZ];
	u_int			 qfirst, qlast;	/* the NIC rings it holds */
};

/* netmap_krings_create(), host rings included. */
int
hk_krings_create(struct netmap_adapter *na)
{
	struct netmap_kring *kring;
	u_int n[NR_TXRX], i, len;
	enum txrx t;

	n[NR_TX] = netmap_all_rings(na, NR_TX);
	n[NR_RX] = netmap_all_rings(na, NR_RX);
	len = (n[NR_TX] + n[NR_RX]) *
	    (sizeof(struct netmap_kring *) + sizeof(struct netmap_kring));
	na->tx_rings = malloc(len, M_NETMAP, M_NOWAIT | M_ZERO);
	if (na->tx_rings == NULL)
		return (ENOMEM);
	na->rx_rings = na->tx_rings + n[NR_TX];
	na->tailroom = na->rx_rings + n[NR_RX];
	kring = (struct netmap_kring *)na->tailroom;
	for (i = 0; i < n[NR_TX] + n[NR_RX]; i++)
		na->tx_rings[i] = kring++;
	for_rx_tx(t) {
		for (i = 0; i < n[t]; i++) {
			kring = NMR(na, t)[i];
			kring->notify_na = na;
			kring->ring_id = i;
			kring->tx = t;
			kring->nkr_num_slots = nma_get_ndesc(na, t);
			kring->nr_mode = NKR_NETMAP_OFF;
			kring->nr_pending_mode = NKR_NETMAP_OFF;
			kring->nm_sync = i < nma_get_nrings(na, t) ?
			    (t == NR_TX ? na->nm_txsync : na->nm_rxsync) : NULL;
			kring->nm_notify = na->nm_notify;
			kring->rtail = kring->nr_hwtail = t == NR_TX ?
			    kring->nkr_num_slots - 1 : 0;
			snprintf(kring->name, sizeof(kring->name) - 1, "%s %s%d",
			    na->name, nm_txrx2str(t), i);
			mtx_init(&kring->q_lock, t == NR_TX ? "nm_txq_lock" :
			    "nm_rxq_lock", NULL, MTX_DEF);
			kring->na = na;
		}
	}
	return (0);
}

void
hk_krings_delete(struct netmap_adapter *na)
{
	struct netmap_kring **kring;

	for (kring = na->tx_rings; kring != na->tailroom; kring++)
		mtx_destroy(&(*kring)->q_lock);
	free(na->tx_rings, M_NETMAP);
	na->tx_rings = na->rx_rings = na->tailroom = NULL;
}

/* netmap_mem_rings_create() for the NIC rings, netmap's own allocator. */
static int
hk_mem_create(struct netmap_adapter *na)
{
	struct hk_nmx *x = hk_nmx(na);
	struct netmap_kring *kring;
	struct netmap_ring *ring;
	size_t rsize, off = 0;
	u_int i, j, next = 2;
	enum txrx t;

#ifdef WITH_PTNETMAP
	/* The guest allocator: the host's rings and buffers, mapped by
	 * netmap_mem_finalize() (netmap_mem_pt_guest_rings_create). */
	if (na->nm_mem != NULL) {
		int error = netmap_mem_finalize(na->nm_mem, na);

		if (error != 0)
			return (error);
		x->pt_finalized = 1;
		(void)netmap_mem_get_lut(na->nm_mem, &na->na_lut);
		for_rx_tx(t)
			for (i = 0; i < nma_get_nrings(na, t); i++) {
				ring = hk_ptmem_ring(na->nm_mem, t == NR_TX, i);
				if (ring == NULL)
					return (ENXIO);
				NMR(na, t)[i]->ring = ring;
			}
		return (0);
	}
#endif
	x->nbufs = 2;
	for_rx_tx(t)
		x->nbufs += nma_get_nrings(na, t) * nma_get_ndesc(na, t);
	x->bufs = hk->alloc((size_t)x->nbufs * HK_NM_BUF_SIZE, NULL);
	x->lut = hk->alloc(x->nbufs * sizeof(struct lut_entry), NULL);
	rsize = 0;
	for_rx_tx(t)
		rsize += nma_get_nrings(na, t) * roundup2(sizeof(*ring) +
		    nma_get_ndesc(na, t) * sizeof(struct netmap_slot), 128);
	x->rings = hk->alloc(rsize, NULL);
	if (x->bufs == NULL || x->lut == NULL || x->rings == NULL)
		return (ENOMEM);
	for (i = 0; i < x->nbufs; i++) {
		x->lut[i].vaddr = x->bufs + (size_t)i * HK_NM_BUF_SIZE;
		x->lut[i].paddr = 0;
	}
	na->na_lut.lut = x->lut;
	na->na_lut.objtotal = x->nbufs;
	na->na_lut.objsize = HK_NM_BUF_SIZE;
	for_rx_tx(t) {
		for (i = 0; i < nma_get_nrings(na, t); i++) {
			kring = NMR(na, t)[i];
			ring = (struct netmap_ring *)(x->rings + off);
			off += roundup2(sizeof(*ring) + kring->nkr_num_slots *
			    sizeof(struct netmap_slot), 128);
			*(int64_t *)(uintptr_t)&ring->buf_ofs =
			    x->bufs - (char *)ring;
			*(uint32_t *)(uintptr_t)&ring->num_slots =
			    kring->nkr_num_slots;
			*(uint32_t *)(uintptr_t)&ring->nr_buf_size =
			    HK_NM_BUF_SIZE;
			*(uint16_t *)(uintptr_t)&ring->ringid = i;
			*(uint16_t *)(uintptr_t)&ring->dir = t;
			for (j = 0; j < kring->nkr_num_slots; j++)
				ring->slot[j].buf_idx = next++;
			ring->head = ring->cur = kring->rhead;
			ring->tail = kring->rtail;
			kring->ring = ring;
		}
	}
	return (0);
}

static void
hk_mem_delete(struct netmap_adapter *na)
{
	struct hk_nmx *x = hk_nmx(na);
	enum txrx t;
	u_int i;

	for_rx_tx(t)
		for (i = 0; i < nma_get_nrings(na, t); i++)
			NMR(na, t)[i]->ring = NULL;
	na->na_lut.lut = NULL;
	na->na_lut.objtotal = 0;
#ifdef WITH_PTNETMAP
	if (x->pt_finalized) {
		x->pt_finalized = 0;
		(void)netmap_mem_deref(na->nm_mem, na);
	}
#endif
	if (x->bufs != NULL)
		hk->release(x->bufs);
	if (x->lut != NULL)
		hk->release(x->lut);
	if (x->rings != NULL)
		hk->release(x->rings);
	x->bufs = x->rings = NULL;
	x->lut = NULL;
}

/* netmap_update_config(). */
static int
hk_update_config(struct netmap_adapter *na)
{
	struct nm_config_info info;

	bzero(&info, sizeof(info));
	if (na->nm_config == NULL || na->nm_config(na, &info) != 0) {
		info.num_tx_rings = na->num_tx_rings;
		info.num_tx_descs = na->num_tx_desc;
		info.num_rx_rings = na->num_rx_rings;
		info.num_rx_descs = na->num_rx_desc;
		info.rx_buf_maxsize = na->rx_buf_maxsize;
	}
	if (na->active_fds > 0)
		return (0);
	na->num_tx_rings = info.num_tx_rings;
	na->num_tx_desc = info.num_tx_descs;
	na->num_rx_rings = info.num_rx_rings;
	na->num_rx_desc = info.num_rx_descs;
	na->rx_buf_maxsize = info.rx_buf_maxsize;
	return (0);
}

/* nm_kring_pending() over the NIC krings: a mode about to change. */
static int
hk_krings_pending(struct netmap_adapter *na)
{
	enum txrx t;
	u_int i;

	for_rx_tx(t)
		for (i = 0; i < nma_get_nrings(na, t); i++)
			if (nm_kring_pending_on(NMR(na, t)[i]) ||
			    nm_kring_pending_off(NMR(na, t)[i]))
				return (1);
	return (0);
}

/*
 * open("/dev/netmap") and NIOCCTRL(NETMAP_REQ_REGISTER): every NIC ring
 * (NR_REG_ALL_NIC) for `ring` < 0, else ring pair `ring` (NR_REG_ONE_NIC).
 */
int hk_nm_open(const char *ifname, int ring, struct hk_nmport **out);
int
hk_nm_open(const char *ifname, int ring, struct hk_nmport **out)
{
	struct netmap_adapter *na = NULL;
	struct netmap_kring *kring;
	struct hk_nmport *p;
	enum txrx t;
	u_int i, qfirst, qlast;
	int error, k;

	NMG_LOCK();
	for (k = 0; k < HK_MAXNA; k++)
		if (hk_nmxs[k].na != NULL && hk_nmxs[k].na->ifp != NULL &&
		    strcmp(hk_nmxs[k].na->name, ifname) == 0)
			na = hk_nmxs[k].na;
	if (na == NULL) {
		NMG_UNLOCK();
		return (ENXIO);
	}
	if (na->active_fds == 0) {
		error = hk_update_config(na);
		if (error == 0)
			error = na->nm_krings_create(na);
		if (error == 0)
			error = hk_mem_create(na);
		if (error != 0)
			goto fail;
	}
	/* netmap_interp_ringid() */
	qfirst = ring < 0 ? 0 : (u_int)ring;
	qlast = ring < 0 ? UINT_MAX : (u_int)ring + 1;
	if (ring >= 0 && ((u_int)ring >= na->num_tx_rings ||
	    (u_int)ring >= na->num_rx_rings)) {
		error = EINVAL;
		if (na->active_fds == 0)
			goto fail;
		NMG_UNLOCK();
		return (error);
	}
	for_rx_tx(t)
		for (i = qfirst; i < qlast && i < nma_get_nrings(na, t); i++) {
			kring = NMR(na, t)[i];
			if (kring->users++ == 0)
				kring->nr_pending_mode = NKR_NETMAP_ON;
		}
	/* netmap_do_regif(): the adapter hears of krings changing mode. */
	error = hk_krings_pending(na) ? na->nm_register(na, 1) : 0;
	if (error != 0) {
		for_rx_tx(t)
			for (i = qfirst; i < qlast && i < nma_get_nrings(na, t);
			    i++) {
				kring = NMR(na, t)[i];
				if (--kring->users == 0)
					kring->nr_pending_mode = NKR_NETMAP_OFF;
			}
		if (na->active_fds == 0)
			goto fail;
		NMG_UNLOCK();
		return (error);
	}
	/*
	 * The rings were made from the krings before nm_register (as
	 * netmap_mem_rings_create does); what the driver loaded into the
	 * krings since, it writes into the rings itself.
	 */
	na->active_fds++;
	NMG_UNLOCK();
	p = hk->alloc(sizeof(*p), NULL);
	p->na = na;
	p->qfirst = qfirst;
	p->qlast = qlast;
	strlcpy(p->ifname, ifname, sizeof(p->ifname));
	*out = p;
	return (0);
fail:
	hk_mem_delete(na);
	if (na->tx_rings != NULL)
		na->nm_krings_delete(na);
	NMG_UNLOCK();
	return (error);
}

/* The last close() of the file descriptor (netmap_do_unregif). */
void hk_nm_close(struct hk_nmport *p);
void
hk_nm_close(struct hk_nmport *p)
{
	struct netmap_adapter *na = p->na;
	struct netmap_kring *kring;
	enum txrx t;
	u_int i;

	NMG_LOCK();
	na->active_fds--;
	for_rx_tx(t)
		for (i = p->qfirst; i < p->qlast && i < nma_get_nrings(na, t);
		    i++) {
			kring = NMR(na, t)[i];
			if (--kring->users == 0)
				kring->nr_pending_mode = NKR_NETMAP_OFF;
		}
	/* netmap_do_unregif(): only for krings going off, or the last user. */
	if (na->active_fds == 0 || hk_krings_pending(na))
		(void)na->nm_register(na, 0);
	if (na->active_fds == 0) {
		hk_mem_delete(na);
		na->nm_krings_delete(na);
		if (na->na_flags & NAF_ZOMBIE)
			hk_na_free(na);
	}
	NMG_UNLOCK();
	hk->release(p);
}

struct netmap_ring *hk_nm_ring(struct hk_nmport *p, int tx, u_int i);
struct netmap_ring *
hk_nm_ring(struct hk_nmport *p, int tx, u_int i)
{
	enum txrx t = tx ? NR_TX : NR_RX;

	if (i >= nma_get_nrings(p->na, t))
		return (NULL);
	return (NMR(p->na, t)[i]->ring);
}

/*
 * nma_intr_enable(): the NIC rings' interrupts on or off for a client
 * that polls (the sync kloop does this), through nm_intr when the
 * setting changes.
 */
int hk_nm_intr(struct hk_nmport *p, int onoff);
int
hk_nm_intr(struct hk_nmport *p, int onoff)
{
	struct netmap_adapter *na = p->na;
	struct netmap_kring *kring;
	int changed = 0;
	enum txrx t;
	u_int i;

	for_rx_tx(t)
		for (i = 0; i < nma_get_nrings(na, t); i++) {
			kring = NMR(na, t)[i];
			changed |= !onoff != !!(kring->nr_kflags & NKR_NOINTR);
			if (onoff)
				kring->nr_kflags &= ~NKR_NOINTR;
			else
				kring->nr_kflags |= NKR_NOINTR;
		}
	if (!changed)
		return (0);
	if (na->nm_intr == NULL)
		return (-1);
	na->nm_intr(na, onoff);
	return (0);
}

/* The port's virtio-net header length (nmreq_port_hdr, NETMAP_REQ_PORT_HDR_GET). */
int hk_nm_virt_hdr_len(struct hk_nmport *p);
int
hk_nm_virt_hdr_len(struct hk_nmport *p)
{

	return (p->na->virt_hdr_len);
}

/* nm_kr_tryget()/nm_kr_put(): one sync per ring at a time. */
static int
hk_kr_tryget(struct netmap_kring *kring)
{

	if (kring->nkr_stopped || (kring->na->na_flags & NAF_ZOMBIE))
		return (NM_KR_STOPPED);
	if (__atomic_exchange_n(&kring->nr_busy, 1, __ATOMIC_ACQUIRE))
		return (NM_KR_BUSY);
	return (0);
}

static void
hk_kr_put(struct netmap_kring *kring)
{

	__atomic_store_n(&kring->nr_busy, 0, __ATOMIC_RELEASE);
}

/* netmap_ring_reinit(). */
static void
hk_ring_reinit(struct netmap_kring *kring)
{
	struct netmap_ring *ring = kring->ring;
	u_int i, lim = kring->nkr_num_slots - 1;
	int errors;

	errors = hk_reinit_load(kring);
	for (i = 0; i <= lim; i++) {
		if (ring->slot[i].buf_idx < 2 ||
		    ring->slot[i].buf_idx >= kring->na->na_lut.objtotal) {
			ring->slot[i].buf_idx = 0;
			ring->slot[i].len = 0;
		} else if (ring->slot[i].len > HK_NM_BUF_SIZE)
			ring->slot[i].len = 0;
	}
	if (errors)
		hk_reinit_reset(kring);
}

/* One ring of NIOCTXSYNC/NIOCRXSYNC (ioctl) or of poll(). */
static int
hk_sync_ring(struct netmap_kring *kring, int ioctl, int *ready)
{
	struct netmap_ring *ring = kring->ring;
	int error = 0;

	if (hk_kr_tryget(kring) != 0)
		return (EIO);
	if (kring->tx == NR_TX) {
		if (hk_txsync_prologue(kring, ring) >= kring->nkr_num_slots) {
			hk_ring_reinit(kring);
			error = EINVAL;
		} else if ((error = kring->nm_sync(kring, ioctl ?
		    NAF_FORCE_RECLAIM : 0)) == 0)
			ring->tail = kring->rtail = kring->nr_hwtail;
		*ready |= kring->rcur != kring->rtail;
	} else {
		if (hk_rxsync_prologue(kring, ring) >= kring->nkr_num_slots) {
			hk_ring_reinit(kring);
			error = EINVAL;
		}
		if (kring->nm_sync(kring, ioctl ? NAF_FORCE_READ : 0) == 0)
			ring->tail = kring->rtail = kring->nr_hwtail;
		*ready |= ring->cur != ring->tail;
	}
	hk_kr_put(kring);
	return (error);
}

/* ioctl(NIOCTXSYNC) (tx) or ioctl(NIOCRXSYNC) on every ring. */
int hk_nm_sync(struct hk_nmport *p, int tx);
int
hk_nm_sync(struct hk_nmport *p, int tx)
{
	enum txrx t = tx ? NR_TX : NR_RX;
	int error = 0, ready = 0;
	u_int i;

	for (i = p->qfirst; i < p->qlast && i < nma_get_nrings(p->na, t); i++) {
		int e = hk_sync_ring(NMR(p->na, t)[i], 1, &ready);

		if (e != 0)
			error = e;
	}
	return (error);
}

/*
 * poll() for POLLOUT (tx) or POLLIN: syncs every ring and sleeps until a
 * notification if none is ready. 1 ready, 0 timeout, or an errno < 0.
 */
int hk_nm_poll(struct hk_nmport *p, int tx, uint64_t timeout_ns);
int
hk_nm_poll(struct hk_nmport *p, int tx, uint64_t timeout_ns)
{
	struct hk_nmx *x = hk_nmx(p->na);
	enum txrx t = tx ? NR_TX : NR_RX;
	uint64_t seen, deadline = hk->uptime_ns() + timeout_ns, now;
	int ready, error;
	u_int i;

	for (;;) {
		hk->lock(x->lock);
		seen = x->seq[t];
		hk->unlock(x->lock);
		ready = 0;
		for (i = p->qfirst;
		    i < p->qlast && i < nma_get_nrings(p->na, t); i++) {
			error = hk_sync_ring(NMR(p->na, t)[i], 0, &ready);
			if (error == EIO && (p->na->na_flags & NAF_ZOMBIE))
				return (-ENXIO);
		}
		if (ready)
			return (1);
		now = hk->uptime_ns();
		if (now >= deadline)
			return (0);
		hk->lock(x->lock);
		if (x->seq[t] == seen)
			(void)hk->cond_wait(x->cond[t], x->lock, deadline - now);
		hk->unlock(x->lock);
	}
}

/* Adapters alive now (the harness's ledger). */
int64_t hk_netmap_live(void);
int64_t
hk_netmap_live(void)
{

	return (__atomic_load_n(&hk_na_live, __ATOMIC_RELAXED));
}

void
hk_netmap_boot(void)
{

	sx_init(&netmap_global_lock, "netmap global lock");
}
