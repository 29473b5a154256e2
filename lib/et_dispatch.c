/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher. The claiming thread claims due events from the outbox
 * (with a lease) and queues them for the calling thread, which makes the
 * calls, up to EventTriggerWorkers at once, side by side on one libcurl
 * multi handle (et_http.h), and hands each finished call back; the
 * claiming thread writes the outcomes.
 *
 * Why one calling thread and not a pool of threads each blocked in its own
 * call: the calls spend their time waiting on sockets, and one thread
 * waiting on all of them costs a third less CPU per call and no context
 * switch per call (docs/design.md, "Calls"). Why not the claiming thread
 * itself: its commits wait for the disk, and calls must not stall then.
 *
 * Threads and shared state:
 *  - the checkpointer thread has its own connection and pool and shares
 *    nothing but the read-only conf and its stop flag;
 *  - the outbox connection is shared by the claiming thread and the
 *    calling thread (circuit_store) and guarded by d->ob_lock (an
 *    et_outbox_t is not thread-safe), and every use of it also takes
 *    conf->lock, the outbox's cross-process writer lock (ob_enter/ob_leave);
 *  - d->http, d->running and d->waiting are the calling thread's alone
 *    (et_http_wake() excepted, which is safe from any thread);
 *  - claimed jobs go to the calling thread through d->queue (guarded by
 *    d->q_lock);
 *  - job pools are children of d->jobs_pool, whose allocator carries a
 *    mutex, so the claiming thread may create and destroy them while the
 *    calling thread allocates from others;
 *  - d->inflight, d->cap, d->batch and d->call_us are only touched with
 *    apr_atomic_*;
 *  - the calling thread hands each finished job (and the job's pool) back
 *    through d->done and d->ndone (guarded by d->done_lock); the claiming
 *    thread stores the outcomes and makes the next claims in one
 *    transaction (a "round") and destroys the pools;
 *  - the sites' state (endpoint health and whether the last claim took
 *    all that was due) and their hash are guarded by d->cb_lock; their
 *    pool is the dispatcher's, used only under that lock;
 *  - the intake's thread leases fresh events for us (lessee_reserve and
 *    lessee_settle, between offer(l) and offer(NULL)): it reads the
 *    sites' state under d->cb_lock, counts d->inflight with atomics and
 *    queues jobs like the claiming thread (jobs_pool, d->q_lock);
 *  - the et_site_t found by conf->lookup is read-only configuration.
 */

#include <apr_atomic.h>
#include <apr_date.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_poll.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "et_dispatch.h"
#include "et_outbox.h"
#include "et_call.h"
#include "et_circuit.h"

/* Retention runs this often, deleting at most a batch per statement so
 * that writers are not held up. */
#define ET_PRUNE_EVERY apr_time_from_sec(60)
/* How long calls under way may run on once the dispatcher is stopping. */
#define ET_STOP_GRACE apr_time_from_msec(1500)
/* A call starts only if its timeout, and this much more, ends before its
 * lease does (start_call) */
#define ET_LEASE_MARGIN apr_time_from_sec(1)
#define ET_PRUNE_BATCH 1000

/* Rounds (outcomes stored and claims made, one transaction and so one
 * fsync) are at least this far apart unless a batch is full, so that a
 * stream of events does not cost a commit each: the writer's lock stays
 * free for the request threads that capture. A lone event is not delayed
 * (the last round is long past). Fresh events reach the calls without a
 * round (lessee_settle), so the gap delays only their outcomes: 4 ms
 * rather than 1 ms bought figure 1 about 10% (docs/performance.md). */
#define ET_ROUND_GAP apr_time_from_msec(4)

/* How often the checkpointer copies the SQLite log into the file. */
#define ET_CHECKPOINT_EVERY apr_time_from_msec(100)

/* The dispatcher's SQLite page cache, KiB (within figure 4's memory
 * budget: at most 20 MB more with a million events pending). */
#define ET_DISPATCH_CACHE_KIB 8192

/* Claimed ahead: besides one per worker, up to this many events per
 * worker are leased and queued for the calling thread, so that a round claims
 * a batch, not the one event a worker just freed room for. How many is
 * set by how long calls take (set_cap): the queue is meant to drain in
 * about ET_QUEUE_WAIT, so that slow calls (of one site) do not hold the
 * events queued behind them (of any site) for long, nor near their lease. */
#define ET_CLAIM_AHEAD 7
#define ET_QUEUE_WAIT apr_time_from_msec(50)

/* Longest Retry-After honoured: a receiver cannot park events for days. */
#define ET_RETRY_AFTER_MAX apr_time_from_sec(3600)

typedef struct dispatcher_t {
    const et_dispatch_conf_t *conf;
    apr_pool_t *pool;
    apr_pool_t *jobs_pool;
    et_outbox_t *ob;
    apr_thread_mutex_t *ob_lock;
    et_http_t *http;                  /* calling thread only */
    apr_thread_t *caller;
    apr_thread_mutex_t *q_lock;       /* guards queue and queue_tail */
    struct job_t *queue, *queue_tail; /* claimed, for the calling thread */
    struct job_t *waiting, *waiting_tail; /* calling thread's, in order */
    int running;                      /* calls under way: calling thread */
    const char *owner;
    volatile apr_uint32_t inflight;
    apr_file_t *done_r, *done_w;      /* workers nudge the claimer */
    apr_thread_mutex_t *cb_lock;
    apr_hash_t *circuits;             /* site name -> et_circuit_t */
    apr_pool_t *cb_pool;
    apr_thread_mutex_t *done_lock;    /* guards done and ndone */
    struct job_t *done;               /* calls made, outcome not yet stored */
    int ndone;
    volatile apr_uint32_t cap;        /* events leased at most (set_cap) */
    volatile apr_uint32_t batch;      /* outcomes that make a full round */
    volatile apr_uint32_t call_us;    /* recent calls' mean duration, µs */
    apr_uint32_t rnd;                 /* retry jitter: calling thread only */
    apr_uint64_t span;                /* attempts' parent ids: likewise */
    apr_array_header_t *sites;        /* names claimed for, in turn */
    int next_site;                    /* claim loop's claiming thread only */
    int conn_lost;                    /* claiming thread: the outbox no
                                       * longer answers (see do_round) */
    apr_time_t soonest;               /* claiming thread: the soonest due
                                       * among outcomes it stored since it
                                       * last read the outbox's (next_due) */
} dispatcher_t;

