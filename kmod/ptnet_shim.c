/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * ptnrs: the FreeBSD glue of the Rust ptnet driver.
 *
 * Everything that decides something lives in the Rust archive
 * (ptnet_rs.h); this file only speaks the kernel's interfaces: newbus and
 * PCI resources, MSI-X, contiguous memory, mutexes, ifnet, mbufs, BPF,
 * taskqueues, callouts, sysctl and the netmap adapter. The archive calls
 * back through the function table `ptnrs_ops`, registered at module load.
 *
 * Two builds:
 *
 * - The default build runs on a stock GENERIC kernel (FreeBSD 13 and
 *   later build netmap without WITH_PTNETMAP: no ptnetmap guest code, no
 *   ptnetmap-memdev driver). The module has its own driver for the memdev
 *   (ptnrsmem) and maps the host memory itself; netmap applications use
 *   netmap's own allocator and the driver copies between its buffers and
 *   the host's.
 * - With WITH_PTNETMAP (make WITH_PTNETMAP=1, for kernels built with
 *   -DWITH_PTNETMAP), the memdev stays with netmap's ptnetmap-memdev
 *   driver and netmap's guest allocator hands applications the host's
 *   rings and buffers themselves: zero copy.
 *
 * The NIC is claimed with a probe priority above the C driver's
 * (BUS_PROBE_VENDOR against BUS_PROBE_DEFAULT), which matters where that
 * driver exists (kernels built with WITH_PTNETMAP).
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
#include <sys/mutex.h>
#include <sys/rman.h>
#include <sys/socket.h>
#include <sys/sockio.h>
#include <sys/sx.h>
#include <sys/sysctl.h>
#include <sys/taskqueue.h>
#include <sys/time.h>

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

#define PTNRS_MSIX_BAR		PCIR_BAR(PTNETMAP_MSIX_PCI_BAR)
#define PTNRS_RX_BUDGET		64
#define PTNRS_TX_TIMEOUT_MS	5000
#define PTNRS_MAX_BUF_SIZE	65536	/* until nm_config knows the host's */

static MALLOC_DEFINE(M_PTNRS, "ptnrs", "ptnrs (Rust ptnet driver)");

static SYSCTL_NODE(_hw, OID_AUTO, ptnrs, CTLFLAG_RD | CTLFLAG_MPSAFE, 0,
    "ptnrs (Rust ptnet driver) parameters");

static int ptnrs_vnet_hdr = 1;
SYSCTL_INT(_hw_ptnrs, OID_AUTO, vnet_hdr, CTLFLAG_RDTUN, &ptnrs_vnet_hdr, 0,
    "Ask the host for the virtio-net header (checksum, TSO and LRO offloads)");

/* The archive's table is registered: devices may attach. */
static int ptnrs_ready;

struct ptnrs_softc;

struct ptnrs_queue {
	struct ptnrs_softc	*sc;
	uint32_t		 ring;		/* index within its direction */
	uint32_t		 is_rx;
	uint32_t		 vector;	/* TX rings first, then RX */
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
	/* Init, stop, ioctl, netmap registration, detach. */
	struct sx		 lock;
	struct resource		*iobar;
	struct resource		*msix_bar;
	int			 msix_alloc;
	struct ptnet_rs_softc	*rs;
	struct ptnet_rs_info	 info;
	struct ptnrs_queue	*queues;	/* TX rings, then RX rings */
	uint32_t		 nqueues;
	int			 ether_attached;
	int			 nm_attached;
	int			 detaching;	/* no new netmap client */
	int			 was_up;	/* across suspend */
	struct callout		 tick;		/* once a second while up */
	struct task		 tick_task;
	/* The per-queue sysctl nodes, removed before the queues go. */
	struct sysctl_ctx_list	 qctx;
};

/* ---- The host memory behind the NIC: the ptnetmap memdev. ---- */

#ifndef WITH_PTNETMAP
/*
 * A stock kernel has no driver for the memdev: this module brings its
 * own. It maps the host's netmap memory (write-back: it is the host's
 * RAM) and lends it to the NICs that use it; its detach is refused while
 * one does.
 */
struct ptnrsmem_softc {
	device_t		 dev;
	struct resource		*iobar;
	struct resource		*membar;
	struct resource_map	 map;
	int			 mapped;
	uint32_t		 memid;
	u_int			 users;		/* under ptnrsmem_mtx */
};

static struct mtx ptnrsmem_mtx;
MTX_SYSINIT(ptnrsmem, &ptnrsmem_mtx, "ptnrs memdev users", MTX_DEF);

static devclass_t ptnrsmem_devclass(void);

