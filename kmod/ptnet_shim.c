/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * ptnrs: the FreeBSD glue of the Rust ptnet driver.
 *
 * Everything that decides something lives in the Rust archive
 * (ptnet_rs.h); this file only speaks the kernel's interfaces: newbus and
 * PCI resources, MSI-X, contiguous memory, ifnet, mbufs, taskqueues,
 * sysctl and the netmap adapter. The archive calls back through the
 * function table `ptnrs_ops`, registered at module load.
 *
 * The module claims ptnet NICs with a probe priority above the in-kernel
 * C driver (BUS_PROBE_VENDOR against its BUS_PROBE_DEFAULT), so it can be
 * loaded next to a kernel with `device netmap`. The host memory behind
 * the NIC stays with netmap's ptnetmap-memdev driver and netmap's guest
 * allocator, as with the in-kernel driver: netmap applications on the
 * interface then use the host's rings directly.
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/bus.h>
#include <sys/callout.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mbuf.h>
#include <sys/module.h>
#include <sys/rman.h>
#include <sys/socket.h>
#include <sys/sockio.h>
#include <sys/sx.h>
#include <sys/sysctl.h>
#include <sys/taskqueue.h>

#include <machine/bus.h>
#include <machine/resource.h>

#include <vm/vm.h>
#include <vm/pmap.h>

#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_media.h>
#include <net/if_types.h>
#include <net/if_var.h>
#include <net/if_vlan_var.h>

#include <dev/pci/pcireg.h>
#include <dev/pci/pcivar.h>

#include <net/netmap.h>
#include <dev/netmap/netmap_kern.h>
#include <net/netmap_virt.h>
#include <dev/netmap/netmap_mem2.h>

#include "ptnet_rs.h"

#define PTNRS_MSIX_BAR	PCIR_BAR(PTNETMAP_MSIX_PCI_BAR)
#define PTNRS_RX_BUDGET	64
#define PTNRS_TX_TIMEOUT_MS	5000

static SYSCTL_NODE(_hw, OID_AUTO, ptnrs, CTLFLAG_RD | CTLFLAG_MPSAFE, 0,
    "ptnrs (Rust ptnet driver) parameters");

static int ptnrs_vnet_hdr = 1;
SYSCTL_INT(_hw_ptnrs, OID_AUTO, vnet_hdr, CTLFLAG_RDTUN, &ptnrs_vnet_hdr, 0,
    "Ask the host for the virtio-net header (checksum, TSO and LRO offloads)");

struct ptnrs_softc;

struct ptnrs_queue {
	struct ptnrs_softc	*sc;
	uint32_t		 ring;		/* index within its direction */
	uint32_t		 is_rx;
	int			 irq_rid;
	struct resource		*irq;
	void			*irq_cookie;
	struct task		 task;
	struct taskqueue	*tq;
};

struct ptnrs_softc {
	device_t		 dev;
	if_t			 ifp;
	struct ifmedia		 media;
	struct sx		 lock;		/* init, stop, ioctl, netmap register */
	struct resource		*iobar;
	struct resource		*msix_bar;
	int			 msix_alloc;
	struct ptnet_rs_softc	*rs;
	struct ptnet_rs_info	 info;
	struct ptnrs_queue	*queues;	/* TX rings, then RX rings */
	uint32_t		 nqueues;
	/* The memdev and netmap's guest allocator over it. */
	struct ptnetmap_memdev	*memdev;
	int			 nm_attached;
	int			 nm_finalized;
	int			 was_up;	/* across suspend */
	struct callout		 tick;		/* once a second while up */
	struct task		 tick_task;
};

/* ---- The table the archive calls back through. ---- */

static uint32_t
ptnrs_bar_read4(void *dev, uint32_t off)
{
	struct ptnrs_softc *sc = dev;

	return (bus_read_4(sc->iobar, off));
}

static void
ptnrs_bar_write4(void *dev, uint32_t off, uint32_t val)
{
	struct ptnrs_softc *sc = dev;

	bus_write_4(sc->iobar, off, val);
}

static uint32_t
ptnrs_memdev_read4(void *handle, uint32_t off)
{

	return (nm_os_pt_memdev_ioread(handle, off));
}

/*
 * The memdev exporting host memory q->memid, among those netmap's
 * ptnetmap-memdev driver attached.
 */
static struct ptnetmap_memdev *
ptnrs_memdev_lookup(uint32_t memid)
{
	devclass_t dc;
	device_t md;
	struct ptnetmap_memdev *pd;
	int unit;

	dc = devclass_find(PTNETMAP_MEMDEV_NAME);
	if (dc == NULL)
		return (NULL);
	for (unit = 0; unit <= devclass_get_maxunit(dc); unit++) {
		md = devclass_get_device(dc, unit);
		if (md == NULL || !device_is_attached(md))
			continue;
		pd = device_get_softc(md);
		if (nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_MEMID) == memid)
			return (pd);
	}
	return (NULL);
}

