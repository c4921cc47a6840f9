/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The network interface layer a driver sees, with FreeBSD 15's struct
 * ifnet (net/if_private.h): if_alloc(9) and the if_t accessors
 * (sys/net/if.c), ether_ifattach/ether_ifdetach/ether_ioctl and the
 * input path (sys/net/if_ethersubr.c), ifmedia(9) (sys/net/if_media.c),
 * BPF taps, and ifconfig(8)'s requests as ifhwioctl() (sys/net/if.c)
 * makes them: the flags changed before the driver's ioctl sees
 * SIOCSIFFLAGS, MTU bounds, SIOCSIFCAP refused for capabilities the
 * interface lacks.
 *
 * The stack above: ether_input() takes the driver's m_nextpkt list,
 * checks each packet as an INVARIANTS kernel would (packet header,
 * lengths, rcvif), hands its bytes and metadata to the harness and frees
 * it; a later access by the driver faults. Packets from the harness go
 * down through if_transmit as chains of mbufs the way the stack builds
 * them (headers in the packet-header mbuf, payload in clusters).
 */

#include "hk.h"

#include <sys/socket.h>
#include <sys/sockio.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_var.h>
#include <net/if_private.h>
#include <net/if_media.h>
#include <net/if_types.h>
#include <net/if_vlan_var.h>

MALLOC_DEFINE(M_IFNET, "ifnet", "interface internals");
MALLOC_DEFINE(M_IFADDR, "ifaddr", "interface address");

#define	HK_MAXIF	8

/* What the harness keeps of each interface beside struct ifnet. */
struct hk_ifx {
	struct ifnet	*ifp;
	int		 attached;	/* between ether_ifattach and detach */
	uint8_t		 lladdr[ETHER_ADDR_LEN];
	uint64_t	 counters[IFCOUNTERS];
	int		 bpf_peers;
};

static struct hk_ifx hk_ifs[HK_MAXIF];
static struct hk_mtx hk_if_lock;
static int64_t hk_ifnets_live;

void	(*vlan_trunk_cap_p)(struct ifnet *);

/* The harness's record of `ifp`; a pointer that is no ifnet panics. */
#define	hk_ifx(ifp)	hk_ifx_of((ifp), __builtin_return_address(0))

static struct hk_ifx *
hk_ifx_of(if_t ifp, const void *caller)
{
	int i;

	for (i = 0; i < HK_MAXIF; i++)
		if (hk_ifs[i].ifp == ifp)
			return (&hk_ifs[i]);
	hk_panic(caller, "ifnet %p is not allocated (freed?)", ifp);
}

if_t
if_alloc(u_char type)
{
	struct ifnet *ifp;
	int i;

	hk_td_may_sleep("if_alloc", __builtin_return_address(0));
	ifp = malloc(sizeof(*ifp), M_IFNET, M_WAITOK | M_ZERO);
	ifp->if_type = ifp->if_alloctype = type;
	ifp->if_dunit = IF_DUNIT_NONE;
	hk_mtx_lock(&hk_if_lock);
	for (i = 0; i < HK_MAXIF && hk_ifs[i].ifp != NULL; i++)
		;
	if (i == HK_MAXIF)
		hk_panic(NULL, "if_alloc: too many interfaces");
	bzero(&hk_ifs[i], sizeof(hk_ifs[i]));
	hk_ifs[i].ifp = ifp;
	ifp->if_index = i + 1;
	hk_mtx_unlock(&hk_if_lock);
	__atomic_add_fetch(&hk_ifnets_live, 1, __ATOMIC_RELAXED);
	return (ifp);
}

void
if_free(if_t ifp)
{
	struct hk_ifx *x = hk_ifx(ifp);

	if (x->attached)
		hk_panic(__builtin_return_address(0), "if_free: %s still "
		    "attached (ether_ifdetach first)", ifp->if_xname);
	if (ifp->if_netmap != NULL)
		hk_panic(__builtin_return_address(0), "if_free: %s still has "
		    "its netmap adapter (netmap_detach first)", ifp->if_xname);
	hk_mtx_lock(&hk_if_lock);
	x->ifp = NULL;
	hk_mtx_unlock(&hk_if_lock);
	free(ifp, M_IFNET);
	__atomic_sub_fetch(&hk_ifnets_live, 1, __ATOMIC_RELAXED);
}

