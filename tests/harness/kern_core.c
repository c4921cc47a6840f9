/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The core of the harness kernel: the console (printf(9), panic(9)),
 * threads and curthread, time, malloc(9) and contigmalloc(9), and the
 * locks (mutex(9), sx(9)) with the checks WITNESS and INVARIANTS make:
 * recursion on a non-recursive lock, releasing a lock not held, lock
 * order reversals, sleeping with a mutex held or in an interrupt thread,
 * a lock used before init or after destroy.
 */

#include "hk.h"

#include <sys/proc.h>
#include <sys/pcpu.h>
#include <machine/stdarg.h>
#include <vm/vm.h>
#include <vm/pmap.h>

const struct hk_host *hk;

int hz = 1000;
sbintime_t tick_sbt;

/* ---- The console. ---- */

struct hk_buf {
	char	*p;
	size_t	 len, cap;
};

static void
hk_putc(struct hk_buf *b, char c)
{

	if (b->len + 1 < b->cap)
		b->p[b->len] = c;
	b->len++;
}

static void
hk_puts(struct hk_buf *b, const char *s, int prec, int width, int left)
{
	int n = 0, i;

	if (s == NULL)
		s = "(null)";
	while ((prec < 0 || n < prec) && s[n] != '\0')
		n++;
	for (i = n; !left && i < width; i++)
		hk_putc(b, ' ');
	for (i = 0; i < n; i++)
		hk_putc(b, s[i]);
	for (i = n; left && i < width; i++)
		hk_putc(b, ' ');
}

static void
hk_putnum(struct hk_buf *b, uintmax_t v, int base, int neg, int width,
    int zero, int left, int upper, int alt)
{
	char tmp[32];
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	int n = 0, pad, i;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v != 0 && n < (int)sizeof(tmp));
	if (alt && base == 16)
		width -= 2;
	pad = width - n - (neg ? 1 : 0);
	if (!left && !zero)
		for (i = 0; i < pad; i++)
			hk_putc(b, ' ');
	if (neg)
		hk_putc(b, '-');
	if (alt && base == 16) {
		hk_putc(b, '0');
		hk_putc(b, upper ? 'X' : 'x');
	}
	if (!left && zero)
		for (i = 0; i < pad; i++)
			hk_putc(b, '0');
	while (n > 0)
		hk_putc(b, tmp[--n]);
	if (left)
		for (i = 0; i < pad; i++)
			hk_putc(b, ' ');
}

/* printf(9)'s formats as the module uses them: flags, width, precision,
 * the length modifiers, d i u x X o c s p. */
static size_t
hk_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
	struct hk_buf b = { buf, 0, cap };
	uintmax_t u;
	intmax_t s;
	int width, prec, zero, left, alt, lng;
	char c;

	for (; *fmt != '\0'; fmt++) {
		if (*fmt != '%') {
			hk_putc(&b, *fmt);
			continue;
		}
		width = 0;
		prec = -1;
		zero = left = alt = lng = 0;
		for (;;) {
			c = *++fmt;
			if (c == '0')
				zero = 1;
			else if (c == '-')
				left = 1;
			else if (c == '#')
				alt = 1;
			else if (c != ' ' && c != '+')
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		} else
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + (*fmt++ - '0');
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			} else
				while (*fmt >= '0' && *fmt <= '9')
					prec = prec * 10 + (*fmt++ - '0');
		}
		for (;; fmt++) {
			if (*fmt == 'l')
				lng++;
			else if (*fmt == 'j' || *fmt == 'z' || *fmt == 't' ||
			    *fmt == 'q')
				lng = 2;
			else if (*fmt != 'h')
				break;
		}
		switch (*fmt) {
		case 'd':
		case 'i':
			s = lng == 0 ? va_arg(ap, int) : va_arg(ap, long);
			hk_putnum(&b, s < 0 ? -(uintmax_t)s : (uintmax_t)s, 10,
			    s < 0, width, zero, left, 0, 0);
			break;
		case 'u':
		case 'x':
		case 'X':
		case 'o':
			u = lng == 0 ? va_arg(ap, unsigned int) :
			    va_arg(ap, unsigned long);
			hk_putnum(&b, u, *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16,
			    0, width, zero, left, *fmt == 'X', alt);
			break;
		case 'p':
			hk_putnum(&b, (uintptr_t)va_arg(ap, void *), 16, 0,
			    width, zero, left, 0, 1);
			break;
		case 'c':
			hk_putc(&b, (char)va_arg(ap, int));
			break;
		case 'D': {
			/* printf(9): width bytes in hex, separated by a string. */
			const u_char *p = va_arg(ap, const u_char *);
			const char *sep = va_arg(ap, const char *);
			int i;

			for (i = 0; i < width; i++) {
				if (i > 0)
					hk_puts(&b, sep, -1, 0, 0);
				hk_putnum(&b, p[i], 16, 0, 2, 1, 0, 0, 0);
			}
			break;
		}
		case 's':
			hk_puts(&b, va_arg(ap, const char *), prec, width, left);
			break;
		case '%':
			hk_putc(&b, '%');
			break;
		default:
			hk_putc(&b, '%');
			hk_putc(&b, *fmt);
			break;
		}
	}
	if (cap > 0)
		buf[b.len < cap ? b.len : cap - 1] = '\0';
	return (b.len);
}

