/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The ptnetmap guest support of a kernel built with WITH_PTNETMAP
 * (sys/dev/netmap/netmap_freebsd.c, netmap_mem2.c, netmap_kloop.c): the
 * ptnetmap-memdev driver, which maps the host's netmap memory (BAR 1)
 * and reads its registers (nm_os_pt_memdev_ioread); netmap's guest
 * allocator over that memory (netmap_mem_pt_guest: finalize builds the
 * buffer lookup table from the memdev's pool registers, the rings are the
 * host's, found through its netmap_if at nifp_offset); and
 * netmap_pt_guest_attach() with the ptnet krings callbacks. Compiled out
 * of the stock harness kernel, as out of GENERIC.
 */

#include "hk.h"

#ifdef WITH_PTNETMAP

#include <sys/socket.h>
#include <machine/bus.h>
#include <machine/resource.h>
#include <net/if.h>
#include <net/if_var.h>
#include <net/netmap.h>
#include <dev/netmap/netmap_kern.h>
#include <net/netmap_virt.h>
#include <dev/netmap/netmap_mem2.h>
#include <dev/pci/pcireg.h>
#include <dev/pci/pcivar.h>

#include "device_if.h"
#include "bus_if.h"

MALLOC_DECLARE(M_NETMAP);

/* netmap_freebsd.c's softc of the memdev. */
struct ptnetmap_memdev {
	device_t		 dev;
	struct resource		*pci_io;
	struct resource		*pci_mem;
	struct netmap_mem_d	*nm_mem;
};

/* netmap_mem2.c's guest allocator, as far as a guest port uses it. */
struct netmap_mem_d {
	struct sx		 lock;		/* NMA_LOCK */
	uint32_t		 memid;
	uint32_t		 nifp_offset;
	int			 refs;		/* finalize/deref */
	struct ptnetmap_memdev	*pd;
	char			*base;
	uint64_t		 size;
	struct lut_entry	*lut;
	uint32_t		 objtotal, objsize;
};

uint32_t
nm_os_pt_memdev_ioread(struct ptnetmap_memdev *pd, unsigned int reg)
{

	return (bus_read_4(pd->pci_io, reg));
}

static int
ptn_memdev_probe(device_t dev)
{

	if (pci_get_vendor(dev) != PTNETMAP_PCI_VENDOR_ID ||
	    pci_get_device(dev) != PTNETMAP_PCI_DEVICE_ID)
		return (ENXIO);
	device_set_desc(dev, "ptnetmap memdev");
	return (BUS_PROBE_DEFAULT);
}

static int
ptn_memdev_detach(device_t dev)
{
	struct ptnetmap_memdev *pd = device_get_softc(dev);

	if (pd->nm_mem != NULL)
		return (EBUSY);
	if (pd->pci_mem != NULL) {
		bus_release_resource(dev, pd->pci_mem);
		pd->pci_mem = NULL;
	}
	if (pd->pci_io != NULL) {
		bus_release_resource(dev, pd->pci_io);
		pd->pci_io = NULL;
	}
	return (0);
}

/* The registers at attach; the memory BAR when an allocator maps it. */
static int
ptn_memdev_attach(device_t dev)
{
	struct ptnetmap_memdev *pd = device_get_softc(dev);
	int rid;

	pd->dev = dev;
	rid = PCIR_BAR(PTNETMAP_IO_PCI_BAR);
	pd->pci_io = bus_alloc_resource_any(dev, SYS_RES_IOPORT, &rid,
	    RF_ACTIVE);
	if (pd->pci_io == NULL)
		return (ENXIO);
	device_printf(dev, "host memory %u\n",
	    nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_MEMID));
	return (0);
}

static device_method_t ptn_memdev_methods[] = {
	DEVMETHOD(device_probe,		ptn_memdev_probe),
	DEVMETHOD(device_attach,	ptn_memdev_attach),
	DEVMETHOD(device_detach,	ptn_memdev_detach),
	DEVMETHOD_END
};

static driver_t ptn_memdev_driver = {
	PTNETMAP_MEMDEV_NAME,
	ptn_memdev_methods,
	sizeof(struct ptnetmap_memdev),
};

DRIVER_MODULE(ptnetmap_memdev, pci, ptn_memdev_driver, NULL, NULL);

/* The memdev exposing host memory `memid`, attached. */
static struct ptnetmap_memdev *
hk_ptmem_dev(uint32_t memid)
{
	devclass_t dc = devclass_find(PTNETMAP_MEMDEV_NAME);
	struct ptnetmap_memdev *pd;
	device_t d;
	int u;

	for (u = 0; dc != NULL && u <= devclass_get_maxunit(dc); u++) {
		d = devclass_get_device(dc, u);
		if (d == NULL || !device_is_attached(d))
			continue;
		pd = device_get_softc(d);
		if (nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_MEMID) == memid)
			return (pd);
	}
	return (NULL);
}

/*
 * netmap_mem_finalize() of the guest allocator: under NMA_LOCK (an sx:
 * the caller may not hold a mutex), the memory BAR mapped
 * (nm_os_pt_memdev_iomap) and the buffers' lookup table built from the
 * memdev's registers (netmap_mem_pt_guest_finalize).
 */