static int
ptnrsmem_find(void *dev __unused, uint32_t memid, struct ptnet_rs_memdev *out)
{
	struct ptnrsmem_softc *msc;
	devclass_t dc;
	device_t md;
	int unit, error = ENXIO;

	dc = ptnrsmem_devclass();
	if (dc == NULL)
		return (ENXIO);
	mtx_lock(&ptnrsmem_mtx);
	for (unit = 0; unit <= devclass_get_maxunit(dc); unit++) {
		md = devclass_get_device(dc, unit);
		if (md == NULL || !device_is_attached(md))
			continue;
		msc = device_get_softc(md);
		if (msc->memid != memid)
			continue;
		msc->users++;
		out->handle = msc;
		out->base = msc->map.r_vaddr;
		out->size = msc->map.r_size;
		error = 0;
		break;
	}
	mtx_unlock(&ptnrsmem_mtx);
	return (error);
}

static uint32_t
ptnrsmem_read4(void *handle, uint32_t off)
{
	struct ptnrsmem_softc *msc = handle;

	return (bus_read_4(msc->iobar, off));
}

static void
ptnrsmem_release(void *dev __unused, const struct ptnet_rs_memdev *m)
{
	struct ptnrsmem_softc *msc = m->handle;

	mtx_lock(&ptnrsmem_mtx);
	msc->users--;
	mtx_unlock(&ptnrsmem_mtx);
}
#else /* WITH_PTNETMAP */
/*
 * The memdev belongs to netmap's ptnetmap-memdev driver and the memory to
 * netmap's guest allocator, which maps it when finalized: the archive uses
 * that mapping, holding a reference on the allocator until detach.
 */
static struct ptnetmap_memdev *
ptnrs_pt_memdev(uint32_t memid)
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

static int
ptnrsmem_find(void *dev, uint32_t memid, struct ptnet_rs_memdev *out)
{
	struct ptnrs_softc *sc = dev;
	struct netmap_adapter *na;
	struct ptnetmap_memdev *pd;
	struct netmap_lut lut;
	uint32_t buf_ofs;
	int error;

	pd = ptnrs_pt_memdev(memid);
	if (pd == NULL || !sc->nm_attached)
		return (ENXIO);
	na = NA(sc->ifp);
	error = netmap_mem_finalize(na->nm_mem, na);
	if (error != 0)
		return (error);
	error = netmap_mem_get_lut(na->nm_mem, &lut);
	if (error != 0 || lut.lut == NULL || lut.objtotal == 0) {
		netmap_mem_deref(na->nm_mem, na);
		return (error != 0 ? error : ENXIO);
	}
	/* Buffer 0 sits at BUF_POOL_OFS from the start of the memory. */
	buf_ofs = nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_BUF_POOL_OFS);
	out->handle = pd;
	out->base = (uint8_t *)lut.lut[0].vaddr - buf_ofs;
	out->size = ((uint64_t)nm_os_pt_memdev_ioread(pd,
	    PTNET_MDEV_IO_MEMSIZE_HI) << 32) |
	    nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_MEMSIZE_LO);
	return (0);
}

static uint32_t
ptnrsmem_read4(void *handle, uint32_t off)
{

	return (nm_os_pt_memdev_ioread(handle, off));
}

static void
ptnrsmem_release(void *dev, const struct ptnet_rs_memdev *m __unused)
{
	struct ptnrs_softc *sc = dev;

	netmap_mem_deref(NA(sc->ifp)->nm_mem, NA(sc->ifp));
}
#endif /* WITH_PTNETMAP */

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

static void *
ptnrs_dma_alloc(void *dev __unused, size_t size, size_t align, uint64_t *paddr)
{
	void *va;

	va = contigmalloc(size, M_PTNRS, M_NOWAIT | M_ZERO, 0,
	    ~(vm_paddr_t)0, align, 0);
	if (va != NULL)
		*paddr = vtophys(va);
	return (va);
}

static void
ptnrs_dma_free(void *dev __unused, void *va, size_t size __unused)
{

	/* free(9) takes contigmalloc(9) memory since FreeBSD 14. */
	free(va, M_PTNRS);
}

static void *
ptnrs_mem_alloc(size_t size)
{

	return (malloc(size, M_PTNRS, M_NOWAIT | M_ZERO));
}

static void
ptnrs_mem_free(void *p)
{

	free(p, M_PTNRS);
}

static void *
ptnrs_mtx_new(void *dev __unused, const char *name)
{
	struct mtx *m;

	m = malloc(sizeof(*m), M_PTNRS, M_NOWAIT | M_ZERO);
	if (m != NULL)
		mtx_init(m, name, NULL, MTX_DEF);
	return (m);
}

static void
ptnrs_mtx_free(void *m)
{

	mtx_destroy((struct mtx *)m);
	free(m, M_PTNRS);
}

static void
ptnrs_mtx_lock(void *m)
{

	mtx_lock((struct mtx *)m);
}

static int
ptnrs_mtx_trylock(void *m)
{

	return (mtx_trylock((struct mtx *)m));
}