int
vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{

	return ((int)hk_vformat(buf, size, fmt, ap));
}

int
snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return (n);
}

int
vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	n = hk_vformat(buf, sizeof(buf), fmt, ap);
	hk->console(buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
	return ((int)n);
}

int
printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return (n);
}

/* "name: " and the message: device_printf(9), if_printf(9). */
int
hk_vprintf_named(const char *name, const char *fmt, va_list ap)
{
	char buf[512];
	int n;

	n = snprintf(buf, sizeof(buf), "%s: ", name);
	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	printf("%s", buf);
	return (n);
}

static void __dead2
hk_vpanic(const void *caller, const void *frame, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	n = hk_vformat(buf, sizeof(buf), fmt, ap);
	hk->panic(buf, n < sizeof(buf) ? n : sizeof(buf) - 1, caller, frame);
	for (;;)
		;
}

void
hk_panic(const void *caller, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hk_vpanic(caller, __builtin_frame_address(0), fmt, ap);
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hk_vpanic(__builtin_return_address(0), __builtin_frame_address(0), fmt,
	    ap);
}

/* ---- Threads: curthread is %gs:0 (struct pcpu), as on amd64. ---- */

#define	HK_MAXHELD	16

struct hk_held {
	struct lock_object	*lo;
	const char		*file;
	int			 line;
};

struct hk_td {
	struct pcpu	pc;		/* %gs points here */
	struct thread	td;
	char		name[32];
	int		nosleep;	/* an interrupt thread */
	int		nheld;
	struct hk_held	held[HK_MAXHELD];
};

/*
 * A kernel thread's state, for the harness to point %gs at before the
 * thread runs kernel code (the harness thread or a kernel thread).
 */
void *hk_td_create(const char *name);
void *
hk_td_create(const char *name)
{
	struct hk_td *t;

	t = hk->alloc(sizeof(*t), NULL);
	t->pc.pc_curthread = &t->td;
	t->td.td_name[0] = '\0';
	strlcpy(t->name, name, sizeof(t->name));
	strlcpy(t->td.td_name, name, sizeof(t->td.td_name));
	return (&t->pc);
}

void hk_td_destroy(void *pc);
void
hk_td_destroy(void *pc)
{

	hk->release(pc);
}

struct hk_td *
hk_td_self(void)
{

	return (__containerof(curthread, struct hk_td, td));
}

void
hk_td_set_nosleep(int nosleep)
{

	hk_td_self()->nosleep = nosleep;
}

/*
 * What WITNESS says of a thread about to sleep: no non-sleepable lock may
 * be held, and an interrupt thread may not sleep at all.
 */
int
hk_td_may_sleep(const char *what, const void *caller)
{
	struct hk_td *t = hk_td_self();
	int i;

	if (t->nosleep)
		hk_panic(caller, "%s: sleeping in interrupt thread %s", what,
		    t->name);
	for (i = 0; i < t->nheld; i++)
		if ((t->held[i].lo->lo_flags & LO_SLEEPABLE) == 0)
			hk_panic(caller, "%s: sleeping with non-sleepable lock "
			    "\"%s\" held (locked at %s:%d)", what,
			    t->held[i].lo->lo_name, t->held[i].file,
			    t->held[i].line);
	return (1);
}

