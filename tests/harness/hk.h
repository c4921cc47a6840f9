/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * hk: a userspace stand-in for the FreeBSD kernel services ptnrs.ko uses,
 * compiled against FreeBSD 15's headers (so mbufs, locks, sysctl nodes,
 * tasks and callouts have FreeBSD's layouts) and loaded, like the module,
 * by the test harness's ELF loader into the low 2 GiB (kernel code model).
 *
 * It implements each KPI as its section 9 page says, with the checks of a
 * debugging kernel (INVARIANTS, WITNESS) that find driver bugs; a check
 * that fires panics with the kernel's message and the caller's location.
 * What only the host can do (memory, threads, clocks, the simulated PCI
 * devices, the network stack's other end) it asks of the harness through
 * struct hk_host, handed over at boot.
 */

#ifndef HK_H
#define HK_H

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/bus.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mbuf.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/rman.h>
#include <sys/sx.h>
#include <sys/sysctl.h>
#include <sys/taskqueue.h>
#include <sys/callout.h>
#include <sys/linker_set.h>
#include <machine/stdarg.h>

/* A packet's metadata between the stack and the harness (mbuf.h makes
 * macros of the m_pkthdr field names, hence the prefix). */
struct hk_pkt {
	uint32_t	pk_csum_flags;
	uint32_t	pk_csum_data;
	uint32_t	pk_flowid;
	uint16_t	pk_tso_segsz;
	uint16_t	pk_lro_nsegs;
	uint16_t	pk_vtag;
	uint8_t		pk_hashtype;
	uint8_t		pk_has_vlan;
	uint32_t	pk_nsegs;	/* mbufs in the chain (input) */
};

/* What the harness lends the kernel. Every entry is set. */
struct hk_host {
	/* The console (dmesg). */
	void	(*console)(const char *buf, size_t len);
	/* A KPI check failed: prints, with the caller's location and the
	 * frame-pointer backtrace from `frame`, and exits. */
	void	(*panic)(const char *msg, size_t len, const void *caller,
		    const void *frame);
	/* Zeroed memory. `nowait_caller`: for an M_NOWAIT request, whose
	 * it is (NULL can never fail); the harness injects failures into
	 * the module's own. */
	void	*(*alloc)(size_t size, const void *nowait_caller);
	void	(*release)(void *p);
	/* Guest-physical memory: zeroed, aligned, with its address. */
	void	*(*dma_alloc)(size_t size, size_t align, uint64_t *paddr,
		    const void *nowait_caller);
	int	(*dma_release)(void *va);
	uint64_t (*virt_to_phys)(const void *va);
	/* mbuf and cluster memory: page-granular, quarantined when freed
	 * (a later access faults, and the fault handler names it). */
	void	*(*mbuf_alloc)(size_t size);
	void	(*mbuf_release)(void *p, size_t size);
	/* Blocking primitives. */
	void	*(*lock_new)(void);
	void	(*lock_free)(void *l);
	void	(*lock)(void *l);
	int	(*trylock)(void *l);
	void	(*unlock)(void *l);
	void	*(*cond_new)(void);
	void	(*cond_free)(void *c);
	/* Waits on c with l held (dropped meanwhile); 0 on wakeup, 1 on
	 * timeout (timeout_ns 0: none). */
	int	(*cond_wait)(void *c, void *l, uint64_t timeout_ns);
	void	(*cond_broadcast)(void *c);
	/* A kernel thread: runs fn(arg) with curthread set up. */
	void	*(*thread_spawn)(void (*fn)(void *), void *arg, const char *name);
	void	(*thread_join)(void *t);
	uint64_t (*uptime_ns)(void);
	/* Interrupts of PCI function `pci`: an event per vector. */
	void	*(*irq_open)(uint32_t pci, uint32_t vector);
	void	(*irq_close)(void *irq);
	/* Waits for the vector (1) or stop (0); `stop` is polled. */
	int	(*irq_wait)(void *irq, volatile int *stop);
	void	(*irq_kick)(void *irq);
	/* The network stack above the interface: a received frame. */
	void	(*if_input)(const char *ifname, const struct hk_pkt *meta,
		    const void *data, size_t len);
	/* BPF: a packet the driver transmitted. */
	void	(*bpf_tap)(const char *ifname, size_t len);
	/* A kernel tunable (kenv), 0 if unset. */
	int	(*getenv_int)(const char *name, int *value);
};

/* A simulated PCI function, as the harness describes it. */
struct hk_pci {
	uint16_t	vendor, device;
	uint32_t	io_port;	/* BAR 0: I/O ports */
	uint32_t	io_size;
	void		*mem_va;	/* BAR 1: memory (the memdev's) */
	uint64_t	mem_size;
	uint64_t	mem_pa;
	void		*msix_va;	/* BAR 2: the MSI-X table (traps) */
	uint32_t	msix_vectors;
};

extern const struct hk_host *hk;

/* Panics with a kernel-style message; `caller` names where. */
void	hk_panic(const void *caller, const char *fmt, ...) __dead2 __printflike(2, 3);

/* Prints "name: " and the message (device_printf, if_printf). */
int	hk_vprintf_named(const char *name, const char *fmt, va_list ap);

/* The per-thread state behind curthread. */
struct hk_td;
struct hk_td *hk_td_self(void);
int	hk_td_may_sleep(const char *what, const void *caller);
void	hk_td_set_nosleep(int nosleep);

/* Internal services of the kernel files. */
void	hk_lock_boot(void);
void	hk_bus_boot(void);
void	hk_taskq_boot(void);
void	hk_sysctl_boot(void);
void	hk_if_boot(void);
void	hk_netmap_boot(void);
void	hk_sysctl_register_set(struct sysctl_oid **start, struct sysctl_oid **stop);
void	hk_sysctl_unregister_set(struct sysctl_oid **start, struct sysctl_oid **stop);
struct sysctl_ctx_list *hk_device_sysctl_ctx(device_t dev);
int	hk_mbuf_check_chain(struct mbuf *m, const char *what, const void *caller);
void	hk_check_freed(const void *p, size_t size, const void *caller);
int	hk_locks_held(void);

/* netmap's adapters and krings (kern_netmap.c). */
struct netmap_adapter;
struct netmap_hw_adapter;
struct netmap_mem_d;
struct netmap_ring;
int	hk_netmap_attach_ext(struct netmap_adapter *arg, size_t size,
	    struct netmap_hw_adapter **out);
int	hk_krings_create(struct netmap_adapter *na);
void	hk_krings_delete(struct netmap_adapter *na);
void	hk_bus_probe_all(void);
#ifdef WITH_PTNETMAP
/* The ptnetmap guest allocator (kern_ptnetmap.c). */
struct netmap_ring *hk_ptmem_ring(struct netmap_mem_d *m, int tx, u_int i);
void	hk_ptmem_free(struct netmap_mem_d *m);
#endif

/* A sleep mutex's short-term wrappers for the kernel's own state. */
struct hk_mtx {
	void	*l;
};
void	hk_mtx_init(struct hk_mtx *m);
void	hk_mtx_lock(struct hk_mtx *m);
void	hk_mtx_unlock(struct hk_mtx *m);

#endif /* HK_H */