void
if_initname(if_t ifp, const char *name, int unit)
{

	ifp->if_dname = name;
	ifp->if_dunit = unit;
	if (unit != IF_DUNIT_NONE)
		snprintf(ifp->if_xname, IFNAMSIZ, "%s%d", name, unit);
	else
		strlcpy(ifp->if_xname, name, IFNAMSIZ);
}

const char *
if_name(if_t ifp)
{

	return (ifp->if_xname);
}

int
if_printf(if_t ifp, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = hk_vprintf_named(ifp->if_xname, fmt, ap);
	va_end(ap);
	return (n);
}

/* ---- The accessors (sys/net/if.c). ---- */

void *if_getsoftc(if_t ifp) { return (ifp->if_softc); }
int if_setsoftc(if_t ifp, void *softc) { ifp->if_softc = softc; return (0); }
int if_getflags(const if_t ifp) { return (ifp->if_flags); }
int if_getdrvflags(const if_t ifp) { return (ifp->if_drv_flags); }
int if_getcapabilities(const if_t ifp) { return (ifp->if_capabilities); }
int if_getcapenable(const if_t ifp) { return (ifp->if_capenable); }
struct ifvlantrunk *if_getvlantrunk(if_t ifp) { return (ifp->if_vlantrunk); }
struct netmap_adapter *if_getnetmapadapter(if_t ifp) { return (ifp->if_netmap); }
void if_setnetmapadapter(if_t ifp, struct netmap_adapter *na) { ifp->if_netmap = na; }
if_transmit_fn_t if_gettransmitfn(if_t ifp) { return (ifp->if_transmit); }
if_input_fn_t if_getinputfn(if_t ifp) { return (ifp->if_input); }
char *if_getlladdr(const if_t ifp) { return ((char *)hk_ifx(ifp)->lladdr); }

int
if_setflags(if_t ifp, int flags)
{

	ifp->if_flags = flags;
	return (0);
}

int
if_setdrvflagbits(if_t ifp, int set_flags, int clear_flags)
{

	ifp->if_drv_flags = (ifp->if_drv_flags | set_flags) & ~clear_flags;
	return (0);
}

int
if_setcapabilities(if_t ifp, int capabilities)
{

	ifp->if_capabilities = capabilities;
	return (0);
}

int
if_setcapabilitiesbit(if_t ifp, int setbit, int clearbit)
{

	ifp->if_capabilities = (ifp->if_capabilities | setbit) & ~clearbit;
	return (0);
}

int
if_setcapenable(if_t ifp, int capabilities)
{

	ifp->if_capenable = capabilities;
	return (0);
}

int
if_setcapenablebit(if_t ifp, int setcap, int clearcap)
{

	ifp->if_capenable = (ifp->if_capenable | setcap) & ~clearcap;
	return (0);
}

int
if_sethwassist(if_t ifp, int hwassist_bit)
{

	ifp->if_hwassist = hwassist_bit;
	return (0);
}

int
if_setmtu(if_t ifp, int mtu)
{

	ifp->if_mtu = mtu;
	return (0);
}

uint64_t
if_setbaudrate(if_t ifp, uint64_t baudrate)
{
	uint64_t old = ifp->if_baudrate;

	ifp->if_baudrate = baudrate;
	return (old);
}

int
if_setifheaderlen(if_t ifp, int len)
{

	ifp->if_hdrlen = len;
	return (0);
}

void if_setinitfn(if_t ifp, if_init_fn_t f) { ifp->if_init = f; }
void if_setioctlfn(if_t ifp, if_ioctl_fn_t f) { ifp->if_ioctl = f; }
void if_settransmitfn(if_t ifp, if_transmit_fn_t f) { ifp->if_transmit = f; }
void if_setqflushfn(if_t ifp, if_qflush_fn_t f) { ifp->if_qflush = f; }
void if_setgetcounterfn(if_t ifp, if_get_counter_t f) { ifp->if_get_counter = f; }

uint64_t
if_get_counter_default(if_t ifp, ift_counter cnt)
{

	if ((u_int)cnt >= IFCOUNTERS)
		hk_panic(__builtin_return_address(0),
		    "if_get_counter_default: counter %d", cnt);
	return (hk_ifx(ifp)->counters[cnt]);
}

void
if_inc_counter(if_t ifp, ift_counter cnt, int64_t inc)
{

	__atomic_add_fetch(&hk_ifx(ifp)->counters[cnt], inc, __ATOMIC_RELAXED);
}

/* if_qflush(): the generic send queue, which this driver leaves empty. */
void
if_qflush(if_t ifp)
{

	(void)hk_ifx(ifp);
}

