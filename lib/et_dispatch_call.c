/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher's calling thread: it makes the calls of the claimed
 * jobs, up to EventTriggerWorkers at once, side by side on one libcurl
 * multi handle (et_http.h), judges each answer (et_judge.c) and hands the
 * job back to the claiming thread, which stores the outcome.
 *
 * Why one calling thread and not a pool of threads each blocked in its own
 * call: the calls spend their time waiting on sockets, and one thread
 * waiting on all of them costs a third less CPU per call and no context
 * switch per call (docs/design.md, "Calls"). Why not the claiming thread
 * itself: its commits wait for the disk, and calls must not stall then.
 *
 * Thread safety: everything here runs on the calling thread. It owns
 * d->http, d->running, d->waiting, d->rnd and d->span; it takes d->q_lock
 * to move the queue into d->waiting, d->done_lock to hand jobs back, and
 * d->cb_lock (through et_dispatch_site.c) for the sites' state; it uses
 * atomics for d->inflight, d->cap, d->batch and d->call_us. Allocations go
 * to the job's own pool. It writes to the outbox itself (etd_store_alone,
 * under d->ob_lock and the outbox's lock) only when no other call runs or
 * waits (follow_here).
 */

#include <apr_atomic.h>
#include <apr_strings.h>

#include "et_dispatch_int.h"
#include "et_call.h"

/* How long calls under way may run on once the dispatcher is stopping. */
#define ET_STOP_GRACE apr_time_from_msec(1500)
/* A call starts only if its timeout, and this much more, ends before its
 * lease does (start_call) */
#define ET_LEASE_MARGIN apr_time_from_sec(1)

/* Retry jitter needs spread, not secrecy: xorshift32, seeded once from
 * the system's generator (drawing from it per call was one getrandom()
 * per delivery on the calling thread). */
static apr_uint32_t next_rand(dispatcher_t *d)
{
    apr_uint32_t x = d->rnd;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return d->rnd = x;
}

/* An attempt's parent id (W3C Trace Context): unique, not secret, so
 * splitmix64 over a counter seeded once from the system's generator - a
 * bijection, so no id comes twice from one dispatcher - instead of a
 * getrandom() per call. Calling thread only. */
static apr_uint64_t next_span(dispatcher_t *d)
{
    apr_uint64_t z;

    do {
        z = (d->span += APR_UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * APR_UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * APR_UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
    } while (z == 0);                 /* not a valid parent id */
    return z;
}

static void nudge(dispatcher_t *d)
{
    char c = 'd';
    apr_size_t n = 1;

    /* non-blocking; a full pipe already means "wake up" */
    apr_file_write(d->done_w, &c, &n);
}

static void hand_back(dispatcher_t *d, job_t *job);

/* Back to the claiming thread uncalled, with the events chained to it
 * (they may not overtake it); the round gives their leases up. A probe
 * that was never made must not leave its site paused for good. */
void etd_give_back(dispatcher_t *d, job_t *job)
{
    job_t *next = job->chain;

    job->chain = NULL;
    job->untried = 1;
    if (job->probe) {
        etd_probe_lost(d, job->ev->site);
    }
    hand_back(d, job);
    while ((job = next) != NULL) {
        next = job->chain;
        job->chain = NULL;
        job->untried = 1;
        apr_atomic_inc32(&d->inflight);       /* hand_back counts it out */
        hand_back(d, job);
    }
}

static void call_done(void *baton, const et_http_response_t *resp);

/*
 * Chained delivery when @a job's object is all there is to call (no other
 * call runs or waits; call_done has ruled out a retry and a stop): its
 * outcome (delivered or dead, in job->out) is committed here
 * and the object's next call is the next to start, instead of a hand-over
 * to the claiming thread, its round (with claims) and a hand-over back
 * per event (figure 14b). The next call still starts only once the
 * outcome is durable. With other calls under way the claiming thread
 * stores it: their answers must not wait here on the disk. 1 if done:
 * @a job is gone and its follower waits first in d->waiting, in its
 * place in d->inflight; 0: hand it back (a failed write is made again
 * by the round, which follows on).
 */
static int follow_here(dispatcher_t *d, job_t *job)
{
    job_t *next = job->chain;
    int idle;

    if (d->running > 0 || d->waiting) {
        return 0;
    }
    apr_thread_mutex_lock(d->q_lock);
    idle = d->queue == NULL;
    apr_thread_mutex_unlock(d->q_lock);
    /* etd_store_alone refuses (the round keeps the outcome) while the
     * reserve is given up: it checks under the writers' lock */
    if (!idle || etd_store_alone(d, job) != APR_SUCCESS) {
        return 0;
    }
    job->chain = NULL;
    apr_pool_destroy(job->pool);
    next->chained = 1;
    next->next = NULL;
    d->waiting = d->waiting_tail = next;
    return 1;
}

/* Calling thread: make the call of @a job (its answer comes to call_done). */
static void start_call(dispatcher_t *d, job_t *job)
{
    apr_pool_t *p = job->pool;
    et_event_t *ev = job->ev;
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, ev->site);
    et_http_request_t req;
    apr_interval_time_t slack, margin;

    /* a call ends a little after its timeout (libcurl's timers), and the
     * outcome is written after that: room for both, within the slack the
     * configuration leaves (EventTriggerLease > EventTriggerTimeout) */
    slack = d->conf->lease - site->timeout;
    margin = slack / 2 < ET_LEASE_MARGIN ? slack / 2 : ET_LEASE_MARGIN;
    if (apr_time_now() + site->timeout + margin >= job->lease_until) {
        /* Queued (claimed ahead) behind slow calls for so long that this
         * one could outlive its lease and be claimed twice: back in line
         * untried instead. */
        et_log(&d->log, ET_LOG_INFO, p,
               "ET01019: txn=%s waited for a free worker "
               "until its lease nearly ran out; it is back in "
               "line untried", ev->txn);
        etd_give_back(d, job);
        return;
    }
    if (!job->probe && etd_circuit_gate(d, ev->site) != ET_GATE_OPEN) {
        /* its endpoint was paused after the claim (claimed ahead behind
         * calls that failed): a paused endpoint gets no calls, and what
         * waits behind a pause uses no attempt */
        et_log(&d->log, ET_LOG_DEBUG, p,
               "ET01040: txn=%s: site %s was paused after "
               "it was claimed; back in line untried", ev->txn,
               ev->site);
        etd_give_back(d, job);
        return;
    }
    et_call_request(p, site, et_event_method(ev->event), ev->url,
                    ev->content_type, ev->txn, ev->body, ev->body_len, &req);
    {
        const char *tp = et_call_event(p, ev, next_span(d), &req);

        /* "00-" trace id "-": for the attempt's log line */
        job->trace_id = tp ? apr_pstrmemdup(p, tp + 3, 32) : NULL;
    }

    if (et_http_start(d->http, p, &req, call_done, job) != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_ERR, p,
               "ET01023: cannot start the call of txn=%s (out "
               "of memory?); it is back in line untried",
               ev->txn);
        etd_give_back(d, job);
        return;
    }
    d->running++;
}