typedef struct job_t {
    dispatcher_t *d;
    apr_pool_t *pool;                 /* owns the job; see do_round */
    et_event_t *ev;
    apr_time_t lease_until;           /* as claimed */
    et_outcome_t out;
    apr_status_t stored;              /* writing the outcome: see do_round */
    int probe;                        /* the call that probes a paused site */
    int untried;                      /* handed back uncalled: unclaim it */
    const char *trace_id;             /* of the traceparent sent, or NULL */
    struct job_t *next;               /* in a queue, then in d->done */
} job_t;

/* The connection is the dispatcher's (ob_lock); writing also needs the
 * outbox's cross-process lock, held by one writer at a time. */
static void ob_enter(dispatcher_t *d)
{
    apr_thread_mutex_lock(d->ob_lock);
    if (d->conf->lock) {
        apr_global_mutex_lock(d->conf->lock);
    }
}

static void ob_leave(dispatcher_t *d)
{
    if (d->conf->lock) {
        apr_global_mutex_unlock(d->conf->lock);
    }
    apr_thread_mutex_unlock(d->ob_lock);
}

/* Whether a message of @a level would be logged: per-call lines are
 * formatted only then (it is a measurable part of a call's cost). */
static int logs(const et_dispatch_conf_t *conf, int level)
{
    return conf->log && level <= (conf->log_level ? conf->log_level
                                                  : ET_LOG_DEBUG);
}

static void dlog(const et_dispatch_conf_t *conf, int level, const char *msg)
{
    if (conf->log) {
        conf->log(conf->log_baton, level, msg);
    }
}

/* Printable, bounded text of a receiver's answer, for logs and dead letters. */
static const char *answer_excerpt(apr_pool_t *p, const char *body,
                                  apr_size_t len)
{
    char *s;
    apr_size_t i;

    if (!body || !len) {
        return "";
    }
    if (len > 200) {
        len = 200;
    }
    s = apr_pstrmemdup(p, body, len);
    for (i = 0; i < len; i++) {
        if (!apr_isprint(s[i])) {
            s[i] = '.';
        }
    }
    return s;
}

/* Retry-After: delta seconds or an HTTP-date (RFC 9110, 10.2.3). */
static apr_interval_time_t retry_after(const char *v, apr_time_t now)
{
    if (!v || !*v) {
        return -1;
    }
    if (apr_isdigit(*v)) {
        char *end;
        apr_int64_t secs = apr_strtoi64(v, &end, 10);
        if (*end || secs < 0) {
            return -1;
        }
        return secs > 3600 ? ET_RETRY_AFTER_MAX : apr_time_from_sec(secs);
    }
    else {
        apr_time_t when = apr_date_parse_http(v);
        if (when == APR_DATE_BAD) {
            return -1;
        }
        return when <= now ? 0 : (when - now > ET_RETRY_AFTER_MAX
                                  ? ET_RETRY_AFTER_MAX : when - now);
    }
}

void et_dispatch_judge(const et_site_t *site, const et_event_t *ev,
                       const et_http_response_t *resp, apr_time_t now,
                       apr_uint32_t rnd, et_outcome_t *out)
{
    int st = resp->status;
    int retryable;

    memset(out, 0, sizeof(*out));
    out->status = st;
    out->latency = resp->elapsed;

    if (st >= 200 && st < 300) {
        out->state = ET_ST_DELIVERED;
        return;
    }
    retryable = (st == 0 || st == 408 || st == 429 || st >= 500);
    if (!retryable) {
        /* 3xx (redirects are not followed) and other 4xx: the receiver
         * refuses this call; asking again would get the same answer. */
        out->state = ET_ST_DEAD;
        out->error = st >= 300 && st < 400 ? "redirect not followed"
                                           : "refused by the receiver";
        return;
    }
    else {
        apr_interval_time_t delay = et_retry_next(site->retry, ev->attempts,
                                                  rnd);
        if (delay < 0) {
            out->state = ET_ST_DEAD;
            out->error = "out of attempts";
            return;
        }
        if (st == 429 || st == 503) {
            apr_interval_time_t ra = retry_after(resp->retry_after, now);
            if (ra > delay) {
                delay = ra;
            }
        }
        out->state = ET_ST_PENDING;
        out->due = now + delay;
        out->error = st ? "server error" : "no answer";
    }
}

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

/*
 * How many events may be leased at once: one per worker plus what the
 * workers get through in about ET_QUEUE_WAIT at the recent calls' pace,
 * at most ET_CLAIM_AHEAD more per worker. A full round is half of it.
 * Claiming thread only; workers read cap and batch (atomics).
 */
static void set_cap(dispatcher_t *d)
{
    apr_uint32_t w = (apr_uint32_t)d->conf->workers;
    apr_uint32_t mean = apr_atomic_read32(&d->call_us);
    apr_uint32_t ahead = mean ? (apr_uint32_t)(ET_QUEUE_WAIT / mean)
                              : ET_CLAIM_AHEAD;

    if (ahead > ET_CLAIM_AHEAD) {
        ahead = ET_CLAIM_AHEAD;
    }
    apr_atomic_set32(&d->cap, w * (1 + ahead));
    apr_atomic_set32(&d->batch, (w * (1 + ahead) + 1) / 2);
}