/* ---- Ethernet (sys/net/if_ethersubr.c). ---- */

/* ether_input(): one packet of the driver's list at a time. */
static void
hk_ether_input(struct ifnet *ifp, struct mbuf *m)
{
	const void *caller = __builtin_return_address(0);
	struct hk_ifx *x = hk_ifx(ifp);
	struct mbuf *next, *n;
	struct hk_pkt meta;
	char *buf;
	int len, off;

	if (!x->attached)
		hk_panic(caller, "if_input: %s is detached", ifp->if_xname);
	for (; m != NULL; m = next) {
		next = m->m_nextpkt;
		m->m_nextpkt = NULL;
		hk_mbuf_check_chain(m, "ether_input", caller);
		if (m->m_pkthdr.rcvif != ifp)
			hk_panic(caller, "ether_input: mbuf %p rcvif %p is not "
			    "%s", m, m->m_pkthdr.rcvif, ifp->if_xname);
		if (m->m_len < ETHER_HDR_LEN) {
			/* if_ethersubr.c discards and counts these. */
			if_printf(ifp, "discard frame w/o leading ethernet "
			    "header (len %d pkt len %d)\n", m->m_len,
			    m->m_pkthdr.len);
			if_inc_counter(ifp, IFCOUNTER_IERRORS, 1);
			m_freem(m);
			continue;
		}
		len = m->m_pkthdr.len;
		buf = hk->alloc(len > 0 ? len : 1, NULL);
		bzero(&meta, sizeof(meta));
		for (n = m, off = 0; n != NULL; n = n->m_next) {
			memcpy(buf + off, mtod(n, char *), n->m_len);
			off += n->m_len;
			meta.pk_nsegs++;
		}
		meta.pk_csum_flags = m->m_pkthdr.csum_flags;
		meta.pk_csum_data = m->m_pkthdr.csum_data;
		meta.pk_flowid = m->m_pkthdr.flowid;
		meta.pk_hashtype = M_HASHTYPE_GET(m);
		meta.pk_lro_nsegs = m->m_pkthdr.lro_nsegs;
		meta.pk_has_vlan = (m->m_flags & M_VLANTAG) != 0;
		meta.pk_vtag = m->m_pkthdr.ether_vtag;
		m_freem(m);
		hk->if_input(ifp->if_xname, &meta, buf, len);
		hk->release(buf);
	}
}

static int
hk_ether_output(struct ifnet *ifp, struct mbuf *m, const struct sockaddr *dst,
    struct route *ro)
{

	(void)ifp;
	(void)dst;
	(void)ro;
	m_freem(m);
	return (EOPNOTSUPP);
}

void
ether_ifattach(struct ifnet *ifp, const u_int8_t *lla)
{
	struct hk_ifx *x = hk_ifx(ifp);

	hk_td_may_sleep("ether_ifattach", __builtin_return_address(0));
	if (x->attached)
		hk_panic(__builtin_return_address(0), "ether_ifattach: %s "
		    "attached twice", ifp->if_xname);
	ifp->if_addrlen = ETHER_ADDR_LEN;
	ifp->if_hdrlen = ETHER_HDR_LEN;
	ifp->if_mtu = ETHERMTU;
	ifp->if_output = hk_ether_output;
	ifp->if_input = hk_ether_input;
	memcpy(x->lladdr, lla, ETHER_ADDR_LEN);
	x->attached = 1;
	if_printf(ifp, "Ethernet address: %6D\n", lla, ":");
}

void
ether_ifdetach(struct ifnet *ifp)
{
	struct hk_ifx *x = hk_ifx(ifp);

	hk_td_may_sleep("ether_ifdetach", __builtin_return_address(0));
	if (!x->attached)
		hk_panic(__builtin_return_address(0), "ether_ifdetach: %s not "
		    "attached", ifp->if_xname);
	/* if_detach(): the interface goes down first. */
	if (ifp->if_flags & IFF_UP) {
		ifp->if_flags &= ~IFF_UP;
		if (ifp->if_ioctl != NULL)
			(void)ifp->if_ioctl(ifp, SIOCSIFFLAGS, NULL);
	}
	x->attached = 0;
}

