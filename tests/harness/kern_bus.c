/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * newbus as a driver sees it (sys/kern/subr_bus.c, device(9), bus(9),
 * pci(9)): one PCI bus with the harness's functions, devclasses and
 * units, probe by priority, attach and detach, the devices' sysctl
 * trees, resources (the I/O BAR's ports, memory BARs, MSI-X vectors),
 * interrupt threads; and modules (sys/kern/kern_module.c,
 * sys/kern/kern_linker.c): module_register_init, driver_module_handler
 * (with its overwrite of the chained handler's error, as FreeBSD has it),
 * MODULE_DEPEND checks, SYSINITs in order, unload.
 */

#include "hk.h"

#include <sys/proc.h>
#include <machine/bus.h>
#include <machine/resource.h>
#include <dev/pci/pcireg.h>
#include <dev/pci/pcivar.h>
#include <vm/vm.h>

#include "device_if.h"
#include "bus_if.h"

/* The method descriptors DEVMETHOD() refers to (generated device_if.c). */
struct kobjop_desc device_probe_desc;
struct kobjop_desc device_identify_desc;
struct kobjop_desc device_attach_desc;
struct kobjop_desc device_detach_desc;
struct kobjop_desc device_shutdown_desc;
struct kobjop_desc device_suspend_desc;
struct kobjop_desc device_resume_desc;
struct kobjop_desc device_quiesce_desc;
struct kobjop_desc device_register_desc;

#define	HK_MAXDEV	16
#define	HK_MAXDRV	8
#define	HK_MAXRES	80

/* Devclasses outlive the modules that named them: the name is copied. */
struct devclass {
	char		 name[32];
	device_t	 units[HK_MAXDEV];
};

struct _device {
	struct hk_pci		*pci;	/* NULL: the PCI bus itself */
	uint32_t		 index;
	driver_t		*driver;
	devclass_t		 dc;
	int			 unit;
	char			 nameunit[32];
	char			 desc[128];
	void			*softc;
	int			 state;
	int			 msix;		/* vectors allocated */
	int			 busmaster;
	struct sysctl_ctx_list	 sysctl_ctx;
	struct sysctl_oid	*sysctl_tree;
};

struct hk_res {
	struct resource	 r;
	device_t	 dev;
	int		 type, rid;
	uint64_t	 size;
	int		 mapped;
	vm_memattr_t	 memattr;
};

struct intr_config_hook;

static struct _device hk_pcibus = { .nameunit = "pci0" };
static struct _device hk_devs[HK_MAXDEV];
static int hk_ndevs;
static struct devclass hk_classes[HK_MAXDRV + 1];
static driver_t *hk_drivers[HK_MAXDRV];
static int hk_ndrivers;
static struct hk_res *hk_res[HK_MAXRES];
static struct sx hk_topo;	/* bus_topo_lock(): Giant's role for newbus */

/* ---- Devclasses. ---- */

devclass_t
devclass_find(const char *classname)
{
	int i;

	for (i = 0; i <= HK_MAXDRV; i++)
		if (hk_classes[i].name[0] != '\0' &&
		    strcmp(hk_classes[i].name, classname) == 0)
			return (&hk_classes[i]);
	return (NULL);
}

static devclass_t
hk_devclass_get(const char *name)
{
	devclass_t dc = devclass_find(name);
	int i;

	for (i = 0; dc == NULL && i <= HK_MAXDRV; i++)
		if (hk_classes[i].name[0] == '\0') {
			strlcpy(hk_classes[i].name, name,
			    sizeof(hk_classes[i].name));
			dc = &hk_classes[i];
		}
	return (dc);
}

int
devclass_get_maxunit(devclass_t dc)
{
	int i, max = 0;

	if (dc == NULL)
		return (-1);
	for (i = 0; i < HK_MAXDEV; i++)
		if (dc->units[i] != NULL)
			max = i + 1;
	return (max);
}

device_t
devclass_get_device(devclass_t dc, int unit)
{

	if (dc == NULL || unit < 0 || unit >= HK_MAXDEV)
		return (NULL);
	return (dc->units[unit]);
}

/* ---- Devices. ---- */

void *
device_get_softc(device_t dev)
{

	return (dev->softc);
}

const char *
device_get_name(device_t dev)
{

	return (dev->dc != NULL ? dev->dc->name : NULL);
}

const char *
device_get_nameunit(device_t dev)
{

	return (dev->nameunit);
}

int
device_get_unit(device_t dev)
{

	return (dev->unit);
}

device_t
device_get_parent(device_t dev)
{

	return (dev == &hk_pcibus ? NULL : &hk_pcibus);
}

int
device_is_attached(device_t dev)
{

	return (dev->state >= DS_ATTACHED);
}

void
device_set_desc(device_t dev, const char *desc)
{

	strlcpy(dev->desc, desc, sizeof(dev->desc));
}

int
device_printf(device_t dev, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = hk_vprintf_named(dev->nameunit, fmt, ap);
	va_end(ap);
	return (n);
}

struct sysctl_ctx_list *
device_get_sysctl_ctx(device_t dev)
{

	return (&dev->sysctl_ctx);
}

struct sysctl_oid *
device_get_sysctl_tree(device_t dev)
{

	return (dev->sysctl_tree);
}

struct sysctl_ctx_list *
hk_device_sysctl_ctx(device_t dev)
{

	return (&dev->sysctl_ctx);
}

/* The dev.<name>.<unit> node and its %desc, as device_sysctl_init() has. */
SYSCTL_ROOT_NODE(OID_AUTO, dev, CTLFLAG_RW | CTLFLAG_MPSAFE, NULL,
    "Device drivers");

static void
hk_device_sysctl_init(device_t dev)
{
	struct sysctl_oid *dcnode;
	char unit[8];

	sysctl_ctx_init(&dev->sysctl_ctx);
	dcnode = SYSCTL_ADD_NODE(&dev->sysctl_ctx, SYSCTL_STATIC_CHILDREN(_dev),
	    OID_AUTO, dev->dc->name, CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, "");
	snprintf(unit, sizeof(unit), "%d", dev->unit);
	dev->sysctl_tree = SYSCTL_ADD_NODE(&dev->sysctl_ctx,
	    SYSCTL_CHILDREN(dcnode), OID_AUTO, unit,
	    CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, "");
	SYSCTL_ADD_STRING(&dev->sysctl_ctx, SYSCTL_CHILDREN(dev->sysctl_tree),
	    OID_AUTO, "%desc", CTLFLAG_RD, dev->desc, 0,
	    "device description");
}

static void
hk_device_sysctl_fini(device_t dev)
{

	sysctl_ctx_free(&dev->sysctl_ctx);
	dev->sysctl_tree = NULL;
}

/* A method of a driver's table, or NULL. */
static kobjop_t
hk_method(driver_t *drv, struct kobjop_desc *desc)
{
	kobj_method_t *m;

	for (m = drv->methods; m->desc != NULL; m++)
		if (m->desc == desc)
			return (m->func);
	return (NULL);
}

static int
hk_call(device_t dev, struct kobjop_desc *desc, int dflt)
{
	device_method_t *unused = NULL;
	int (*fn)(device_t);

	(void)unused;
	fn = (int (*)(device_t))hk_method(dev->driver, desc);
	return (fn != NULL ? fn(dev) : dflt);
}

static void
hk_set_driver(device_t dev, driver_t *drv, int unit)
{

	dev->driver = drv;
	dev->dc = hk_devclass_get(drv->name);
	dev->unit = unit;
	snprintf(dev->nameunit, sizeof(dev->nameunit), "%s%d", drv->name, unit);
	dev->softc = malloc(drv->size, M_DEVBUF, M_WAITOK | M_ZERO);
	dev->desc[0] = '\0';
}

static void
hk_clear_driver(device_t dev)
{

	free(dev->softc, M_DEVBUF);
	dev->softc = NULL;
	dev->driver = NULL;
	dev->dc = NULL;
	snprintf(dev->nameunit, sizeof(dev->nameunit), "none%u", dev->index);
}

static int
hk_free_unit(devclass_t dc)
{
	int u;

	for (u = 0; u < HK_MAXDEV; u++)
		if (dc->units[u] == NULL)
			return (u);
	return (-1);
}

static int
hk_dev_resources(device_t dev)
{
	int i, n = 0;

	for (i = 0; i < HK_MAXRES; i++)
		if (hk_res[i] != NULL && hk_res[i]->dev == dev)
			n++;
	return (n);
}

/* device_probe_and_attach(9) of one device, by probe priority. */
static int
hk_probe_and_attach(device_t dev)
{
	driver_t *best = NULL;
	int i, pri, best_pri = 0, unit, error;

	if (dev->state != DS_NOTPRESENT)
		return (0);
	for (i = 0; i < hk_ndrivers; i++) {
		unit = hk_free_unit(hk_devclass_get(hk_drivers[i]->name));
		hk_set_driver(dev, hk_drivers[i], unit);
		pri = hk_call(dev, &device_probe_desc, ENXIO);
		hk_clear_driver(dev);
		if (pri <= 0 && (best == NULL || pri > best_pri)) {
			best = hk_drivers[i];
			best_pri = pri;
		}
	}
	if (best == NULL)
		return (ENXIO);
	unit = hk_free_unit(hk_devclass_get(best->name));
	hk_set_driver(dev, best, unit);
	dev->dc->units[unit] = dev;
	(void)hk_call(dev, &device_probe_desc, ENXIO);
	printf("%s: <%s> port %#x-%#x at device %u.0 on pci0\n", dev->nameunit,
	    dev->desc, dev->pci->io_port, dev->pci->io_port + dev->pci->io_size - 1,
	    dev->index + 3);
	hk_device_sysctl_init(dev);
	dev->state = DS_ATTACHING;
	error = hk_call(dev, &device_attach_desc, 0);
	if (error != 0) {
		printf("device_attach: %s attach returned %d\n", dev->nameunit,
		    error);
		if (hk_dev_resources(dev) != 0)
			hk_panic(NULL, "%s: attach failed leaving %d resources "
			    "allocated", dev->nameunit, hk_dev_resources(dev));
		hk_device_sysctl_fini(dev);
		dev->dc->units[unit] = NULL;
		hk_clear_driver(dev);
		dev->state = DS_NOTPRESENT;
		return (error);
	}
	dev->state = DS_ATTACHED;
	return (0);
}

/* device_detach(9). */
static int
hk_detach(device_t dev)
{
	int error;

	if (dev->state != DS_ATTACHED)
		return (0);
	error = hk_call(dev, &device_detach_desc, 0);
	if (error != 0)
		return (error);
	printf("%s: detached\n", dev->nameunit);
	if (hk_dev_resources(dev) != 0)
		hk_panic(NULL, "%s: detached leaving %d resources allocated",
		    dev->nameunit, hk_dev_resources(dev));
	if (dev->msix != 0)
		hk_panic(NULL, "%s: detached with %d MSI-X vectors allocated",
		    dev->nameunit, dev->msix);
	hk_device_sysctl_fini(dev);
	dev->dc->units[dev->unit] = NULL;
	hk_clear_driver(dev);
	dev->state = DS_NOTPRESENT;
	return (0);
}

/* Adds the harness's PCI functions (the bus enumerates them at boot). */
void hk_pci_add(struct hk_pci *p);
void
hk_pci_add(struct hk_pci *p)
{
	device_t dev = &hk_devs[hk_ndevs];

	dev->pci = p;
	dev->index = hk_ndevs++;
	dev->state = DS_NOTPRESENT;
	snprintf(dev->nameunit, sizeof(dev->nameunit), "none%u", dev->index);
}

void
hk_bus_boot(void)
{

	sx_init(&hk_topo, "bus topology");
}

static void
hk_topo_lock(void)
{

	sx_xlock(&hk_topo);
}

static void
hk_topo_unlock(void)
{

	sx_xunlock(&hk_topo);
}

/* The bus enumerates its devices for the drivers the kernel has. */
void
hk_bus_probe_all(void)
{
	int i;

	hk_topo_lock();
	for (i = 0; i < hk_ndevs; i++)
		(void)hk_probe_and_attach(&hk_devs[i]);
	hk_topo_unlock();
}

/* devctl(8): detach and attach by name, as a user would. */
int hk_devctl_detach(const char *nameunit);
int
hk_devctl_detach(const char *nameunit)
{
	int i, error = ENOENT;

	hk_topo_lock();
	for (i = 0; i < hk_ndevs; i++)
		if (hk_devs[i].state == DS_ATTACHED &&
		    strcmp(hk_devs[i].nameunit, nameunit) == 0)
			error = hk_detach(&hk_devs[i]);
	hk_topo_unlock();
	return (error);
}

int hk_devctl_attach(uint32_t index);
int
hk_devctl_attach(uint32_t index)
{
	int error;

	if (index >= (uint32_t)hk_ndevs)
		return (ENOENT);
	hk_topo_lock();
	error = hk_probe_and_attach(&hk_devs[index]);
	hk_topo_unlock();
	return (error);
}

/* DEVICE_SHUTDOWN, DEVICE_SUSPEND and DEVICE_RESUME of every device. */
int hk_devctl_power(int what);
int
hk_devctl_power(int what)
{
	struct kobjop_desc *desc = what == 0 ? &device_shutdown_desc :
	    what == 1 ? &device_suspend_desc : &device_resume_desc;
	int i, error = 0;

	hk_topo_lock();
	for (i = 0; i < hk_ndevs; i++)
		if (hk_devs[i].state == DS_ATTACHED)
			error |= hk_call(&hk_devs[i], desc, 0);
	hk_topo_unlock();
	return (error);
}

/* The devices attached now, as "name0 name1 ...". */
void hk_devices(char *buf, size_t len);
void
hk_devices(char *buf, size_t len)
{
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < hk_ndevs && n < len; i++)
		if (hk_devs[i].state == DS_ATTACHED)
			n += snprintf(buf + n, len - n, "%s%s", n ? " " : "",
			    hk_devs[i].nameunit);
}

/* ---- pci(9), as the stand-in pcivar.h declares it. ---- */

int
BUS_READ_IVAR(device_t bus, device_t child, int index, uintptr_t *result)
{

	(void)bus;
	if (child->pci == NULL)
		return (ENOENT);
	switch (index) {
	case PCI_IVAR_VENDOR:
		*result = child->pci->vendor;
		return (0);
	case PCI_IVAR_DEVICE:
		*result = child->pci->device;
		return (0);
	case PCI_IVAR_DEVID:
		*result = (uint32_t)child->pci->device << 16 |
		    child->pci->vendor;
		return (0);
	default:
		*result = 0;
		return (0);
	}
}

int
pci_enable_busmaster(device_t dev)
{

	dev->busmaster = 1;
	return (0);
}

int
pci_msix_count(device_t dev)
{

	return ((int)dev->pci->msix_vectors);
}

int
pci_alloc_msix(device_t dev, int *count)
{

	if (dev->msix != 0 || *count <= 0)
		return (ENXIO);
	if ((uint32_t)*count > dev->pci->msix_vectors)
		*count = (int)dev->pci->msix_vectors;
	dev->msix = *count;
	return (0);
}

int
pci_release_msi(device_t dev)
{
	int i;

	/* pci_release_msi(9): EBUSY while an IRQ resource is allocated. */
	for (i = 0; i < HK_MAXRES; i++)
		if (hk_res[i] != NULL && hk_res[i]->dev == dev &&
		    hk_res[i]->type == SYS_RES_IRQ)
			return (EBUSY);
	if (dev->msix == 0)
		return (ENODEV);
	dev->msix = 0;
	return (0);
}

/* ---- Resources. ---- */

struct resource *
bus_alloc_resource(device_t dev, int type, int *rid, rman_res_t start,
    rman_res_t end, rman_res_t count, u_int flags)
{
	struct hk_pci *p = dev->pci;
	struct hk_res *r;
	int i, slot = -1;

	(void)start;
	(void)end;
	(void)count;
	for (i = 0; i < HK_MAXRES; i++) {
		if (hk_res[i] == NULL) {
			if (slot < 0)
				slot = i;
		} else if (hk_res[i]->dev == dev && hk_res[i]->type == type &&
		    hk_res[i]->rid == *rid)
			return (NULL);	/* already allocated */
	}
	if (slot < 0)
		return (NULL);
	r = malloc(sizeof(*r), M_DEVBUF, M_WAITOK | M_ZERO);
	r->dev = dev;
	r->type = type;
	r->rid = *rid;
	r->memattr = VM_MEMATTR_UNCACHEABLE;
	switch (type) {
	case SYS_RES_IOPORT:
		if (*rid != PCIR_BAR(0) || p->io_size == 0)
			goto fail;
		r->r.r_bustag = X86_BUS_SPACE_IO;
		r->r.r_bushandle = p->io_port;
		r->size = p->io_size;
		break;
	case SYS_RES_MEMORY:
		if (*rid == PCIR_BAR(1) && p->mem_va != NULL) {
			r->size = p->mem_size;
			if ((flags & RF_UNMAPPED) == 0) {
				r->r.r_bushandle = (bus_space_handle_t)p->mem_va;
				r->mapped = 1;
			}
		} else if (*rid == PCIR_BAR(2) && p->msix_va != NULL) {
			r->size = PAGE_SIZE;
			r->r.r_bushandle = (bus_space_handle_t)p->msix_va;
			r->mapped = 1;
		} else
			goto fail;
		r->r.r_bustag = X86_BUS_SPACE_MEM;
		break;
	case SYS_RES_IRQ:
		if (*rid < 1 || *rid > dev->msix)
			goto fail;
		r->size = 1;
		break;
	default:
		goto fail;
	}
	hk_res[slot] = r;
	return (&r->r);
fail:
	free(r, M_DEVBUF);
	return (NULL);
}

static struct hk_res *
hk_res_of(device_t dev, struct resource *res, const char *op,
    const void *caller)
{
	int i;

	for (i = 0; i < HK_MAXRES; i++)
		if (hk_res[i] != NULL && &hk_res[i]->r == res) {
			if (hk_res[i]->dev != dev)
				break;
			return (hk_res[i]);
		}
	hk_panic(caller, "%s: %s: resource %p is not "
	    "allocated to this device", op, dev->nameunit, res);
}

int
bus_release_resource(device_t dev, struct resource *res)
{
	struct hk_res *r = hk_res_of(dev, res, "bus_release_resource",
	    __builtin_return_address(0));
	int i;

	if (r->mapped == 2)
		hk_panic(__builtin_return_address(0), "bus_release_resource: "
		    "%s: resource rid %#x released while mapped by "
		    "bus_map_resource", dev->nameunit, r->rid);
	for (i = 0; i < HK_MAXRES; i++)
		if (hk_res[i] == r)
			hk_res[i] = NULL;
	free(r, M_DEVBUF);
	return (0);
}

bus_space_handle_t
rman_get_bushandle(const struct resource *r)
{

	return (r->r_bushandle);
}

void
resource_init_map_request_impl(struct resource_map_request *args, size_t sz)
{

	bzero(args, sz);
	args->size = sz;
	args->memattr = VM_MEMATTR_UNCACHEABLE;
}

int
bus_map_resource(device_t dev, struct resource *res,
    struct resource_map_request *args, struct resource_map *map)
{
	struct hk_res *r = hk_res_of(dev, res, "bus_map_resource",
	    __builtin_return_address(0));

	if (r->type != SYS_RES_MEMORY || r->mapped != 0)
		return (EINVAL);
	r->memattr = args != NULL ? args->memattr : VM_MEMATTR_UNCACHEABLE;
	r->mapped = 2;
	map->r_bustag = X86_BUS_SPACE_MEM;
	map->r_bushandle = (bus_space_handle_t)dev->pci->mem_va;
	map->r_size = r->size;
	map->r_vaddr = dev->pci->mem_va;
	return (0);
}

int
bus_unmap_resource(device_t dev, struct resource *res, struct resource_map *map)
{
	struct hk_res *r = hk_res_of(dev, res, "bus_unmap_resource",
	    __builtin_return_address(0));

	if (r->mapped != 2 || map->r_vaddr != dev->pci->mem_va)
		return (EINVAL);
	r->mapped = 0;
	return (0);
}

/* The memory attribute a device's memory BAR was mapped with (-1: none). */
int hk_res_memattr(uint32_t index);
int
hk_res_memattr(uint32_t index)
{
	int i;

	for (i = 0; i < HK_MAXRES; i++)
		if (hk_res[i] != NULL && hk_res[i]->dev == &hk_devs[index] &&
		    hk_res[i]->type == SYS_RES_MEMORY && hk_res[i]->mapped == 2)
			return (hk_res[i]->memattr);
	return (-1);
}

/* Resources allocated now, over every device. */
int hk_res_live(void);
int
hk_res_live(void)
{
	int i, n = 0;

	for (i = 0; i < HK_MAXRES; i++)
		n += hk_res[i] != NULL;
	return (n);
}

/* ---- Interrupts: an ithread per handler. ---- */

struct hk_intr {
	device_t	 dev;
	struct hk_res	*res;
	void		*irq;
	void		*thread;
	volatile int	 stop;
	driver_filter_t	*filter;
	driver_intr_t	*handler;
	void		*arg;
	char		 name[48];
};

static int64_t hk_intrs_live;

static void
hk_ithread(void *arg)
{
	struct hk_intr *ih = arg;

	hk_td_set_nosleep(1);
	while (hk->irq_wait(ih->irq, &ih->stop)) {
		if (ih->filter == NULL ||
		    (ih->filter(ih->arg) & FILTER_SCHEDULE_THREAD))
			if (ih->handler != NULL)
				ih->handler(ih->arg);
		if (hk_locks_held() != 0)
			hk_panic(NULL, "%s: interrupt handler returned with a "
			    "lock held", ih->name);
	}
}

int
bus_setup_intr(device_t dev, struct resource *r, int flags,
    driver_filter_t filter, driver_intr_t handler, void *arg, void **cookiep)
{
	struct hk_res *res = hk_res_of(dev, r, "bus_setup_intr",
	    __builtin_return_address(0));
	struct hk_intr *ih;

	if (res->type != SYS_RES_IRQ)
		return (EINVAL);
	if ((flags & INTR_MPSAFE) == 0)
		hk_panic(__builtin_return_address(0), "bus_setup_intr: %s: "
		    "a handler without INTR_MPSAFE would run under Giant",
		    dev->nameunit);
	hk_td_may_sleep("bus_setup_intr", __builtin_return_address(0));
	ih = malloc(sizeof(*ih), M_DEVBUF, M_WAITOK | M_ZERO);
	ih->dev = dev;
	ih->res = res;
	ih->filter = filter;
	ih->handler = handler;
	ih->arg = arg;
	snprintf(ih->name, sizeof(ih->name), "irq%d: %s", res->rid,
	    dev->nameunit);
	ih->irq = hk->irq_open(dev->index, (uint32_t)res->rid - 1);
	ih->thread = hk->thread_spawn(hk_ithread, ih, ih->name);
	*cookiep = ih;
	__atomic_add_fetch(&hk_intrs_live, 1, __ATOMIC_RELAXED);
	return (0);
}

int
bus_teardown_intr(device_t dev, struct resource *r, void *cookie)
{
	struct hk_intr *ih = cookie;

	(void)hk_res_of(dev, r, "bus_teardown_intr",
	    __builtin_return_address(0));
	if (ih == NULL || ih->dev != dev || &ih->res->r != r)
		hk_panic(__builtin_return_address(0), "bus_teardown_intr: %s: "
		    "bad cookie %p", dev->nameunit, cookie);
	/* Waits for a running handler: never from the handler itself. */
	hk_td_may_sleep("bus_teardown_intr", __builtin_return_address(0));
	ih->stop = 1;
	hk->irq_kick(ih->irq);
	hk->thread_join(ih->thread);
	hk->irq_close(ih->irq);
	free(ih, M_DEVBUF);
	__atomic_sub_fetch(&hk_intrs_live, 1, __ATOMIC_RELAXED);
	return (0);
}

int
bus_describe_intr(device_t dev, struct resource *irq, void *cookie,
    const char *fmt, ...)
{
	struct hk_intr *ih = cookie;
	va_list ap;
	int n;

	(void)hk_res_of(dev, irq, "bus_describe_intr",
	    __builtin_return_address(0));
	n = snprintf(ih->name, sizeof(ih->name), "irq%d: %s:", ih->res->rid,
	    dev->nameunit);
	va_start(ap, fmt);
	vsnprintf(ih->name + n, sizeof(ih->name) - n, fmt, ap);
	va_end(ap);
	return (0);
}

int64_t hk_intr_live(void);
int64_t
hk_intr_live(void)
{

	return (__atomic_load_n(&hk_intrs_live, __ATOMIC_RELAXED));
}

/* ---- Modules and the kernel linker's part. ---- */

struct module {
	const char	*name;
	modeventhand_t	 evhand;
	void		*priv;
	int		 file;
	int		 live;
};

#define	HK_MAXMOD	16
static struct module hk_mods[HK_MAXMOD];
static int hk_loading_file;

/* The modules this kernel provides (GENERIC with device netmap). */
static const struct {
	const char	*name;
	int		 version;
} hk_kernel_modules[] = {
	{ "kernel", 1500500 }, { "pci", 1 }, { "ether", 1 }, { "netmap", 1 },
};

void
module_register_init(const void *arg)
{
	const moduledata_t *data = arg;
	struct module *mod = NULL;
	int i, error;

	for (i = 0; i < HK_MAXMOD && mod == NULL; i++)
		if (!hk_mods[i].live)
			mod = &hk_mods[i];
	if (mod == NULL)
		hk_panic(NULL, "module_register_init: too many modules");
	mod->name = data->name;
	mod->evhand = data->evhand;
	mod->priv = data->priv;
	mod->file = hk_loading_file;
	mod->live = 1;
	hk_topo_lock();
	error = mod->evhand(mod, MOD_LOAD, mod->priv);
	hk_topo_unlock();
	if (error != 0) {
		(void)mod->evhand(mod, MOD_UNLOAD, mod->priv);
		mod->live = 0;
		printf("module_register_init: MOD_LOAD (%s, %p, %p) error %d\n",
		    data->name, (void *)data->evhand, data->priv, error);
	}
}

static int
hk_add_driver(driver_t *drv)
{
	int i;

	if (hk_ndrivers >= HK_MAXDRV)
		return (ENOMEM);
	hk_drivers[hk_ndrivers++] = drv;
	(void)hk_devclass_get(drv->name);
	/* pci_driver_added(): probe the devices no driver holds. */
	for (i = 0; i < hk_ndevs; i++)
		(void)hk_probe_and_attach(&hk_devs[i]);
	return (0);
}

static int
hk_delete_driver(driver_t *drv)
{
	int i, error;

	for (i = 0; i < hk_ndevs; i++)
		if (hk_devs[i].state == DS_ATTACHED &&
		    hk_devs[i].driver == drv) {
			error = hk_detach(&hk_devs[i]);
			if (error != 0)
				return (error);
		}
	for (i = 0; i < hk_ndrivers; i++)
		if (hk_drivers[i] == drv) {
			hk_drivers[i] = hk_drivers[--hk_ndrivers];
			break;
		}
	return (0);
}

/*
 * DRIVER_MODULE's handler, as sys/kern/subr_bus.c has it: on MOD_LOAD the
 * chained handler's error is overwritten by hk_add_driver()'s.
 */
int
driver_module_handler(module_t mod, int what, void *arg)
{
	struct driver_module_data *dmd = arg;
	int error = 0;

	switch (what) {
	case MOD_LOAD:
		if (dmd->dmd_chainevh)
			error = dmd->dmd_chainevh(mod, what, dmd->dmd_chainarg);
		error = hk_add_driver(dmd->dmd_driver);
		break;
	case MOD_UNLOAD:
		error = hk_delete_driver(dmd->dmd_driver);
		if (error == 0 && dmd->dmd_chainevh)
			error = dmd->dmd_chainevh(mod, what, dmd->dmd_chainarg);
		break;
	case MOD_QUIESCE:
		if (dmd->dmd_chainevh)
			error = dmd->dmd_chainevh(mod, what, dmd->dmd_chainarg);
		break;
	default:
		error = EOPNOTSUPP;
		break;
	}
	return (error);
}

static int
hk_sysinit_cmp(struct sysinit *a, struct sysinit *b)
{

	if (a->subsystem != b->subsystem)
		return (a->subsystem < b->subsystem ? -1 : 1);
	return (a->order < b->order ? -1 : a->order > b->order);
}

static void
hk_sort(struct sysinit **v, int n, int dir)
{
	struct sysinit *t;
	int i, j;

	for (i = 1; i < n; i++)
		for (j = i; j > 0 && dir * hk_sysinit_cmp(v[j - 1], v[j]) > 0; j--) {
			t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
}

/*
 * kldload(2) after the loader mapped and relocated the file: its
 * MODULE_DEPENDs checked against the kernel's modules, its sysctls
 * registered (tunables fetched), its SYSINITs run in order.
 */
int hk_kld_load(int file, const char *fname, struct mod_metadata **md,
    struct mod_metadata **md_end, struct sysinit **si, struct sysinit **si_end,
    struct sysctl_oid **oid, struct sysctl_oid **oid_end);
int
hk_kld_load(int file, const char *fname, struct mod_metadata **md,
    struct mod_metadata **md_end, struct sysinit **si, struct sysinit **si_end,
    struct sysctl_oid **oid, struct sysctl_oid **oid_end)
{
	const struct mod_depend *dep;
	struct sysinit *v[64];
	int i, n, ok;

	for (; md != NULL && md < md_end; md++) {
		if ((*md)->md_type != MDT_DEPEND)
			continue;
		dep = (*md)->md_data;
		ok = 0;
		for (i = 0; i < (int)nitems(hk_kernel_modules); i++)
			if (strcmp(hk_kernel_modules[i].name, (*md)->md_cval) == 0 &&
			    hk_kernel_modules[i].version >= dep->md_ver_minimum &&
			    hk_kernel_modules[i].version <= dep->md_ver_maximum)
				ok = 1;
		for (i = 0; i < HK_MAXMOD; i++)
			if (hk_mods[i].live && hk_mods[i].file != file &&
			    strcmp(hk_mods[i].name, (*md)->md_cval) == 0)
				ok = 1;
		if (!ok) {
			printf("KLD %s: depends on %s - not available or "
			    "version mismatch\n", fname, (*md)->md_cval);
			return (ENOEXEC);
		}
	}
	hk_sysctl_register_set(oid, oid_end);
	n = 0;
	for (; si != NULL && si < si_end && n < (int)nitems(v); si++)
		v[n++] = *si;
	hk_sort(v, n, 1);
	hk_loading_file = file;
	for (i = 0; i < n; i++)
		v[i]->func(v[i]->udata);
	hk_loading_file = 0;
	return (0);
}

/*
 * kldunload(2): every module of the file quiesced and unloaded (a refusal
 * keeps the file loaded, EBUSY), then the SYSUNINITs in reverse order and
 * the sysctls away.
 */
int hk_kld_unload(int file, struct sysinit **si, struct sysinit **si_end,
    struct sysctl_oid **oid, struct sysctl_oid **oid_end);
int
hk_kld_unload(int file, struct sysinit **si, struct sysinit **si_end,
    struct sysctl_oid **oid, struct sysctl_oid **oid_end)
{
	struct sysinit *v[64];
	int i, n, error;

	hk_topo_lock();
	for (i = HK_MAXMOD - 1; i >= 0; i--) {
		if (!hk_mods[i].live || hk_mods[i].file != file)
			continue;
		error = hk_mods[i].evhand(&hk_mods[i], MOD_QUIESCE,
		    hk_mods[i].priv);
		if (error == 0 || error == EOPNOTSUPP)
			error = hk_mods[i].evhand(&hk_mods[i], MOD_UNLOAD,
			    hk_mods[i].priv);
		if (error != 0) {
			hk_topo_unlock();
			printf("kldunload: %s refused to unload (error %d)\n",
			    hk_mods[i].name, error);
			return (EBUSY);
		}
		hk_mods[i].live = 0;
	}
	hk_topo_unlock();
	n = 0;
	for (; si != NULL && si < si_end && n < (int)nitems(v); si++)
		v[n++] = *si;
	hk_sort(v, n, -1);
	for (i = 0; i < n; i++)
		v[i]->func(v[i]->udata);
	hk_sysctl_unregister_set(oid, oid_end);
	return (0);
}