static void hand_back(dispatcher_t *d, job_t *job);
static job_t *make_job(dispatcher_t *d, const et_event_t *src,
                       apr_time_t lease_until);

/* What the dispatcher keeps per site (d->circuits, under d->cb_lock). */
typedef struct site_state_t {
    et_circuit_t cb;                  /* its endpoint's health */
    int caught_up;                    /* its last claim took all that was
                                       * due: fresh events may skip the
                                       * claim (lessee_reserve) */
} site_state_t;

/* The state of @a site; call with d->cb_lock held. */
static site_state_t *site_state(dispatcher_t *d, const char *site)
{
    site_state_t *st = apr_hash_get(d->circuits, site, APR_HASH_KEY_STRING);

    if (!st) {
        st = apr_pcalloc(d->cb_pool, sizeof(*st));
        apr_hash_set(d->circuits, apr_pstrdup(d->cb_pool, site),
                     APR_HASH_KEY_STRING, st);
    }
    return st;
}

/* When the first paused endpoint may be probed (APR_INT64_MAX if none
 * is paused): its due events wait for that, not for a due time. */
static apr_time_t pause_ends(dispatcher_t *d)
{
    apr_time_t first = APR_INT64_MAX;
    apr_hash_index_t *hi;

    apr_thread_mutex_lock(d->cb_lock);
    for (hi = apr_hash_first(NULL, d->circuits); hi; hi = apr_hash_next(hi)) {
        const site_state_t *st = apr_hash_this_val(hi);

        if (st->cb.state == ET_CB_OPEN && st->cb.open_until < first) {
            first = st->cb.open_until;
        }
    }
    apr_thread_mutex_unlock(d->cb_lock);
    return first;
}

/* The circuit of @a site; call with d->cb_lock held. */
static et_circuit_t *circuit_of(dispatcher_t *d, const char *site)
{
    return &site_state(d, site)->cb;
}

/* Write a circuit's state where claims (and the status page) see it. */
static void circuit_store(dispatcher_t *d, apr_pool_t *p, const char *site,
                          const et_circuit_t *c, apr_time_t open_until,
                          const char *error)
{
    et_circuit_row_t row;

    row.site = site;
    row.state = c->state;
    row.failures = c->failures;
    row.open_until = open_until;
    row.changed = apr_time_now();
    row.last_error = error;
    ob_enter(d);
    if (et_outbox_circuit_set(d->ob, &row) != APR_SUCCESS) {
        dlog(d->conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01013: cannot record the health of site %s: "
                          "%s", site, et_outbox_error(d->ob)));
    }
    ob_leave(d);
}

/* After an attempt: count it against the endpoint, log a change once. */
static void circuit_after(dispatcher_t *d, apr_pool_t *p, const et_site_t *site,
                          const et_event_t *ev, const et_http_response_t *resp,
                          const char *error)
{
    int st = resp->status;
    int healthy = st != 0 && st != 408 && st != 429 && st < 500;
    et_circuit_t *c, snap;
    int before;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, ev->site);
    before = et_circuit_record(c, &site->circuit, healthy, apr_time_now());
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);

    if (before < 0) {
        return;
    }
    circuit_store(d, p, ev->site, &snap,
                  snap.state == ET_CB_OPEN ? snap.open_until : 0,
                  healthy ? NULL : error);
    if (snap.state == ET_CB_CLOSED) {
        dlog(d->conf, ET_LOG_NOTICE,
             apr_psprintf(p, "ET01012: endpoint of site %s answers again; "
                          "deliveries resume", ev->site));
    }
    else if (before == ET_CB_CLOSED) {
        dlog(d->conf, ET_LOG_WARNING,
             apr_psprintf(p, "ET01010: endpoint of site %s paused for %"
                          APR_TIME_T_FMT "s after %d consecutive failures "
                          "(last: %s); one call will probe it", ev->site,
                          apr_time_sec(snap.pause), snap.failures,
                          error ? error : "error"));
    }
    else {
        dlog(d->conf, ET_LOG_INFO,
             apr_psprintf(p, "ET01011: probe of site %s failed; paused for %"
                          APR_TIME_T_FMT "s", ev->site,
                          apr_time_sec(snap.pause)));
    }
}

/*
 * Before claiming a site's events: 0 while its endpoint is paused (or a
 * probe is out), 1 when it is healthy, 2 when one event may probe it.
 * gate_of: with d->cb_lock held.
 */
static int gate_of(const et_circuit_t *c)
{
    return c->state == ET_CB_CLOSED ? 1
           : (c->state == ET_CB_OPEN && apr_time_now() >= c->open_until) ? 2
           : 0;
}

static int circuit_gate(dispatcher_t *d, const char *site)
{
    int gate;

    apr_thread_mutex_lock(d->cb_lock);
    gate = gate_of(circuit_of(d, site));
    apr_thread_mutex_unlock(d->cb_lock);
    return gate;
}

/* A probe was claimed: the circuit is probing until its outcome. */
static void probe_started(dispatcher_t *d, apr_pool_t *p, const char *name)
{
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, name);
    et_circuit_t *c, snap;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    et_circuit_admit(c, &site->circuit, apr_time_now());
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);
    circuit_store(d, p, name, &snap,
                  apr_time_now() + site->timeout + apr_time_from_sec(1), NULL);
}

/* The probe could not be started: open again, due for a probe at once. */
static void probe_lost(dispatcher_t *d, const char *name)
{
    et_circuit_t *c;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    c->state = ET_CB_OPEN;
    c->open_until = apr_time_now();
    apr_thread_mutex_unlock(d->cb_lock);
}

/* One site's claim in a round; its calls start once the round is
 * committed (a call must not run on a lease that is rolled back). */
typedef struct claim_t {
    const char *site;
    int probe;                        /* the one call that probes a pause */
    apr_array_header_t *evs;
} claim_t;