int
ether_ioctl(struct ifnet *ifp, u_long command, caddr_t data)
{
	struct ifreq *ifr = (struct ifreq *)data;

	switch (command) {
	case SIOCSIFADDR:
		ifp->if_flags |= IFF_UP;
		ifp->if_init(ifp->if_softc);
		return (0);
	case SIOCGIFADDR:
		memcpy(ifr->ifr_addr.sa_data, hk_ifx(ifp)->lladdr,
		    ETHER_ADDR_LEN);
		return (0);
	case SIOCSIFMTU:
		if (ifr->ifr_mtu > ETHERMTU)
			return (EINVAL);
		ifp->if_mtu = ifr->ifr_mtu;
		return (0);
	default:
		return (EINVAL);
	}
}

void
ether_bpf_mtap_if(struct ifnet *ifp, struct mbuf *m)
{
	struct hk_ifx *x = hk_ifx(ifp);

	hk_mbuf_check_chain(m, "ETHER_BPF_MTAP", __builtin_return_address(0));
	if (x->bpf_peers)
		hk->bpf_tap(ifp->if_xname, m->m_pkthdr.len);
}

void
if_input(if_t ifp, struct mbuf *m)
{

	ifp->if_input(ifp, m);
}

/* ---- ifmedia(9) (sys/net/if_media.c). ---- */

void
ifmedia_init(struct ifmedia *ifm, int dontcare_mask,
    ifm_change_cb_t change_callback, ifm_stat_cb_t status_callback)
{

	LIST_INIT(&ifm->ifm_list);
	ifm->ifm_cur = NULL;
	ifm->ifm_media = 0;
	ifm->ifm_mask = dontcare_mask;
	ifm->ifm_change = change_callback;
	ifm->ifm_status = status_callback;
}

void
ifmedia_add(struct ifmedia *ifm, int mword, int data, void *aux)
{
	struct ifmedia_entry *entry;

	entry = malloc(sizeof(*entry), M_IFADDR, M_NOWAIT);
	if (entry == NULL)
		hk_panic(__builtin_return_address(0),
		    "ifmedia_add: can't malloc entry");
	entry->ifm_media = mword;
	entry->ifm_data = data;
	entry->ifm_aux = aux;
	LIST_INSERT_HEAD(&ifm->ifm_list, entry, ifm_list);
}

static struct ifmedia_entry *
hk_ifmedia_match(struct ifmedia *ifm, int target, int mask)
{
	struct ifmedia_entry *next;

	mask = ~mask;
	LIST_FOREACH(next, &ifm->ifm_list, ifm_list)
		if ((next->ifm_media & mask) == (target & mask))
			return (next);
	return (NULL);
}

void
ifmedia_set(struct ifmedia *ifm, int target)
{
	struct ifmedia_entry *match;

	match = hk_ifmedia_match(ifm, target, ifm->ifm_mask);
	if (match == NULL)
		hk_panic(__builtin_return_address(0),
		    "ifmedia_set: no match for 0x%x/0x%x", target, ifm->ifm_mask);
	ifm->ifm_cur = match;
}

void
ifmedia_removeall(struct ifmedia *ifm)
{
	struct ifmedia_entry *entry;

	while ((entry = LIST_FIRST(&ifm->ifm_list)) != NULL) {
		LIST_REMOVE(entry, ifm_list);
		free(entry, M_IFADDR);
	}
	ifm->ifm_cur = NULL;
}

int
ifmedia_ioctl(struct ifnet *ifp, struct ifreq *ifr, struct ifmedia *ifm,
    u_long cmd)
{
	struct ifmedia_entry *match, *ep, *old;
	struct ifmediareq *ifmr = (struct ifmediareq *)ifr;
	int oldmedia, error, count;

	if (ifp == NULL || ifr == NULL || ifm == NULL)
		return (EINVAL);
	switch (cmd) {
	case SIOCSIFMEDIA:
		match = hk_ifmedia_match(ifm, ifr->ifr_media, ifm->ifm_mask);
		if (match == NULL)
			return (ENXIO);
		old = ifm->ifm_cur;
		oldmedia = ifm->ifm_media;
		ifm->ifm_cur = match;
		ifm->ifm_media = ifr->ifr_media;
		error = ifm->ifm_change(ifp);
		if (error != 0 && error != EJUSTRETURN) {
			ifm->ifm_cur = old;
			ifm->ifm_media = oldmedia;
		}
		return (error);
	case SIOCGIFMEDIA:
		ifmr->ifm_active = ifmr->ifm_current = ifm->ifm_cur != NULL ?
		    ifm->ifm_cur->ifm_media : IFM_NONE;
		ifmr->ifm_mask = ifm->ifm_mask;
		ifmr->ifm_status = 0;
		ifm->ifm_status(ifp, ifmr);
		count = 0;
		LIST_FOREACH(ep, &ifm->ifm_list, ifm_list) {
			if (ifmr->ifm_ulist != NULL && count < ifmr->ifm_count)
				ifmr->ifm_ulist[count] = ep->ifm_media;
			count++;
		}
		if (ifmr->ifm_ulist != NULL && ifmr->ifm_count < count)
			return (E2BIG);
		ifmr->ifm_count = count;
		return (0);
	default:
		return (EINVAL);
	}
}

