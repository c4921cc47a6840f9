/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * taskqueue(9) and callout(9) as sys/kern/subr_taskqueue.c and
 * sys/kern/kern_timeout.c behave for a driver:
 *
 * - taskqueue_enqueue() of a pending task only counts it (ta_pending);
 *   the queue's enqueue function (taskqueue_thread_enqueue) wakes its
 *   threads; a task may be enqueued again while it runs;
 * - taskqueue_drain() sleeps until the task is neither pending nor
 *   running (so it may not be called with a mutex held, nor by the task
 *   itself on its own queue: that never returns);
 * - taskqueue_free() lets the threads run what is pending and exit;
 * - a callout runs once per callout_reset(), in the softclock thread,
 *   where it may not sleep; callout_drain() waits for a running one.
 *
 * Checks: a task or callout returning with a lock held, a pending task or
 * callout inside memory being freed (free(9) without callout_drain() or
 * taskqueue_drain() first), draining one's own task.
 */

#include "hk.h"

#include <sys/proc.h>

struct taskqueue {
	STAILQ_HEAD(, task)	 tq_queue;
	const char		*tq_name;
	taskqueue_enqueue_fn	 tq_enqueue;
	void			*tq_context;
	void			*tq_lock;	/* host lock */
	void			*tq_cond;	/* work, and done */
	struct task		*tq_running;
	void			*tq_running_td;
	int			 tq_active;
	int			 tq_nthreads;
	void			*tq_threads[4];
	struct taskqueue	*tq_next;	/* all queues, for the checks */
};

static struct taskqueue *hk_queues;
static void *hk_queues_lock;
static int64_t hk_tq_live;

struct taskqueue *taskqueue_thread;

static struct taskqueue *
hk_tq_create(const char *name, int mflags, taskqueue_enqueue_fn enqueue,
    void *context, const void *caller)
{
	struct taskqueue *tq;

	if (mflags & M_WAITOK)
		hk_td_may_sleep("taskqueue_create(M_WAITOK)", caller);
	tq = hk->alloc(sizeof(*tq), (mflags & M_NOWAIT) ? caller : NULL);
	if (tq == NULL)
		return (NULL);
	STAILQ_INIT(&tq->tq_queue);
	tq->tq_name = name;
	tq->tq_enqueue = enqueue;
	tq->tq_context = context;
	tq->tq_lock = hk->lock_new();
	tq->tq_cond = hk->cond_new();
	tq->tq_active = 1;
	hk->lock(hk_queues_lock);
	tq->tq_next = hk_queues;
	hk_queues = tq;
	hk->unlock(hk_queues_lock);
	__atomic_add_fetch(&hk_tq_live, 1, __ATOMIC_RELAXED);
	return (tq);
}

struct taskqueue *
taskqueue_create(const char *name, int mflags, taskqueue_enqueue_fn enqueue,
    void *context)
{

	return (hk_tq_create(name, mflags, enqueue, context,
	    __builtin_return_address(0)));
}

struct taskqueue *
taskqueue_create_fast(const char *name, int mflags,
    taskqueue_enqueue_fn enqueue, void *context)
{

	return (hk_tq_create(name, mflags, enqueue, context,
	    __builtin_return_address(0)));
}