/* ---- Time. ---- */

void
getbinuptime(struct bintime *bt)
{
	uint64_t ns = hk->uptime_ns();

	bt->sec = ns / 1000000000;
	/* 2^64 / 10^9 = 18446744073.709551616 */
	bt->frac = (ns % 1000000000) * 18446744073ULL +
	    (ns % 1000000000) * 709551616ULL / 1000000000;
}

/* ---- malloc(9), contigmalloc(9). ---- */

/* Each block carries its type and size, for free(9) and the ledgers. */
struct hk_mhdr {
	struct malloc_type	*type;
	size_t			 size;
	uint64_t		 magic;
};
#define	HK_MAGIC	0x6d616c6c6f636564ULL	/* "malloced" */
#define	HK_FREED	0x6672656564626c6bULL	/* "freedblk" */

struct hk_mstat {
	struct malloc_type	*type;	/* NULL: a free entry */
	char			 name[32];
	int64_t			 live;
	int64_t			 bytes;
};
#define	HK_MAXTYPES	16
static struct hk_mstat hk_mtypes[HK_MAXTYPES];
static struct hk_mtx hk_malloc_lock;

/* A type's entry (its name copied: a module's strings go at unload). */
static struct hk_mstat *
hk_mstat(struct malloc_type *type)
{
	int i;

	for (i = 0; i < HK_MAXTYPES; i++)
		if (hk_mtypes[i].type == type)
			return (&hk_mtypes[i]);
	for (i = 0; i < HK_MAXTYPES; i++)
		if (hk_mtypes[i].type == NULL) {
			hk_mtypes[i].type = type;
			strlcpy(hk_mtypes[i].name, type->ks_shortdesc,
			    sizeof(hk_mtypes[i].name));
			hk_mtypes[i].live = hk_mtypes[i].bytes = 0;
			return (&hk_mtypes[i]);
		}
	hk_panic(NULL, "malloc: too many malloc types");
}

static void
hk_mcount(struct malloc_type *type, int64_t n, int64_t bytes)
{
	struct hk_mstat *st;

	hk_mtx_lock(&hk_malloc_lock);
	st = hk_mstat(type);
	st->live += n;
	st->bytes += bytes;
	hk_mtx_unlock(&hk_malloc_lock);
}

void *
(malloc)(size_t size, struct malloc_type *type, int flags)
{
	struct hk_mhdr *h;

	if ((flags & (M_WAITOK | M_NOWAIT)) == 0 ||
	    (flags & (M_WAITOK | M_NOWAIT)) == (M_WAITOK | M_NOWAIT))
		hk_panic(__builtin_return_address(0),
		    "malloc(9): exactly one of M_WAITOK and M_NOWAIT, flags %#x",
		    flags);
	if (flags & M_WAITOK)
		hk_td_may_sleep("malloc(M_WAITOK)", __builtin_return_address(0));
	h = hk->alloc(sizeof(*h) + size, (flags & M_NOWAIT) ?
	    __builtin_return_address(0) : NULL);
	if (h == NULL)
		return (NULL);
	h->type = type;
	h->size = size;
	h->magic = HK_MAGIC;
	hk_mcount(type, 1, size);
	return (h + 1);
}

void
free(void *p, struct malloc_type *type)
{
	struct hk_mhdr *h;
	size_t i;

	if (p == NULL)
		return;
	if (hk->dma_release(p))
		return;	/* contigmalloc(9) memory, which free(9) takes */
	h = (struct hk_mhdr *)p - 1;
	if (h->magic == HK_FREED)
		hk_panic(__builtin_return_address(0),
		    "free: %p freed twice (type %s)", p, type->ks_shortdesc);
	if (h->magic != HK_MAGIC)
		hk_panic(__builtin_return_address(0),
		    "free: %p was not allocated by malloc(9)", p);
	if (h->type != type)
		hk_panic(__builtin_return_address(0),
		    "free: %p of type %s freed as type %s", p,
		    h->type->ks_shortdesc, type->ks_shortdesc);
	hk_check_freed(p, h->size, __builtin_return_address(0));
	/* As INVARIANTS kernels do (uma_dbg.c, trash_dtor): a stale pointer
	 * read from freed memory is 0xdeadc0dedeadc0de, which faults. */
	for (i = 0; i + 4 <= h->size; i += 4)
		*(uint32_t *)((char *)p + i) = 0xdeadc0de;
	h->magic = HK_FREED;
	hk_mcount(type, -1, -(int64_t)h->size);
	hk->release(h);
}