/* ---- ifconfig(8), through ifhwioctl() (sys/net/if.c). ---- */

static struct ifnet *
hk_ifunit(const char *name)
{
	int i;

	for (i = 0; i < HK_MAXIF; i++)
		if (hk_ifs[i].ifp != NULL && hk_ifs[i].attached &&
		    strcmp(hk_ifs[i].ifp->if_xname, name) == 0)
			return (hk_ifs[i].ifp);
	return (NULL);
}

/* What ifconfig shows of an interface. */
struct hk_ifinfo {
	int		flags, drv_flags;
	int		capabilities, capenable;
	uint64_t	hwassist, baudrate;
	uint32_t	mtu;
	int		hdrlen;
	uint8_t		lladdr[ETHER_ADDR_LEN];
	int		media_status, media_active, media_current, media_count;
	uint64_t	counters[IFCOUNTERS];	/* through if_get_counter */
};

int hk_ifconfig_show(const char *name, struct hk_ifinfo *out);
int
hk_ifconfig_show(const char *name, struct hk_ifinfo *out)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifmediareq ifmr;
	int i, error;

	if (ifp == NULL)
		return (ENXIO);
	bzero(out, sizeof(*out));
	out->flags = ifp->if_flags;
	out->drv_flags = ifp->if_drv_flags;
	out->capabilities = ifp->if_capabilities;
	out->capenable = ifp->if_capenable;
	out->hwassist = ifp->if_hwassist;
	out->baudrate = ifp->if_baudrate;
	out->mtu = ifp->if_mtu;
	out->hdrlen = ifp->if_hdrlen;
	memcpy(out->lladdr, hk_ifx(ifp)->lladdr, ETHER_ADDR_LEN);
	bzero(&ifmr, sizeof(ifmr));
	strlcpy(ifmr.ifm_name, name, sizeof(ifmr.ifm_name));
	error = ifp->if_ioctl(ifp, SIOCGIFMEDIA, (caddr_t)&ifmr);
	if (error != 0)
		return (error);
	out->media_status = ifmr.ifm_status;
	out->media_active = ifmr.ifm_active;
	out->media_current = ifmr.ifm_current;
	out->media_count = ifmr.ifm_count;
	for (i = 0; i < IFCOUNTERS; i++)
		out->counters[i] = ifp->if_get_counter != NULL ?
		    ifp->if_get_counter(ifp, i) : if_get_counter_default(ifp, i);
	return (0);
}

/* ifconfig name up|down */
int hk_ifconfig_updown(const char *name, int up);
int
hk_ifconfig_updown(const char *name, int up)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifreq ifr;

	if (ifp == NULL)
		return (ENXIO);
	bzero(&ifr, sizeof(ifr));
	if (up)
		ifp->if_flags |= IFF_UP;
	else
		ifp->if_flags &= ~IFF_UP;
	ifr.ifr_flags = ifp->if_flags & 0xffff;
	ifr.ifr_flagshigh = ifp->if_flags >> 16;
	return (ifp->if_ioctl(ifp, SIOCSIFFLAGS, (caddr_t)&ifr));
}

/* ifconfig name mtu N */
int hk_ifconfig_mtu(const char *name, int mtu);
int
hk_ifconfig_mtu(const char *name, int mtu)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifreq ifr;

	if (ifp == NULL)
		return (ENXIO);
	if (mtu < IF_MINMTU || mtu > IF_MAXMTU)
		return (EINVAL);
	bzero(&ifr, sizeof(ifr));
	ifr.ifr_mtu = mtu;
	return (ifp->if_ioctl(ifp, SIOCSIFMTU, (caddr_t)&ifr));
}