/*
 * Claim for every site with room left, inside the round's transaction,
 * starting at a different site each time so that a busy site does not
 * starve the others; paused sites are skipped without touching their
 * events (no attempt is used up). 0, or -1 when a claim failed.
 */
static int claim_sites(dispatcher_t *d, apr_pool_t *p, int room,
                       apr_array_header_t *got)
{
    int k, n = d->sites->nelts, rc = 0;

    for (k = 0; k < n && room > 0; k++) {
        const char *site = APR_ARRAY_IDX(d->sites, (d->next_site + k) % n,
                                         const char *);
        int gate = circuit_gate(d, site);
        apr_array_header_t *evs = NULL;
        claim_t *c;

        if (!gate) {
            /* paused: what comes meanwhile waits behind what is there */
            apr_thread_mutex_lock(d->cb_lock);
            site_state(d, site)->caught_up = 0;
            apr_thread_mutex_unlock(d->cb_lock);
            continue;
        }
        if (et_outbox_claim(d->ob, p, site, d->owner, d->conf->lease,
                            gate == 2 ? 1 : room, &evs) != APR_SUCCESS) {
            dlog(d->conf, ET_LOG_ERR,
                 apr_psprintf(p, "ET01006: cannot claim events of site %s: %s",
                              site, et_outbox_error(d->ob)));
            rc = -1;                  /* the transaction is spoiled */
            break;
        }
        /* fewer than asked: nothing more of it is due; until a claim
         * fills up again, its fresh events skip the claim */
        apr_thread_mutex_lock(d->cb_lock);
        site_state(d, site)->caught_up = gate == 1 && evs->nelts < room;
        apr_thread_mutex_unlock(d->cb_lock);
        if (!evs->nelts) {
            continue;
        }
        c = apr_array_push(got);
        c->site = site;
        c->probe = gate == 2;
        c->evs = evs;
        room -= evs->nelts;
    }
    d->next_site = n ? (d->next_site + 1) % n : 0;
    return rc;
}

/* Append the jobs @a head .. @a tail to the calling thread's queue. */
static void enqueue(dispatcher_t *d, job_t *head, job_t *tail)
{
    apr_thread_mutex_lock(d->q_lock);
    if (d->queue_tail) {
        d->queue_tail->next = head;
    }
    else {
        d->queue = head;
    }
    d->queue_tail = tail;
    apr_thread_mutex_unlock(d->q_lock);
    et_http_wake(d->http);
}

/* Queue the committed claims for the calling thread, in claim order;
 * returns how many. */
static int start_claims(dispatcher_t *d, apr_pool_t *p,
                        apr_array_header_t *got, apr_time_t lease_until)
{
    job_t *head = NULL, *tail = NULL;
    int k, i, n = 0;

    for (k = 0; k < got->nelts; k++) {
        claim_t *c = &APR_ARRAY_IDX(got, k, claim_t);

        if (c->probe) {
            probe_started(d, p, c->site);
        }
        for (i = 0; i < c->evs->nelts; i++) {
            job_t *job = make_job(d, APR_ARRAY_IDX(c->evs, i, et_event_t *),
                                  lease_until);

            job->probe = c->probe;
            if (tail) {
                tail->next = job;
            }
            else {
                head = job;
            }
            tail = job;
            n++;
        }
    }
    if (!n) {
        return 0;
    }
    apr_atomic_add32(&d->inflight, (apr_uint32_t)n);
    enqueue(d, head, tail);
    return n;
}

/*
 * The intake's thread, before it stores @a ev: lease it to us if its site
 * is healthy and caught up (so it does not overtake events that wait for
 * a claim) and a place in flight is free. Its object's order is checked
 * by the insert itself (et_outbox_insert).
 */
static int lessee_reserve(void *baton, et_event_t *ev)
{
    dispatcher_t *d = baton;
    apr_uint32_t cap = apr_atomic_read32(&d->cap), n;
    site_state_t *st;
    int gate, caught_up;

    if (ev->state != ET_ST_PENDING || ev->error || !ev->site) {
        return 0;
    }
    apr_thread_mutex_lock(d->cb_lock);
    st = site_state(d, ev->site);
    gate = gate_of(&st->cb);
    caught_up = st->caught_up;
    apr_thread_mutex_unlock(d->cb_lock);
    if (gate == 0) {
        return -1;                    /* paused: the claim loop waits too */
    }
    if (gate != 1 || !caught_up) {
        return 0;
    }
    do {
        n = apr_atomic_read32(&d->inflight);
        if (n >= cap) {
            return 0;
        }
    } while (apr_atomic_cas32(&d->inflight, n + 1, n) != n);
    ev->lease_owner = d->owner;
    ev->lease_until = apr_time_now() + d->conf->lease;
    return 1;
}

/* The intake's thread, after its commit: the events stored with our lease
 * go to the calling thread, the others give their place back. */
static void lessee_settle(void *baton, et_event_t **evs,
                          const apr_status_t *stored, int n)
{
    dispatcher_t *d = baton;
    job_t *head = NULL, *tail = NULL;
    int i;

    for (i = 0; i < n; i++) {
        job_t *job;

        if (stored[i] != APR_SUCCESS || !evs[i]->lease_owner) {
            apr_atomic_dec32(&d->inflight);
            continue;
        }
        job = make_job(d, evs[i], evs[i]->lease_until);
        if (tail) {
            tail->next = job;
        }
        else {
            head = job;
        }
        tail = job;
    }
    /* an event stored plainly instead is the claim loop's: the intake
     * wakes it */
    if (head) {
        enqueue(d, head, tail);
    }
}

/* Back to the claiming thread uncalled; the round gives its lease up. A
 * probe that was never made must not leave its site paused for good. */
static void give_back(dispatcher_t *d, job_t *job)
{
    job->untried = 1;
    if (job->probe) {
        probe_lost(d, job->ev->site);
    }
    hand_back(d, job);
}