/* Runs what is queued; called and returns with tq_lock held. */
static void
hk_tq_run_locked(struct taskqueue *tq)
{
	struct task *task;
	int pending;

	while ((task = STAILQ_FIRST(&tq->tq_queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&tq->tq_queue, ta_link);
		pending = task->ta_pending;
		task->ta_pending = 0;
		tq->tq_running = task;
		tq->tq_running_td = hk_td_self();
		hk->unlock(tq->tq_lock);
		task->ta_func(task->ta_context, pending);
		if (hk_locks_held() != 0)
			hk_panic((void *)task->ta_func, "task %p of taskqueue %s "
			    "returned with a lock held", task, tq->tq_name);
		hk->lock(tq->tq_lock);
		tq->tq_running = NULL;
		tq->tq_running_td = NULL;
		hk->cond_broadcast(tq->tq_cond);
	}
}

static void
hk_tq_thread(void *arg)
{
	struct taskqueue *tq = arg;

	hk->lock(tq->tq_lock);
	while (tq->tq_active) {
		hk_tq_run_locked(tq);
		if (tq->tq_active && STAILQ_EMPTY(&tq->tq_queue))
			(void)hk->cond_wait(tq->tq_cond, tq->tq_lock, 0);
	}
	/* As taskqueue_thread_loop(): what is left runs before the exit. */
	hk_tq_run_locked(tq);
	hk->unlock(tq->tq_lock);
}

int
taskqueue_start_threads(struct taskqueue **tqp, int count, int pri,
    const char *name, ...)
{
	struct taskqueue *tq = *tqp;
	char buf[64];
	va_list ap;
	int i;

	(void)pri;
	hk_td_may_sleep("taskqueue_start_threads", __builtin_return_address(0));
	va_start(ap, name);
	vsnprintf(buf, sizeof(buf), name, ap);
	va_end(ap);
	for (i = 0; i < count && tq->tq_nthreads < (int)nitems(tq->tq_threads);
	    i++)
		tq->tq_threads[tq->tq_nthreads++] =
		    hk->thread_spawn(hk_tq_thread, tq, buf);
	return (0);
}

/* subr_taskqueue.c: the enqueue function of thread-backed queues. */
void
taskqueue_thread_enqueue(void *context)
{
	struct taskqueue **tqp = context, *tq = *tqp;

	/* Called with tq_lock held, as wakeup_any(tq) under TQ_LOCK. */
	hk->cond_broadcast(tq->tq_cond);
}

int
taskqueue_enqueue(struct taskqueue *tq, struct task *task)
{

	if (task->ta_func == NULL)
		hk_panic(__builtin_return_address(0), "taskqueue_enqueue: "
		    "task %p was never initialized (TASK_INIT)", task);
	hk->lock(tq->tq_lock);
	if (!tq->tq_active)
		hk_panic(__builtin_return_address(0), "taskqueue_enqueue: "
		    "taskqueue %s is being freed", tq->tq_name);
	if (task->ta_pending) {
		if (task->ta_pending < UINT16_MAX)
			task->ta_pending++;
		hk->unlock(tq->tq_lock);
		return (0);
	}
	STAILQ_INSERT_TAIL(&tq->tq_queue, task, ta_link);
	task->ta_pending = 1;
	tq->tq_enqueue(tq->tq_context);
	hk->unlock(tq->tq_lock);
	return (0);
}

static int
hk_task_busy(struct taskqueue *tq, struct task *task)
{

	return (task->ta_pending > 0 || tq->tq_running == task);
}

void
taskqueue_drain(struct taskqueue *tq, struct task *task)
{
	const void *caller = __builtin_return_address(0);

	hk_td_may_sleep("taskqueue_drain", caller);
	hk->lock(tq->tq_lock);
	if (tq->tq_running == task && tq->tq_running_td == hk_td_self())
		hk_panic(caller, "taskqueue_drain: task %p drained from its "
		    "own taskqueue thread (%s): never returns", task,
		    tq->tq_name);
	while (hk_task_busy(tq, task))
		(void)hk->cond_wait(tq->tq_cond, tq->tq_lock, 0);
	hk->unlock(tq->tq_lock);
}

void
taskqueue_free(struct taskqueue *tq)
{
	struct taskqueue **p;
	int i;

	hk_td_may_sleep("taskqueue_free", __builtin_return_address(0));
	hk->lock(tq->tq_lock);
	tq->tq_active = 0;
	hk->cond_broadcast(tq->tq_cond);
	hk->unlock(tq->tq_lock);
	for (i = 0; i < tq->tq_nthreads; i++)
		hk->thread_join(tq->tq_threads[i]);
	if (!STAILQ_EMPTY(&tq->tq_queue))
		hk_panic(__builtin_return_address(0), "taskqueue_free: %s has "
		    "tasks pending and no thread", tq->tq_name);
	hk->lock(hk_queues_lock);
	for (p = &hk_queues; *p != NULL; p = &(*p)->tq_next)
		if (*p == tq) {
			*p = tq->tq_next;
			break;
		}
	hk->unlock(hk_queues_lock);
	hk->cond_free(tq->tq_cond);
	hk->lock_free(tq->tq_lock);
	hk->release(tq);
	__atomic_sub_fetch(&hk_tq_live, 1, __ATOMIC_RELAXED);
}

/* ---- callout(9): one softclock thread. ---- */

static LIST_HEAD(, callout) hk_callouts = LIST_HEAD_INITIALIZER(hk_callouts);
static void *hk_co_lock, *hk_co_cond, *hk_co_thread;
static struct callout *hk_co_running;
static volatile int hk_co_stop;

static sbintime_t
hk_sbinuptime(void)
{
	uint64_t ns = hk->uptime_ns();

	return ((sbintime_t)(ns / 1000000000) << 32 |
	    ((ns % 1000000000) << 32) / 1000000000);
}

static uint64_t
hk_sbt2ns(sbintime_t sbt)
{

	return ((uint64_t)(sbt >> 32) * 1000000000 +
	    (((uint64_t)sbt & 0xffffffff) * 1000000000 >> 32));
}

static void
hk_softclock(void *arg)
{
	struct callout *c, *next;
	sbintime_t now, first;
	callout_func_t *fn;
	void *fnarg;

	(void)arg;
	hk_td_set_nosleep(1);
	hk->lock(hk_co_lock);
	while (!hk_co_stop) {
		now = hk_sbinuptime();
		first = INT64_MAX;
		for (c = LIST_FIRST(&hk_callouts); c != NULL; c = next) {
			next = LIST_NEXT(c, c_links.le);
			if (c->c_time > now) {
				if (c->c_time < first)
					first = c->c_time;
				continue;
			}
			LIST_REMOVE(c, c_links.le);
			c->c_iflags &= ~CALLOUT_PENDING;
			fn = c->c_func;
			fnarg = c->c_arg;
			hk_co_running = c;
			hk->unlock(hk_co_lock);
			fn(fnarg);
			if (hk_locks_held() != 0)
				hk_panic((void *)fn, "callout %p returned with a "
				    "lock held", c);
			hk->lock(hk_co_lock);
			hk_co_running = NULL;
			hk->cond_broadcast(hk_co_cond);
			/* The list may have changed: start over. */
			next = LIST_FIRST(&hk_callouts);
			now = hk_sbinuptime();
			first = INT64_MAX;
		}
		(void)hk->cond_wait(hk_co_cond, hk_co_lock,
		    first == INT64_MAX ? 0 : 1 + hk_sbt2ns(first - now));
	}
	hk->unlock(hk_co_lock);
}

void
callout_init(struct callout *c, int mpsafe)
{

	if (!mpsafe)
		hk_panic(__builtin_return_address(0), "callout_init: callout "
		    "%p not MP-safe: it would run under Giant", c);
	bzero(c, sizeof(*c));
	c->c_cpu = 0;
}

int
callout_reset_sbt_on(struct callout *c, sbintime_t sbt, sbintime_t prec,
    callout_func_t *func, void *arg, int cpu, int flags)
{
	int cancelled = 0;

	(void)prec;
	(void)cpu;
	hk->lock(hk_co_lock);
	if (c->c_iflags & CALLOUT_PENDING) {
		LIST_REMOVE(c, c_links.le);
		cancelled = 1;
	}
	c->c_time = (flags & C_ABSOLUTE) ? sbt : hk_sbinuptime() + sbt;
	c->c_func = func;
	c->c_arg = arg;
	c->c_iflags |= CALLOUT_PENDING;
	c->c_flags |= CALLOUT_ACTIVE;
	LIST_INSERT_HEAD(&hk_callouts, c, c_links.le);
	hk->cond_broadcast(hk_co_cond);
	hk->unlock(hk_co_lock);
	return (cancelled);
}

int
_callout_stop_safe(struct callout *c, int flags)
{
	const void *caller = __builtin_return_address(0);
	int stopped = 0;

	if (flags & CS_DRAIN)
		hk_td_may_sleep("callout_drain", caller);
	hk->lock(hk_co_lock);
	if (c->c_iflags & CALLOUT_PENDING) {
		LIST_REMOVE(c, c_links.le);
		c->c_iflags &= ~CALLOUT_PENDING;
		stopped = 1;
	}
	c->c_flags &= ~CALLOUT_ACTIVE;
	if ((flags & CS_DRAIN) && hk_co_running == c) {
		if (hk_td_self() == NULL)
			hk_panic(caller, "callout_drain: no thread");
		while (hk_co_running == c)
			(void)hk->cond_wait(hk_co_cond, hk_co_lock, 0);
	}
	hk->unlock(hk_co_lock);
	return (stopped);
}

/*
 * free(9) of memory holding a pending task or callout: the queue or the
 * softclock thread would later run it from freed memory.
 */
void hk_check_freed(const void *p, size_t size, const void *caller);
void
hk_check_freed(const void *p, size_t size, const void *caller)
{
	const char *lo = p, *hi = lo + size;
	struct taskqueue *tq;
	struct task *t;
	struct callout *c;

	hk->lock(hk_co_lock);
	LIST_FOREACH(c, &hk_callouts, c_links.le)
		if ((const char *)c >= lo && (const char *)c < hi) {
			hk->unlock(hk_co_lock);
			/* The caller line names the callout's function. */
			(void)caller;
			hk_panic((void *)c->c_func, "free: memory %p holds callout "
			    "%p, still pending (callout_drain() first)", p, c);
		}
	if (hk_co_running != NULL && (const char *)hk_co_running >= lo &&
	    (const char *)hk_co_running < hi) {
		hk->unlock(hk_co_lock);
		hk_panic(caller, "free: memory %p holds callout %p, running now",
		    p, hk_co_running);
	}
	hk->unlock(hk_co_lock);
	hk->lock(hk_queues_lock);
	for (tq = hk_queues; tq != NULL; tq = tq->tq_next) {
		hk->lock(tq->tq_lock);
		STAILQ_FOREACH(t, &tq->tq_queue, ta_link)
			if ((const char *)t >= lo && (const char *)t < hi)
				hk_panic((void *)t->ta_func, "free: memory %p "
				    "holds task %p, still queued on %s "
				    "(taskqueue_drain() first)", p, t, tq->tq_name);
		if (tq->tq_running != NULL &&
		    (const char *)tq->tq_running >= lo &&
		    (const char *)tq->tq_running < hi)
			hk_panic(caller, "free: memory %p holds task %p, running "
			    "on %s", p, tq->tq_running, tq->tq_name);
		hk->unlock(tq->tq_lock);
	}
	hk->unlock(hk_queues_lock);
}

/* Taskqueues and pending callouts alive now (the harness's ledger). */
void hk_taskq_live(int64_t *queues, int64_t *callouts);
void
hk_taskq_live(int64_t *queues, int64_t *callouts)
{
	struct callout *c;
	int64_t n = 0;

	hk->lock(hk_co_lock);
	LIST_FOREACH(c, &hk_callouts, c_links.le)
		n++;
	hk->unlock(hk_co_lock);
	/* taskqueue_thread is the kernel's own. */
	*queues = __atomic_load_n(&hk_tq_live, __ATOMIC_RELAXED) - 1;
	*callouts = n;
}

void
hk_taskq_boot(void)
{

	hk_queues_lock = hk->lock_new();
	hk_co_lock = hk->lock_new();
	hk_co_cond = hk->cond_new();
	hk_co_thread = hk->thread_spawn(hk_softclock, NULL, "clock (0)");
	/* TASKQUEUE_DEFINE_THREAD(thread) */
	taskqueue_thread = taskqueue_create("thread", M_WAITOK,
	    taskqueue_thread_enqueue, &taskqueue_thread);
	taskqueue_start_threads(&taskqueue_thread, 1, PWAIT, "thread taskq");
}

/* The end of the world: threads stopped, for a clean process exit. */
void hk_taskq_shutdown(void);
void
hk_taskq_shutdown(void)
{

	hk->lock(hk_co_lock);
	hk_co_stop = 1;
	hk->cond_broadcast(hk_co_cond);
	hk->unlock(hk_co_lock);
	hk->thread_join(hk_co_thread);
	taskqueue_free(taskqueue_thread);
}
