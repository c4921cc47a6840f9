/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * What netmap_kloop.c's SYNC_KLOOP_POLL code (the notification path that
 * netmap's Linux build compiles, and QEMU's ptnetmap backend uses: kicks
 * arrive on ioeventfds, interrupts leave on irqfds) names from Linux,
 * defined for userspace on FreeBSD's headers. FreeBSD's own build of the
 * file has no such path: its kloop only busy-waits (sleep_us) and never
 * interrupts the guest, which is not how ptnet is run.
 *
 * Only the per-ring sync (netmap_sync_kloop_tx_ring/_rx_ring) runs here;
 * its one use of these definitions is NM_EVENTFD_SIGNAL(a->irq_ctx),
 * which raises the ring's interrupt through the simulator
 * (nmc_irq_signal, Rust). The wait-queue and file machinery of
 * netmap_sync_kloop() (the ioctl that runs the loop in a kernel thread)
 * must compile, and aborts if reached: the simulator runs the loop.
 */

#ifndef NMC_LINUX_POLL_H
#define NMC_LINUX_POLL_H

/* An irqfd: the interrupt of one ring. */
struct eventfd_ctx;
void nmc_irq_signal(struct eventfd_ctx *);
void nmc_never(const char *);
#define NM_EVENTFD_SIGNAL(c)	nmc_irq_signal(c)

typedef struct nmc_wait_queue {
	int (*func)(struct nmc_wait_queue *, unsigned, int, void *);
} wait_queue_t;
typedef struct { int unused; } wait_queue_head_t;
struct file;
typedef struct nmc_poll_table {
	void (*qproc)(struct file *, wait_queue_head_t *,
	    struct nmc_poll_table *);
} poll_table;
struct nmc_file_operations {
	unsigned long (*poll)(struct file *, poll_table *);
};
struct file {
	const struct nmc_file_operations *f_op;
};

/*
 * Linux's netmap_priv_d has the file it belongs to (np_filp); FreeBSD's
 * does not. netmap_sync_kloop() only compares and polls it, code that
 * aborts here: any pointer member will do.
 */
#define np_filp	np_nifp
#pragma clang diagnostic ignored "-Wcompare-distinct-pointer-types"

#define container_of(p, type, field)	__containerof(p, type, field)
#define BUG_ON(c)	do { if (c) nmc_never("BUG_ON"); } while (0)
#define current		((void *)0)
#define init_waitqueue_entry(w, t)	nmc_never("init_waitqueue_entry")
#define init_waitqueue_func_entry(w, f)	((w)->func = (f), \
				    nmc_never("init_waitqueue_func_entry"))
#define add_wait_queue(h, w)	nmc_never("add_wait_queue")
#define remove_wait_queue(h, w)	nmc_never("remove_wait_queue")
#define init_poll_funcptr(t, f)	((t)->qproc = (f), nmc_never("init_poll_funcptr"))
#define poll_wait(f, h, t)	nmc_never("poll_wait")
#define eventfd_fget(fd)	(nmc_never("eventfd_fget"), (struct file *)0)
#define eventfd_ctx_fileget(f)	(nmc_never("eventfd_ctx_fileget"), \
				    (struct eventfd_ctx *)0)
#define eventfd_ctx_put(c)	nmc_never("eventfd_ctx_put")
#define fput(f)			nmc_never("fput")
#define IS_ERR(p)		0
#define PTR_ERR(p)		0
#define TASK_INTERRUPTIBLE	1
#define TASK_RUNNING		0
#define set_current_state(s)	nmc_never("set_current_state")
#define __set_current_state(s)	nmc_never("__set_current_state")
#define schedule_timeout(t)	nmc_never("schedule_timeout")
#define msecs_to_jiffies(ms)	(ms)

#endif /* NMC_LINUX_POLL_H */