static int ptnrs_nm_register(struct netmap_adapter *, int);
static int ptnrs_nm_txsync(struct netmap_kring *, int);
static int ptnrs_nm_rxsync(struct netmap_kring *, int);
static int ptnrs_nm_config(struct netmap_adapter *, struct nm_config_info *);
static void ptnrs_nm_intr(struct netmap_adapter *, int);

/*
 * Registers the port with netmap (its guest allocator over the memdev)
 * and has netmap map the host memory; the archive gets the mapping.
 */
static int
ptnrs_memdev_find(void *dev, const struct ptnet_rs_memdev_query *q,
    struct ptnet_rs_memdev *out)
{
	struct ptnrs_softc *sc = dev;
	struct netmap_adapter na;
	struct netmap_adapter *nap;
	struct netmap_lut lut;
	uint64_t size;
	uint32_t buf_ofs;
	int error;

	sc->memdev = ptnrs_memdev_lookup(q->memid);
	if (sc->memdev == NULL)
		return (ENXIO);

	bzero(&na, sizeof(na));
	na.ifp = sc->ifp;
	na.num_tx_desc = q->num_tx_slots;
	na.num_rx_desc = q->num_rx_slots;
	na.num_tx_rings = q->num_tx_rings;
	na.num_rx_rings = q->num_rx_rings;
	na.rx_buf_maxsize = nm_os_pt_memdev_ioread(sc->memdev,
	    PTNET_MDEV_IO_BUF_POOL_OBJSZ);
	na.nm_register = ptnrs_nm_register;
	na.nm_txsync = ptnrs_nm_txsync;
	na.nm_rxsync = ptnrs_nm_rxsync;
	na.nm_config = ptnrs_nm_config;
	na.nm_intr = ptnrs_nm_intr;
	na.nm_krings_create = ptnet_nm_krings_create;
	na.nm_krings_delete = ptnet_nm_krings_delete;
	na.nm_dtor = ptnet_nm_dtor;
	error = netmap_pt_guest_attach(&na, q->nifp_ofs, q->memid);
	if (error != 0)
		return (error);
	sc->nm_attached = 1;

	nap = NA(sc->ifp);
	error = netmap_mem_finalize(nap->nm_mem, nap);
	if (error != 0)
		return (error);
	sc->nm_finalized = 1;
	error = netmap_mem_get_lut(nap->nm_mem, &lut);
	if (error != 0 || lut.lut == NULL || lut.objtotal == 0)
		return (error != 0 ? error : ENXIO);

	/* Buffer 0 sits at BUF_POOL_OFS from the start of the memory. */
	buf_ofs = nm_os_pt_memdev_ioread(sc->memdev, PTNET_MDEV_IO_BUF_POOL_OFS);
	size = ((uint64_t)nm_os_pt_memdev_ioread(sc->memdev,
	    PTNET_MDEV_IO_MEMSIZE_HI) << 32) |
	    nm_os_pt_memdev_ioread(sc->memdev, PTNET_MDEV_IO_MEMSIZE_LO);
	out->handle = sc->memdev;
	out->base = (uint8_t *)lut.lut[0].vaddr - buf_ofs;
	out->size = size;
	return (0);
}

static void
ptnrs_memdev_release(void *dev, const struct ptnet_rs_memdev *m __unused)
{
	struct ptnrs_softc *sc = dev;

	if (sc->nm_finalized) {
		netmap_mem_deref(NA(sc->ifp)->nm_mem, NA(sc->ifp));
		sc->nm_finalized = 0;
	}
}

static void *
ptnrs_dma_alloc(void *dev __unused, size_t size, size_t align, uint64_t *paddr)
{
	void *va;

	va = contigmalloc(size, M_DEVBUF, M_NOWAIT | M_ZERO, 0,
	    ~(vm_paddr_t)0, align, 0);
	if (va != NULL)
		*paddr = vtophys(va);
	return (va);
}

static void
ptnrs_dma_free(void *dev __unused, void *va, size_t size)
{

	contigfree(va, size, M_DEVBUF);
}

static void *
ptnrs_mem_alloc(size_t size)
{

	return (malloc(size, M_DEVBUF, M_NOWAIT | M_ZERO));
}

static void
ptnrs_mem_free(void *p)
{

	free(p, M_DEVBUF);
}

static void
ptnrs_log(void *dev, int level, const uint8_t *msg, size_t len)
{
	struct ptnrs_softc *sc = dev;
	static const char *tags[] = { "error: ", "warning: ", "" };
	const char *tag = tags[level >= 0 && level <= 2 ? level : 0];

	if (sc != NULL)
		device_printf(sc->dev, "%s%.*s\n", tag, (int)len, msg);
	else
		printf("ptnrs: %s%.*s\n", tag, (int)len, msg);
}