static void call_done(void *baton, const et_http_response_t *resp);

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
        dlog(d->conf, ET_LOG_INFO,
             apr_psprintf(p, "ET01019: txn=%s waited for a free worker "
                          "until its lease nearly ran out; it is back in "
                          "line untried", ev->txn));
        give_back(d, job);
        return;
    }
    if (!job->probe && circuit_gate(d, ev->site) != 1) {
        /* its endpoint was paused after the claim (claimed ahead behind
         * calls that failed): a paused endpoint gets no calls, and what
         * waits behind a pause uses no attempt */
        dlog(d->conf, ET_LOG_DEBUG,
             apr_psprintf(p, "ET01040: txn=%s: site %s was paused after "
                          "it was claimed; back in line untried", ev->txn,
                          ev->site));
        give_back(d, job);
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
        dlog(d->conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01023: cannot start the call of txn=%s (out "
                          "of memory?); it is back in line untried",
                          ev->txn));
        give_back(d, job);
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
    int level;

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
        dlog(d->conf, ET_LOG_INFO,
             apr_psprintf(p, "ET01009: call of txn=%s interrupted by the "
                          "dispatcher's stop; it is back in line", ev->txn));
        give_back(d, job);
        return;
    }
    et_dispatch_judge(site, ev, &resp, apr_time_now(), next_rand(d), &out);
    if (out.state != ET_ST_DELIVERED) {
        const char *excerpt = answer_excerpt(p, resp.body, resp.body_len);
        out.error = resp.status
            ? apr_psprintf(p, "%s: HTTP %d%s%s", out.error, resp.status,
                           *excerpt ? ", answer: " : "", excerpt)
            : apr_psprintf(p, "%s: %s", out.error,
                           resp.error ? resp.error : "transport error");
    }

    circuit_after(d, p, site, ev, &resp, out.error);

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
    if (logs(d->conf, level)) {
        dlog(d->conf, level,
             apr_psprintf(p, "ET01001: %s txn=%s site=%s object=%s "
                          "event=%s id=%s attempt=%d status=%d latency=%"
                          APR_TIME_T_FMT "ms trace=%s%s%s", detail, ev->txn,
                          ev->site, et_object_name(ev->object),
                          et_event_name(ev->event), ev->oid, ev->attempts,
                          resp.status, apr_time_as_msec(resp.elapsed),
                          job->trace_id ? job->trace_id : "-",
                          out.error ? " error=" : "",
                          out.error ? out.error : ""));
    }

    /* The outcome is stored by the claiming thread with the others that
     * finished meanwhile, in one transaction; the job and its pool are
     * its from here on. Until then the event stays leased, so neither it
     * nor a later event of the same object can be claimed. */
    job->out = out;
    hand_back(d, job);
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
 * Write the outcomes of @a jobs. In the round's transaction (@a each 0)
 * it stops at the first failure, which spoils the transaction; otherwise
 * each is its own commit and a failure is logged and skipped.
 * 0, or -1 when a statement failed.
 */
static int store_outcomes(dispatcher_t *d, apr_pool_t *p, job_t *jobs,
                          int each)
{
    job_t *job;
    int rc = 0;

    for (job = jobs; job; job = job->next) {
        apr_time_t due = job->untried ? apr_time_now()
                         : job->out.state == ET_ST_PENDING ? job->out.due
                         : d->soonest;

        job->stored = job->untried
                      ? et_outbox_unclaim(d->ob, job->ev, d->owner)
                      : et_outbox_finish(d->ob, job->ev, d->owner, &job->out);
        if (due < d->soonest) {
            d->soonest = due;
        }
        if (job->stored == APR_SUCCESS || job->stored == APR_EBUSY) {
            continue;
        }
        rc = -1;
        if (!each) {
            break;
        }
        dlog(d->conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01003: cannot record the outcome of "
                          "txn=%s: %s; it will be made again when its "
                          "lease expires", job->ev->txn,
                          et_outbox_error(d->ob)));
    }
    return rc;
}

/*
 * A round, on the claiming thread only: the outcomes of the calls made
 * since the last round and the next claims (up to @a room events), in one
 * transaction: one commit, one fsync, for many calls. If any statement
 * fails the round is rolled back; the outcomes are then written one by
 * one and nothing is claimed until the next round. Returns how many calls
 * were started.
 */
static int do_round(dispatcher_t *d, apr_pool_t *p, int room)
{
    apr_array_header_t *got = apr_array_make(p, 4, sizeof(claim_t));
    apr_dbd_transaction_t *trans = NULL;
    apr_time_t lease_until = apr_time_now() + d->conf->lease;
    job_t *jobs, *job, *next;
    int ok;

    apr_thread_mutex_lock(d->done_lock);
    jobs = d->done;
    d->done = NULL;
    d->ndone = 0;
    apr_thread_mutex_unlock(d->done_lock);
    if (!jobs && room <= 0) {
        return 0;
    }

    ob_enter(d);
    ok = et_outbox_begin(d->ob, p, &trans) == APR_SUCCESS
         && store_outcomes(d, p, jobs, 0) == 0
         && (room <= 0 || claim_sites(d, p, room, got) == 0);
    /* apr_dbd rolls back a transaction in which a statement failed */
    if (trans && et_outbox_end(d->ob, p, trans) != APR_SUCCESS) {
        ok = 0;
    }
    if (!ok) {
        dlog(d->conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01018: cannot commit outcomes and claims: "
                          "%s; writing the outcomes one by one",
                          et_outbox_error(d->ob)));
        apr_array_clear(got);
        store_outcomes(d, p, jobs, 1);
        /* a connection the database server ended (PostgreSQL restarted)
         * stays dead: the dispatcher must start again on new ones */
        if (et_outbox_ping(d->ob) != APR_SUCCESS) {
            d->conn_lost = 1;
        }
    }
    ob_leave(d);

    for (job = jobs; job; job = next) {
        next = job->next;
        if (job->stored == APR_EBUSY) {
            dlog(d->conf, ET_LOG_WARNING,
                 apr_psprintf(p, "ET01002: lease of txn=%s expired during "
                              "the call; its outcome was left to the new "
                              "holder (raise EventTriggerLease above the "
                              "call timeout)", job->ev->txn));
        }
        apr_pool_destroy(job->pool);
    }
    return start_claims(d, p, got, lease_until);
}