/* Calling thread: a call has ended (or was interrupted at stop). */
static void call_done(void *baton, const et_http_response_t *r)
{
    job_t *job = baton;
    dispatcher_t *d = job->d;
    apr_pool_t *p = job->pool;
    et_event_t *ev = job->ev;
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, ev->site);
    et_http_response_t resp = *r;
    et_outcome_t out;
    const char *detail;
    int level, chain_waits = 0;

    d->running--;
    {
        /* a moving mean (1/8 per call), read by the claiming thread */
        apr_uint32_t mean = apr_atomic_read32(&d->call_us);
        apr_interval_time_t took = resp.elapsed > 0 ? resp.elapsed : 0;

        if (took > apr_time_from_sec(3600)) {
            took = apr_time_from_sec(3600);
        }
        apr_atomic_set32(&d->call_us,
                         (apr_uint32_t)(((apr_uint64_t)mean * 7
                                         + (apr_uint64_t)took) / 8));
    }
    if (resp.aborted) {
        /* the dispatcher stops: back in line untried (the receiver may
         * have seen it; the same txn lets it drop the repeat) */
        et_log(&d->log, ET_LOG_INFO, p,
               "ET01009: call of txn=%s interrupted by the "
               "dispatcher's stop; it is back in line", ev->txn);
        etd_give_back(d, job);
        return;
    }
    et_dispatch_judge(site, ev, &resp, apr_time_now(), next_rand(d), &out);
    if (out.state != ET_ST_DELIVERED) {
        const char *excerpt = et_judge_excerpt(p, resp.body, resp.body_len);
        out.error = resp.status
            ? apr_psprintf(p, "%s: HTTP %d%s%s", out.error, resp.status,
                           *excerpt ? ", answer: " : "", excerpt)
            : apr_psprintf(p, "%s: %s", out.error,
                           resp.error ? resp.error : "transport error");
    }

    etd_circuit_after(d, p, site, ev, &resp, out.error);

    switch (out.state) {
    case ET_ST_DELIVERED:
        level = ET_LOG_INFO;
        detail = "delivered";
        break;
    case ET_ST_PENDING:
        level = ET_LOG_WARNING;
        detail = apr_psprintf(p, "will retry in %" APR_TIME_T_FMT "ms",
                              apr_time_as_msec(out.due - apr_time_now()));
        break;
    default:
        level = ET_LOG_ERR;
        detail = "dead letter";
        break;
    }
    et_log(&d->log, level, p, "ET01001: %s txn=%s site=%s object=%s "
           "event=%s id=%s attempt=%d status=%d latency=%"
           APR_TIME_T_FMT "ms trace=%s%s%s%s", detail, ev->txn,
           ev->site, et_object_name(ev->object),
           et_event_name(ev->event), ev->oid, ev->attempts,
           resp.status, apr_time_as_msec(resp.elapsed),
           job->trace_id ? job->trace_id : "-",
           job->chained ? " chained=1" : "",
           out.error ? " error=" : "",
           out.error ? out.error : "");

    /* The outcome is stored by the claiming thread with the others that
     * finished meanwhile, in one transaction (or here, follow_here); the
     * job and its pool are its from then on. Until then the event stays
     * leased, so neither it nor a later event of the same object can be
     * claimed. */
    job->out = out;
    if (job->chain && (out.state == ET_ST_PENDING || *d->conf->stop)) {
        job_t *next = job->chain;

        /* a retry holds its object's line (and a stopping dispatcher
         * starts nothing): the rest go back */
        job->chain = NULL;
        apr_atomic_inc32(&d->inflight);       /* as etd_give_back expects */
        etd_give_back(d, next);
    }
    else if (job->chain) {
        if (follow_here(d, job)) {
            return;
        }
        /* delivered or dead: the next call of the object starts as soon
         * as this outcome is committed (do_round, at once: d->chains),
         * never before - a dispatcher killed in between must not call
         * this event again after the next one */
        apr_atomic_inc32(&d->chains);
        chain_waits = 1;
    }

    hand_back(d, job);
    if (chain_waits) {
        nudge(d);
    }
}