void *
contigmalloc(unsigned long size, struct malloc_type *type, int flags,
    vm_paddr_t low, vm_paddr_t high, unsigned long alignment,
    vm_paddr_t boundary)
{
	uint64_t pa;
	void *va;

	(void)low;
	(void)high;
	(void)boundary;
	(void)type;
	if (flags & M_WAITOK)
		hk_td_may_sleep("contigmalloc(M_WAITOK)",
		    __builtin_return_address(0));
	va = hk->dma_alloc(size, alignment ? alignment : PAGE_SIZE, &pa,
	    (flags & M_NOWAIT) ? __builtin_return_address(0) : NULL);
	return (va);
}

void
contigfree(void *addr, unsigned long size, struct malloc_type *type)
{

	(void)size;
	free(addr, type);
}

vm_paddr_t
pmap_kextract(vm_offset_t va)
{

	return (hk->virt_to_phys((const void *)va));
}

void
malloc_init(void *data)
{

	(void)data;
}

void
malloc_uninit(void *data)
{
	struct malloc_type *type = data;
	struct hk_mstat *st;

	hk_mtx_lock(&hk_malloc_lock);
	st = hk_mstat(type);
	/* FreeBSD prints this when a module unloads with memory still held. */
	if (st->live != 0)
		hk_panic(__builtin_return_address(0),
		    "malloc_uninit: %jd blocks (%jd bytes) of type %s leaked",
		    (intmax_t)st->live, (intmax_t)st->bytes, type->ks_shortdesc);
	st->type = NULL;
	hk_mtx_unlock(&hk_malloc_lock);
}

/* Blocks and bytes of type `name` alive now (for the harness's ledgers). */
void hk_malloc_stats(const char *name, int64_t *blocks, int64_t *bytes);
void
hk_malloc_stats(const char *name, int64_t *blocks, int64_t *bytes)
{
	int i;

	*blocks = *bytes = 0;
	hk_mtx_lock(&hk_malloc_lock);
	for (i = 0; i < HK_MAXTYPES; i++)
		if (hk_mtypes[i].type != NULL &&
		    strcmp(hk_mtypes[i].name, name) == 0) {
			*blocks += hk_mtypes[i].live;
			*bytes += hk_mtypes[i].bytes;
		}
	hk_mtx_unlock(&hk_malloc_lock);
}

MALLOC_DEFINE(M_DEVBUF, "devbuf", "device driver memory");

/* ---- Locks. ---- */

/* What the lock object's witness pointer carries here. */
#define	HK_LOCKHIST	8
struct hk_lockst {
	void		*host;
	struct thread	*owner;
	int		 recursed;
	const char	*file;	/* where it was locked */
	int		 line;
	/* The last operations, for a "not owned" report. */
	struct {
		struct thread	*td;
		int		 line;
		char		 op;
	} hist[HK_LOCKHIST];
	u_int		 nhist;
};

static void
hk_lock_hist(struct hk_lockst *st, char op, int line)
{
	u_int i = st->nhist++ % HK_LOCKHIST;

	st->hist[i].td = curthread;
	st->hist[i].line = line;
	st->hist[i].op = op;
}

static int64_t hk_live_locks;

/*
 * Lock order seen so far, by lock name (WITNESS keeps it per type; like
 * its w_name, the names are copied: a module's go at unload).
 */
#define	HK_MAXORDER	128
static struct {
	char		 first[48], second[48];
	char		 file[64];
	int		 line;
} hk_order[HK_MAXORDER];
static int hk_norder;
static void *hk_order_lock;

void
hk_mtx_init(struct hk_mtx *m)
{

	m->l = hk->lock_new();
}

void
hk_mtx_lock(struct hk_mtx *m)
{

	hk->lock(m->l);
}