static void
ptnrs_panic(const uint8_t *msg, size_t len)
{

	panic("%.*s", (int)len, msg);
}

static void
ptnrs_m_info(struct mbuf *m, struct ptnet_rs_pktinfo *out)
{

	out->len = m->m_pkthdr.len;
	out->csum_flags = m->m_pkthdr.csum_flags;
	out->tso_segsz = m->m_pkthdr.tso_segsz;
	out->has_vlan = (m->m_flags & M_VLANTAG) != 0;
	out->vlan = m->m_pkthdr.ether_vtag;
	out->has_flowid = M_HASHTYPE_GET(m) != M_HASHTYPE_NONE;
	out->flowid = m->m_pkthdr.flowid;
}

static int
ptnrs_m_copydata(struct mbuf *m, uint32_t off, uint32_t len, uint8_t *dst)
{

	/* m_copydata() panics on a short chain: check first. */
	if ((uint64_t)off + len > (uint64_t)m->m_pkthdr.len)
		return (EINVAL);
	m_copydata(m, off, len, (caddr_t)dst);
	return (0);
}

static void
ptnrs_m_free(struct mbuf *m)
{

	m_freem(m);
}

/* A chain of clusters with room for `len` bytes, empty. */
static struct mbuf *
ptnrs_rx_alloc(void *dev __unused, uint32_t len)
{

	return (m_getm2(NULL, len, M_NOWAIT, MT_DATA, M_PKTHDR));
}

static int
ptnrs_rx_append(struct mbuf *m, const uint8_t *src, uint32_t len)
{
	struct mbuf *n;
	uint32_t c;

	for (n = m; n->m_next != NULL && M_TRAILINGSPACE(n) == 0; n = n->m_next)
		;
	while (len > 0 && n != NULL) {
		c = min(len, M_TRAILINGSPACE(n));
		memcpy(mtod(n, uint8_t *) + n->m_len, src, c);
		n->m_len += c;
		m->m_pkthdr.len += c;
		src += c;
		len -= c;
		if (len > 0)
			n = n->m_next;
	}
	return (len == 0 ? 0 : ENOBUFS);
}

static void
ptnrs_rx_input(void *dev, struct mbuf *m, const struct ptnet_rs_rxinfo *info)
{
	struct ptnrs_softc *sc = dev;
	struct mbuf *n;

	/* Drop the clusters the frame did not need. */
	for (n = m; n->m_next != NULL && n->m_next->m_len > 0; n = n->m_next)
		;
	if (n->m_next != NULL) {
		m_freem(n->m_next);
		n->m_next = NULL;
	}
	m->m_pkthdr.rcvif = sc->ifp;
	m->m_pkthdr.csum_flags = info->csum_flags;
	m->m_pkthdr.csum_data = info->csum_data;
	if (info->lro_nsegs > 1)
		m->m_pkthdr.lro_nsegs = info->lro_nsegs;
	m->m_pkthdr.flowid = info->ring;
	M_HASHTYPE_SET(m, M_HASHTYPE_OPAQUE);
	if_input(sc->ifp, m);
}

static const struct ptnet_shim_ops ptnrs_ops = {
	.bar_read4 = ptnrs_bar_read4,
	.bar_write4 = ptnrs_bar_write4,
	.memdev_find = ptnrs_memdev_find,
	.memdev_read4 = ptnrs_memdev_read4,
	.memdev_release = ptnrs_memdev_release,
	.dma_alloc = ptnrs_dma_alloc,
	.dma_free = ptnrs_dma_free,
	.mem_alloc = ptnrs_mem_alloc,
	.mem_free = ptnrs_mem_free,
	.log = ptnrs_log,
	.panic = ptnrs_panic,
	.m_info = ptnrs_m_info,
	.m_copydata = ptnrs_m_copydata,
	.m_free = ptnrs_m_free,
	.rx_alloc = ptnrs_rx_alloc,
	.rx_append = ptnrs_rx_append,
	.rx_input = ptnrs_rx_input,
};

/* ---- Interrupts and tasks. ---- */

static void
ptnrs_task(void *arg, int pending __unused)
{
	struct ptnrs_queue *q = arg;
	struct ptnrs_softc *sc = q->sc;

	if (q->is_rx) {
		if (ptnet_rs_rx_task(sc->rs, q->ring, PTNRS_RX_BUDGET) == 1)
			taskqueue_enqueue(q->tq, &q->task);
	} else {
		ptnet_rs_tx_task(sc->rs, q->ring);
	}
}