/*
 * A call is made (or given back untried): its job goes to the claiming
 * thread. That thread is nudged for the first outcome since its last
 * round (a lone event's outcome is stored at once), when the last call
 * ends, and when enough workers are free for a full claim; in between it
 * is not woken per call.
 */
static void hand_back(dispatcher_t *d, job_t *job)
{
    apr_uint32_t left;
    int first;

    apr_thread_mutex_lock(d->done_lock);
    job->next = d->done;
    d->done = job;
    first = d->ndone++ == 0;
    apr_thread_mutex_unlock(d->done_lock);
    left = apr_atomic_add32(&d->inflight, (apr_uint32_t)-1) - 1;
    if (first || left == 0
        || left == apr_atomic_read32(&d->cap) - apr_atomic_read32(&d->batch)) {
        nudge(d);
    }
}

/*
 * The calling thread: starts the queued calls, in claim order, up to
 * conf->workers at once, and runs them until they end (call_done). At
 * stop, queued calls go back untried; calls about to finish are let
 * finish (an interrupted call is made again: a duplicate for the
 * receiver), the rest are interrupted well before httpd's SIGKILL, 3 s
 * after its SIGTERM.
 */
void *APR_THREAD_FUNC etd_caller(apr_thread_t *thd, void *data)
{
    dispatcher_t *d = data;
    apr_time_t grace;
    job_t *job;
    int complained = 0;

    et_thread_name("et-calls");

    for (;;) {
        int stopping = *d->conf->stop;

        apr_thread_mutex_lock(d->q_lock);
        if (d->queue) {
            if (d->waiting_tail) {
                d->waiting_tail->next = d->queue;
            }
            else {
                d->waiting = d->queue;
            }
            d->waiting_tail = d->queue_tail;
            d->queue = d->queue_tail = NULL;
        }
        apr_thread_mutex_unlock(d->q_lock);
        while ((job = d->waiting) != NULL
               && (stopping || d->running < d->conf->workers)) {
            d->waiting = job->next;
            if (!d->waiting) {
                d->waiting_tail = NULL;
            }
            job->next = NULL;
            if (stopping) {
                etd_give_back(d, job);
            }
            else {
                start_call(d, job);
            }
        }
        if (stopping) {
            break;
        }
        /* returns when a call ends, or et_http_wake() (new claims, stop) */
        if (et_http_run(d->http, d->conf->poll) != APR_SUCCESS) {
            /* libcurl's multi handle failed (out of memory): the calls
             * under way keep their timeouts; do not spin meanwhile */
            if (!complained) {
                et_log(&d->log, ET_LOG_ERR, NULL,
                       "ET01025: libcurl cannot run the calls (out of "
                       "memory?); trying again every 10 ms");
                complained = 1;
            }
            apr_sleep(apr_time_from_msec(10));
        }
        else {
            complained = 0;
        }
    }

    grace = apr_time_now() + ET_STOP_GRACE;
    while (et_http_running(d->http) && apr_time_now() < grace) {
        et_http_run(d->http, apr_time_from_msec(20));
    }
    et_http_abort(d->http);
    (void)thd;                        /* plain return: see etd_checkpointer */
    return NULL;
}