void
hk_mtx_unlock(struct hk_mtx *m)
{

	hk->unlock(m->l);
}

void
hk_lock_boot(void)
{

	hk_order_lock = hk->lock_new();
	hk_mtx_init(&hk_malloc_lock);
}

static void
hk_lock_init(struct lock_object *lo, const char *name, int flags,
    const void *caller)
{
	struct hk_lockst *st;

	if (lo->lo_flags & LO_INITIALIZED)
		hk_panic(caller, "lock \"%s\" %p already initialized", name, lo);
	st = hk->alloc(sizeof(*st), NULL);
	st->host = hk->lock_new();
	lo->lo_name = name;
	lo->lo_flags = LO_INITIALIZED | flags;
	lo->lo_witness = (struct witness *)st;
	__atomic_add_fetch(&hk_live_locks, 1, __ATOMIC_RELAXED);
}

static struct hk_lockst *
hk_lock_st(struct lock_object *lo, const char *op, const char *file,
    int line, const void *caller)
{

	if ((lo->lo_flags & LO_INITIALIZED) == 0 || lo->lo_witness == NULL)
		hk_panic(caller, "%s of uninitialized or destroyed lock %p @ %s:%d",
		    op, lo, file, line);
	return ((struct hk_lockst *)lo->lo_witness);
}

static void
hk_lock_destroy(struct lock_object *lo, const char *op, const void *caller)
{
	struct hk_lockst *st = hk_lock_st(lo, op, "?", 0, caller);

	if (st->owner != NULL && st->owner != curthread)
		hk_panic(caller, "%s: lock \"%s\" held by another thread", op,
		    lo->lo_name);
	hk->lock_free(st->host);
	hk->release(st);
	lo->lo_witness = NULL;
	lo->lo_flags &= ~LO_INITIALIZED;
	__atomic_sub_fetch(&hk_live_locks, 1, __ATOMIC_RELAXED);
}

/* Records "first, then second"; a reversal of a known order panics. */
static void
hk_witness_order(struct lock_object *lo, const char *file, int line,
    const void *caller)
{
	struct hk_td *t = hk_td_self();
	struct hk_held *h;
	int i, j, found;

	hk->lock(hk_order_lock);
	for (i = 0; i < t->nheld; i++) {
		h = &t->held[i];
		if (h->lo == lo || strcmp(h->lo->lo_name, lo->lo_name) == 0)
			continue;
		found = 0;
		for (j = 0; j < hk_norder; j++) {
			if (strcmp(hk_order[j].first, lo->lo_name) == 0 &&
			    strcmp(hk_order[j].second, h->lo->lo_name) == 0) {
				hk->unlock(hk_order_lock);
				hk_panic(caller, "lock order reversal:\n"
				    " 1st %p %s @ %s:%d\n 2nd %p %s @ %s:%d\n"
				    " (established: %s before %s @ %s:%d)",
				    h->lo, h->lo->lo_name, h->file, h->line,
				    lo, lo->lo_name, file, line,
				    hk_order[j].first, hk_order[j].second,
				    hk_order[j].file, hk_order[j].line);
			}
			if (strcmp(hk_order[j].first, h->lo->lo_name) == 0 &&
			    strcmp(hk_order[j].second, lo->lo_name) == 0)
				found = 1;
		}
		if (!found && hk_norder < HK_MAXORDER) {
			strlcpy(hk_order[hk_norder].first, h->lo->lo_name,
			    sizeof(hk_order[hk_norder].first));
			strlcpy(hk_order[hk_norder].second, lo->lo_name,
			    sizeof(hk_order[hk_norder].second));
			strlcpy(hk_order[hk_norder].file, file,
			    sizeof(hk_order[hk_norder].file));
			hk_order[hk_norder].line = line;
			hk_norder++;
		}
	}
	hk->unlock(hk_order_lock);
}

static void
hk_held_push(struct lock_object *lo, const char *file, int line,
    const void *caller)
{
	struct hk_td *t = hk_td_self();

	if (t->nheld >= HK_MAXHELD)
		hk_panic(caller, "too many locks held by %s", t->name);
	t->held[t->nheld].lo = lo;
	t->held[t->nheld].file = file;
	t->held[t->nheld].line = line;
	t->nheld++;
}