/* Old delivered and dead events go, a batch at a time, so that the
 * outbox does not grow without end. */
static void prune(dispatcher_t *d, apr_pool_t *p)
{
    const et_dispatch_conf_t *conf = d->conf;
    apr_time_t now = apr_time_now();
    int n = 0, total = 0;

    if (!conf->keep_delivered && !conf->keep_dead) {
        return;
    }
    do {
        ob_enter(d);
        if (et_outbox_prune(d->ob,
                            conf->keep_delivered ? now - conf->keep_delivered
                                                 : 0,
                            conf->keep_dead ? now - conf->keep_dead : 0,
                            ET_PRUNE_BATCH, &n) != APR_SUCCESS) {
            dlog(conf, ET_LOG_ERR,
                 apr_psprintf(p, "ET01014: cannot delete old events: %s",
                              et_outbox_error(d->ob)));
            n = 0;
        }
        ob_leave(d);
        total += n;
    } while (n == ET_PRUNE_BATCH && !*conf->stop);
    if (total) {
        dlog(conf, ET_LOG_INFO,
             apr_psprintf(p, "ET01015: deleted %d old events from the outbox",
                          total));
    }
}

/* Copy a claimed event into its job's own pool. */
static job_t *make_job(dispatcher_t *d, const et_event_t *src,
                       apr_time_t lease_until)
{
    apr_pool_t *p;
    job_t *job;
    et_event_t *ev;

    apr_pool_create(&p, d->jobs_pool);
    apr_pool_tag(p, "et_job");
    job = apr_pcalloc(p, sizeof(*job));
    ev = apr_pmemdup(p, src, sizeof(*src));
    ev->txn = apr_pstrdup(p, src->txn);
    ev->site = apr_pstrdup(p, src->site);
    ev->oid = apr_pstrdup(p, src->oid);
    ev->url = apr_pstrdup(p, src->url);
    ev->content_type = apr_pstrdup(p, src->content_type);
    ev->body = src->body ? apr_pstrmemdup(p, src->body, src->body_len) : NULL;
    ev->error = apr_pstrdup(p, src->error);
    ev->traceparent = apr_pstrdup(p, src->traceparent);
    ev->tracestate = apr_pstrdup(p, src->tracestate);
    ev->headers = apr_pstrdup(p, src->headers);
    ev->lease_owner = NULL;           /* the job's lease is d->owner's */
    job->d = d;
    job->pool = p;
    job->ev = ev;
    job->lease_until = lease_until;
    return job;
}

static void drain(apr_file_t *f)
{
    char buf[256];
    apr_size_t n;

    do {
        n = sizeof(buf);
    } while (apr_file_read(f, buf, &n) == APR_SUCCESS && n == sizeof(buf));
}

/* A paused endpoint stays paused across a restart of the dispatcher. */
static void load_circuits(dispatcher_t *d, apr_pool_t *p)
{
    apr_array_header_t *rows;
    apr_time_t now = apr_time_now();
    int i;

    if (et_outbox_circuits(d->ob, p, &rows) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < rows->nelts; i++) {
        et_circuit_row_t *row = APR_ARRAY_IDX(rows, i, et_circuit_row_t *);
        et_circuit_t *c;

        if (row->state == ET_CB_CLOSED) {
            continue;
        }
        c = circuit_of(d, row->site);
        c->state = ET_CB_OPEN;        /* a probe in flight died with us */
        c->failures = row->failures;
        c->open_until = row->open_until > now ? row->open_until : now;
        c->pause = row->open_until - row->changed;
    }
}

/* The configured sites, and any other that still has pending events (a
 * site removed from the configuration keeps its events delivered). */