static void
ptnrs_intr(void *arg)
{
	struct ptnrs_queue *q = arg;
	struct ptnrs_softc *sc = q->sc;
	uint32_t vector = q - sc->queues;
	uint32_t is_rx, ring;
	u_int work;

	switch (ptnet_rs_intr(sc->rs, vector, &is_rx, &ring)) {
	case PTNET_RS_INTR_NETMAP:
		if (is_rx)
			netmap_rx_irq(sc->ifp, ring, &work);
		else
			netmap_tx_irq(sc->ifp, ring);
		break;
	case PTNET_RS_INTR_TASK:
		taskqueue_enqueue(q->tq, &q->task);
		break;
	default:
		break;
	}
}

static void
ptnrs_queues_teardown(struct ptnrs_softc *sc)
{
	struct ptnrs_queue *q;
	uint32_t i;

	for (i = 0; i < sc->nqueues; i++) {
		q = &sc->queues[i];
		if (q->irq_cookie != NULL)
			bus_teardown_intr(sc->dev, q->irq, q->irq_cookie);
		if (q->irq != NULL)
			bus_release_resource(sc->dev, SYS_RES_IRQ, q->irq_rid,
			    q->irq);
		if (q->tq != NULL) {
			taskqueue_drain(q->tq, &q->task);
			taskqueue_free(q->tq);
		}
	}
	free(sc->queues, M_DEVBUF);
	sc->queues = NULL;
	sc->nqueues = 0;
}

static int
ptnrs_queues_setup(struct ptnrs_softc *sc)
{
	struct ptnrs_queue *q;
	uint32_t i, ntx = sc->info.num_tx_rings;
	int error;

	sc->nqueues = ntx + sc->info.num_rx_rings;
	sc->queues = malloc(sizeof(*q) * sc->nqueues, M_DEVBUF,
	    M_WAITOK | M_ZERO);
	for (i = 0; i < sc->nqueues; i++) {
		q = &sc->queues[i];
		q->sc = sc;
		q->is_rx = i >= ntx;
		q->ring = q->is_rx ? i - ntx : i;
		TASK_INIT(&q->task, 0, ptnrs_task, q);
		q->tq = taskqueue_create_fast("ptnrs_q", M_WAITOK,
		    taskqueue_thread_enqueue, &q->tq);
		taskqueue_start_threads(&q->tq, 1, PI_NET, "%s %cxq%u",
		    device_get_nameunit(sc->dev), q->is_rx ? 'r' : 't',
		    q->ring);
		q->irq_rid = i + 1;
		q->irq = bus_alloc_resource_any(sc->dev, SYS_RES_IRQ,
		    &q->irq_rid, RF_ACTIVE);
		if (q->irq == NULL)
			return (ENXIO);
		error = bus_setup_intr(sc->dev, q->irq,
		    INTR_TYPE_NET | INTR_MPSAFE, NULL, ptnrs_intr, q,
		    &q->irq_cookie);
		if (error != 0)
			return (error);
		bus_describe_intr(sc->dev, q->irq, q->irq_cookie, "%cxq%u",
		    q->is_rx ? 'r' : 't', q->ring);
	}
	return (0);
}

/* ---- The watchdogs: stalled transmit rings, lost receive interrupts. ---- */

static void
ptnrs_tick_task(void *arg, int pending __unused)
{
	struct ptnrs_softc *sc = arg;
	struct ptnrs_queue *q;
	uint64_t now_ms = (uint64_t)ticks * 1000 / hz;
	uint32_t i;

	/* Stop drains this task holding the lock: never wait for it here. */
	if (!sx_try_xlock(&sc->lock))
		return;
	if (if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING) {
		/* Packets waited 5 s for a host that took nothing: restart it. */
		if (ptnet_rs_tick(sc->rs, now_ms, PTNRS_TX_TIMEOUT_MS) > 0)
			(void)ptnet_rs_restart(sc->rs);
		/* Frames whose interrupt the host lost: receive them now. */
		for (i = sc->info.num_tx_rings; i < sc->nqueues; i++) {
			q = &sc->queues[i];
			if (ptnet_rs_rx_watchdog(sc->rs, q->ring) == 1)
				taskqueue_enqueue(q->tq, &q->task);
		}
	}
	sx_xunlock(&sc->lock);
}

static void
ptnrs_tick(void *arg)
{
	struct ptnrs_softc *sc = arg;

	taskqueue_enqueue(taskqueue_thread, &sc->tick_task);
	callout_reset(&sc->tick, hz, ptnrs_tick, sc);
}

/* ---- ifnet. ---- */

static void
ptnrs_apply_caps(struct ptnrs_softc *sc)
{
	struct ptnet_rs_caps c;

	if (ptnet_rs_caps(sc->rs, &c) != 0)
		return;
	/* IFCAP_NETMAP belongs to netmap. */
	if_setcapabilities(sc->ifp, c.supported |
	    (if_getcapabilities(sc->ifp) & IFCAP_NETMAP));
	if_setcapenable(sc->ifp, c.enabled |
	    (if_getcapenable(sc->ifp) & IFCAP_NETMAP));
	if_sethwassist(sc->ifp, c.hwassist);
	if_setmtu(sc->ifp, c.mtu);
}