static void
ptnrs_mtx_unlock(void *m)
{

	mtx_unlock((struct mtx *)m);
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
	out->mss = m->m_pkthdr.tso_segsz;
	out->has_vlan = (m->m_flags & M_VLANTAG) != 0;
	out->vlan_tag = m->m_pkthdr.ether_vtag;
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

static void
ptnrs_tx_tap(void *dev, struct mbuf *m)
{
	struct ptnrs_softc *sc = dev;

	ETHER_BPF_MTAP(sc->ifp, m);
}

static void
ptnrs_task_enqueue(void *dev, uint32_t is_rx, uint32_t ring)
{
	struct ptnrs_softc *sc = dev;
	uint32_t i = is_rx ? sc->info.num_tx_rings + ring : ring;

	if (i < sc->nqueues)
		taskqueue_enqueue(sc->queues[i].tq, &sc->queues[i].task);
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
ptnrs_rx_finish(void *dev, struct mbuf *m, const struct ptnet_rs_rxinfo *info,
    struct mbuf *prev)
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
	m->m_pkthdr.csum_data = info->csum_value;
	if (info->lro_segs > 1)
		m->m_pkthdr.lro_nsegs = info->lro_segs;
	m->m_pkthdr.flowid = info->ring;
	M_HASHTYPE_SET(m, M_HASHTYPE_OPAQUE);
	if (prev != NULL)
		prev->m_nextpkt = m;
}

static void
ptnrs_rx_input(void *dev, struct mbuf *m)
{
	struct ptnrs_softc *sc = dev;

	/* ether_input() takes the m_nextpkt list whole. */
	if_input(sc->ifp, m);
}

static const struct ptnet_shim_ops ptnrs_ops = {
	.bar_read4 = ptnrs_bar_read4,
	.bar_write4 = ptnrs_bar_write4,
	.memdev_find = ptnrsmem_find,
	.memdev_read4 = ptnrsmem_read4,
	.memdev_release = ptnrsmem_release,
	.dma_alloc = ptnrs_dma_alloc,
	.dma_free = ptnrs_dma_free,
	.mem_alloc = ptnrs_mem_alloc,
	.mem_free = ptnrs_mem_free,
	.mtx_new = ptnrs_mtx_new,
	.mtx_free = ptnrs_mtx_free,
	.mtx_lock = ptnrs_mtx_lock,
	.mtx_trylock = ptnrs_mtx_trylock,
	.mtx_unlock = ptnrs_mtx_unlock,
	.log = ptnrs_log,
	.panic = ptnrs_panic,
	.m_info = ptnrs_m_info,
	.m_copydata = ptnrs_m_copydata,
	.m_free = ptnrs_m_free,
	.tx_tap = ptnrs_tx_tap,
	.task_enqueue = ptnrs_task_enqueue,
	.rx_alloc = ptnrs_rx_alloc,
	.rx_append = ptnrs_rx_append,
	.rx_finish = ptnrs_rx_finish,
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
		(void)ptnet_rs_tx_task(sc->rs, q->ring);
	}
}

/*
 * An ithread handler, as the C driver's: netmap gets the interrupt of a
 * ring it holds (netmap_*_irq() wakes its clients and returns anything
 * but NM_IRQ_PASS); otherwise the ring's task runs for the stack.
 */
static void
ptnrs_intr(void *arg)
{
	struct ptnrs_queue *q = arg;
	struct ptnrs_softc *sc = q->sc;
	int action;
	u_int work;

	action = ptnet_rs_intr(sc->rs, q->vector);
	if (sc->nm_attached) {
		if (q->is_rx) {
			if (netmap_rx_irq(sc->ifp, q->ring, &work) != NM_IRQ_PASS)
				return;
		} else if (netmap_tx_irq(sc->ifp, q->ring) != NM_IRQ_PASS)
			return;
	}
	if (action == PTNET_RS_INTR_TASK)
		taskqueue_enqueue(q->tq, &q->task);
}

static void
ptnrs_release_irq(struct ptnrs_softc *sc, struct ptnrs_queue *q)
{

#if __FreeBSD_version >= 1500000
	bus_release_resource(sc->dev, q->irq);
#else
	bus_release_resource(sc->dev, SYS_RES_IRQ, q->irq_rid, q->irq);
#endif
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
			ptnrs_release_irq(sc, q);
		if (q->tq != NULL) {
			taskqueue_drain(q->tq, &q->task);
			taskqueue_free(q->tq);
		}
	}
	free(sc->queues, M_PTNRS);
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
	sc->queues = malloc(sizeof(*q) * sc->nqueues, M_PTNRS,
	    M_WAITOK | M_ZERO);
	for (i = 0; i < sc->nqueues; i++) {
		q = &sc->queues[i];
		q->sc = sc;
		q->vector = i;
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
		if (q->irq == NULL) {
			device_printf(sc->dev, "cannot allocate IRQ %d\n",
			    q->irq_rid);
			return (ENXIO);
		}
		error = bus_setup_intr(sc->dev, q->irq,
		    INTR_TYPE_NET | INTR_MPSAFE, NULL, ptnrs_intr, q,
		    &q->irq_cookie);
		if (error != 0) {
			device_printf(sc->dev, "cannot set up IRQ %d: %d\n",
			    q->irq_rid, error);
			return (error);
		}
		bus_describe_intr(sc->dev, q->irq, q->irq_cookie, "%cxq%u",
		    q->is_rx ? 'r' : 't', q->ring);
	}
	return (0);
}