static void load_sites(dispatcher_t *d, apr_pool_t *p)
{
    apr_array_header_t *pending = NULL;
    int i, j;

    d->sites = apr_array_make(p, 8, sizeof(const char *));
    for (i = 0; d->conf->sites && i < d->conf->sites->nelts; i++) {
        APR_ARRAY_PUSH(d->sites, const char *) =
            APR_ARRAY_IDX(d->conf->sites, i, const char *);
    }
    if (et_outbox_pending_sites(d->ob, p, &pending) != APR_SUCCESS) {
        dlog(d->conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01016: %s", et_outbox_error(d->ob)));
        return;
    }
    for (i = 0; i < pending->nelts; i++) {
        const char *name = APR_ARRAY_IDX(pending, i, const char *);
        for (j = 0; j < d->sites->nelts; j++) {
            if (!strcmp(name, APR_ARRAY_IDX(d->sites, j, const char *))) {
                break;
            }
        }
        if (j == d->sites->nelts) {
            APR_ARRAY_PUSH(d->sites, const char *) = apr_pstrdup(p, name);
            dlog(d->conf, ET_LOG_WARNING,
                 apr_psprintf(p, "ET01017: site %s is no longer configured; "
                              "its pending events still go to the URLs "
                              "they were captured with", name));
        }
    }
}

static apr_status_t setup(dispatcher_t *d, apr_pool_t *p,
                          const et_dispatch_conf_t *conf)
{
    apr_allocator_t *alloc;
    apr_thread_mutex_t *amutex;
    const char *err = NULL;
    apr_status_t rv;

    d->conf = conf;
    d->pool = p;
    d->soonest = APR_INT64_MAX;
    apr_generate_random_bytes((unsigned char *)&d->rnd, sizeof(d->rnd));
    d->rnd |= 1;                      /* xorshift's one fixed point is 0 */
    apr_generate_random_bytes((unsigned char *)&d->span, sizeof(d->span));
    d->owner = apr_psprintf(p, "%" APR_PID_T_FMT "@%" APR_TIME_T_FMT,
                            getpid(), apr_time_now());

    rv = et_outbox_open(&d->ob, p, conf->store, 0, &err);
    if (rv != APR_SUCCESS) {
        dlog(conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01004: dispatcher cannot open the outbox: %s",
                          err ? err : "unknown error"));
        return rv;
    }
    /* The claims and finishes seek all over the indexes of a large
     * backlog; SQLite's 2 MiB default then rereads pages on every round. */
    if (et_outbox_cache(d->ob, ET_DISPATCH_CACHE_KIB) != APR_SUCCESS) {
        dlog(conf, ET_LOG_WARNING,
             apr_psprintf(p, "ET01020: cannot size the outbox's page cache: "
                          "%s", et_outbox_error(d->ob)));
    }
    if ((rv = apr_thread_mutex_create(&d->ob_lock, APR_THREAD_MUTEX_DEFAULT,
                                      p)) != APR_SUCCESS
        || (rv = et_http_curl_create(&d->http, p)) != APR_SUCCESS
        || (rv = apr_file_pipe_create_ex(&d->done_r, &d->done_w,
                                         APR_FULL_NONBLOCK, p)) != APR_SUCCESS) {
        return rv;
    }

    /* job pools come and go on several threads: give them a locked allocator */
    if ((rv = apr_allocator_create(&alloc)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create_ex(&d->jobs_pool, p, NULL, alloc);
    apr_allocator_owner_set(alloc, d->jobs_pool);
    apr_thread_mutex_create(&amutex, APR_THREAD_MUTEX_DEFAULT, d->jobs_pool);
    apr_allocator_mutex_set(alloc, amutex);
    apr_allocator_max_free_set(alloc, 1024 * 1024);

    if ((rv = apr_thread_mutex_create(&d->cb_lock, APR_THREAD_MUTEX_DEFAULT,
                                      p)) != APR_SUCCESS
        || (rv = apr_thread_mutex_create(&d->done_lock,
                                         APR_THREAD_MUTEX_DEFAULT, p))
           != APR_SUCCESS
        || (rv = apr_thread_mutex_create(&d->q_lock,
                                         APR_THREAD_MUTEX_DEFAULT, p))
           != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create(&d->cb_pool, p);
    d->circuits = apr_hash_make(d->cb_pool);
    load_circuits(d, p);
    load_sites(d, p);

    set_cap(d);
    return APR_SUCCESS;
}

/*
 * The calling thread: starts the queued calls, in claim order, up to
 * conf->workers at once, and runs them until they end (call_done). At
 * stop, queued calls go back untried; calls about to finish are let
 * finish (an interrupted call is made again: a duplicate for the
 * receiver), the rest are interrupted well before httpd's SIGKILL, 3 s
 * after its SIGTERM.
 */
void et_thread_name(const char *name)
{
#ifdef __linux__
    prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)name;
#endif
}

static void *APR_THREAD_FUNC caller(apr_thread_t *thd, void *data)
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
                give_back(d, job);
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
                dlog(d->conf, ET_LOG_ERR,
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
    (void)thd;                        /* a plain return: see checkpointer */
    return NULL;
}

/*
 * The checkpointer: a thread with its own connection that copies the
 * SQLite write-ahead log into the database file every 100 ms, so that no
 * commit (a request's, a round's) has to (et_outbox_checkpoint). On
 * PostgreSQL it only sleeps. Shares nothing but conf (read-only) and the
 * stop flag.
 */
static void *APR_THREAD_FUNC checkpointer(apr_thread_t *thd, void *data)
{
    const et_dispatch_conf_t *conf = data;
    apr_pool_t *p;
    et_outbox_t *ob = NULL;
    const char *err = NULL;
    int complained = 0;

    et_thread_name("et-checkpoint");

    /* its own allocator: nothing here is shared with the other threads */
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (et_outbox_open(&ob, p, conf->store, 0, &err) != APR_SUCCESS) {
        dlog(conf, ET_LOG_WARNING,
             apr_psprintf(p, "ET01021: the checkpointer cannot open the "
                          "outbox (%s); commits will checkpoint the log "
                          "themselves", err ? err : "unknown error"));
        ob = NULL;
    }
    while (ob && !*conf->stop) {
        apr_sleep(ET_CHECKPOINT_EVERY);
        if (et_outbox_checkpoint(ob) != APR_SUCCESS && !complained) {
            dlog(conf, ET_LOG_WARNING,
                 apr_psprintf(p, "ET01022: cannot checkpoint the outbox: %s",
                              et_outbox_error(ob)));
            complained = 1;           /* once: it is retried each time */
        }
    }
    apr_pool_destroy(p);              /* closes the connection */
    /* a plain return, not apr_thread_exit(): pthread_exit's unwinding
     * leaves ASan's stack poisoning behind and it reports the thread's
     * own teardown */
    (void)thd;
    return NULL;
}

apr_status_t et_dispatch_run(apr_pool_t *p, const et_dispatch_conf_t *conf)
{
    dispatcher_t d;
    apr_pool_t *iter;
    apr_pollfd_t fds[2];
    apr_status_t rv;
    apr_time_t next_prune, last_round;
    apr_time_t known_due = 0, due_read = 0;   /* the outbox's next due */
    apr_thread_t *ckpt;
    int nfds = 0;

    memset(&d, 0, sizeof(d));
    if ((rv = setup(&d, p, conf)) != APR_SUCCESS) {
        return rv;
    }
    if ((rv = apr_thread_create(&d.caller, NULL, caller, &d, p))
        != APR_SUCCESS) {
        dlog(conf, ET_LOG_ERR,
             apr_psprintf(p, "ET01024: dispatcher cannot start its calling "
                          "thread: %pm", &rv));
        return rv;
    }
    if (apr_thread_create(&ckpt, NULL, checkpointer, (void *)conf, p)
        != APR_SUCCESS) {
        ckpt = NULL;                  /* commits checkpoint, as SQLite does */
    }
    dlog(conf, ET_LOG_INFO,
         apr_psprintf(p, "ET01005: dispatcher %s started with %d workers",
                      d.owner, conf->workers));
    if (conf->offer) {
        et_lessee_t l;

        l.reserve = lessee_reserve;
        l.settle = lessee_settle;
        l.baton = &d;
        conf->offer(conf->offer_baton, &l);
    }

    memset(fds, 0, sizeof(fds));
    fds[nfds].p = p;
    fds[nfds].desc_type = APR_POLL_FILE;
    fds[nfds].reqevents = APR_POLLIN;
    fds[nfds++].desc.f = d.done_r;
    if (conf->wakeup) {
        fds[nfds].p = p;
        fds[nfds].desc_type = APR_POLL_FILE;
        fds[nfds].reqevents = APR_POLLIN;
        fds[nfds++].desc.f = conf->wakeup;
    }

    apr_pool_create(&iter, p);
    next_prune = apr_time_now() + ET_PRUNE_EVERY;
    last_round = 0;
    while (!*conf->stop) {
        apr_time_t now = apr_time_now();
        int room, batch;
        apr_interval_time_t wait = conf->poll;
        apr_int32_t nready;
        apr_time_t due;
        int ndone;

        apr_pool_clear(iter);
        set_cap(&d);
        room = (int)apr_atomic_read32(&d.cap)
               - (int)apr_atomic_read32(&d.inflight);
        batch = (int)apr_atomic_read32(&d.batch);
        if (now >= next_prune) {
            prune(&d, iter);
            next_prune = apr_time_now() + ET_PRUNE_EVERY;
        }
        apr_thread_mutex_lock(d.done_lock);
        ndone = d.ndone;
        apr_thread_mutex_unlock(d.done_lock);

        if (ndone >= batch || now - last_round >= ET_ROUND_GAP) {
            int claimed = do_round(&d, iter, room);

            if (d.conn_lost) {
                dlog(conf, ET_LOG_ERR,
                     apr_psprintf(iter, "ET01041: the outbox no longer "
                                  "answers (%s); the dispatcher stops, to "
                                  "start again with new connections",
                                  et_outbox_error(d.ob)));
                *conf->stop = 1;      /* the other threads end as for a stop */
                break;
            }
            last_round = now;
            if (room > 0 && claimed < room) {
                /* caught up: the soonest retry or lease expiry bounds the
                 * sleep. Read (the connection's lock only) when what was
                 * read last is past or older than the poll interval;
                 * meanwhile only our own outcomes (d.soonest) can make
                 * it sooner: new events wake us, and are claimed. */
                if (d.soonest < known_due) {
                    known_due = d.soonest;
                }
                d.soonest = APR_INT64_MAX;
                if (known_due <= now || now - due_read >= conf->poll) {
                    apr_thread_mutex_lock(d.ob_lock);
                    rv = et_outbox_next_due(d.ob, now, &due);
                    apr_thread_mutex_unlock(d.ob_lock);
                    /* on error: read again after the next round */
                    known_due = rv == APR_SUCCESS ? due
                                : rv == APR_NOTFOUND ? APR_INT64_MAX : now;
                    due_read = now;
                }
                if (known_due - now < wait) {
                    wait = known_due > now ? known_due - now : 0;
                }
                /* events due already wait for a pause to end (one that
                 * has ended waits for its probe: a round, or a nudge) */
                due = pause_ends(&d);
                if (due > now && due - now < wait) {
                    wait = due - now;
                }
                if (wait <= 0 && claimed == 0) {
                    /* due but not claimable: behind an earlier event of
                     * the same object that is in flight, or its endpoint
                     * paused. A finishing call nudges us. */
                    wait = conf->poll;
                }
            }
            /* else every lease is taken: a finishing call nudges us */
        }
        else {
            /* a round was just made: wait for the gap, or a full batch */
            wait = ET_ROUND_GAP - (now - last_round);
        }
        if (wait > 0) {
            /* apr_poll counts in milliseconds: round up, never spin */
            wait = (wait + 999) / 1000 * 1000;
            if (apr_poll(fds, nfds, &nready, wait) == APR_SUCCESS) {
                drain(d.done_r);
                if (conf->wakeup) {
                    drain(conf->wakeup);
                }
            }
        }
    }

    /* Stop claiming, and stop the intake leasing for us (it returns once
     * no commit is handing us events); the calling thread ends its calls
     * (see caller) and hands every job back; their outcomes are stored
     * below, and leases of events never handed over are released. */
    if (conf->offer) {
        conf->offer(conf->offer_baton, NULL);
    }
    et_http_wake(d.http);
    {
        apr_status_t trv;

        apr_thread_join(&trv, d.caller);
    }
    do_round(&d, p, 0);
    ob_enter(&d);
    if (et_outbox_release(d.ob, d.owner) != APR_SUCCESS) {
        dlog(conf, ET_LOG_WARNING,
             apr_psprintf(p, "ET01007: cannot release leases at stop: %s",
                          et_outbox_error(d.ob)));
    }
    ob_leave(&d);
    if (ckpt) {
        apr_status_t trv;

        apr_thread_join(&trv, ckpt);
    }
    dlog(conf, ET_LOG_INFO,
         apr_psprintf(p, "ET01008: dispatcher %s stopped", d.owner));
    return d.conn_lost ? APR_EGENERAL : APR_SUCCESS;
}