static int
ptnrs_init_locked(struct ptnrs_softc *sc)
{
	uint32_t i;
	int error;

	sx_assert(&sc->lock, SA_XLOCKED);
	if (if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING)
		return (0);
	error = ptnet_rs_if_init(sc->rs);
	if (error != 0)
		return (error);
	if_setdrvflagbits(sc->ifp, IFF_DRV_RUNNING, 0);
	callout_reset(&sc->tick, hz, ptnrs_tick, sc);
	/* Whatever arrived while down. */
	for (i = sc->info.num_tx_rings; i < sc->nqueues; i++)
		taskqueue_enqueue(sc->queues[i].tq, &sc->queues[i].task);
	return (0);
}

static void
ptnrs_init(void *arg)
{
	struct ptnrs_softc *sc = arg;

	sx_xlock(&sc->lock);
	(void)ptnrs_init_locked(sc);
	sx_xunlock(&sc->lock);
}

static int
ptnrs_stop_locked(struct ptnrs_softc *sc)
{
	uint32_t i;
	int error;

	sx_assert(&sc->lock, SA_XLOCKED);
	if ((if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING) == 0)
		return (0);
	if_setdrvflagbits(sc->ifp, 0, IFF_DRV_RUNNING);
	callout_drain(&sc->tick);
	taskqueue_drain(taskqueue_thread, &sc->tick_task);
	error = ptnet_rs_if_stop(sc->rs);
	for (i = 0; i < sc->nqueues; i++)
		taskqueue_drain(sc->queues[i].tq, &sc->queues[i].task);
	return (error);
}

static int
ptnrs_ioctl(if_t ifp, u_long cmd, caddr_t data)
{
	struct ptnrs_softc *sc = if_getsoftc(ifp);
	struct ifreq *ifr = (struct ifreq *)data;
	int error = 0;

	switch (cmd) {
	case SIOCSIFFLAGS:
		sx_xlock(&sc->lock);
		if (if_getflags(ifp) & IFF_UP)
			error = ptnrs_init_locked(sc);
		else
			error = ptnrs_stop_locked(sc);
		sx_xunlock(&sc->lock);
		break;
	case SIOCSIFMTU:
		sx_xlock(&sc->lock);
		error = ptnet_rs_set_mtu(sc->rs, ifr->ifr_mtu);
		if (error == 0)
			if_setmtu(ifp, ifr->ifr_mtu);
		sx_xunlock(&sc->lock);
		break;
	case SIOCSIFCAP:
		sx_xlock(&sc->lock);
		error = ptnet_rs_set_caps(sc->rs, ifr->ifr_reqcap);
		ptnrs_apply_caps(sc);
		sx_xunlock(&sc->lock);
		VLAN_CAPABILITIES(ifp);
		break;
	case SIOCADDMULTI:
	case SIOCDELMULTI:
		/* The host port receives everything for our address. */
		break;
	case SIOCSIFMEDIA:
	case SIOCGIFMEDIA:
		error = ifmedia_ioctl(ifp, ifr, &sc->media, cmd);
		break;
	default:
		error = ether_ioctl(ifp, cmd, data);
		break;
	}
	return (error);
}

static int
ptnrs_transmit(if_t ifp, struct mbuf *m)
{
	struct ptnrs_softc *sc = if_getsoftc(ifp);

	return (ptnet_rs_transmit(sc->rs, m));
}

static void
ptnrs_qflush(if_t ifp)
{
	struct ptnrs_softc *sc = if_getsoftc(ifp);

	ptnet_rs_qflush(sc->rs);
	if_qflush(ifp);
}

static uint64_t
ptnrs_get_counter(if_t ifp, ift_counter cnt)
{
	struct ptnrs_softc *sc = if_getsoftc(ifp);
	struct ptnet_rs_if_counters c;

	if (ptnet_rs_counters(sc->rs, &c) != 0)
		return (if_get_counter_default(ifp, cnt));
	switch (cnt) {
	case IFCOUNTER_IPACKETS:
		return (c.ipackets);
	case IFCOUNTER_IBYTES:
		return (c.ibytes);
	case IFCOUNTER_IERRORS:
		return (c.ierrors);
	case IFCOUNTER_IQDROPS:
		return (c.iqdrops);
	case IFCOUNTER_OPACKETS:
		return (c.opackets);
	case IFCOUNTER_OBYTES:
		return (c.obytes);
	case IFCOUNTER_OERRORS:
		return (c.oerrors);
	case IFCOUNTER_OQDROPS:
		return (c.oqdrops);
	default:
		return (if_get_counter_default(ifp, cnt));
	}
}