static int
hk_ptmem_finalize_locked(struct netmap_mem_d *m)
{
	struct ptnetmap_memdev *pd;
	uint32_t ofs, i;
	int rid;

	pd = hk_ptmem_dev(m->memid);
	if (pd == NULL)
		return (ENOMEM);
	rid = PCIR_BAR(PTNETMAP_MEM_PCI_BAR);
	pd->pci_mem = bus_alloc_resource_any(pd->dev, SYS_RES_MEMORY, &rid,
	    RF_ACTIVE);
	if (pd->pci_mem == NULL)
		return (ENOMEM);
	m->pd = pd;
	pd->nm_mem = m;
	m->base = (char *)rman_get_bushandle(pd->pci_mem);
	m->size = (uint64_t)nm_os_pt_memdev_ioread(pd,
	    PTNET_MDEV_IO_MEMSIZE_HI) << 32 |
	    nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_MEMSIZE_LO);
	ofs = nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_BUF_POOL_OFS);
	m->objtotal = nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_BUF_POOL_OBJNUM);
	m->objsize = nm_os_pt_memdev_ioread(pd, PTNET_MDEV_IO_BUF_POOL_OBJSZ);
	if ((uint64_t)ofs + (uint64_t)m->objtotal * m->objsize > m->size)
		return (EINVAL);
	/* nm_alloc_lut(): nm_os_malloc, M_NOWAIT. */
	m->lut = malloc(sizeof(*m->lut) * m->objtotal, M_NETMAP,
	    M_NOWAIT | M_ZERO);
	if (m->lut == NULL)
		return (ENOMEM);
	for (i = 0; i < m->objtotal; i++)
		m->lut[i].vaddr = m->base + ofs + (size_t)i * m->objsize;
	return (0);
}

static void
hk_ptmem_unmap_locked(struct netmap_mem_d *m)
{

	free(m->lut, M_NETMAP);
	m->lut = NULL;
	m->base = NULL;
	if (m->pd != NULL) {
		if (m->pd->pci_mem != NULL)
			bus_release_resource(m->pd->dev, m->pd->pci_mem);
		m->pd->pci_mem = NULL;
		m->pd->nm_mem = NULL;
		m->pd = NULL;
	}
}

int
netmap_mem_finalize(struct netmap_mem_d *m, struct netmap_adapter *na)
{
	int error = 0;

	(void)na;
	sx_xlock(&m->lock);
	if (m->refs++ == 0) {
		error = hk_ptmem_finalize_locked(m);
		if (error != 0) {
			hk_ptmem_unmap_locked(m);
			m->refs--;
		}
	}
	sx_xunlock(&m->lock);
	return (error);
}

int
netmap_mem_get_lut(struct netmap_mem_d *m, struct netmap_lut *lut)
{

	if (m->lut == NULL)
		return (EINVAL);
	lut->lut = m->lut;
	lut->plut = NULL;
	lut->objtotal = m->objtotal;
	lut->objsize = m->objsize;
	return (0);
}

int
netmap_mem_deref(struct netmap_mem_d *m, struct netmap_adapter *na)
{

	(void)na;
	sx_xlock(&m->lock);
	if (m->refs <= 0)
		hk_panic(__builtin_return_address(0), "netmap_mem_deref: "
		    "allocator %u not finalized", m->memid);
	if (--m->refs == 0)
		hk_ptmem_unmap_locked(m);
	sx_xunlock(&m->lock);
	return (0);
}

/* A host ring, through the host's netmap_if: hw TX, host TX, hw RX, host RX. */
struct netmap_ring *
hk_ptmem_ring(struct netmap_mem_d *m, int tx, u_int i)
{
	struct netmap_if *nifp;
	u_int idx;

	if (m->base == NULL)
		return (NULL);
	nifp = (struct netmap_if *)(m->base + m->nifp_offset);
	idx = tx ? i : nifp->ni_tx_rings + nifp->ni_host_tx_rings + i;
	return ((struct netmap_ring *)((char *)nifp + nifp->ring_ofs[idx]));
}

void
hk_ptmem_free(struct netmap_mem_d *m)
{

	if (m == NULL)
		return;
	if (m->refs != 0)
		hk_panic(NULL, "netmap: guest allocator %u freed with %d "
		    "references", m->memid, m->refs);
	sx_destroy(&m->lock);
	free(m, M_NETMAP);
}

int
netmap_pt_guest_attach(struct netmap_adapter *arg, unsigned int nifp_offset,
    unsigned int memid)
{
	struct netmap_hw_adapter *hwna;
	struct netmap_mem_d *m;
	int error;

	m = malloc(sizeof(*m), M_NETMAP, M_NOWAIT | M_ZERO);
	if (m == NULL)
		return (ENOMEM);
	m->memid = memid;
	m->nifp_offset = nifp_offset;
	sx_init(&m->lock, "netmap guest allocator");
	error = hk_netmap_attach_ext(arg, sizeof(struct netmap_pt_guest_adapter),
	    &hwna);
	if (error != 0) {
		sx_destroy(&m->lock);
		free(m, M_NETMAP);
		return (error);
	}
	hwna->up.nm_mem = m;
	return (0);
}

int
ptnet_nm_krings_create(struct netmap_adapter *na)
{

	return (hk_krings_create(na));
}

void
ptnet_nm_krings_delete(struct netmap_adapter *na)
{

	hk_krings_delete(na);
}

void
ptnet_nm_dtor(struct netmap_adapter *na)
{

	/* netmap_mem_pt_guest_ifp_del(): the allocator goes with the adapter. */
	(void)na;
}

#endif /* WITH_PTNETMAP */
