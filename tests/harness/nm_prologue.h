/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * netmap's ring prologues (sys/dev/netmap/netmap.c, nm_txsync_prologue()
 * and nm_rxsync_prologue()): the checks every txsync/rxsync makes on the
 * head and cur an application proposes, before the ring's nm_sync runs;
 * and the pointer half of netmap_ring_reinit(), which follows a refusal.
 * Shared by the harness kernel (its NIOCTXSYNC/NIOCRXSYNC) and by
 * tests/netmapc (the definitions netmap_kloop.c's host sync calls).
 * Includers have <dev/netmap/netmap_kern.h>.
 */

#ifndef HK_NM_PROLOGUE_H
#define HK_NM_PROLOGUE_H

/* nm_txsync_prologue(): head and cur within rhead..rtail. */
static inline u_int
hk_txsync_prologue(struct netmap_kring *kring, struct netmap_ring *ring)
{
	u_int head = ring->head, cur = ring->cur, n = kring->nkr_num_slots;

	if (kring->nr_hwcur >= n || kring->rhead >= n || kring->rtail >= n ||
	    kring->nr_hwtail >= n)
		return (n);
	if (kring->rtail >= kring->rhead) {
		if (head < kring->rhead || head > kring->rtail)
			return (n);
		if (cur < head || cur > kring->rtail)
			return (n);
	} else {
		if (head > kring->rtail && head < kring->rhead)
			return (n);
		if (head <= kring->rtail) {
			if (cur < head || cur > kring->rtail)
				return (n);
		} else if (cur > kring->rtail && cur < head)
			return (n);
	}
	if (ring->tail != kring->rtail)
		ring->tail = kring->rtail;
	kring->rhead = head;
	kring->rcur = cur;
	return (head);
}

/* nm_rxsync_prologue(): head and cur within hwcur..hwtail. */
static inline u_int
hk_rxsync_prologue(struct netmap_kring *kring, struct netmap_ring *ring)
{
	u_int n = kring->nkr_num_slots, head, cur;

	cur = kring->rcur = ring->cur;
	head = kring->rhead = ring->head;
	if (kring->nr_hwcur >= n || kring->nr_hwtail >= n)
		return (n);
	if (kring->nr_hwtail >= kring->nr_hwcur) {
		if (head < kring->nr_hwcur || head > kring->nr_hwtail)
			return (n);
		if (cur < head || cur > kring->nr_hwtail)
			return (n);
	} else {
		if (head < kring->nr_hwcur && head > kring->nr_hwtail)
			return (n);
		if (head <= kring->nr_hwtail) {
			if (cur < head || cur > kring->nr_hwtail)
				return (n);
		} else if (cur < head && cur > kring->nr_hwtail)
			return (n);
	}
	if (ring->tail != kring->rtail)
		ring->tail = kring->rtail;
	return (head);
}

/*
 * netmap_ring_reinit()'s pointer half: the kring takes the ring's head,
 * cur and tail; returns how many are out of range.
 */
static inline int
hk_reinit_load(struct netmap_kring *kring)
{
	struct netmap_ring *ring = kring->ring;
	u_int lim = kring->nkr_num_slots - 1;

	kring->rhead = ring->head;
	kring->rcur = ring->cur;
	kring->rtail = ring->tail;
	return ((ring->cur > lim) + (ring->head > lim) + (ring->tail > lim));
}

/* ... and when any was: ring and kring back to the kernel's pointers. */
static inline void
hk_reinit_reset(struct netmap_kring *kring)
{
	struct netmap_ring *ring = kring->ring;

	ring->head = kring->rhead = kring->nr_hwcur;
	ring->cur = kring->rcur = kring->nr_hwcur;
	ring->tail = kring->rtail = kring->nr_hwtail;
}

#endif /* HK_NM_PROLOGUE_H */