static int
ptnrs_media_change(if_t ifp __unused)
{

	return (0);
}

static void
ptnrs_media_status(if_t ifp, struct ifmediareq *ifmr)
{

	ifmr->ifm_status = IFM_AVALID;
	ifmr->ifm_active = IFM_ETHER | IFM_10G_T | IFM_FDX;
	if (if_getdrvflags(ifp) & IFF_DRV_RUNNING)
		ifmr->ifm_status |= IFM_ACTIVE;
}

/* ---- netmap native mode: the host's rings, straight to applications. ---- */

static struct ptnrs_softc *
ptnrs_na_softc(struct netmap_adapter *na)
{

	return (if_getsoftc(na->ifp));
}

static int
ptnrs_nm_register(struct netmap_adapter *na, int onoff)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(na);
	struct ptnet_rs_kring k;
	struct netmap_kring *kring;
	enum txrx t;
	uint32_t i;
	int error;

	sx_xlock(&sc->lock);
	if (onoff) {
		error = ptnet_rs_nm_register(sc->rs, 1);
		if (error == 0) {
			for_rx_tx(t) {
				for (i = 0; i < nma_get_nrings(na, t); i++) {
					kring = NMR(na, t)[i];
					if (ptnet_rs_nm_kring(sc->rs, t == NR_RX,
					    i, &k) != 0)
						continue;
					kring->nr_hwcur = k.hwcur;
					kring->nr_hwtail = kring->rtail = k.hwtail;
					kring->rhead = kring->rcur = k.hwcur;
				}
			}
			netmap_krings_mode_commit(na, 1);
			nm_set_native_flags(na);
		}
	} else {
		nm_clear_native_flags(na);
		netmap_krings_mode_commit(na, 0);
		error = ptnet_rs_nm_register(sc->rs, 0);
	}
	sx_xunlock(&sc->lock);
	return (error);
}

static int
ptnrs_nm_sync(struct netmap_kring *kring, int flags, uint32_t is_rx)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(kring->na);
	struct ptnet_rs_kring k;
	int error;

	k.num_slots = kring->nkr_num_slots;
	k.hwcur = kring->nr_hwcur;
	k.hwtail = kring->nr_hwtail;
	k.rhead = kring->rhead;
	k.rcur = kring->rcur;
	error = ptnet_rs_nm_sync(sc->rs, is_rx, kring->ring_id, &k,
	    (flags & NAF_FORCE_RECLAIM) ? PTNET_RS_SYNC_FORCE_RECLAIM : 0);
	kring->nr_hwcur = k.hwcur;
	kring->nr_hwtail = k.hwtail;
	return (error);
}

static int
ptnrs_nm_txsync(struct netmap_kring *kring, int flags)
{

	return (ptnrs_nm_sync(kring, flags, 0));
}

static int
ptnrs_nm_rxsync(struct netmap_kring *kring, int flags)
{

	return (ptnrs_nm_sync(kring, flags, 1));
}

static int
ptnrs_nm_config(struct netmap_adapter *na, struct nm_config_info *info)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(na);

	info->num_tx_rings = sc->info.num_tx_rings;
	info->num_rx_rings = sc->info.num_rx_rings;
	info->num_tx_descs = sc->info.num_tx_slots;
	info->num_rx_descs = sc->info.num_rx_slots;
	info->rx_buf_maxsize = sc->info.buf_size;
	return (0);
}

static void
ptnrs_nm_intr(struct netmap_adapter *na __unused, int onoff __unused)
{
	/* Interrupts follow the rings' users in the archive. */
}

/* ---- sysctl dev.ptnrs.<unit>.{tx,rx}q<N>.* ---- */

static int
ptnrs_sysctl_queue(SYSCTL_HANDLER_ARGS)
{
	struct ptnrs_queue *q = arg1;
	struct ptnet_rs_queue_stats st;
	uint64_t val;

	if (ptnet_rs_queue_stats(q->sc->rs, q->is_rx, q->ring, &st) != 0)
		return (ENXIO);
	memcpy(&val, (uint8_t *)&st + arg2, sizeof(val));
	return (sysctl_handle_64(oidp, &val, 0, req));
}