static void
hk_held_pop(struct lock_object *lo)
{
	struct hk_td *t = hk_td_self();
	int i;

	for (i = t->nheld - 1; i >= 0; i--)
		if (t->held[i].lo == lo) {
			t->held[i] = t->held[--t->nheld];
			return;
		}
}

static void
hk_lock_acquire(struct lock_object *lo, const char *op, int sleepable_op,
    const char *file, int line, const void *caller)
{
	struct hk_lockst *st = hk_lock_st(lo, op, file, line, caller);

	if (st->owner == curthread) {
		if ((lo->lo_flags & LO_RECURSABLE) == 0)
			hk_panic(caller, "%s: recursed on non-recursive lock "
			    "\"%s\" @ %s:%d (first locked at %s:%d)", op,
			    lo->lo_name, file, line, st->file, st->line);
		st->recursed++;
		return;
	}
	if (sleepable_op)
		hk_td_may_sleep(op, caller);
	hk_witness_order(lo, file, line, caller);
	hk->lock(st->host);
	st->owner = curthread;
	st->file = file;
	st->line = line;
	hk_lock_hist(st, 'L', line);
	hk_held_push(lo, file, line, caller);
}

static int
hk_lock_try(struct lock_object *lo, const char *op, const char *file,
    int line, const void *caller)
{
	struct hk_lockst *st = hk_lock_st(lo, op, file, line, caller);

	if (st->owner == curthread) {
		if ((lo->lo_flags & LO_RECURSABLE) == 0)
			return (0);
		st->recursed++;
		return (1);
	}
	if (!hk->trylock(st->host))
		return (0);
	st->owner = curthread;
	st->file = file;
	st->line = line;
	hk_lock_hist(st, 'T', line);
	hk_held_push(lo, file, line, caller);
	return (1);
}

static void
hk_lock_release(struct lock_object *lo, const char *op, const char *file,
    int line, const void *caller)
{
	struct hk_lockst *st = hk_lock_st(lo, op, file, line, caller);

	if (st->owner != curthread) {
		char h[256];
		size_t n = 0;
		u_int i;

		h[0] = '\0';
		for (i = st->nhist > HK_LOCKHIST ? st->nhist - HK_LOCKHIST : 0;
		    i < st->nhist && n < sizeof(h); i++)
			n += snprintf(h + n, sizeof(h) - n, " %c:%s:%d",
			    st->hist[i % HK_LOCKHIST].op,
			    st->hist[i % HK_LOCKHIST].td->td_name,
			    st->hist[i % HK_LOCKHIST].line);
		hk_panic(caller, "%s: lock \"%s\" not owned @ %s:%d (owner: "
		    "%s, last locked @ %s:%d; history%s)", op, lo->lo_name,
		    file, line, st->owner != NULL ? st->owner->td_name :
		    "none", st->file != NULL ? st->file : "?", st->line, h);
	}
	hk_lock_hist(st, 'U', line);
	if (st->recursed > 0) {
		st->recursed--;
		return;
	}
	st->owner = NULL;
	hk_held_pop(lo);
	hk->unlock(st->host);
}

#define	MTX(c)		__containerof(c, struct mtx, mtx_lock)
#define	MTX_LO(c)	(&MTX(c)->lock_object)

void
_mtx_init(volatile uintptr_t *c, const char *name, const char *type, int opts)
{

	(void)type;
	if (opts & MTX_SPIN)
		hk_panic(__builtin_return_address(0),
		    "mtx_init: spin mutex %s: not in this kernel", name);
	hk_lock_init(MTX_LO(c), name,
	    (opts & MTX_RECURSE) ? LO_RECURSABLE : 0,
	    __builtin_return_address(0));
	MTX(c)->mtx_lock = MTX_UNOWNED;
}

void
_mtx_destroy(volatile uintptr_t *c)
{

	hk_lock_destroy(MTX_LO(c), "mtx_destroy", __builtin_return_address(0));
	MTX(c)->mtx_lock = MTX_DESTROYED;
}

void
mtx_sysinit(const void *arg)
{
	const struct mtx_args *margs = arg;

	mtx_init((struct mtx *)margs->ma_mtx, margs->ma_desc, NULL,
	    margs->ma_opts);
}