/* ---- The watchdogs: stalled transmit rings, lost receive interrupts. ---- */

/* The uptime in milliseconds (getsbinuptime() is 32.32 fixed point). */
static uint64_t
ptnrs_uptime_ms(void)
{
	sbintime_t t = getsbinuptime();

	return ((uint64_t)(t >> 32) * 1000 +
	    (((uint64_t)t & 0xffffffffu) * 1000 >> 32));
}

static void
ptnrs_tick_task(void *arg, int pending __unused)
{
	struct ptnrs_softc *sc = arg;
	struct ptnrs_queue *q;
	uint32_t i;

	/* Stop drains this task holding the lock: never wait for it here. */
	if (!sx_try_xlock(&sc->lock))
		return;
	if (if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING) {
		/* Packets waited 5 s for a host that took nothing: restart it. */
		if (ptnet_rs_tick(sc->rs, ptnrs_uptime_ms(),
		    PTNRS_TX_TIMEOUT_MS) > 0)
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

static void
ptnrs_rx_kick_all(struct ptnrs_softc *sc)
{
	uint32_t i;

	for (i = sc->info.num_tx_rings; i < sc->nqueues; i++)
		taskqueue_enqueue(sc->queues[i].tq, &sc->queues[i].task);
}

static int
ptnrs_init_locked(struct ptnrs_softc *sc)
{
	int error;

	sx_assert(&sc->lock, SA_XLOCKED);
	if (if_getdrvflags(sc->ifp) & IFF_DRV_RUNNING)
		return (0);
	error = ptnet_rs_if_init(sc->rs);
	if (error != 0)
		return (error);
	/* The MTU may have followed the host's buffers. */
	ptnrs_apply_caps(sc);
	if_setdrvflagbits(sc->ifp, IFF_DRV_RUNNING, 0);
	callout_reset(&sc->tick, hz, ptnrs_tick, sc);
	/* Whatever arrived while down. */
	ptnrs_rx_kick_all(sc);
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
		/* IFCAP_NETMAP is netmap's to set, never the user's. */
		error = ptnet_rs_set_caps(sc->rs,
		    ifr->ifr_reqcap & ~IFCAP_NETMAP);
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

/* ---- netmap native mode. ---- */

static struct ptnrs_softc *
ptnrs_na_softc(struct netmap_adapter *na)
{

	return (if_getsoftc(na->ifp));
}

/*
 * In copy mode, what the archive needs of netmap's ring and allocator to
 * copy between them and the host's; NULL with the zero-copy allocator,
 * whose rings are the host's.
 */
static const struct ptnet_rs_nm_ring *
ptnrs_guest_ring(struct netmap_kring *kring, struct ptnet_rs_nm_ring *g)
{
#ifdef WITH_PTNETMAP
	(void)kring;
	(void)g;
	return (NULL);
#else
	struct netmap_adapter *na = kring->na;

	g->ring = kring->ring;
	g->num_slots = kring->nkr_num_slots;
	g->lut = na->na_lut.lut;
	g->lut_entry_size = sizeof(struct lut_entry);
	g->objtotal = na->na_lut.objtotal;
	g->objsize = na->na_lut.objsize;
	return (g);
#endif
}

/* The driver's ring state into netmap's kring and the application's ring. */
static void
ptnrs_kring_load(struct netmap_kring *kring, const struct ptnet_rs_kring *k)
{
	struct netmap_ring *ring = kring->ring;

	kring->nr_hwcur = k->hwcur;
	kring->nr_hwtail = kring->rtail = k->hwtail;
	kring->rhead = k->rhead;
	kring->rcur = k->rcur;
	ring->head = k->rhead;
	ring->cur = k->rcur;
	ring->tail = k->hwtail;
}

static int
ptnrs_nm_config(struct netmap_adapter *na, struct nm_config_info *info)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(na);
	struct ptnet_rs_nm_config c;
	int error;

	sx_xlock(&sc->lock);
	error = ptnet_rs_nm_config(sc->rs, &c);
	sx_xunlock(&sc->lock);
	if (error != 0)
		return (error);
	info->num_tx_rings = c.num_tx_rings;
	info->num_rx_rings = c.num_rx_rings;
	info->num_tx_descs = c.num_tx_slots;
	info->num_rx_descs = c.num_rx_slots;
	info->rx_buf_maxsize = c.buf_size;
	return (0);
}

/*
 * An RX ring leaving netmap: the slots the application consumed (its
 * ring's head) are released to the host first, so the stack does not
 * receive them again. netmap does not sync at close; the C driver's stack
 * path starts at the ring's head for the same reason. A head that does
 * not fit the ring is ignored (the driver refuses it).
 */
static void
ptnrs_nm_release(struct ptnrs_softc *sc, struct netmap_kring *kring)
{
	struct ptnet_rs_kring k;

	if (kring->ring == NULL)
		return;
	k.num_slots = kring->nkr_num_slots;
	k.hwcur = kring->nr_hwcur;
	k.hwtail = kring->nr_hwtail;
	k.rhead = kring->ring->head;
	k.rcur = kring->ring->cur;
	(void)ptnet_rs_nm_sync(sc->rs, 1, kring->ring_id, &k, 0, NULL);
}

/*
 * netmap calls this when krings change mode: with onoff for those whose
 * nr_pending_mode went on, without it for those going off (and when the
 * last client leaves). Each ring moves between the stack and netmap on
 * its own; the host runs while anyone uses a ring.
 */
static int
ptnrs_nm_register(struct netmap_adapter *na, int onoff)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(na);
	struct ptnet_rs_nm_ring g;
	struct ptnet_rs_kring k;
	struct netmap_kring *kring;
	enum txrx t;
	uint32_t i, resume;
	int error = 0;

	sx_xlock(&sc->lock);
	if (onoff) {
		if (sc->detaching) {
			error = ENXIO;
			goto out;
		}
		for_rx_tx(t) {
			for (i = 0; i < nma_get_nrings(na, t); i++) {
				kring = NMR(na, t)[i];
				if (!nm_kring_pending_on(kring))
					continue;
				error = ptnet_rs_nm_ring_on(sc->rs, t == NR_RX,
				    i, ptnrs_guest_ring(kring, &g), &k);
				if (error != 0)
					goto undo;
				ptnrs_kring_load(kring, &k);
			}
		}
		netmap_krings_mode_commit(na, 1);
		nm_set_native_flags(na);
		goto out;
undo:
		/* Give back what this call took. */
		for_rx_tx(t) {
			for (i = 0; i < nma_get_nrings(na, t); i++) {
				kring = NMR(na, t)[i];
				if (nm_kring_pending_on(kring))
					(void)ptnet_rs_nm_ring_off(sc->rs,
					    t == NR_RX, i, &resume);
			}
		}
	} else {
		nm_clear_native_flags(na);
		for_rx_tx(t) {
			for (i = 0; i < nma_get_nrings(na, t); i++) {
				kring = NMR(na, t)[i];
				if (!nm_kring_pending_off(kring))
					continue;
				if (t == NR_RX)
					ptnrs_nm_release(sc, kring);
				resume = 0;
				(void)ptnet_rs_nm_ring_off(sc->rs, t == NR_RX,
				    i, &resume);
				if (resume)
					taskqueue_enqueue(
					    sc->queues[sc->info.num_tx_rings + i].tq,
					    &sc->queues[sc->info.num_tx_rings + i].task);
			}
		}
		netmap_krings_mode_commit(na, 0);
	}
out:
	sx_xunlock(&sc->lock);
	return (error);
}

static int
ptnrs_nm_sync(struct netmap_kring *kring, int flags, uint32_t is_rx)
{
	struct ptnrs_softc *sc = ptnrs_na_softc(kring->na);
	struct ptnet_rs_nm_ring g;
	struct ptnet_rs_kring k;
	uint32_t f = 0;
	int error;

	if (flags & NAF_FORCE_RECLAIM)
		f |= PTNET_RS_SYNC_FORCE_RECLAIM;
	if (kring->nr_kflags & NKR_NOINTR)
		f |= PTNET_RS_SYNC_NOINTR;
	k.num_slots = kring->nkr_num_slots;
	k.hwcur = kring->nr_hwcur;
	k.hwtail = kring->nr_hwtail;
	k.rhead = kring->rhead;
	k.rcur = kring->rcur;
	error = ptnet_rs_nm_sync(sc->rs, is_rx, kring->ring_id, &k, f,
	    ptnrs_guest_ring(kring, &g));
	if (error == EIO) {
		/*
		 * The host's pointers were refused (counted; the host was
		 * kicked to publish again): the application sees no progress.
		 */
		return (0);
	}
	if (error != 0)
		return (error);
	kring->nr_hwcur = k.hwcur;
	kring->nr_hwtail = k.hwtail;
	return (0);
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

static void
ptnrs_nm_intr(struct netmap_adapter *na, int onoff)
{

	ptnet_rs_nm_intr(ptnrs_na_softc(na)->rs, onoff);
}

/* After ether_ifattach(): netmap saves the interface's input function. */
static int
ptnrs_netmap_attach(struct ptnrs_softc *sc)
{
	struct netmap_adapter na;

	bzero(&na, sizeof(na));
	na.ifp = sc->ifp;
	na.na_flags = NAF_MOREFRAG;
	na.num_tx_desc = sc->info.num_tx_slots;
	na.num_rx_desc = sc->info.num_rx_slots;
	na.num_tx_rings = sc->info.num_tx_rings;
	na.num_rx_rings = sc->info.num_rx_rings;
	/* nm_config reports the host's buffer size once it is mapped. */
	na.rx_buf_maxsize = PTNRS_MAX_BUF_SIZE;
	na.virt_hdr_len = sc->info.vnet_hdr_len;
	na.nm_register = ptnrs_nm_register;
	na.nm_txsync = ptnrs_nm_txsync;
	na.nm_rxsync = ptnrs_nm_rxsync;
	na.nm_config = ptnrs_nm_config;
	na.nm_intr = ptnrs_nm_intr;
#ifdef WITH_PTNETMAP
	na.nm_krings_create = ptnet_nm_krings_create;
	na.nm_krings_delete = ptnet_nm_krings_delete;
	na.nm_dtor = ptnet_nm_dtor;
	return (netmap_pt_guest_attach(&na, sc->info.nifp_ofs,
	    sc->info.memid));
#else
	return (netmap_attach(&na));
#endif
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
	      "Packets refused (bad offload request or netmap slot)",
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
	    { "host_resets", offsetof(struct ptnet_rs_queue_stats, host_resets),
	      "Host ring states adopted after a reset",
	      "Host ring states adopted after a reset" },
	    { "queued", offsetof(struct ptnet_rs_queue_stats, queued),
	      "Packets waiting in the software queue", "Always 0" },
	    { "watchdog", offsetof(struct ptnet_rs_queue_stats, watchdog),
	      "Watchdog timeouts (host took nothing; queue freed)",
	      "Lost interrupts found by the watchdog" },
	    { "stuck", offsetof(struct ptnet_rs_queue_stats, stuck),
	      "Host found wedged on the ring and restarted",
	      "Host found wedged on the ring and restarted" },
	};
	struct sysctl_oid *tree = device_get_sysctl_tree(sc->dev);
	struct sysctl_oid *node;
	struct ptnrs_queue *q;
	char name[16];
	uint32_t i, f;

	for (i = 0; i < sc->nqueues; i++) {
		q = &sc->queues[i];
		snprintf(name, sizeof(name), "%cxq%u", q->is_rx ? 'r' : 't',
		    q->ring);
		node = SYSCTL_ADD_NODE(&sc->qctx, SYSCTL_CHILDREN(tree),
		    OID_AUTO, name, CTLFLAG_RD | CTLFLAG_MPSAFE, NULL,
		    "Ring counters");
		for (f = 0; f < nitems(fields); f++)
			SYSCTL_ADD_PROC(&sc->qctx, SYSCTL_CHILDREN(node),
			    OID_AUTO, fields[f].name,
			    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, q,
			    fields[f].off, ptnrs_sysctl_queue, "QU",
			    q->is_rx ? fields[f].rx : fields[f].tx);
	}
}

/* ---- newbus: the NIC. ---- */

static int
ptnrs_probe(device_t dev)
{

	if (!ptnrs_ready ||
	    ptnet_rs_probe(pci_get_vendor(dev), pci_get_device(dev)) != 0)
		return (ENXIO);
	device_set_desc(dev, "ptnet (netmap passthrough) NIC, Rust driver");
	return (BUS_PROBE_VENDOR);
}

static void
ptnrs_release_bar(struct ptnrs_softc *sc, int type, int rid,
    struct resource *r)
{

#if __FreeBSD_version >= 1500000
	(void)type;
	(void)rid;
	bus_release_resource(sc->dev, r);
#else
	bus_release_resource(sc->dev, type, rid, r);
#endif
}

/*
 * Releases whatever attach acquired, in the reverse order; from here
 * nothing may fail but the archive's own detach, after which nothing is
 * freed (the device stays, safely, as it is).
 */
static int
ptnrs_teardown(struct ptnrs_softc *sc)
{
	int error;

	if (sc->ether_attached) {
		ether_ifdetach(sc->ifp);
		sc->ether_attached = 0;
	}
	callout_drain(&sc->tick);
	taskqueue_drain(taskqueue_thread, &sc->tick_task);
	/* No sysctl handler runs on a queue past this. */
	sysctl_ctx_free(&sc->qctx);
	/* No interrupt or task runs past this. */
	ptnrs_queues_teardown(sc);
	if (sc->rs != NULL) {
		error = ptnet_rs_detach(sc->rs, NULL);
		if (error != 0) {
			device_printf(sc->dev,
			    "the driver refused to detach (error %d); "
			    "its resources stay\n", error);
			return (error);
		}
		sc->rs = NULL;
	}
	/*
	 * netmap's adapter goes after the archive, which releases the host
	 * memory through it in the zero-copy build (netmap_mem_deref on the
	 * adapter's allocator); no client can register meanwhile
	 * (sc->detaching, or attach failed).
	 */
	if (sc->nm_attached) {
		netmap_detach(sc->ifp);
		sc->nm_attached = 0;
	}
	if (sc->ifp != NULL) {
		ifmedia_removeall(&sc->media);
		if_free(sc->ifp);
		sc->ifp = NULL;
	}
	if (sc->msix_alloc) {
		pci_release_msi(sc->dev);
		sc->msix_alloc = 0;
	}
	if (sc->msix_bar != NULL) {
		ptnrs_release_bar(sc, SYS_RES_MEMORY, PTNRS_MSIX_BAR,
		    sc->msix_bar);
		sc->msix_bar = NULL;
	}
	if (sc->iobar != NULL) {
		ptnrs_release_bar(sc, SYS_RES_IOPORT,
		    PCIR_BAR(PTNETMAP_IO_PCI_BAR), sc->iobar);
		sc->iobar = NULL;
	}
	sx_destroy(&sc->lock);
	return (0);
}

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
	sysctl_ctx_init(&sc->qctx);
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

	error = ptnet_rs_attach(sc, nvec, flags, &sc->rs);
	if (error != 0)
		goto fail;
	ptnet_rs_info(sc->rs, &sc->info);
	error = ptnrs_queues_setup(sc);
	if (error != 0)
		goto fail;

	sc->ifp = if_alloc(IFT_ETHER);
	if_initname(sc->ifp, device_get_name(dev), device_get_unit(dev));
	if_setsoftc(sc->ifp, sc);
	if_setflags(sc->ifp, IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST);
	if_setbaudrate(sc->ifp, IF_Gbps(10));
	if_setinitfn(sc->ifp, ptnrs_init);
	if_setioctlfn(sc->ifp, ptnrs_ioctl);
	if_settransmitfn(sc->ifp, ptnrs_transmit);
	if_setqflushfn(sc->ifp, ptnrs_qflush);
	if_setgetcounterfn(sc->ifp, ptnrs_get_counter);
	ifmedia_init(&sc->media, 0, ptnrs_media_change, ptnrs_media_status);
	ifmedia_add(&sc->media, IFM_ETHER | IFM_10G_T | IFM_FDX, 0, NULL);
	ifmedia_set(&sc->media, IFM_ETHER | IFM_10G_T | IFM_FDX);

	ether_ifattach(sc->ifp, sc->info.mac);
	sc->ether_attached = 1;
	if_setifheaderlen(sc->ifp, sizeof(struct ether_vlan_header));
	ptnrs_apply_caps(sc);

	/* netmap comes last: it saves the input function ether_ifattach set. */
	error = ptnrs_netmap_attach(sc);
	if (error != 0)
		device_printf(dev, "netmap attach failed (%d): no netmap mode\n",
		    error);
	else
		sc->nm_attached = 1;
	ptnrs_sysctl_setup(sc);
	return (0);
fail:
	(void)ptnrs_teardown(sc);
	return (error);
}