static void
ptnrs_sysctl_setup(struct ptnrs_softc *sc)
{
	static const struct {
		const char *name;
		size_t off;
		const char *tx, *rx;
	} fields[] = {
	    { "packets", offsetof(struct ptnet_rs_queue_stats, packets),
	      "Packets sent", "Packets received" },
	    { "bytes", offsetof(struct ptnet_rs_queue_stats, bytes),
	      "Bytes sent", "Bytes received" },
	    { "errors", offsetof(struct ptnet_rs_queue_stats, errors),
	      "Packets refused (bad offload request)",
	      "Frames dropped for bad slots or headers" },
	    { "drops", offsetof(struct ptnet_rs_queue_stats, drops),
	      "Packets dropped (queue full, interface down, watchdog)",
	      "Frames dropped for lack of mbufs" },
	    { "csum", offsetof(struct ptnet_rs_queue_stats, csum),
	      "Packets sent with checksum offload",
	      "Checksums completed in software" },
	    { "tso_lro", offsetof(struct ptnet_rs_queue_stats, tso_lro),
	      "Packets sent with TSO", "Frames received as LRO" },
	    { "syncs", offsetof(struct ptnet_rs_queue_stats, syncs),
	      "Ring syncs", "Ring syncs" },
	    { "kicks", offsetof(struct ptnet_rs_queue_stats, kicks),
	      "Kicks to the host", "Kicks to the host" },
	    { "irqs", offsetof(struct ptnet_rs_queue_stats, irqs),
	      "Interrupts", "Interrupts" },
	    { "host_errors", offsetof(struct ptnet_rs_queue_stats, host_errors),
	      "Inconsistent ring updates from the host (refused)",
	      "Inconsistent ring updates from the host (refused)" },
	    { "queued", offsetof(struct ptnet_rs_queue_stats, queued),
	      "Packets waiting in the software queue", "Always 0" },
	    { "watchdog", offsetof(struct ptnet_rs_queue_stats, watchdog),
	      "Watchdog timeouts (host took nothing; queue freed)",
	      "Lost interrupts found by the watchdog" },
	};
	struct sysctl_ctx_list *ctx = device_get_sysctl_ctx(sc->dev);
	struct sysctl_oid *tree = device_get_sysctl_tree(sc->dev);
	struct sysctl_oid *node;
	struct ptnrs_queue *q;
	char name[16];
	uint32_t i, f;

	for (i = 0; i < sc->nqueues; i++) {
		q = &sc->queues[i];
		snprintf(name, sizeof(name), "%cxq%u", q->is_rx ? 'r' : 't',
		    q->ring);
		node = SYSCTL_ADD_NODE(ctx, SYSCTL_CHILDREN(tree), OID_AUTO,
		    name, CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, "Ring counters");
		for (f = 0; f < nitems(fields); f++)
			SYSCTL_ADD_PROC(ctx, SYSCTL_CHILDREN(node), OID_AUTO,
			    fields[f].name,
			    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, q,
			    fields[f].off, ptnrs_sysctl_queue, "QU",
			    q->is_rx ? fields[f].rx : fields[f].tx);
	}
}

/* ---- newbus. ---- */

static int
ptnrs_probe(device_t dev)
{

	if (ptnet_rs_probe(pci_get_vendor(dev), pci_get_device(dev)) != 0)
		return (ENXIO);
	device_set_desc(dev, "ptnet (netmap passthrough) NIC, Rust driver");
	return (BUS_PROBE_VENDOR);
}

static int ptnrs_detach(device_t);

static int
ptnrs_attach(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);
	uint32_t flags = ptnrs_vnet_hdr ? PTNET_RS_WANT_VNET_HDR : 0;
	int rid, error, nvec;

	sc->dev = dev;
	sx_init(&sc->lock, device_get_nameunit(dev));
	callout_init(&sc->tick, 1);
	TASK_INIT(&sc->tick_task, 0, ptnrs_tick_task, sc);
	pci_enable_busmaster(dev);

	rid = PCIR_BAR(PTNETMAP_IO_PCI_BAR);
	sc->iobar = bus_alloc_resource_any(dev, SYS_RES_IOPORT, &rid,
	    RF_ACTIVE);
	rid = PTNRS_MSIX_BAR;
	sc->msix_bar = bus_alloc_resource_any(dev, SYS_RES_MEMORY, &rid,
	    RF_ACTIVE);
	if (sc->iobar == NULL || sc->msix_bar == NULL) {
		device_printf(dev, "cannot map the I/O or MSI-X BAR\n");
		error = ENXIO;
		goto fail;
	}
	nvec = pci_msix_count(dev);
	if (nvec <= 0 || pci_alloc_msix(dev, &nvec) != 0) {
		device_printf(dev, "cannot allocate MSI-X vectors\n");
		error = ENXIO;
		goto fail;
	}
	sc->msix_alloc = 1;

	/*
	 * netmap registers against the ifnet (and saves its transmit
	 * function), so the ifnet is complete before the archive attaches.
	 */
	sc->ifp = if_alloc(IFT_ETHER);
	if_initname(sc->ifp, device_get_name(dev), device_get_unit(dev));
	if_setsoftc(sc->ifp, sc);
	if_setflags(sc->ifp, IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST);
	if_setbaudrate(sc->ifp, IF_Gbps(10));
	if_setinitfn(sc->ifp, ptnrs_init);
	if_setioctlfn(sc->ifp, ptnrs_ioctl);
	if_settransmitfn(sc->ifp, ptnrs_transmit);
	if_setqflushfn(sc->ifp, ptnrs_qflush);
	if_setget_counter(sc->ifp, ptnrs_get_counter);

	error = ptnet_rs_attach(sc, nvec, flags, &sc->rs);
	if (error != 0)
		goto fail;
	ptnet_rs_info(sc->rs, &sc->info);
	error = ptnrs_queues_setup(sc);
	if (error != 0)
		goto fail;

	ifmedia_init(&sc->media, 0, ptnrs_media_change, ptnrs_media_status);
	ifmedia_add(&sc->media, IFM_ETHER | IFM_10G_T | IFM_FDX, 0, NULL);
	ifmedia_set(&sc->media, IFM_ETHER | IFM_10G_T | IFM_FDX);
	ether_ifattach(sc->ifp, sc->info.mac);
	if_setifheaderlen(sc->ifp, sizeof(struct ether_vlan_header));
	ptnrs_apply_caps(sc);
	ptnrs_sysctl_setup(sc);
	return (0);