void
__mtx_lock_flags(volatile uintptr_t *c, int opts, const char *file, int line)
{

	(void)opts;
	hk_lock_acquire(MTX_LO(c), "mtx_lock", 0, file, line,
	    __builtin_return_address(0));
	MTX(c)->mtx_lock = (uintptr_t)curthread;
}

void
__mtx_unlock_flags(volatile uintptr_t *c, int opts, const char *file, int line)
{

	(void)opts;
	hk_lock_release(MTX_LO(c), "mtx_unlock", file, line,
	    __builtin_return_address(0));
	if (((struct hk_lockst *)MTX_LO(c)->lo_witness)->owner == NULL)
		MTX(c)->mtx_lock = MTX_UNOWNED;
}

int
_mtx_trylock_flags_(volatile uintptr_t *c, int opts, const char *file,
    int line)
{

	(void)opts;
	if (!hk_lock_try(MTX_LO(c), "mtx_trylock", file, line,
	    __builtin_return_address(0)))
		return (0);
	MTX(c)->mtx_lock = (uintptr_t)curthread;
	return (1);
}

void
sx_init_flags(struct sx *sx, const char *description, int opts)
{

	hk_lock_init(&sx->lock_object, description,
	    LO_SLEEPABLE | ((opts & SX_RECURSE) ? LO_RECURSABLE : 0),
	    __builtin_return_address(0));
	sx->sx_lock = SX_LOCK_UNLOCKED;
}

void
sx_destroy(struct sx *sx)
{

	hk_lock_destroy(&sx->lock_object, "sx_destroy",
	    __builtin_return_address(0));
	sx->sx_lock = SX_LOCK_DESTROYED;
}

int
_sx_xlock(struct sx *sx, int opts, const char *file, int line)
{

	(void)opts;
	hk_lock_acquire(&sx->lock_object, "sx_xlock", 1, file, line,
	    __builtin_return_address(0));
	sx->sx_lock = (uintptr_t)curthread;
	return (0);
}

void
_sx_xunlock(struct sx *sx, const char *file, int line)
{

	hk_lock_release(&sx->lock_object, "sx_xunlock", file, line,
	    __builtin_return_address(0));
	if (((struct hk_lockst *)sx->lock_object.lo_witness)->owner == NULL)
		sx->sx_lock = SX_LOCK_UNLOCKED;
}

int
sx_try_xlock_(struct sx *sx, const char *file, int line)
{

	if (!hk_lock_try(&sx->lock_object, "sx_try_xlock", file, line,
	    __builtin_return_address(0)))
		return (0);
	sx->sx_lock = (uintptr_t)curthread;
	return (1);
}

/* Locks initialized and not destroyed (the harness's ledger). */
int64_t hk_locks_live(void);
int64_t
hk_locks_live(void)
{

	return (__atomic_load_n(&hk_live_locks, __ATOMIC_RELAXED));
}

/* Locks the calling thread holds (a thread must hold none on return). */
int hk_locks_held(void);
int
hk_locks_held(void)
{

	return (hk_td_self()->nheld);
}

/* ---- Boot. ---- */

/* The harness hands over its services, before any thread exists. */
void hk_set_host(const struct hk_host *h);
void
hk_set_host(const struct hk_host *h)
{

	hk = h;
	tick_sbt = SBT_1S / hz;
}

/*
 * The kernel's own linker sets (its sysctl nodes, MALLOC_DEFINEs), then
 * the subsystems, their threads started; on the harness's main thread,
 * whose %gs is set.
 */
void hk_boot(struct sysctl_oid **oid, struct sysctl_oid **oid_end,
    struct sysinit **si, struct sysinit **si_end);
void
hk_boot(struct sysctl_oid **oid, struct sysctl_oid **oid_end,
    struct sysinit **si, struct sysinit **si_end)
{

	hk_lock_boot();
	hk_sysctl_boot();
	hk_sysctl_register_set(oid, oid_end);
	hk_bus_boot();
	hk_taskq_boot();
	hk_if_boot();
	hk_netmap_boot();
	/* The kernel's own SYSINITs (malloc types, built-in drivers). */
	for (; si != NULL && si < si_end; si++)
		(*si)->func((*si)->udata);
}
