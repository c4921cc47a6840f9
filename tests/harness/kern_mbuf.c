/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * mbuf(9) as sys/kern/kern_mbuf.c and sys/kern/uipc_mbuf.c provide it to
 * a driver: m_getm2() choosing mbufs, clusters and page-sized jumbo
 * clusters as FreeBSD's does (kern_mbuf.c, m_getm2: MJUMPAGESIZE above
 * MCLBYTES, a cluster from MINCLSIZE, else a plain mbuf), clusters with
 * an embedded reference count (EXT_FLAG_EMBREF) so that M_WRITABLE() and
 * M_TRAILINGSPACE() see them writable, m_freem(), m_copydata() with its
 * INVARIANTS checks (uipc_mbuf.c).
 *
 * Each mbuf and cluster has pages of its own from the harness; freed,
 * they are quarantined (unmapped), so any later access, a second
 * m_freem() included, faults and the harness names it.
 */

#include "hk.h"

#define	HK_MBUF_MAGIC	0x6d62756673686b31ULL	/* "mbufshk1" */

/* Kept after the mbuf in its page: what the checks need to know. */
struct hk_mtrack {
	uint64_t	magic;
	const void	*allocated_by;
};

static int64_t hk_mbufs_live, hk_clusters_live;

static struct hk_mtrack *
hk_mtrack(struct mbuf *m)
{

	return ((struct hk_mtrack *)((char *)m + MSIZE));
}

static struct mbuf *
hk_mbuf_get(int how, short type, int flags, const void *caller)
{
	struct mbuf *m;

	if (how == M_WAITOK)
		hk_td_may_sleep("m_getm2(M_WAITOK)", caller);
	m = hk->mbuf_alloc(MSIZE + sizeof(struct hk_mtrack));
	if (m == NULL)
		return (NULL);
	hk_mtrack(m)->magic = HK_MBUF_MAGIC;
	hk_mtrack(m)->allocated_by = caller;
	m->m_next = NULL;
	m->m_nextpkt = NULL;
	m->m_len = 0;
	m->m_flags = flags & M_PKTHDR;
	m->m_type = type;
	if (flags & M_PKTHDR) {
		m->m_data = m->m_pktdat;
		bzero(&m->m_pkthdr, sizeof(m->m_pkthdr));
		SLIST_INIT(&m->m_pkthdr.tags);
	} else
		m->m_data = m->m_dat;
	__atomic_add_fetch(&hk_mbufs_live, 1, __ATOMIC_RELAXED);
	return (m);
}

/* An mbuf with a cluster of `size` bytes (m_getcl(), m_getjcl()). */
static struct mbuf *
hk_mbuf_getcl(int how, short type, int flags, int size, const void *caller)
{
	struct mbuf *m;
	char *buf;

	m = hk_mbuf_get(how, type, flags, caller);
	if (m == NULL)
		return (NULL);
	buf = hk->mbuf_alloc(size);
	if (buf == NULL) {
		m_freem(m);
		return (NULL);
	}
	m->m_flags |= M_EXT;
	m->m_data = buf;
	m->m_ext.ext_buf = buf;
	m->m_ext.ext_size = size;
	m->m_ext.ext_type = size == MCLBYTES ? EXT_CLUSTER : EXT_JUMBOP;
	m->m_ext.ext_flags = EXT_FLAG_EMBREF;
	m->m_ext.ext_count = 1;
	__atomic_add_fetch(&hk_clusters_live, 1, __ATOMIC_RELAXED);
	return (m);
}

/* sys/kern/kern_mbuf.c, m_getm2(). */
struct mbuf *
m_getm2(struct mbuf *m, int len, int how, short type, int flags)
{
	const void *caller = __builtin_return_address(0);
	struct mbuf *mb, *nm = NULL, *mtail = NULL;

	if (len < 0)
		hk_panic(caller, "m_getm2: len is < 0");
	flags &= (M_PKTHDR | M_EOR);
	if ((flags & M_PKTHDR) && m != NULL)
		flags &= ~M_PKTHDR;
	while (len > 0) {
		if (len > MCLBYTES)
			mb = hk_mbuf_getcl(how, type, flags & M_PKTHDR,
			    MJUMPAGESIZE, caller);
		else if (len >= MINCLSIZE)
			mb = hk_mbuf_getcl(how, type, flags & M_PKTHDR,
			    MCLBYTES, caller);
		else
			mb = hk_mbuf_get(how, type, flags & M_PKTHDR, caller);
		if (mb == NULL) {
			if (nm != NULL)
				m_freem(nm);
			return (NULL);
		}
		len -= M_SIZE(mb);
		if (mtail != NULL)
			mtail->m_next = mb;
		else
			nm = mb;
		mtail = mb;
		flags &= ~M_PKTHDR;
	}
	if ((flags & M_EOR) && mtail != NULL)
		mtail->m_flags |= M_EOR;
	if (m != NULL) {
		for (mtail = m; mtail->m_next != NULL; mtail = mtail->m_next)
			;
		mtail->m_next = nm;
		return (m);
	}
	return (nm);
}