fail:
	ptnrs_detach(dev);
	return (error);
}

static int
ptnrs_detach(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);
	int error;

	if (sc->rs != NULL) {
		/* Refused while a netmap application holds the rings. */
		if (sc->nm_attached && NA(sc->ifp)->active_fds > 0)
			return (EBUSY);
		sx_xlock(&sc->lock);
		(void)ptnrs_stop_locked(sc);
		sx_xunlock(&sc->lock);
		/* The stack first, so no transmit runs on a detached device. */
		if (device_is_attached(dev))
			ether_ifdetach(sc->ifp);
		ifmedia_removeall(&sc->media);
	}
	/* No interrupt or task runs past this. */
	ptnrs_queues_teardown(sc);
	if (sc->rs != NULL) {
		error = ptnet_rs_detach(sc->rs);
		if (error != 0)
			device_printf(dev, "detach: error %d\n", error);
		sc->rs = NULL;
	}
	if (sc->nm_attached)
		netmap_detach(sc->ifp);
	if (sc->ifp != NULL)
		if_free(sc->ifp);
	if (sc->msix_alloc)
		pci_release_msi(dev);
	if (sc->msix_bar != NULL)
		bus_release_resource(dev, SYS_RES_MEMORY, PTNRS_MSIX_BAR,
		    sc->msix_bar);
	if (sc->iobar != NULL)
		bus_release_resource(dev, SYS_RES_IOPORT,
		    PCIR_BAR(PTNETMAP_IO_PCI_BAR), sc->iobar);
	sx_destroy(&sc->lock);
	return (0);
}

static int
ptnrs_shutdown(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);

	sx_xlock(&sc->lock);
	(void)ptnrs_stop_locked(sc);
	sx_xunlock(&sc->lock);
	return (0);
}

static int
ptnrs_suspend(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);

	sx_xlock(&sc->lock);
	sc->was_up = (if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING) != 0;
	(void)ptnrs_stop_locked(sc);
	sx_xunlock(&sc->lock);
	return (0);
}

static int
ptnrs_resume(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);
	int error = 0;

	sx_xlock(&sc->lock);
	/* The host may have been restarted: hand it our ring state again. */
	(void)ptnet_rs_restart(sc->rs);
	if (sc->was_up)
		error = ptnrs_init_locked(sc);
	sx_xunlock(&sc->lock);
	return (error);
}

static device_method_t ptnrs_methods[] = {
	DEVMETHOD(device_probe,		ptnrs_probe),
	DEVMETHOD(device_attach,	ptnrs_attach),
	DEVMETHOD(device_detach,	ptnrs_detach),
	DEVMETHOD(device_shutdown,	ptnrs_shutdown),
	DEVMETHOD(device_suspend,	ptnrs_suspend),
	DEVMETHOD(device_resume,	ptnrs_resume),
	DEVMETHOD_END
};

static driver_t ptnrs_driver = {
	"ptnrs",
	ptnrs_methods,
	sizeof(struct ptnrs_softc),
};

static int
ptnrs_modevent(module_t mod __unused, int what, void *arg __unused)
{

	switch (what) {
	case MOD_LOAD:
		return (ptnet_rs_init(&ptnrs_ops));
	case MOD_UNLOAD:
		return (0);
	default:
		return (EOPNOTSUPP);
	}
}

DRIVER_MODULE(ptnrs, pci, ptnrs_driver, ptnrs_modevent, NULL);
MODULE_VERSION(ptnrs, 1);
MODULE_DEPEND(ptnrs, pci, 1, 1, 1);
MODULE_DEPEND(ptnrs, ether, 1, 1, 1);
MODULE_DEPEND(ptnrs, netmap, 1, 1, 1);
