/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * sysctl(9) as sys/kern/kern_sysctl.c keeps it: a tree of oids (each
 * node's children in an RB tree, sorted by number), OID_AUTO numbers
 * from CTL_AUTO_START, static oids registered from a file's sysctl_set
 * at load (tunables fetched from the kernel environment for CTLFLAG_TUN),
 * dynamic oids added under a context and removed with it in reverse
 * order, a node shared by several adders (reference counted), a leaf
 * never reused; and the handlers (sysctl_handle_int, _64, _string) with
 * SYSCTL_OUT/SYSCTL_IN. Removal waits for running handlers.
 *
 * The harness reads and writes oids by name, as sysctl(8) does.
 */

#include "hk.h"

RB_GENERATE(sysctl_oid_list, sysctl_oid, oid_link, cmp_sysctl_oid);

struct sysctl_oid_list sysctl__children = RB_INITIALIZER(&sysctl__children);

SYSCTL_ROOT_NODE(CTL_HW, hw, CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
    "hardware");

MALLOC_DEFINE(M_SYSCTLOID, "sysctloid", "sysctl dynamic oids");

static void *hk_sysctl_lock, *hk_sysctl_cond;
static int64_t hk_sysctl_dyn;

static struct sysctl_oid *
hk_find_name(struct sysctl_oid_list *list, const char *name, size_t len)
{
	struct sysctl_oid *oid;

	RB_FOREACH(oid, sysctl_oid_list, list)
		if (strncmp(oid->oid_name, name, len) == 0 &&
		    oid->oid_name[len] == '\0')
			return (oid);
	return (NULL);
}

/* The oid whose children `list` is, searched from `from`. */
static struct sysctl_oid *
hk_owner(struct sysctl_oid_list *from, struct sysctl_oid_list *list)
{
	struct sysctl_oid *oid, *r;

	RB_FOREACH(oid, sysctl_oid_list, from) {
		if (&oid->oid_children == list)
			return (oid);
		if ((oid->oid_kind & CTLTYPE) == CTLTYPE_NODE &&
		    (r = hk_owner(&oid->oid_children, list)) != NULL)
			return (r);
	}
	return (NULL);
}

/* The dotted name of `oid` (as the kernel environment names tunables). */
static void
hk_oid_path(struct sysctl_oid *oid, char *buf, size_t len)
{
	struct sysctl_oid *chain[16];
	struct sysctl_oid *p = oid;
	size_t n = 0;
	int depth = 0, i;

	while (p != NULL && depth < 16) {
		chain[depth++] = p;
		p = p->oid_parent == &sysctl__children ? NULL :
		    hk_owner(&sysctl__children, p->oid_parent);
	}
	buf[0] = '\0';
	for (i = depth - 1; i >= 0 && n < len; i--)
		n += snprintf(buf + n, len - n, "%s%s", n ? "." : "",
		    chain[i]->oid_name);
}

/* sysctl_register_oid(): numbers, uniqueness, tunables. */
static int
hk_register(struct sysctl_oid *oidp)
{
	struct sysctl_oid_list *parent = oidp->oid_parent;
	struct sysctl_oid *p;
	char path[128];
	int n, v;

	p = hk_find_name(parent, oidp->oid_name, strlen(oidp->oid_name));
	if (p != NULL) {
		if ((p->oid_kind & CTLTYPE) == CTLTYPE_NODE &&
		    (oidp->oid_kind & CTLTYPE) == CTLTYPE_NODE) {
			p->oid_refcnt++;
			return (EEXIST);
		}
		printf("can't re-use a leaf (%s)!\n", p->oid_name);
		return (EINVAL);
	}
	oidp->oid_refcnt = 1;
	if (oidp->oid_number == OID_AUTO) {
		n = CTL_AUTO_START;
		RB_FOREACH(p, sysctl_oid_list, parent)
			if (p->oid_number >= n)
				n = p->oid_number + 1;
		oidp->oid_number = n;
	}
	RB_INSERT(sysctl_oid_list, parent, oidp);
	if ((oidp->oid_kind & CTLFLAG_TUN) &&
	    (oidp->oid_kind & CTLFLAG_NOFETCH) == 0 &&
	    (oidp->oid_kind & CTLTYPE) == CTLTYPE_INT && oidp->oid_arg1) {
		hk_oid_path(oidp, path, sizeof(path));
		if (hk->getenv_int(path, &v))
			*(int *)oidp->oid_arg1 = v;
	}
	return (0);
}

void
sysctl_register_oid(struct sysctl_oid *oidp)
{

	hk->lock(hk_sysctl_lock);
	(void)hk_register(oidp);
	hk->unlock(hk_sysctl_lock);
}

void
sysctl_unregister_oid(struct sysctl_oid *oidp)
{

	hk->lock(hk_sysctl_lock);
	if (oidp->oid_refcnt > 1)
		oidp->oid_refcnt--;
	else {
		if (!RB_EMPTY(&oidp->oid_children))
			hk_panic(__builtin_return_address(0), "sysctl: "
			    "unregistering node %s with children", oidp->oid_name);
		RB_REMOVE(sysctl_oid_list, oidp->oid_parent, oidp);
	}
	hk->unlock(hk_sysctl_lock);
}

void
hk_sysctl_register_set(struct sysctl_oid **start, struct sysctl_oid **stop)
{

	for (; start != NULL && start < stop; start++)
		sysctl_register_oid(*start);
}

void
hk_sysctl_unregister_set(struct sysctl_oid **start, struct sysctl_oid **stop)
{

	/* Children before parents: the reverse of registration. */
	while (start != NULL && stop > start)
		sysctl_unregister_oid(*--stop);
}

int
sysctl_ctx_init(struct sysctl_ctx_list *c)
{

	if (c == NULL)
		return (EINVAL);
	TAILQ_INIT(c);
	return (0);
}

struct sysctl_oid *
sysctl_add_oid(struct sysctl_ctx_list *clist, struct sysctl_oid_list *parent,
    int number, const char *name, int kind, void *arg1, intmax_t arg2,
    int (*handler)(SYSCTL_HANDLER_ARGS), const char *fmt, const char *descr,
    const char *label)
{
	struct sysctl_oid *oidp;
	struct sysctl_ctx_entry *e;
	char *nm;
	int error;

	if (parent == NULL)
		return (NULL);
	oidp = malloc(sizeof(*oidp), M_SYSCTLOID, M_WAITOK | M_ZERO);
	nm = malloc(strlen(name) + 1, M_SYSCTLOID, M_WAITOK);
	strlcpy(nm, name, strlen(name) + 1);
	RB_INIT(&oidp->oid_children);
	oidp->oid_parent = parent;
	oidp->oid_number = number;
	oidp->oid_name = nm;
	oidp->oid_kind = CTLFLAG_DYN | kind;
	oidp->oid_arg1 = arg1;
	oidp->oid_arg2 = arg2;
	oidp->oid_handler = handler;
	oidp->oid_fmt = fmt;
	oidp->oid_descr = descr;
	oidp->oid_label = label;
	hk->lock(hk_sysctl_lock);
	error = hk_register(oidp);
	if (error != 0) {
		struct sysctl_oid *old = hk_find_name(parent, name,
		    strlen(name));

		hk->unlock(hk_sysctl_lock);
		free(nm, M_SYSCTLOID);
		free(oidp, M_SYSCTLOID);
		if (error != EEXIST)
			return (NULL);
		oidp = old;
	} else {
		__atomic_add_fetch(&hk_sysctl_dyn, 1, __ATOMIC_RELAXED);
		hk->unlock(hk_sysctl_lock);
	}
	if (clist != NULL) {
		e = malloc(sizeof(*e), M_SYSCTLOID, M_WAITOK);
		e->entry = oidp;
		TAILQ_INSERT_HEAD(clist, e, link);
	}
	return (oidp);
}

/* Removes one reference to a dynamic oid, waiting for its handlers. */
static void
hk_remove(struct sysctl_oid *oidp, const void *caller)
{

	hk->lock(hk_sysctl_lock);
	if (oidp->oid_refcnt > 1) {
		oidp->oid_refcnt--;
		hk->unlock(hk_sysctl_lock);
		return;
	}
	if (!RB_EMPTY(&oidp->oid_children))
		hk_panic(caller, "sysctl_ctx_free: node %s still has children "
		    "from another context", oidp->oid_name);
	while (oidp->oid_running > 0)
		(void)hk->cond_wait(hk_sysctl_cond, hk_sysctl_lock, 0);
	RB_REMOVE(sysctl_oid_list, oidp->oid_parent, oidp);
	__atomic_sub_fetch(&hk_sysctl_dyn, 1, __ATOMIC_RELAXED);
	hk->unlock(hk_sysctl_lock);
	free(__DECONST(char *, oidp->oid_name), M_SYSCTLOID);
	free(oidp, M_SYSCTLOID);
}

/* sysctl_ctx_free(): the context's oids in reverse order of addition. */
int
sysctl_ctx_free(struct sysctl_ctx_list *clist)
{
	struct sysctl_ctx_entry *e;

	hk_td_may_sleep("sysctl_ctx_free", __builtin_return_address(0));
	while ((e = TAILQ_FIRST(clist)) != NULL) {
		TAILQ_REMOVE(clist, e, link);
		hk_remove(e->entry, __builtin_return_address(0));
		free(e, M_SYSCTLOID);
	}
	return (0);
}

/* ---- Handlers. ---- */

int
sysctl_handle_int(SYSCTL_HANDLER_ARGS)
{
	int tmpout, error;

	tmpout = arg1 != NULL ? *(int *)arg1 : (int)arg2;
	error = SYSCTL_OUT(req, &tmpout, sizeof(int));
	if (error != 0 || req->newptr == NULL)
		return (error);
	if (arg1 == NULL)
		return (EPERM);
	return (SYSCTL_IN(req, arg1, sizeof(int)));
}

int
sysctl_handle_64(SYSCTL_HANDLER_ARGS)
{
	uint64_t tmpout;
	int error;

	(void)arg2;
	tmpout = arg1 != NULL ? *(uint64_t *)arg1 : 0;
	error = SYSCTL_OUT(req, &tmpout, sizeof(uint64_t));
	if (error != 0 || req->newptr == NULL)
		return (error);
	if (arg1 == NULL)
		return (EPERM);
	return (SYSCTL_IN(req, arg1, sizeof(uint64_t)));
}

int
sysctl_handle_string(SYSCTL_HANDLER_ARGS)
{

	(void)arg2;
	if (req->newptr != NULL)
		return (EPERM);
	return (SYSCTL_OUT(req, arg1, strlen(arg1) + 1));
}

static int
hk_old(struct sysctl_req *req, const void *p, size_t l)
{
	size_t n = 0;

	if (req->oldptr != NULL && req->oldidx < req->oldlen) {
		n = req->oldlen - req->oldidx;
		if (n > l)
			n = l;
		memcpy((char *)req->oldptr + req->oldidx, p, n);
	}
	req->oldidx += l;
	return (req->oldptr != NULL && n < l ? ENOMEM : 0);
}

static int
hk_new(struct sysctl_req *req, void *p, size_t l)
{

	if (req->newptr == NULL)
		return (0);
	if (req->newlen - req->newidx < l)
		return (EINVAL);
	memcpy(p, (const char *)req->newptr + req->newidx, l);
	req->newidx += l;
	return (0);
}

/*
 * sysctl(8) by name: reads into old (oldlen in, the value's length
 * out), writes new if given. ENOENT for no such oid, EISDIR for a node,
 * EPERM to write a read-only one.
 */
int hk_sysctl(const char *name, void *old, size_t *oldlen, const void *new,
    size_t newlen);
int
hk_sysctl(const char *name, void *old, size_t *oldlen, const void *new,
    size_t newlen)
{
	struct sysctl_oid_list *list = &sysctl__children;
	struct sysctl_oid *oid = NULL;
	struct sysctl_req req;
	const char *p = name, *dot;
	int error;

	hk->lock(hk_sysctl_lock);
	for (;;) {
		dot = p;
		while (*dot != '\0' && *dot != '.')
			dot++;
		oid = hk_find_name(list, p, dot - p);
		if (oid == NULL || *dot == '\0')
			break;
		if ((oid->oid_kind & CTLTYPE) != CTLTYPE_NODE) {
			oid = NULL;
			break;
		}
		list = &oid->oid_children;
		p = dot + 1;
	}
	if (oid == NULL) {
		hk->unlock(hk_sysctl_lock);
		return (ENOENT);
	}
	if ((oid->oid_kind & CTLTYPE) == CTLTYPE_NODE && oid->oid_handler == NULL) {
		hk->unlock(hk_sysctl_lock);
		return (EISDIR);
	}
	if (new != NULL && (oid->oid_kind & CTLFLAG_WR) == 0) {
		hk->unlock(hk_sysctl_lock);
		return (EPERM);
	}
	oid->oid_running++;
	hk->unlock(hk_sysctl_lock);
	bzero(&req, sizeof(req));
	req.td = curthread;
	req.oldptr = old;
	req.oldlen = old != NULL ? *oldlen : 0;
	req.oldfunc = hk_old;
	req.newptr = new;
	req.newlen = newlen;
	req.newfunc = hk_new;
	error = oid->oid_handler(oid, oid->oid_arg1, oid->oid_arg2, &req);
	if (hk_locks_held() != 0)
		hk_panic((void *)oid->oid_handler, "sysctl handler of %s "
		    "returned with a lock held", name);
	hk->lock(hk_sysctl_lock);
	oid->oid_running--;
	hk->cond_broadcast(hk_sysctl_cond);
	hk->unlock(hk_sysctl_lock);
	if (oldlen != NULL)
		*oldlen = req.oldidx;
	return (error);
}

/* The names of the children of node `name`, space separated. */
int hk_sysctl_children(const char *name, char *buf, size_t len);
int
hk_sysctl_children(const char *name, char *buf, size_t len)
{
	struct sysctl_oid_list *list = &sysctl__children;
	struct sysctl_oid *oid;
	const char *p = name, *dot;
	size_t n = 0;

	hk->lock(hk_sysctl_lock);
	while (*p != '\0') {
		dot = p;
		while (*dot != '\0' && *dot != '.')
			dot++;
		oid = hk_find_name(list, p, dot - p);
		if (oid == NULL || (oid->oid_kind & CTLTYPE) != CTLTYPE_NODE) {
			hk->unlock(hk_sysctl_lock);
			return (ENOENT);
		}
		list = &oid->oid_children;
		p = *dot == '\0' ? dot : dot + 1;
	}
	buf[0] = '\0';
	RB_FOREACH(oid, sysctl_oid_list, list)
		if (n < len)
			n += snprintf(buf + n, len - n, "%s%s", n ? " " : "",
			    oid->oid_name);
	hk->unlock(hk_sysctl_lock);
	return (0);
}

/* Dynamic oids alive now (the harness's ledger). */
int64_t hk_sysctl_live(void);
int64_t
hk_sysctl_live(void)
{

	return (__atomic_load_n(&hk_sysctl_dyn, __ATOMIC_RELAXED));
}

void
hk_sysctl_boot(void)
{

	hk_sysctl_lock = hk->lock_new();
	hk_sysctl_cond = hk->cond_new();
}