static int
ptnrs_detach(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);
	int error, busy;

	if (sc->rs != NULL) {
		/*
		 * A netmap client holds the rings: refuse (close it first).
		 * The flag set under netmap's lock keeps new ones out.
		 */
		if (sc->nm_attached) {
			NMG_LOCK();
			busy = NA(sc->ifp)->active_fds > 0;
			if (!busy)
				sc->detaching = 1;
			NMG_UNLOCK();
			if (busy) {
				device_printf(dev, "netmap applications hold "
				    "the rings: detach refused\n");
				return (EBUSY);
			}
		}
		sx_xlock(&sc->lock);
		(void)ptnrs_stop_locked(sc);
		error = ptnet_rs_detachable(sc->rs);
		sx_xunlock(&sc->lock);
		if (error != 0) {
			sc->detaching = 0;
			device_printf(dev, "busy: detach refused (%d)\n", error);
			return (error);
		}
	}
	return (ptnrs_teardown(sc));
}

static int
ptnrs_shutdown(device_t dev)
{
	struct ptnrs_softc *sc = device_get_softc(dev);

	sx_xlock(&sc->lock);
	(void)ptnrs_stop_locked(sc);
	/* The host stops and forgets the CSB: the next kernel reuses it. */
	ptnet_rs_shutdown(sc->rs);
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

/*
 * driver_module_handler() overwrites this handler's error with
 * devclass_add_driver()'s, so a failed registration cannot stop the load:
 * probes refuse every device instead, and say why once.
 */
static int
ptnrs_modevent(module_t mod __unused, int what, void *arg __unused)
{
	int error;

	switch (what) {
	case MOD_LOAD:
		error = ptnet_rs_init(&ptnrs_ops);
		ptnrs_ready = error == 0;
		if (error != 0)
			printf("ptnrs: the Rust driver refused its kernel "
			    "services (error %d): no device will attach\n",
			    error);
		return (error);
	case MOD_UNLOAD:
	case MOD_SHUTDOWN:
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

#ifndef WITH_PTNETMAP
/* ---- newbus: the memdev (stock kernels). ---- */

static int
ptnrsmem_probe(device_t dev)
{

	if (!ptnrs_ready ||
	    ptnet_rs_probe_memdev(pci_get_vendor(dev), pci_get_device(dev)) != 0)
		return (ENXIO);
	device_set_desc(dev, "ptnetmap memdev (netmap host memory)");
	return (BUS_PROBE_VENDOR);
}

static int ptnrsmem_detach(device_t);

static int
ptnrsmem_attach(device_t dev)
{
	struct ptnrsmem_softc *msc = device_get_softc(dev);
	struct resource_map_request req;
	int rid, error;

	msc->dev = dev;
	rid = PCIR_BAR(PTNETMAP_IO_PCI_BAR);
	msc->iobar = bus_alloc_resource_any(dev, SYS_RES_IOPORT, &rid,
	    RF_ACTIVE);
	rid = PCIR_BAR(PTNETMAP_MEM_PCI_BAR);
	msc->membar = bus_alloc_resource_any(dev, SYS_RES_MEMORY, &rid,
	    RF_ACTIVE | RF_UNMAPPED);
	if (msc->iobar == NULL || msc->membar == NULL) {
		device_printf(dev, "cannot allocate the register or memory BAR\n");
		error = ENXIO;
		goto fail;
	}
	/* The BAR is the host's RAM: map it cacheable. */
	resource_init_map_request(&req);
	req.memattr = VM_MEMATTR_WRITE_BACK;
#if __FreeBSD_version >= 1500000
	error = bus_map_resource(dev, msc->membar, &req, &msc->map);
#else
	error = bus_map_resource(dev, SYS_RES_MEMORY, msc->membar, &req,
	    &msc->map);
#endif
	if (error != 0) {
		device_printf(dev, "cannot map the host memory (%d)\n", error);
		goto fail;
	}
	msc->mapped = 1;
	msc->memid = bus_read_4(msc->iobar, PTNET_MDEV_IO_MEMID);
	device_printf(dev, "host memory %u, %ju bytes\n", msc->memid,
	    (uintmax_t)msc->map.r_size);
	return (0);
fail:
	(void)ptnrsmem_detach(dev);
	return (error);
}

static int
ptnrsmem_detach(device_t dev)
{
	struct ptnrsmem_softc *msc = device_get_softc(dev);
	u_int users;

	mtx_lock(&ptnrsmem_mtx);
	users = msc->users;
	mtx_unlock(&ptnrsmem_mtx);
	if (users > 0) {
		device_printf(dev, "host memory in use by %u interface(s): "
		    "detach refused\n", users);
		return (EBUSY);
	}
	if (msc->mapped) {
#if __FreeBSD_version >= 1500000
		bus_unmap_resource(dev, msc->membar, &msc->map);
#else
		bus_unmap_resource(dev, SYS_RES_MEMORY, msc->membar, &msc->map);
#endif
		msc->mapped = 0;
	}
	if (msc->membar != NULL) {
#if __FreeBSD_version >= 1500000
		bus_release_resource(dev, msc->membar);
#else
		bus_release_resource(dev, SYS_RES_MEMORY,
		    PCIR_BAR(PTNETMAP_MEM_PCI_BAR), msc->membar);
#endif
		msc->membar = NULL;
	}
	if (msc->iobar != NULL) {
#if __FreeBSD_version >= 1500000
		bus_release_resource(dev, msc->iobar);
#else
		bus_release_resource(dev, SYS_RES_IOPORT,
		    PCIR_BAR(PTNETMAP_IO_PCI_BAR), msc->iobar);
#endif
		msc->iobar = NULL;
	}
	return (0);
}

static device_method_t ptnrsmem_methods[] = {
	DEVMETHOD(device_probe,		ptnrsmem_probe),
	DEVMETHOD(device_attach,	ptnrsmem_attach),
	DEVMETHOD(device_detach,	ptnrsmem_detach),
	DEVMETHOD_END
};

static driver_t ptnrsmem_driver = {
	"ptnrsmem",
	ptnrsmem_methods,
	sizeof(struct ptnrsmem_softc),
};

static devclass_t
ptnrsmem_devclass(void)
{

	return (devclass_find(ptnrsmem_driver.name));
}

/* Registered before the NIC's driver, so a load finds the memory first. */
DRIVER_MODULE_ORDERED(ptnrsmem, pci, ptnrsmem_driver, NULL, NULL,
    SI_ORDER_MIDDLE - 1);
#endif /* !WITH_PTNETMAP */