static void
hk_mbuf_check_one(struct mbuf *m, const char *what, const void *caller)
{
	char *start, *end;

	if (hk_mtrack(m)->magic != HK_MBUF_MAGIC)
		hk_panic(caller, "%s: %p is not an mbuf", what, m);
	start = M_START(m);
	end = start + M_SIZE(m);
	if (m->m_len < 0 || m->m_data < start || m->m_data + m->m_len > end)
		hk_panic(caller, "%s: mbuf %p data %p len %d outside its "
		    "storage %p-%p", what, m, m->m_data, m->m_len, start, end);
}

/*
 * What INVARIANTS kernels check of a packet (m_sanity(), m_length(),
 * M_ASSERTPKTHDR): a packet header on the first mbuf only, the lengths
 * adding up to m_pkthdr.len.
 */
int
hk_mbuf_check_chain(struct mbuf *m, const char *what, const void *caller)
{
	struct mbuf *n;
	int64_t len = 0;

	if (m == NULL)
		hk_panic(caller, "%s: NULL mbuf", what);
	if ((m->m_flags & M_PKTHDR) == 0)
		hk_panic(caller, "%s: no mbuf %p packet header!", what, m);
	for (n = m; n != NULL; n = n->m_next) {
		hk_mbuf_check_one(n, what, caller);
		if (n != m && (n->m_flags & M_PKTHDR))
			hk_panic(caller, "%s: M_PKTHDR on mbuf %p, not the "
			    "first of its chain %p", what, n, m);
		len += n->m_len;
	}
	if (len != m->m_pkthdr.len)
		hk_panic(caller, "%s: m_pkthdr.len %d but the chain %p holds "
		    "%jd bytes", what, m->m_pkthdr.len, m, (intmax_t)len);
	return (0);
}

static void
hk_mbuf_free_one(struct mbuf *m, const void *caller)
{

	hk_mbuf_check_one(m, "m_freem", caller);
	if (m->m_flags & M_EXT) {
		if ((m->m_ext.ext_flags & EXT_FLAG_EMBREF) == 0 ||
		    m->m_ext.ext_count != 1)
			hk_panic(caller, "m_freem: cluster of %p with reference "
			    "count %u", m, m->m_ext.ext_count);
		hk->mbuf_release(m->m_ext.ext_buf, m->m_ext.ext_size);
		__atomic_sub_fetch(&hk_clusters_live, 1, __ATOMIC_RELAXED);
	}
	hk_mtrack(m)->magic = 0;
	hk->mbuf_release(m, MSIZE + sizeof(struct hk_mtrack));
	__atomic_sub_fetch(&hk_mbufs_live, 1, __ATOMIC_RELAXED);
}

/* sys/kern/kern_mbuf.c, m_freem(): the chain of one packet. */
void
m_freem(struct mbuf *m)
{
	const void *caller = __builtin_return_address(0);
	struct mbuf *n;

	while (m != NULL) {
		n = m->m_next;
		hk_mbuf_free_one(m, caller);
		m = n;
	}
}

/* sys/kern/uipc_mbuf.c, m_copydata(), with its KASSERTs. */
void
m_copydata(const struct mbuf *m, int off, int len, caddr_t cp)
{
	const void *caller = __builtin_return_address(0);
	u_int count;

	if (off < 0)
		hk_panic(caller, "m_copydata, negative off %d", off);
	if (len < 0)
		hk_panic(caller, "m_copydata, negative len %d", len);
	while (off > 0) {
		if (m == NULL)
			hk_panic(caller, "m_copydata, offset > size of mbuf chain");
		if (off < m->m_len)
			break;
		off -= m->m_len;
		m = m->m_next;
	}
	while (len > 0) {
		if (m == NULL)
			hk_panic(caller, "m_copydata, length > size of mbuf chain");
		count = min(m->m_len - off, len);
		memcpy(cp, mtod(m, caddr_t) + off, count);
		len -= count;
		cp += count;
		off = 0;
		m = m->m_next;
	}
}

/* mbufs and clusters alive now (the harness's ledger). */
void hk_mbuf_live(int64_t *mbufs, int64_t *clusters);
void
hk_mbuf_live(int64_t *mbufs, int64_t *clusters)
{

	*mbufs = __atomic_load_n(&hk_mbufs_live, __ATOMIC_RELAXED);
	*clusters = __atomic_load_n(&hk_clusters_live, __ATOMIC_RELAXED);
}