/* ifconfig name [-]txcsum ...: the requested capenable word. */
int hk_ifconfig_cap(const char *name, int reqcap);
int
hk_ifconfig_cap(const char *name, int reqcap)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifreq ifr;

	if (ifp == NULL)
		return (ENXIO);
	if (reqcap & ~ifp->if_capabilities)
		return (EINVAL);
	bzero(&ifr, sizeof(ifr));
	ifr.ifr_reqcap = reqcap;
	return (ifp->if_ioctl(ifp, SIOCSIFCAP, (caddr_t)&ifr));
}

/* ifconfig name media M */
int hk_ifconfig_media(const char *name, int media);
int
hk_ifconfig_media(const char *name, int media)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifreq ifr;

	if (ifp == NULL)
		return (ENXIO);
	bzero(&ifr, sizeof(ifr));
	ifr.ifr_media = media;
	return (ifp->if_ioctl(ifp, SIOCSIFMEDIA, (caddr_t)&ifr));
}

/* An ioctl the driver does not know, for ether_ioctl's answer. */
int hk_ifconfig_ioctl(const char *name, u_long cmd);
int
hk_ifconfig_ioctl(const char *name, u_long cmd)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct ifreq ifr;

	if (ifp == NULL)
		return (ENXIO);
	bzero(&ifr, sizeof(ifr));
	return (ifp->if_ioctl(ifp, cmd, (caddr_t)&ifr));
}

/* tcpdump -i name: BPF listeners on or off. */
int hk_bpf_listen(const char *name, int on);
int
hk_bpf_listen(const char *name, int on)
{
	struct ifnet *ifp = hk_ifunit(name);

	if (ifp == NULL)
		return (ENXIO);
	hk_ifx(ifp)->bpf_peers = on;
	return (0);
}

/*
 * The stack sends a packet: the frame in an mbuf chain, the headers
 * (`hdrlen` bytes) in the packet-header mbuf and the rest in clusters of
 * at most `seglen` bytes, with the offload requests of `meta`; then
 * if_transmit, as ether_output_frame() calls it.
 */
int hk_if_output(const char *name, const struct hk_pkt *meta, const char *data,
    int len, int hdrlen, int seglen);
int
hk_if_output(const char *name, const struct hk_pkt *meta, const char *data,
    int len, int hdrlen, int seglen)
{
	struct ifnet *ifp = hk_ifunit(name);
	struct mbuf *m, *n, *tail;
	int c, k, off;

	if (ifp == NULL)
		return (ENXIO);
	if (hdrlen > MHLEN || hdrlen > len)
		hdrlen = len < MHLEN ? len : MHLEN;
	m = m_getm2(NULL, hdrlen > 0 ? hdrlen : 1, M_NOWAIT, MT_DATA, M_PKTHDR);
	if (m == NULL)
		return (ENOBUFS);
	memcpy(mtod(m, char *), data, hdrlen);
	m->m_len = hdrlen;
	tail = m;
	for (off = hdrlen; off < len;) {
		c = len - off < seglen ? len - off : seglen;
		n = m_getm2(NULL, c, M_NOWAIT, MT_DATA, 0);
		if (n == NULL) {
			m_freem(m);
			return (ENOBUFS);
		}
		tail->m_next = n;
		/* m_getm2() may have chained several: fill each. */
		for (; n != NULL; n = n->m_next) {
			k = c < M_TRAILINGSPACE(n) ? c : M_TRAILINGSPACE(n);
			memcpy(mtod(n, char *), data + off, k);
			n->m_len = k;
			off += k;
			c -= k;
			tail = n;
		}
	}
	m->m_pkthdr.len = len;
	m->m_pkthdr.rcvif = NULL;
	m->m_pkthdr.csum_flags = meta->pk_csum_flags;
	m->m_pkthdr.csum_data = meta->pk_csum_data;
	m->m_pkthdr.tso_segsz = meta->pk_tso_segsz;
	m->m_pkthdr.flowid = meta->pk_flowid;
	if (meta->pk_hashtype != 0)
		M_HASHTYPE_SET(m, meta->pk_hashtype);
	if (meta->pk_has_vlan) {
		m->m_flags |= M_VLANTAG;
		m->m_pkthdr.ether_vtag = meta->pk_vtag;
	}
	hk_mbuf_check_chain(m, "hk_if_output", NULL);
	return (ifp->if_transmit(ifp, m));
}

/* Interfaces alive now (the harness's ledger). */
int64_t hk_ifnet_live(void);
int64_t
hk_ifnet_live(void)
{

	return (__atomic_load_n(&hk_ifnets_live, __ATOMIC_RELAXED));
}

void
hk_if_boot(void)
{

	hk_mtx_init(&hk_if_lock);
}
